"""The pipeline section: cargo bench --bench pipeline (the pure pipeline on one core, in process:
gzip levels, per-stage costs, the Python reference on the same records), its output passed
through, its speed-up kept for the summary.
"""

import shlex
import subprocess
import threading

from harness import BenchError, kill_group, say
from logetl import PYTHON, ROOT, begin, clean_env
from report import Report, Summary

TIMEOUT_S = 3600  # cargo bench, its build included
SUMMARY = Summary("- The pure pipeline in process, one core (cargo bench --bench pipeline): "
                  "**{speedup}** the Python reference's records/s on the same records.")


def run(args, launcher, scratch):
    begin("pipeline: cargo bench --bench pipeline (pure pipeline, one core, in process)")
    argv = ["cargo", "bench", "--bench", "pipeline"]
    if args.pipeline_records:
        argv += ["--", str(args.pipeline_records)]
    say(f"  $ {shlex.join(argv)}")
    line = passed_through(argv, clean_env(LOG_ETL_PYTHON=PYTHON), marker="speed-up")
    speedup = line.split()[-1] if line else None
    return Report({"speedup": speedup}, summaries=[SUMMARY] if speedup else [])


def passed_through(argv, env, marker):
    """Runs `argv` in the project, its output printed as it comes, within TIMEOUT_S; the last line
    it printed that starts with `marker`, if any."""
    # A session of its own, so that the bound (a build included) stops cargo and what it ran.
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    timer = threading.Timer(TIMEOUT_S, kill_group, (child.pid,))
    timer.start()
    found = None
    try:
        for line in child.stdout:
            say("  | " + line.rstrip("\n"))
            if line.strip().startswith(marker):
                found = line.strip()
    except BaseException:
        kill_group(child.pid)
        raise
    finally:
        child.stdout.close()
        status = child.wait()
        timer.cancel()
    if status != 0:
        raise BenchError(f"cargo bench exited with status {status}"
                         + (f" (stopped after {TIMEOUT_S} s)" if status < 0 else ""))
    return found

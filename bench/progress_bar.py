"""The progress section: what the progress bar costs. log-etl process of a 1,000,000-record
response with stderr a terminal (script(1) gives it a pseudo-terminal), the bar drawn, against the
same with --quiet under the same terminal, runs interleaved; the summary goes to a file (--json),
so both runs do the same work but for the bar.
"""

import json
import shlex
import shutil
import statistics
import subprocess
import time

from harness import BenchError, fmt_int, say
from logetl import begin, cached_response, clean_env, log_etl
from report import Column, Report, Summary, Table

RECORDS = 1_000_000
RUNS = 5
BAR = "Processing"  # how the bar of process starts

COLUMNS = [Column("stderr", "case"), Column("runs", "runs", "g"),
           Column("median s", "median", ".3f"), Column("best s", "best", ".3f"),
           Column("terminal bytes", "drawn", ",.0f")]
NOTES = ["  (wall: spawn of script(1) to its exit, the same for both; terminal bytes: what the "
         "pseudo-terminal received, the bar's frames)"]
VERDICTS = ["process with the bar / with --quiet (medians):  {ratio:.3f}x   (spread of the "
            "quiet runs: {spread:.1%})"]
SUMMARY = Summary("- The progress bar on a terminal, {records:,.0f} records (`process`, median "
                  "of {runs}): {ratio:.3f}x the time of --quiet under the same terminal (the "
                  "quiet runs themselves spread {spread:.1%}).")


def run(args, launcher, scratch):
    if shutil.which("script") is None:
        raise BenchError("the progress section needs script(1) (util-linux) for a terminal")
    begin(f"progress: log-etl process of {fmt_int(RECORDS)} records on a terminal, with the "
          "bar and with --quiet")
    response, _ = cached_response(launcher, RECORDS, args.fresh)
    walls = {"bar": [], "quiet": []}
    drawn = {"bar": 0, "quiet": 0}
    for i in range(RUNS):
        for case in ("bar", "quiet"):
            wall, terminal = one_run(scratch, response, case, i)
            walls[case].append(wall)
            drawn[case] = len(terminal)
            if (BAR in terminal) != (case == "bar"):
                raise BenchError(f"process ({case}): the bar was "
                                 f"{'not ' if case == 'bar' else ''}drawn on the terminal")
            say(f"  process, {case:<5} run {i + 1}/{RUNS}: {wall:6.2f} s")
    rows = [{"case": f"a terminal, {case}", "runs": RUNS,
             "median": statistics.median(walls[case]), "best": min(walls[case]),
             "drawn": drawn[case]} for case in ("bar", "quiet")]
    quiet = walls["quiet"]
    facts = {"records": RECORDS, "runs": RUNS,
             "ratio": rows[0]["median"] / rows[1]["median"],
             "spread": (max(quiet) - min(quiet)) / statistics.median(quiet)}
    return Report(facts, [Table(COLUMNS, rows, notes=NOTES, verdicts=VERDICTS)], [SUMMARY])


def one_run(scratch, response, case, i):
    """One process run under script(1): its wall time and what the terminal received."""
    out = scratch / f"progress-{case}-{i}"
    summary = scratch / f"progress-{case}-{i}.json"
    argv = log_etl("process", "--key-file", response.parent / "fernet.key", "--input", response,
                   "--dir", out, "--json", *(["--quiet"] if case == "quiet" else []))
    inner = f"{shlex.join(map(str, argv))} > {shlex.quote(str(summary))}"
    started = time.perf_counter()
    done = subprocess.run(["script", "-qec", inner, "/dev/null"], env=clean_env(),
                          capture_output=True, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"process ({case}) under script exited {done.returncode}: "
                         f"{done.stdout.decode(errors='replace')[-500:]}")
    s = json.loads(summary.read_text())
    if s["records_landed"] != RECORDS:
        raise BenchError(f"process ({case}) landed {s['records_landed']} records, not {RECORDS}")
    shutil.rmtree(out)
    summary.unlink()
    return wall, done.stdout.decode(errors="replace")

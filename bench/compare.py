"""The entry of the log-etl benchmark (scripts/bench runs it): parses the command line, the one
place its sections and options are documented (--help), runs the sections in order, each in its
own module, and prints what each returns through the one renderer, bench/report.py.
"""

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import compaction
import cost
import day
import large
import memory
import offline
import pass_memory
import pipeline
import progress_bar
import scaling
import scheduled_pass
import unreadable
import zstd_gzip
from harness import BenchError, Launcher, built_at, command_output, cpu_model, git_revision, \
    load_average, mem_total_gib, say
from logetl import BUILT, DATA, PYTHON, ROOT, SOURCES, log_etl, use_copy
from report import render, render_facts, summary

SECTIONS = {"offline": offline, "large": large, "pass": scheduled_pass,
            "pass-memory": pass_memory, "compaction": compaction, "unreadable": unreadable,
            "day": day, "pipeline": pipeline, "encodings": zstd_gzip, "scaling": scaling,
            "memory": memory, "progress": progress_bar, "cost": cost}

DESCRIPTION = """\
Benchmarks log-etl against the Python script it replaces (bench/reference.py), both in the same
run on the same data, and measures what bounds log-etl's memory and time. Nothing here asserts a
speed or a memory figure: the targets are printed beside the figures. It exits non-zero only when
something fails to run or a correctness check fails (record counts, records per hour, objects in
the bucket, a run that should fail and did not).

sections (all, the default, runs them in this order):
  offline      a saved API response processed into a folder, each tool a child process measured
               for wall time and peak RSS: log-etl process (--log-etl-runs; median records/s,
               worst peak RSS) and reference.py offline (--reference-runs)
  large        saved responses of records of several MiB into a folder (log-etl process,
               --memory-runs each, worst peak RSS): elements over MAX_RECORD_BYTES, quarantined
               whole, and large records that land under raised limits
  pass         one scheduled pass of 100 records, cold process, against the log-API simulator
               (log-etl simulate) and moto (S3 and Secrets Manager): log-etl run and
               reference.py pass, --runs times each, interleaved; then what exactly once costs
               a pass (listings, reads, their time): into new hours, the same batch again, and
               a new batch at the end of an hour holding 19 earlier ones
  pass-memory  one pass (log-etl run) against a fixed body of MAX_RESPONSE_BYTES served by a
               local http.server, --memory-runs each: 64 MiB of tiny elements (the run must
               fail, writing nothing) and about 60 MiB of records of about 1 MiB (they land)
  compaction   log-etl compact of one closed hour, --memory-runs times on fresh copies: a usual
               hour (20 passes of 100 records) and an hour of --hour-records records
  unreadable   an hour holding a gzip bomb (2 MB of gzip level 9 expanding to 2 GiB of zeros
               without a newline) beside two ordinary objects, and a closed hour beside it,
               --memory-runs each: a pass into that hour (log-etl run, simulator + moto: every
               record lands, objects_unreadable 1), log-etl compact --bucket (moto) and --dir
               (the other hour merged, the bomb's left as it was, hours_unreadable 1), and
               log-etl restore of the hour from s3:// and a folder (exits non-zero naming the
               bomb, every ordinary record printed)
  day          a day of passes (--day-batches batches of 100 records, 3 minutes apart) landed
               into a folder, and a copy compacted (log-etl compact): objects, and the time of
               log-etl restore of the day (--restore-runs, before and after interleaved), from
               the folders and from the same objects in moto
  pipeline     cargo bench --bench pipeline (the pure pipeline on one core: gzip levels, per-stage
               costs, the Python reference on the same records), passed through
  encodings    cargo bench --bench encodings (gzip 6 and 9, zstd 3, 9, 12 and 19 on the same usual
               records, one core: bytes per record, encode and read time), passed through
  scaling      log-etl process of the usual 100,000-record response on every core and pinned to
               one (taskset -c 0), 5 runs each, interleaved, and reference.py offline on the same
               file (2 runs): process against the reference, and two cores against one
  memory       log-etl process of --records and 3x --records records sorted over many hours,
               --records in one hour and --records shuffled over many hours (--log-etl-runs
               each, worst peak RSS against 64 MiB, median time); LOG_ETL_BENCH_BASELINE=BINARY
               runs an earlier build on the same inputs, interleaved
  progress     log-etl process of a 1,000,000-record response with stderr a terminal (script(1)),
               the progress bar drawn, against --quiet under the same terminal, 5 runs each,
               interleaved: what the bar costs
  cost         what a month of one deployment costs on AWS: an hour of passes (log-etl run, cold
               processes, against moto) at 100 and at 10,000 records a pass, and the
               compaction of that hour (log-etl compact --bucket): S3 requests by type from
               moto's request log, Secrets Manager calls, durations, log and landed bytes; with
               the template's memory, alarms and dashboard and the code's metrics, priced from
               bench/cost.py's PRICES; prints the README's table rows. Fails when the counts
               disagree (records landed, LISTs, moto against the summaries)"""

EPILOG = """\
Generated responses of the offline, large, pass-memory, compaction, memory and scaling sections
(about 540 bytes a record for the usual ones; 790 MB and 840 MB for the large ones; the memory
section's three shapes of its own another 2.7 GB; 5.4 GB in all) and the bomb of the
unreadable section (2 MB) are kept in target/bench-data/ and reused by later runs; outputs go to
a temporary folder removed at the end.
Every peak RSS printed is the largest of its runs, measured as bench/harness.py says (GNU time
when present). `all` takes about 25 minutes on 2 cores once built and cached (the Python reference
alone 1.5 to 3 minutes and 2.4 GB of memory, the large section 4 minutes, memory 5 minutes),
plus the first build of the pipeline and encodings benches. Without scripts/bench: VENV/bin/python bench/compare.py ..., after
cargo build --release --bin log-etl."""

OPTIONS = [  # (flag, metavar, default, help): counts, every one
    ("--records", "N", 1_000_000, "offline: records in the response (default 1000000, about "
                                  "540 MB)"),
    ("--reference-records", "M", None, "offline: run the Python reference on a response of M "
     "records (the same generator, seed and start: the first M of the N) instead of N, and "
     "compare records/s (default N)"),
    ("--log-etl-runs", "K", 5, "offline: log-etl runs, median records/s and worst RSS "
                               "(default 5)"),
    ("--reference-runs", "K", None, "offline: reference runs (default 1, or 2 for 200000 "
                                    "records or fewer)"),
    ("--runs", "R", 5, "pass: timed passes of each tool, and of each exactly-once case "
                       "(default 5)"),
    ("--memory-runs", "R", 3, "large, pass-memory, compaction, unreadable: runs of each case, "
                              "worst RSS shown (default 3)"),
    ("--hour-records", "N", 1_000_000, "compaction: records of the large hour, 100001 to "
                                       "1100000 (default 1000000)"),
    ("--day-batches", "N", 480, "day: batches of 100 records, 3 minutes apart (default 480: "
                                "24 hours)"),
    ("--restore-runs", "R", 5, "day: timed restores before and after compaction (default 5)"),
    ("--pipeline-records", "N", None, "pipeline: records for cargo bench (default: the "
                                      "bench's own, 100000)"),
]
COUNTS = ("records", "log_etl_runs", "runs", "memory_runs", "hour_records", "day_batches",
          "restore_runs")


def parser():
    p = argparse.ArgumentParser(
        prog=os.environ.get("LOG_ETL_BENCH_ENTRY", "bench/compare.py"), description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="all", choices=["all", *SECTIONS],
                   help="the section to run (default all)")
    for flag, metavar, default, text in OPTIONS:
        p.add_argument(flag, type=int, metavar=metavar, default=default, help=text)
    p.add_argument("--fresh", action="store_true",
                   help="generate the cached responses again instead of reusing them")
    return p


def parse_args(argv):
    p = parser()
    args = p.parse_args(argv)
    if any(getattr(args, name) < 1 for name in COUNTS):
        p.error("--" + ", --".join(n.replace("_", "-") for n in COUNTS) + " must be at least 1")
    if not 100_000 < args.hour_records <= 1_100_000:
        p.error("--hour-records: more than 100000 (so that process makes more than one "
                "object) and at most 1100000 (3 ms apart, they must fit in one hour)")
    if args.reference_records is not None and not 1 <= args.reference_records <= args.records:
        p.error("--reference-records must be between 1 and --records")
    if args.reference_runs is None:
        args.reference_runs = 2 if (args.reference_records or args.records) <= 200_000 else 1
    return args


def machine(launcher, command):
    """What the figures were measured on, and with what, as (name, value) pairs."""
    mem = mem_total_gib()
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("command", command),
        ("machine", f"{platform.machine()}, {cpu_model()}, nproc {len(os.sched_getaffinity(0))}"
                    + (f", {mem:.0f} GiB RAM" if mem else "")),
        ("kernel", platform.release()),
        ("load average", f"{load_average()} (at start; the figures drift with it)"),
        ("niceness", str(os.nice(0))),
        ("rustc", command_output(["rustc", "--version"], cwd=ROOT) or "unknown"),
        ("python", f"{platform.python_version()} ({PYTHON})"),
        ("log-etl", f"{command_output(log_etl('--version'), cwd=ROOT)}, commit "
                    f"{git_revision(ROOT, SOURCES)}; "
                    f"{BUILT.relative_to(ROOT)} built {built_at(BUILT)}, copied at start"),
        ("peak RSS", launcher.describe()),
    ]


def main(argv):
    args = parse_args(argv)
    entry = os.environ.get("LOG_ETL_BENCH_ENTRY", f"{Path(PYTHON).name} bench/compare.py")
    command = " ".join([entry, *map(shlex.quote, argv)])
    if args.command != "pipeline" and not os.access(BUILT, os.X_OK):
        sys.exit(f"{BUILT} is missing: cargo build --release --bin log-etl (scripts/bench does it)")
    DATA.mkdir(parents=True, exist_ok=True)
    reports, failures = [], []
    with tempfile.TemporaryDirectory(prefix="log-etl-bench-") as tmp:
        scratch = Path(tmp)
        use_copy(scratch)
        launcher = Launcher(scratch, cwd=ROOT)
        render_facts("log-etl vs the Python reference", machine(launcher, command))
        run_sections(args, launcher, scratch, reports, failures)
    summary(reports, failures, command)
    return 1 if failures else 0


def run_sections(args, launcher, scratch, reports, failures):
    """The sections the command asks for, in order, each rendered when it ends; a failed one is
    reported and added to `failures`, and the next one runs."""
    for name, module in SECTIONS.items():
        if args.command not in ("all", name):
            continue
        try:
            report = module.run(args, launcher, scratch)
            render(report)
            reports.append(report)
        except (BenchError, OSError, subprocess.CalledProcessError) as err:
            say(f"  FAILED: {err}")
            failures.append((name, err))
        except Exception as err:  # boto3 and moto errors: report, go on with the next step
            say(f"  FAILED: {type(err).__name__}: {err}")
            failures.append((name, err))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

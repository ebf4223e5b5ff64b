"""The scaling section: log-etl process of the usual 100,000-record response on every core, the
same binary pinned to one core (taskset: the one-core pipeline as the command runs it), each with
gzip (the default) and zstd, and the Python reference on the same file, in one run: process
against the reference, and two cores against one.
"""

import os
import shutil
import statistics

from harness import BenchError, fmt_int, say, target_note
from logetl import PYTHON, REFERENCE, begin, cached_response, clean_env, log_etl
from offline import check_process_output, check_process_summary
from report import Column, Report, Summary, Table

RECORDS = 100_000
RUNS = 5
REFERENCE_RUNS = 2
SPEEDUP_TARGET = 20.0
SCALING_TARGET = 1.7
# The default encoding, which the targets are for, then the one whose compressor costs less.
ENCODINGS = ("gzip", "zstd")

COLUMNS = [Column("tool", "tool"), Column("cores", "cores", "g"), Column("runs", "runs", "g"),
           Column("median s", "median", ".3f"), Column("best s", "best", ".3f"),
           Column("records/s (median)", "rate", ",.0f"), Column("peak RSS MiB", "rss", ".1f")]
NOTES = ["  (wall: spawn to exit; one core: the same binary under taskset -c 0, so its reader, "
         "workers and encoder share it;\n   runs interleaved: two cores, one core, two cores, ...)"]
VERDICTS = [
    "process / python (records/s, medians):      {speedup:,.1f}x   {speedup_target}",
    "process on {cores} cores / on one (medians):  {scaling:.2f}x   {scaling_target}",
    "the same with COMPRESSION=zstd:             {zstd_scaling:.2f}x",
]
SUMMARY = Summary(
    "- The usual {records:,.0f}-record response to a folder: log-etl process {rate:,.0f} "
    "records/s on {cores} cores (median of {runs}), {rate_one:,.0f} on one core (taskset), the "
    "Python reference {ref_rate:,.0f}: **{speedup:.1f}x** the reference, **{scaling:.2f}x** "
    "from the second core ({zstd_scaling:.2f}x with COMPRESSION=zstd, {zstd_rate:,.0f} records/s).")


def run(args, launcher, scratch):
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        raise BenchError(f"the scaling section needs two cores; this process may use {cores}")
    begin(f"scaling: log-etl process of {fmt_int(RECORDS)} usual records on {cores} cores and "
          "on one, and the Python reference")
    response, key = cached_response(launcher, RECORDS, args.fresh)
    env = clean_env()
    runs = {(encoding, name): [] for encoding in ENCODINGS for name in ("all", "one")}
    for i in range(RUNS):
        for encoding in ENCODINGS:
            for name, pin in (("all", []), ("one", ["taskset", "-c", "0"])):
                m = process(launcher, scratch, encoding, response, pin, f"{encoding}-{name}-{i}")
                runs[encoding, name].append(m)
                say(f"  log-etl process ({encoding}) on "
                    f"{'one core' if pin else f'{cores} cores'}  run {i + 1}/{RUNS}: "
                    f"{m.wall_s:6.3f} s, peak RSS {m.peak_rss_mib:5.1f} MiB")
    ref = []
    for i in range(REFERENCE_RUNS):
        out = scratch / f"scaling-reference-{i}"
        out.mkdir()
        m = launcher.run([PYTHON, str(REFERENCE), "offline", str(response), key, str(out)], env,
                         "reference.py offline", timeout_s=600)
        if m.summary("reference.py offline")["records"] != RECORDS:
            raise BenchError("reference.py offline did not read every record")
        shutil.rmtree(out)
        ref.append(m)
        say(f"  reference.py     run {i + 1}/{REFERENCE_RUNS}: {m.wall_s:6.2f} s")
    return report(cores, runs, ref)


def process(launcher, scratch, encoding, response, pin, tag):
    """One run of log-etl process, checked: its summary, and (for gzip, which bench/logetl.py
    reads) the records per hour on disk."""
    out = scratch / f"scaling-{tag}"
    env = clean_env(COMPRESSION=encoding)
    argv = pin + log_etl("process", "--key-file", response.parent / "fernet.key", "--input",
                         response, "--out-dir", out)
    m = launcher.run(argv, env, "log-etl process", timeout_s=600)
    s = m.summary("log-etl process")
    check_process_summary(s, RECORDS)
    if encoding == "gzip":
        check_process_output(out, s, RECORDS)
    shutil.rmtree(out)
    return m


def report(cores, runs, ref):
    def row(tool, n_cores, measured):
        walls = [m.wall_s for m in measured]
        return {"tool": tool, "cores": n_cores, "runs": len(walls),
                "median": statistics.median(walls), "best": min(walls),
                "rate": RECORDS / statistics.median(walls),
                "rss": max(m.peak_rss_mib for m in measured)}
    rows = [row(f"log-etl process, {encoding}" + (", taskset -c 0" if name == "one" else ""),
                1 if name == "one" else cores, runs[encoding, name])
            for encoding in ENCODINGS for name in ("all", "one")]
    rows.append(row("python reference (gzip -9)", 1, ref))
    rate, rate_one, zstd_rate, zstd_one, ref_rate = (r["rate"] for r in rows)
    facts = {"records": RECORDS, "cores": cores, "runs": RUNS, "rate": rate,
             "rate_one": rate_one, "ref_rate": ref_rate, "speedup": rate / ref_rate,
             "speedup_target": target_note(rate / ref_rate, SPEEDUP_TARGET, True),
             "scaling": rate / rate_one,
             "scaling_target": target_note(rate / rate_one, SCALING_TARGET, True),
             "zstd_rate": zstd_rate, "zstd_scaling": zstd_rate / zstd_one}
    return Report(facts, [Table(COLUMNS, rows, notes=NOTES, verdicts=VERDICTS)], [SUMMARY])

"""The offline section: a saved API response processed into a folder, log-etl process against
reference.py offline, each a child process measured for wall time and peak RSS, their outputs
checked against each other.
"""

import shutil
import statistics
from dataclasses import dataclass

from harness import BenchError, fmt_int, say, target_note
from logetl import REFERENCE, PYTHON, begin, cached_response, clean_env, log_etl, \
    records_by_hour, tree_bytes
from report import Column, Report, Summary, Table

SPEEDUP_TARGET = 15.0
RSS_TARGET_MIB = 64.0

COLUMNS = [Column("tool", "tool"), Column("records", "records", ",.0f"),
           Column("wall s", "wall", ".2f"), Column("records/s", "rate", ",.0f"),
           Column("peak RSS MiB", "rss", ".1f"), Column("bytes out", "bytes", ",.0f"),
           Column("bytes/record", "bytes_per_record", ".1f"), Column("own s", "own", ".2f")]
NOTES = ["  (wall: spawn to exit, interpreter or process start and file read included; own s: "
         "the tool's own figure, last run;\n   peak RSS: the largest of the runs; log-etl at its "
         "default gzip level, compact JSON; the reference gzip -9, json.dumps separators)"]
SUBSET_NOTE = ("  NOTE: the reference ran on the first {reference_records:,.0f} records "
               "(--reference-records), log-etl on {records:,.0f}: records/s are compared.")
VERDICTS = [
    "records/s, log-etl / python:    {speed_best:,.1f}x (best)  {speed_median:,.1f}x (median)   "
    "{speed_target} (median)",
    "log-etl peak RSS, worst of {runs}:  {rss:.1f} MiB   {rss_target};  python {ref_rss:,.0f} "
    "MiB ({rss_ratio:,.0f}x)",
]
SUMMARY = Summary(
    "- Saved response of {records:,.0f} records to a folder{subset}: log-etl {rate_median:,.0f} "
    "records/s (median of {runs}; best {rate_best:,.0f}), Python {ref_rate:,.0f} records/s: "
    "**{speed_median:.0f}x** (best {speed_best:.0f}x). Peak RSS {rss:.0f} MiB (worst of {runs}) "
    "vs {ref_rss:,.0f} MiB. {bytes_per_record:.1f} vs {ref_bytes_per_record:.1f} bytes/record "
    "gzip'd (log-etl's default level vs the reference's 9).")


@dataclass
class ToolRuns:
    """The measured runs of one tool in a section, and the JSON summary of its last run."""

    runs: list
    last: dict


def run(args, launcher, scratch):
    n = args.records
    m_ref = args.reference_records or n
    begin(f"offline: a saved response of {fmt_int(n)} records into a folder")
    response, key = cached_response(launcher, n, args.fresh)
    ref_response, ref_key = (response, key) if m_ref == n else cached_response(launcher, m_ref,
                                                                               args.fresh)
    env = clean_env()
    rust, rust_hours = log_etl_runs(args, launcher, scratch, env, response)
    ref = reference_runs(args, launcher, scratch, env, ref_response, ref_key, rust_hours)
    return report(n, m_ref, rust, ref)


def log_etl_runs(args, launcher, scratch, env, response):
    """log-etl process, --log-etl-runs times, checked; its runs and the first run's records per
    hour. The key comes from its file: given as an argument, a key starting with "-" would read
    as an option."""
    n = args.records
    rust_runs, rust_summary, rust_hours = [], None, None
    for i in range(args.log_etl_runs):
        out = scratch / f"offline-log-etl-{i}"
        m = launcher.run(log_etl("process", "--key-file", response.parent / "fernet.key",
                                 "--input", response, "--out-dir", out), env, "log-etl process",
                         timeout_s=120 + n / 2000)
        s = m.summary("log-etl process")
        check_process_summary(s, n)
        if i == 0:
            rust_hours = check_process_output(out, s, n)
        shutil.rmtree(out)
        rust_runs.append(m)
        rust_summary = s
        say(f"  log-etl process  run {i + 1}/{args.log_etl_runs}: {m.wall_s:7.2f} s, "
            f"peak RSS {m.peak_rss_mib:6.1f} MiB")
    return ToolRuns(rust_runs, rust_summary), rust_hours


def check_process_summary(s, n):
    """log-etl process's summary: every record in and written, none quarantined."""
    if s["records_in"] != n or s["records_landed"] != n or s["records_quarantined"]:
        raise BenchError(f"log-etl process: records_in {s['records_in']}, records_landed "
                         f"{s['records_landed']}, quarantined {s['records_quarantined']}; "
                         f"expected {n}, {n}, 0")


def check_process_output(out, s, n):
    """log-etl process's folder: every record on disk, as many bytes as it reports; the records
    per hour."""
    rust_hours, on_disk = records_by_hour(out, skip_prefix="quarantine"), tree_bytes(out)
    if sum(rust_hours.values()) != n:
        raise BenchError(f"log-etl process wrote {sum(rust_hours.values())} lines, "
                         f"expected {n}")
    if on_disk != s["bytes_out"]:
        raise BenchError(f"log-etl process reports {s['bytes_out']} bytes out, "
                         f"{on_disk} on disk")
    return rust_hours


def reference_runs(args, launcher, scratch, env, ref_response, ref_key, rust_hours):
    """reference.py offline, --reference-runs times, checked (against log-etl's records per hour
    when both ran on the same response); its runs."""
    n = args.records
    m_ref = args.reference_records or n
    ref_runs, ref_report = [], None
    for i in range(args.reference_runs):
        out = scratch / f"offline-reference-{i}"
        out.mkdir()
        m = launcher.run([PYTHON, str(REFERENCE), "offline", str(ref_response), ref_key, str(out)],
                         env, "reference.py offline", timeout_s=300 + m_ref / 1000)
        r = m.summary("reference.py offline")
        if r["records"] != m_ref:
            raise BenchError(f"reference.py offline: {r['records']} records, expected {m_ref}")
        if i == 0:
            check_reference_output(out, m_ref, rust_hours if m_ref == n else None)
        shutil.rmtree(out)
        ref_runs.append(m)
        ref_report = r
        say(f"  reference.py     run {i + 1}/{args.reference_runs}: {m.wall_s:7.2f} s, "
            f"peak RSS {m.peak_rss_mib:6.1f} MiB")
    return ToolRuns(ref_runs, ref_report)


def check_reference_output(out, m_ref, rust_hours):
    """reference.py's folder: every record on disk, and (given `rust_hours`) the same records per
    hour as log-etl's."""
    ref_hours = records_by_hour(out)
    if sum(ref_hours.values()) != m_ref:
        raise BenchError(f"reference.py offline wrote {sum(ref_hours.values())} lines, "
                         f"expected {m_ref}")
    if rust_hours is not None and ref_hours != rust_hours:
        differ = sorted(h for h in ref_hours.keys() | rust_hours.keys()
                        if ref_hours.get(h) != rust_hours.get(h))
        raise BenchError(f"records per hour differ between the tools in {len(differ)} "
                         f"hours, first {differ[0]}: log-etl {rust_hours.get(differ[0])}, "
                         f"reference {ref_hours.get(differ[0])}")


def report(n, m_ref, rust, ref):
    """The figures: each tool's row, the ratios against their targets."""
    walls = sorted(m.wall_s for m in rust.runs)
    best, median = walls[0], statistics.median(walls)
    rss, ref_rss = max(m.peak_rss_mib for m in rust.runs), max(m.peak_rss_mib for m in ref.runs)
    ref_best = min(m.wall_s for m in ref.runs)
    ref_rate = m_ref / ref_best
    rust_bytes, ref_bytes = rust.last["bytes_out"], ref.last["bytes_out"]
    rows = [
        {"tool": f"log-etl, best of {len(walls)}", "records": n, "wall": best, "rate": n / best,
         "rss": rss, "bytes": rust_bytes, "bytes_per_record": rust_bytes / n,
         "own": rust.last["duration_ms"] / 1000},
        {"tool": f"log-etl, median of {len(walls)}", "records": n, "wall": median,
         "rate": n / median},
        {"tool": "python reference" + (f", best of {len(ref.runs)}" if len(ref.runs) > 1 else ""),
         "records": m_ref, "wall": ref_best, "rate": ref_rate, "rss": ref_rss, "bytes": ref_bytes,
         "bytes_per_record": ref_bytes / m_ref, "own": ref.last["seconds"]},
    ]
    speed_best, speed_median = (n / best) / ref_rate, (n / median) / ref_rate
    facts = {
        "records": n, "reference_records": m_ref, "runs": len(walls),
        "rate_best": n / best, "rate_median": n / median, "ref_rate": ref_rate,
        "speed_best": speed_best, "speed_median": speed_median,
        "speed_target": target_note(speed_median, SPEEDUP_TARGET, True),
        "rss": rss, "ref_rss": ref_rss, "rss_ratio": ref_rss / rss,
        "rss_target": target_note(rss, RSS_TARGET_MIB, False, " MiB"),
        "bytes_per_record": rust_bytes / n, "ref_bytes_per_record": ref_bytes / m_ref,
        "subset": "" if m_ref == n else f" (the reference on the first {fmt_int(m_ref)})",
    }
    notes = NOTES + ([SUBSET_NOTE] if m_ref != n else [])
    return Report(facts, [Table(COLUMNS, rows, notes=notes, verdicts=VERDICTS)], [SUMMARY])

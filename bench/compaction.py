"""The compaction section: log-etl compact of one closed hour, on fresh copies of a folder: a
usual hour (20 passes of 100 records) and a large one, timed beside the compaction function's
timeout, worst peak RSS beside its target.
"""

import json
import shutil

from harness import BenchError, fmt_int, runs_figures, say, target_note
from logetl import BUSY_HOUR, BUSY_HOUR_BATCHES, COMPACTION_TIMEOUT_S, FUNCTION_MEMORY_MIB, \
    PASS_RECORDS, begin, cached_response, clean_env, data_objects, gz_lines, hour_batches, \
    log_etl, mib, new_key, process_into_folder, records_by_hour
from report import Column, Report, Summary, Table

RSS_TARGET_MIB = 64.0

COLUMNS = [Column("hour", "what"), Column("objects", "objects"),
           Column("records", "records", ",.0f"), Column("runs", "runs"),
           Column("median s", "wall_median", ".2f"), Column("worst s", "wall_worst", ".2f"),
           Column("worst RSS MiB", "rss_worst", ".1f"), Column("bound", "bound", align="<")]
NOTES = [f"  (the compaction function: {FUNCTION_MEMORY_MIB} MiB, timeout {COMPACTION_TIMEOUT_S} "
         "s; records: in the merged object, as many as landed)"]
SUMMARY = Summary("- `compact` of one closed hour into a folder: {each}.",
                  "{what} ({objects} objects): {wall_median:.2f} s (median of {runs}), peak RSS "
                  "{rss_worst:.0f} MiB (worst)")


def run(args, launcher, scratch):
    begin("compaction: log-etl compact of one closed hour, on fresh copies of a folder")
    work = scratch / "compaction"
    usual, big = land_usual_hour(launcher, work), land_large_hour(args, launcher, work)
    n = args.hour_records
    cases = [(f"a usual hour: {(BUSY_HOUR_BATCHES + 1)} passes of {PASS_RECORDS} records", usual,
              (BUSY_HOUR_BATCHES + 1) * PASS_RECORDS, None),
             (f"a large hour: {fmt_int(n)} records", big, n, RSS_TARGET_MIB)]
    rows = [row(what, len(data_objects(folder)), records, target,
                [compact_run(launcher, scratch, folder, records, i)
                 for i in range(1, args.memory_runs + 1)])
            for what, folder, records, target in cases]
    return Report({}, [Table(COLUMNS, rows, notes=NOTES)], [SUMMARY])


def land_usual_hour(launcher, work):
    """The batches of a usual hour, each landed by its own log-etl process into one folder; the
    folder."""
    key_file = new_key(work)
    usual = work / "usual-hour"
    for k, response in enumerate(hour_batches(launcher, work / "batches", key_file,
                                              BUSY_HOUR_BATCHES + 1, BUSY_HOUR), 1):
        process_into_folder(launcher, response, key_file, usual, f"log-etl process (batch {k})",
                            landed=PASS_RECORDS)
    return usual


def land_large_hour(args, launcher, work):
    """--hour-records records 3 ms apart, all in one hour, landed by one log-etl process (in
    several objects); the folder."""
    n = args.hour_records
    response, _ = cached_response(launcher, n, args.fresh, name=f"hour-{n}", generate_args=[
        "--interval-ms", "3", "--start", BUSY_HOUR])
    big = work / "large-hour"
    m, s = process_into_folder(launcher, response, response.parent / "fernet.key", big,
                               "log-etl process (large hour)", timeout_s=120 + n / 2000)
    if s["records_landed"] != n or len(records_by_hour(big, "quarantine")) != 1:
        raise BenchError(f"log-etl process (large hour): {s['records_landed']} landed in "
                         f"{len(records_by_hour(big, 'quarantine'))} hours, expected {n} in one")
    say(f"  large hour landed by process: {m.wall_s:.2f} s, peak RSS {mib(m)} MiB, "
        f"{len(data_objects(big))} objects")
    return big


def compact_run(launcher, scratch, template, records, i):
    """log-etl compact of a fresh copy of `template` (one closed hour), checked: the hour merged
    into one object holding every record once. Its Measured."""
    copy = scratch / f"compact-{i}"
    shutil.copytree(template, copy)
    objects, label = len(data_objects(copy)), f"log-etl compact ({template.name}, run {i})"
    m = launcher.run(log_etl("compact", "--out-dir", copy), clean_env(), label,
                     timeout_s=COMPACTION_TIMEOUT_S)
    s = m.summary(label)
    left = data_objects(copy)
    if (s["hours_compacted"], s["objects_read"], s["objects_deleted"], s["records"],
            s["duplicates_dropped"], len(left)) != (1, objects, objects, records, 0, 1):
        raise BenchError(f"{label}: {json.dumps(s)}; {len(left)} objects left; expected one "
                         f"hour, {objects} objects read and deleted, {records} records, none "
                         "dropped, one object left")
    if gz_lines(left[0]) != records:
        raise BenchError(f"{label}: the merged object holds {gz_lines(left[0])} records")
    shutil.rmtree(copy)
    say(f"  {template.name} run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, "
        f"{objects} objects into 1")
    return m


def row(what, objects, records, target, runs):
    """An hour's figures: wall time and worst peak RSS, beside the target when one is set."""
    figures = runs_figures(runs)
    bound = target_note(figures["rss_worst"], target, False, " MiB") if target else "(none set)"
    return dict(figures, what=what, objects=objects, records=records, bound=bound)

"""The day section: a day of passes landed into a folder, and a copy compacted (log-etl
compact): objects, bytes, and the time of log-etl restore of the day before and after compaction,
interleaved, from the folders and from the same objects in moto.
"""

import contextlib
import hashlib
import json
import os
import shutil
import statistics

from bucket import BUCKET, aws_env, start_moto
from harness import BenchError, say, spread
from logetl import COMPACTION_TIMEOUT_S, PASS_RECORDS, begin, clean_env, data_objects, \
    hour_batches, log_etl, mib, new_key, process_into_folder, tree_bytes
from report import Column, Report, Summary, Table

DAY_START = "2023-03-18T00:00:00Z"  # the first batch

COLUMNS = [Column("restore from", "where"), Column("objects before", "objects_before", ","),
           Column("after", "objects_after", ","), Column("MB before", "mb_before", ".2f"),
           Column("after", "mb_after", ".2f"), Column("runs", "runs"),
           Column("median ms before", "before_ms", ".0f"), Column("after", "after_ms", ".0f"),
           Column("before / after", "ratio", ".1f", unit="x")]
NOTES = ["  (a day of {batches} passes, {records:,.0f} records; restore to /dev/null, spawn to "
         "exit, the two interleaved; every record\n   restored the same before and after; "
         "compact took {compact_s:.2f} s, peak RSS {compact_rss:.1f} MiB)"]
SUMMARY = Summary(
    "- A day of {batches} passes ({records:,.0f} records): `compact` ({compact_s:.2f} s, "
    "{compact_rss:.0f} MiB) turns {objects_before} objects into {objects_after}; `restore` of "
    "the day before / after (median of {runs}): {each}.",
    "{where} {before_ms:.0f} / {after_ms:.0f} ms, **{ratio:.1f}x**")


def run(args, launcher, scratch):
    import boto3

    batches = args.day_batches
    begin(f"day: {batches} scheduled passes of {PASS_RECORDS} records, 3 minutes apart; "
          "restore before and after compact")
    work = scratch / "day"
    before, after = work / "landed", work / "compacted"
    records = land_day(launcher, work, before, batches)
    compact = compact_copy(launcher, before, after, records)
    folder = [(str(before), clean_env()), (str(after), clean_env())]
    rows = [row("folder", before, after, restores(launcher, args.restore_runs, folder, records))]
    with contextlib.ExitStack() as servers:
        endpoint, session = start_moto(boto3, servers, work)
        upload(session.client("s3", endpoint_url=endpoint), before, after)
        env = aws_env(work, endpoint)
        bucket = [(f"s3://{BUCKET}/day/before/data", dict(env, KEY_PREFIX="day/before/data")),
                  (f"s3://{BUCKET}/day/after/data", dict(env, KEY_PREFIX="day/after/data"))]
        rows.append(row("S3 (moto, local)", before, after,
                        restores(launcher, args.restore_runs, bucket, records)))
    facts = {"batches": batches, "records": records, "compact_s": compact.wall_s,
             "compact_rss": compact.peak_rss_mib, "objects_before": rows[0]["objects_before"],
             "objects_after": rows[0]["objects_after"], "runs": rows[0]["runs"]}
    return Report(facts, [Table(COLUMNS, rows, notes=NOTES)], [SUMMARY])


def land_day(launcher, work, folder, batches):
    """`batches` generated batches, 3 minutes apart from DAY_START, each landed into `folder`
    by its own log-etl process, as the passes of a day would; the records landed."""
    key_file = new_key(work)
    responses = hour_batches(launcher, work / "batches", key_file, batches, DAY_START)
    walls = [process_into_folder(launcher, r, key_file, folder, f"log-etl process (batch {k})",
                                 landed=PASS_RECORDS)[0].wall_s
             for k, r in enumerate(responses, 1)]
    say(f"  landed {batches} batches with log-etl process: {sum(walls):.1f} s in all, median "
        f"{statistics.median(walls) * 1000:.0f} ms a batch; {len(data_objects(folder))} objects")
    return batches * PASS_RECORDS


def compact_copy(launcher, before, after, records):
    """log-etl compact of a copy of the day, `after`, checked to keep its `records` records; its
    Measured."""
    shutil.copytree(before, after)
    m = launcher.run(log_etl("compact", "--out-dir", after), clean_env(),
                     "log-etl compact (day)", timeout_s=COMPACTION_TIMEOUT_S)
    s = m.summary("log-etl compact (day)")
    if s["records"] != records or s["duplicates_dropped"]:
        raise BenchError(f"log-etl compact (day): {json.dumps(s)}; expected {records} records")
    say(f"  log-etl compact (a copy): {m.wall_s:.2f} s, peak RSS {mib(m)} MiB, "
        f"{s['hours_compacted']} hours, {s['objects_read']} objects into {s['objects_written']}")
    return m


def upload(s3, before, after):
    """The day's objects before and after compaction, under day/before/ and day/after/."""
    for name, local in (("before", before), ("after", after)):
        for path in data_objects(local):
            s3.put_object(Bucket=BUCKET, Key=f"day/{name}/{path.relative_to(local)}",
                          Body=path.read_bytes())


def restores(launcher, runs, places, records):
    """log-etl restore of each of `places` ([(where, env)], the day before and after
    compaction), `runs` times each, interleaved so that drift falls on both alike, output
    discarded; then once each, checked to give the same `records` records. The Spreads of the
    wall times."""
    walls = [[] for _ in places]
    for _ in range(runs):
        for i, (where, env) in enumerate(places):
            m = launcher.run(log_etl("restore", where), env, f"log-etl restore {where}",
                             stdout_to=os.devnull)
            walls[i].append(m.wall_s)
    digests = [restored_digest(launcher, where, env, records) for where, env in places]
    if len(set(digests)) != 1:
        raise BenchError(f"log-etl restore gives other records after compaction than before "
                         f"({places[0][0]}, {places[1][0]})")
    for (where, _), w in zip(places, walls):
        say(f"  restore {where}: " + ", ".join(f"{x * 1000:.0f}" for x in w) + " ms")
    return [spread(w) for w in walls]


def restored_digest(launcher, where, env, records):
    """log-etl restore of `where`, checked to give `records` records; a digest of them, in
    order."""
    out = launcher.scratch / "restored.ndjson"
    launcher.run(log_etl("restore", where), env, f"log-etl restore {where}", stdout_to=out)
    lines = out.read_bytes().splitlines()
    out.unlink()
    if len(lines) != records:
        raise BenchError(f"log-etl restore {where}: {len(lines)} records, expected {records}")
    return hashlib.sha256(b"\n".join(sorted(lines))).hexdigest()


def row(where, before, after, spreads):
    """Objects, bytes and the median restore time before and after compaction, and their
    ratio."""
    rb, ra = spreads
    return {"where": where, "objects_before": len(data_objects(before)),
            "objects_after": len(data_objects(after)), "mb_before": tree_bytes(before) / 1e6,
            "mb_after": tree_bytes(after) / 1e6, "runs": rb.n, "before_ms": rb.median * 1000,
            "after_ms": ra.median * 1000, "ratio": rb.median / ra.median}

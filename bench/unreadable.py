"""The unreadable section: what a pass, `compact` and `restore` take when an hour holds a gzip
bomb (an object expanding to 2 GiB without a newline, cut off at MAX_LINE_BYTES): each must read
past it, leave it in place and name it; worst peak RSS beside the function's memory.
"""

import contextlib
import gzip
import hashlib
import json
import shutil
import zlib
from pathlib import Path

from bucket import BUCKET, aws_env, list_keys, ndjson_lines, pass_env, prefixed, start_moto, \
    start_simulator
from harness import BenchError, runs_figures, say
from logetl import BUSY_HOUR, COMPACTION_TIMEOUT_S, DATA, FUNCTION_MEMORY_MIB, MIB, \
    PASS_RECORDS, ROOT, begin, clean_env, data_objects, gz_lines, hour_batches, log_etl, mib, \
    new_key, process_into_folder
from pass_memory import RSS_TARGET_MIB
from report import Column, Report, Summary, Table

BOMB_BYTES = 2 << 30  # what the bomb expands to
BOMB_NAME = "bomb.json.gz"  # after the names log-etl writes (digits first): read last
# The hours of the ordinary objects: the bomb's, and a closed hour beside it.
HOUR_STARTS = [BUSY_HOUR, "2023-03-18T16:00:00Z"]
OBJECTS_PER_HOUR = 2
HOUR_RECORDS = OBJECTS_PER_HOUR * PASS_RECORDS
TARGET = f"< {RSS_TARGET_MIB:g} MiB (the function has {FUNCTION_MEMORY_MIB} MiB)"

COLUMNS = [Column("run over the bomb's hour", "what"), Column("runs", "runs"),
           Column("median s", "wall_median", ".2f"), Column("worst s", "wall_worst", ".2f"),
           Column("worst RSS MiB", "rss_worst", ".1f"), Column("target", "target", align="<")]
NOTES = ["  (the bomb: {bomb_name}, {bomb_mb:.2f} MB of gzip level 9 expanding to {bomb_gib:g} GiB "
         "of zeros without a newline,",
         "   read up to MAX_LINE_BYTES, 32 MiB by default; ordinary objects: {per_hour} of "
         "{records} records in each hour;",
         "   worst: the largest of the runs; the same pass into an hour without the bomb: "
         "{plain_rss:.1f} MiB at worst, {plain_median:.2f} s)"]
SUMMARY = Summary("- An hour holding a gzip bomb ({bomb_mb:.1f} MB expanding to {bomb_gib:g} GiB, "
                  "no newline), left in place and named, peak RSS: {each} (the pass without "
                  "the bomb: {plain_rss:.0f} MiB).",
                  "{name} {rss_worst:.0f} MiB (worst of {runs}), {wall_median:.2f} s")


def run(args, launcher, scratch):
    import boto3

    begin("unreadable: a pass, compact and restore over an hour holding a gzip bomb, "
          "moto S3 and a folder")
    work = scratch / "unreadable"
    work.mkdir()
    bomb = cached_bomb(DATA / "unreadable" / BOMB_NAME, args.fresh)
    ordinary, bombed, bomb_dir = land_hours(launcher, work, bomb)
    runs = range(1, args.memory_runs + 1)
    with contextlib.ExitStack() as servers:
        endpoint, session = start_moto(boto3, servers, work)
        s3 = session.client("s3", endpoint_url=endpoint)
        key_file = new_key(work / "simulator")
        _, api_url = start_simulator(servers, work, key_file)
        say(f"  moto on :{endpoint.rsplit(':', 1)[1]}, simulator at {api_url} (batch of "
            f"{PASS_RECORDS}, period 3600 s: every pass reads the same batch)")
        env = pass_env(work, api_url, endpoint, FERNET_KEY=key_file.read_text().strip())
        pass_dir = pass_hour(launcher, s3, env)
        rows = [row("log-etl run (moto, simulator): lands every record", "a pass",
                    [hour_pass(launcher, s3, env, bomb, pass_dir, i) for i in runs])]
        plain = runs_figures([hour_pass(launcher, s3, env, None, pass_dir, i) for i in runs])
        before = folder_objects(bombed)
        rows.append(row("log-etl compact --bucket (moto): the other hour merged",
                        "compact --bucket",
                        [compact_bucket(launcher, s3, work, endpoint, bombed, before, bomb_dir, i)
                         for i in runs]))
        rows.append(row("log-etl compact --dir: the other hour merged", "compact --dir",
                        [compact_dir(launcher, scratch, bombed, before, bomb_dir, i)
                         for i in runs]))
        expected = restored_digest(launcher, ordinary / bomb_dir, clean_env(), work)
        prefix = "bench/unreadable/restore"
        upload_folder(s3, bombed, prefix)
        hour_url = f"s3://{BUCKET}/{prefix}/{bomb_dir}/"
        cases = [("s3://", hour_url, aws_env(work, endpoint), f"{hour_url}{BOMB_NAME}"),
                 ("a folder", str(bombed / bomb_dir), clean_env(),
                  str(bombed / bomb_dir / BOMB_NAME))]
        for what, where, restore_env, bomb_name in cases:
            rows.append(row(f"log-etl restore of the hour ({what}): fails naming the bomb",
                            f"restore from {what}",
                            [bombed_restore(launcher, work, what, where, restore_env, bomb_name,
                                            expected, i) for i in runs]))
    facts = {"bomb_name": BOMB_NAME, "bomb_mb": bomb.stat().st_size / 1e6,
             "bomb_gib": gzip_size(bomb) / (1 << 30), "per_hour": OBJECTS_PER_HOUR,
             "records": PASS_RECORDS, "plain_rss": plain["rss_worst"],
             "plain_median": plain["wall_median"]}
    return Report(facts, [Table(COLUMNS, rows, notes=NOTES)], [SUMMARY])


# --- The bomb and the hours around it ----------------------------------------------------------

def cached_bomb(path: Path, fresh):
    """A gzip object of BOMB_BYTES zeros, no newline, at level 9: made once and reused."""
    if path.exists() and not fresh:
        say(f"  bomb: {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes expanding to "
            f"{gzip_size(path):,}, reused; --fresh makes it again)")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    deflate, zeros = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS), bytes(MIB)
    with open(partial, "wb") as f:
        for _ in range(BOMB_BYTES // MIB):
            f.write(deflate.compress(zeros))
        f.write(deflate.flush())
    partial.rename(path)  # only a complete bomb is ever reused
    say(f"  bomb: {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes expanding to "
        f"{gzip_size(path):,}, made)")
    return path


def gzip_size(path: Path):
    """What a one-member gzip file expands to, from its trailer (ISIZE, modulo 2^32)."""
    with open(path, "rb") as f:
        f.seek(-4, 2)
        return int.from_bytes(f.read(4), "little")


def land_hours(launcher, work, bomb):
    """Two closed hours of OBJECTS_PER_HOUR ordinary objects each, landed by log-etl process
    into a folder, and a copy with the bomb in the first hour; both folders and the bomb's hour
    folder (relative)."""
    key_file = new_key(work)
    ordinary = work / "ordinary"
    for start in HOUR_STARTS:
        batches = hour_batches(launcher, work / f"batches-{start[:13]}", key_file,
                               OBJECTS_PER_HOUR, start)
        for k, response in enumerate(batches, 1):
            process_into_folder(launcher, response, key_file, ordinary,
                                f"log-etl process ({start[:13]}, batch {k})", landed=PASS_RECORDS)
    hour_dirs = sorted({str(p.parent.relative_to(ordinary)) for p in data_objects(ordinary)})
    if len(hour_dirs) != len(HOUR_STARTS) or len(data_objects(ordinary)) != \
            len(HOUR_STARTS) * OBJECTS_PER_HOUR:
        raise BenchError(f"the ordinary objects are {len(data_objects(ordinary))} in "
                         f"{len(hour_dirs)} hours, expected {OBJECTS_PER_HOUR} in each of "
                         f"{len(HOUR_STARTS)}")
    bombed = work / "bombed"
    shutil.copytree(ordinary, bombed)
    shutil.copy2(bomb, bombed / hour_dirs[0] / BOMB_NAME)
    say(f"  {len(data_objects(ordinary))} ordinary objects in {', '.join(map(str, hour_dirs))}; "
        f"the bomb beside those of {hour_dirs[0]}")
    return ordinary, bombed, hour_dirs[0]


def folder_objects(folder: Path):
    """{path relative to `folder`: size} of its objects."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in data_objects(folder)}


def upload_folder(s3, folder: Path, prefix):
    for rel in folder_objects(folder):
        s3.upload_file(str(folder / rel), BUCKET, f"{prefix}/{rel}")


def bucket_objects(s3, prefix):
    """{key relative to `prefix`: size} of the objects under `prefix`/."""
    return {obj["Key"][len(prefix) + 1:]: obj["Size"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                    Prefix=prefix + "/")
            for obj in page.get("Contents", [])}


# --- A pass ------------------------------------------------------------------------------------

def pass_hour(launcher, s3, env):
    """A first pass (also a warm-up) into a new prefix: the hour folder its records land in,
    relative to the data prefix, where the measured passes find the bomb."""
    prefix, label = "bench/unreadable/probe", "log-etl run (finding the pass's hour)"
    m = launcher.run(log_etl("run"), prefixed(env, prefix), label, timeout_s=120)
    keys = list_keys(s3, f"{prefix}/data/")
    if m.summary(label)["records_landed"] != PASS_RECORDS or not keys:
        raise BenchError(f"{label}: {json.dumps(m.summary(label))}; {len(keys)} objects")
    hour_dir = keys[0][len(f"{prefix}/data/"):].rsplit("/", 1)[0]
    say(f"  the simulator's records land in {hour_dir} (hours {m.summary(label)['hours']})")
    return hour_dir


def hour_pass(launcher, s3, env, bomb, hour_dir, i):
    """log-etl run into a new prefix whose pass hour holds the bomb (unless `bomb` is None: the
    same pass without it, for comparison), checked: it succeeds, every record served lands
    beside the bomb, which is the one unreadable object and is still there. Its Measured."""
    case = "bomb" if bomb else "no-bomb"
    prefix, label = f"bench/unreadable/pass-{case}-{i}", f"log-etl run ({case}, run {i})"
    bomb_key = f"{prefix}/data/{hour_dir}/{BOMB_NAME}"
    if bomb:
        s3.upload_file(str(bomb), BUCKET, bomb_key)
    m = launcher.run(log_etl("run"), prefixed(env, prefix), label, timeout_s=120)
    s = m.summary(label)
    got = (s["records_in"], s["records_landed"], s["records_quarantined"],
           s["objects_unreadable"])
    if got != (PASS_RECORDS, PASS_RECORDS, 0, int(bool(bomb))):
        raise BenchError(f"{label}: {json.dumps(s)}; expected {PASS_RECORDS} records in and "
                         f"landed, none quarantined, objects_unreadable {int(bool(bomb))}")
    keys = list_keys(s3, f"{prefix}/")
    records = sum(ndjson_lines(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"]
                                               .read())) for key in keys if key != bomb_key)
    if records != PASS_RECORDS or (bomb and bomb_key not in keys):
        raise BenchError(f"{label}: s3://{BUCKET}/{prefix}/ holds {records} records (the bomb "
                         f"kept: {bomb_key in keys}), expected {PASS_RECORDS}")
    say(f"  pass ({case}) run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, {records} "
        f"landed, objects_unreadable {s['objects_unreadable']}"
        + (", the bomb kept" if bomb else ""))
    return m


# --- compact -----------------------------------------------------------------------------------

def compact_bucket(launcher, s3, work, endpoint, bombed, before, bomb_dir, i):
    """log-etl compact --bucket of a new copy of the two hours in moto, checked (check_compact).
    Its Measured."""
    prefix, label = f"bench/unreadable/compact-{i}", f"log-etl compact --bucket (run {i})"
    upload_folder(s3, bombed, prefix)
    env = prefixed(aws_env(work, endpoint), prefix)
    m = launcher.run(log_etl("compact", "--bucket", BUCKET), env, label,
                     timeout_s=COMPACTION_TIMEOUT_S)

    def records(rel):
        body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{rel}")["Body"].read()
        return ndjson_lines(gzip.decompress(body))
    check_compact(label, m.summary(label), before, bucket_objects(s3, prefix), bomb_dir,
                  f"{prefix}/{bomb_dir}/{BOMB_NAME}", records)
    say(f"  compact --bucket run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, "
        "hours_unreadable 1, the other hour merged")
    return m


def compact_dir(launcher, scratch, bombed, before, bomb_dir, i):
    """log-etl compact --dir of a fresh copy of the two hours, checked (check_compact). Its
    Measured."""
    copy, label = scratch / f"unreadable-compact-{i}", f"log-etl compact --dir (run {i})"
    shutil.copytree(bombed, copy)
    m = launcher.run(log_etl("compact", "--dir", copy), clean_env(), label,
                     timeout_s=COMPACTION_TIMEOUT_S)
    check_compact(label, m.summary(label), before, folder_objects(copy), bomb_dir,
                  f"{bomb_dir}/{BOMB_NAME}", lambda rel: gz_lines(copy / rel))
    shutil.rmtree(copy)
    say(f"  compact --dir run {i}:    {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, "
        "hours_unreadable 1, the other hour merged")
    return m


def check_compact(label, s, before, after, bomb_dir, bomb_key, records):
    """A compaction over the two hours ({relative key: size} `before` and `after`): the bomb's
    hour untouched (every object, the bomb included, as it was) and named unreadable by
    `bomb_key`; the other hour merged into one object of all its records (`records(rel)` counts
    an object's)."""
    def hour(objects, inside):
        return {k: v for k, v in objects.items() if k.startswith(bomb_dir + "/") == inside}
    merged = hour(after, False)
    got = (s["hours_unreadable"], s["unreadable_objects"], s["hours_compacted"],
           s["objects_deleted"], s["records"], len(merged))
    if got != (1, [bomb_key], 1, OBJECTS_PER_HOUR, HOUR_RECORDS, 1):
        raise BenchError(f"{label}: {json.dumps(s)}; the other hour holds {len(merged)} objects; "
                         f"expected hours_unreadable 1 naming {bomb_key}, one hour compacted, "
                         f"{OBJECTS_PER_HOUR} objects deleted, {HOUR_RECORDS} records, one "
                         "object left")
    if hour(after, True) != hour(before, True):
        raise BenchError(f"{label}: the bomb's hour changed: {sorted(hour(before, True))} before, "
                         f"{sorted(hour(after, True))} after")
    if records(next(iter(merged))) != HOUR_RECORDS:
        raise BenchError(f"{label}: the merged object holds {records(next(iter(merged)))} records")


# --- restore -----------------------------------------------------------------------------------

def restored_digest(launcher, where, env, work):
    """log-etl restore of the bomb's hour without the bomb, which must succeed: a digest of the
    records, sorted, that a restore of the hour with the bomb must print too."""
    out = work / "restored-ordinary.ndjson"
    launcher.run(log_etl("restore", where), env, "log-etl restore (the hour without the bomb)",
                 stdout_to=out)
    lines = sorted(out.read_bytes().splitlines())
    out.unlink()
    if len(lines) != HOUR_RECORDS:
        raise BenchError(f"log-etl restore {where}: {len(lines)} records, expected {HOUR_RECORDS}")
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


def bombed_restore(launcher, work, what, where, env, bomb_name, expected, i):
    """log-etl restore of the bomb's hour `where` (from `what`), checked: exits non-zero naming
    the bomb, having printed every record of the ordinary objects (the digest `expected`). Its
    Measured."""
    out, label = work / "restored.ndjson", f"log-etl restore {where} (run {i})"
    m = launcher.run(log_etl("restore", where), env, label, timeout_s=300, check=False,
                     stdout_to=out)
    lines = sorted(out.read_bytes().splitlines())
    out.unlink()
    last = m.stderr_tail.splitlines()[-1] if m.stderr_tail else ""
    if m.returncode == 0 or bomb_name not in last:
        raise BenchError(f"{label}: exit status {m.returncode}, expected non-zero with an error "
                         f"naming {bomb_name}; stderr:\n    {m.stderr_tail or '(none)'}")
    if hashlib.sha256(b"\n".join(lines)).hexdigest() != expected:
        raise BenchError(f"{label}: printed {len(lines)} records, not the {HOUR_RECORDS} of the "
                         "ordinary objects")
    say(f"  restore from {what} run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, "
        f"{len(lines)} records, exit {m.returncode} naming the bomb")
    return m


def row(what, name, runs):
    """A case's figures: wall time, and its worst peak RSS beside the target."""
    figures = runs_figures(runs)
    met = "met" if figures["rss_worst"] < RSS_TARGET_MIB else "NOT MET"
    return dict(figures, what=what, name=name, target=f"{TARGET}: {met}")

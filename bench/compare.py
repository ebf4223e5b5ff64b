"""Benchmarks log-etl against the Python script it replaces (bench/reference.py), both in the same
run on the same data, and measures what bounds log-etl's memory and time. Nothing here asserts a
speed or a memory figure: the targets are printed beside the figures. It exits non-zero only when
something fails to run or a correctness check fails (record counts, records per hour, objects in
the bucket, a run that should fail and did not).

  scripts/bench [all|offline|large|pass|pass-memory|compaction|day|pipeline] [options]
  (or: VENV/bin/python bench/compare.py ..., after cargo build --release --bin log-etl)
  (all is the default, and runs the sections in that order)

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
               hour (20 passes of 100 records) and an hour of 1,000,000 records
  day          a day of passes (--day-batches batches of 100 records, 3 minutes apart) landed
               into a folder, and a copy compacted (log-etl compact): objects, and the time of
               log-etl restore of the day (--restore-runs, before and after interleaved), from
               the folders and from the same objects in moto
  pipeline     cargo bench --bench pipeline (the pure pipeline on one core: gzip levels, per-stage
               costs, the Python reference on the same records), passed through

  --records N              offline: records in the response (default 1000000)
  --reference-records M    offline: run the Python reference on a response of M records (the
                           same generator, seed and start: the first M of the N) instead of N,
                           and compare records/s (default N)
  --log-etl-runs K         offline: log-etl runs (default 5)
  --reference-runs K       offline: reference runs (default 1, or 2 for 200000 records or fewer)
  --runs R                 pass: timed passes of each tool, and of each exactly-once case
                           (default 5)
  --memory-runs R          large, pass-memory, compaction: runs of each case (default 3)
  --hour-records N         compaction: records of the large hour, 100001 to 1100000 (default
                           1000000)
  --day-batches N          day: batches of 100 records, 3 minutes apart (default 480: 24 hours)
  --restore-runs R         day: timed restores before and after compaction (default 5)
  --pipeline-records N     pipeline: records for cargo bench (default: the bench's own, 100000)
  --fresh                  generate the cached responses again instead of reusing them

Generated responses of the offline, large, pass-memory and compaction sections (about 540 bytes a
record for the usual ones; 790 MB and 840 MB for the large ones; 2.7 GB in all) are kept in
target/bench-data/ and reused by later runs; outputs go to a temporary folder removed at the end.
Peak RSS is measured with GNU time (/usr/bin/time) when present: os.wait4 on a child started from
this process would report at least this process's own peak, because Linux carries the parent's
high-water mark into the child's ru_maxrss across fork and exec. Without GNU time it falls back to
os.wait4 and prints that floor (the figure for /bin/true) beside the results. A bound on memory is
the worst of the runs: every peak RSS printed is the largest of its runs.

What is log-etl's is here: the sections, their checks, the bucket, the cached responses
(bench/bigresponse.py writes the responses of large records). The generic harness (measuring a
child process, starting and stopping servers, describing the machine, the text tables) is
bench/harness.py.
"""

import argparse
import contextlib
import datetime
import gzip
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness import (BenchError, Launcher, built_at, command_output, cpu_model, fmt_int,
                     fmt_ratio, free_port, git_revision, kill_group, load_average, mem_total_gib,
                     say, section, serve_folder, spread, start_server, stop, table, target_note,
                     wait_for_port)

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "target" / "release" / "log-etl"
BIN = BUILT  # main() points this at a copy taken at start
REFERENCE = ROOT / "bench" / "reference.py"
BIG_RESPONSE = ROOT / "bench" / "bigresponse.py"
DATA = ROOT / "target" / "bench-data"
PYTHON = sys.executable
# What git_revision compares with HEAD: the sources of the binary and of the pipeline bench.
SOURCES = ["src", "Cargo.toml", "Cargo.lock", "benches"]

PASS_RECORDS = 100  # the simulator's batch, like the real server's
BATCH_SECONDS = 180  # the source replaces its batch every 3 minutes: 20 passes an hour
BUSY_HOUR_BATCHES = 19  # pass: the batches an hour holds before its last pass
BUSY_HOUR = "2023-03-18T15:00:00Z"  # pass and compaction: the hour of the generated batches
DAY_START = "2023-03-18T00:00:00Z"  # day: the first batch
BUCKET = "log-etl-bench"
SECRET_NAME = "log-etl-bench/fernet-key"
MIB = 1 << 20

# What the function is given (template.yaml), printed beside what a pass or a compaction takes.
FUNCTION_MEMORY_MIB = 256
FUNCTION_TIMEOUT_S = 90
COMPACTION_TIMEOUT_S = 900
PIPELINE_TIMEOUT_S = 3600  # cargo bench, its build included
MAX_RESPONSE_BYTES = 64 * MIB  # the default of MAX_RESPONSE_BYTES
MAX_RECORDS_PER_RESPONSE = 100_000  # the default of MAX_RECORDS_PER_RESPONSE

# Targets, printed beside the figures; never asserted.
OFFLINE_SPEEDUP_TARGET = 15.0
OFFLINE_RSS_TARGET_MIB = 64.0
PASS_SPEEDUP_TARGET = 10.0
PASS_RSS_TARGET_MIB = 32.0
LARGE_RSS_TARGET_MIB = 128.0
PASS_MEMORY_TARGET_MIB = 192.0  # the function's 256 MiB less a 25% margin
COMPACTION_RSS_TARGET_MIB = 64.0

# Settings a developer's shell may carry that would change what is measured: every variable
# log-etl reads (its own list, `log-etl settings --names`) and its log settings. AWS_* are dropped
# as a whole too.
LOG_SETTINGS = {"RUST_LOG", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_FORMAT"}
_inherited_settings = None


def inherited_settings():
    """The variables clean_env drops, read once from the binary."""
    global _inherited_settings
    if _inherited_settings is None:
        names = subprocess.run([str(BIN), "settings", "--names"], capture_output=True,
                               text=True, check=True).stdout.split()
        _inherited_settings = set(names) | LOG_SETTINGS
    return _inherited_settings


# --- Small things ------------------------------------------------------------------------------

def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in inherited_settings() and not k.startswith("AWS_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def begin(title):
    """A section's heading, and the load average it starts at."""
    section(title)
    say(f"  load average {load_average()} at the start of the section")


def tree_bytes(folder: Path):
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def data_objects(folder: Path, skip_prefix="quarantine"):
    """The .json.gz objects under `folder`, those under `skip_prefix` left out."""
    return [p for p in sorted(folder.rglob("*.json.gz"))
            if p.relative_to(folder).parts[0] != skip_prefix]


def records_by_hour(folder: Path, skip_prefix=None):
    """Records in the .json.gz objects under `folder`, by their YYYY/MM/DD/HH folder."""
    hours = {}
    for path in data_objects(folder, skip_prefix):
        hour = "/".join(path.relative_to(folder).parts[-5:-1])
        hours[hour] = hours.get(hour, 0) + gz_lines(path)
    return hours


def gz_lines(path: Path):
    """NDJSON lines of a gzip'd file, read a MiB at a time."""
    lines, last = 0, b"\n"
    with gzip.open(path, "rb") as f:
        while chunk := f.read(MIB):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (0 if last == b"\n" else 1)


def ndjson_lines(body: bytes):
    return body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)


def new_key(folder: Path):
    """A new Fernet key in `folder`/fernet.key (mode 0600, made by log-etl keygen); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "fernet.key"
    subprocess.run([str(BIN), "keygen", "--out", str(key_file)], capture_output=True, check=True,
                   timeout=60)
    return key_file


def mib(m):
    """A Measured's peak RSS, as printed."""
    return f"{m.peak_rss_mib:.1f}"


# --- Header ------------------------------------------------------------------------------------

def header(launcher, command):
    section("log-etl vs the Python reference")
    mem = mem_total_gib()
    rows = [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("command", command),
        ("machine", f"{platform.machine()}, {cpu_model()}, nproc {len(os.sched_getaffinity(0))}"
                    + (f", {mem:.0f} GiB RAM" if mem else "")),
        ("kernel", platform.release()),
        ("load average", f"{load_average()} (at start; the figures drift with it)"),
        ("niceness", str(os.nice(0))),
        ("rustc", command_output(["rustc", "--version"], cwd=ROOT) or "unknown"),
        ("python", f"{platform.python_version()} ({PYTHON})"),
        ("log-etl", f"{command_output([str(BIN), '--version'], cwd=ROOT)}, commit "
                    f"{git_revision(ROOT, SOURCES)}; "
                    f"{BUILT.relative_to(ROOT)} built {built_at(BUILT)}, copied at start"),
        ("peak RSS", launcher.describe()),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        say(f"  {key:<{width}}  {value}")


# --- Generated responses -----------------------------------------------------------------------

def cached(launcher, name, fresh, make, what):
    """DATA/`name`/response.json and its key, made once by `make(partial_path, key_file)` (a
    Measured) and reused by later runs; (response path, key)."""
    folder = DATA / name
    response, key_file = folder / "response.json", folder / "fernet.key"
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if response.exists() and key_file.exists():
        age = datetime.datetime.fromtimestamp(response.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        say(f"  {what}: {response.relative_to(ROOT)} ({response.stat().st_size / 1e6:,.0f} MB, "
            f"generated {age}, reused; --fresh makes it again)")
        return response, key_file.read_text().strip()
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished one
    key_file = new_key(folder)
    partial = folder / "response.json.partial"
    m = make(partial, key_file)
    partial.rename(response)  # only a complete file is ever reused
    say(f"  {what}: {response.relative_to(ROOT)} ({response.stat().st_size / 1e6:,.0f} MB, "
        f"generated in {m.wall_s:.1f} s)")
    return response, key_file.read_text().strip()


def cached_response(launcher, records, fresh, name=None, generate_args=()):
    """A saved response of `records` records made by log-etl generate (with `generate_args`),
    and its key."""
    def make(partial, key_file):
        return launcher.run([str(BIN), "generate", "--key-file", str(key_file), "--records",
                             str(records), "--out", str(partial), *generate_args], clean_env(),
                            "log-etl generate", timeout_s=120 + records / 1000)
    return cached(launcher, name or f"response-{records}", fresh, make, "response")


def cached_big_response(launcher, name, records, plaintext_bytes, fresh):
    """A saved response of `records` records of `plaintext_bytes` each (bench/bigresponse.py),
    and its key."""
    def make(partial, key_file):
        return launcher.run([PYTHON, str(BIG_RESPONSE), "--key-file", str(key_file), "--out",
                             str(partial), "--records", str(records), "--plaintext-bytes",
                             str(plaintext_bytes)], clean_env(), "bigresponse.py",
                            timeout_s=600)
    return cached(launcher, name, fresh, make, "response")


def hour_batches(launcher, folder: Path, key_file: Path, count, start, records=PASS_RECORDS):
    """`count` responses of `records` records (log-etl generate, seeds 1, 2, ...), the first at
    `start`, each BATCH_SECONDS after the one before: what a scheduled pass reads. Their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    first = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    paths = []
    for k in range(count):
        at = first + datetime.timedelta(seconds=BATCH_SECONDS * k)
        path = folder / f"batch-{k + 1:04d}.json"
        launcher.run([str(BIN), "generate", "--key-file", str(key_file), "--records",
                      str(records), "--start", at.strftime("%Y-%m-%dT%H:%M:%SZ"), "--seed",
                      str(k + 1), "--out", str(path)], clean_env(), "log-etl generate",
                     timeout_s=60)
        paths.append(path)
    return paths


def process_into_folder(launcher, response, key_file, out, label, env=None, timeout_s=120,
                        landed=None):
    """log-etl process of `response` into the folder `out`, checked to land `landed` records
    when given; the Measured and its summary."""
    m = launcher.run([str(BIN), "process", "--key-file", str(key_file), "--input", str(response),
                      "--out-dir", str(out)], env or clean_env(), label, timeout_s=timeout_s)
    s = m.summary(label)
    if landed is not None and (s["records_landed"], s["records_quarantined"]) != (landed, 0):
        raise BenchError(f"{label}: records_landed {s['records_landed']}, quarantined "
                         f"{s['records_quarantined']}; expected {landed}, 0")
    return m, s


# --- offline -----------------------------------------------------------------------------------

@dataclass
class ToolRuns:
    """The measured runs of one tool in a section, and the JSON summary of its last run."""

    runs: list
    last: dict


def offline(args, launcher, scratch, results):
    n = args.records
    m_ref = args.reference_records or n
    begin(f"offline: a saved response of {fmt_int(n)} records into a folder")
    response, key = cached_response(launcher, n, args.fresh)
    ref_response, ref_key = (response, key) if m_ref == n else cached_response(launcher, m_ref,
                                                                               args.fresh)
    env = clean_env()
    rust, rust_hours = offline_log_etl(args, launcher, scratch, env, response)
    ref = offline_reference(args, launcher, scratch, env, ref_response, ref_key, rust_hours)
    report_offline(n, m_ref, rust, ref, results)


def offline_log_etl(args, launcher, scratch, env, response):
    """log-etl process, --log-etl-runs times, checked; its runs and the first run's records per
    hour. The key comes from its file: given as an argument, a key starting with "-" would read
    as an option."""
    n = args.records
    rust_runs, rust_summary, rust_hours = [], None, None
    for i in range(args.log_etl_runs):
        out = scratch / f"offline-log-etl-{i}"
        m = launcher.run([str(BIN), "process", "--key-file", str(response.parent / "fernet.key"),
                          "--input", str(response), "--out-dir", str(out)], env,
                         "log-etl process",
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


def offline_reference(args, launcher, scratch, env, ref_response, ref_key, rust_hours):
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


def report_offline(n, m_ref, rust, ref, results):
    """The offline table, the ratios against their targets, and results["offline"]."""
    walls = sorted(m.wall_s for m in rust.runs)
    best, median = walls[0], statistics.median(walls)
    rust_rss = max(m.peak_rss_mib for m in rust.runs)
    ref_best = min(m.wall_s for m in ref.runs)
    ref_rss = max(m.peak_rss_mib for m in ref.runs)
    rust_bytes, ref_bytes = rust.last["bytes_out"], ref.last["bytes_out"]
    ref_rate = m_ref / ref_best

    say()
    rows = [
        (f"log-etl, best of {len(walls)}", fmt_int(n), f"{best:.2f}", fmt_int(n / best),
         f"{rust_rss:.1f}", fmt_int(rust_bytes), f"{rust_bytes / n:.1f}",
         f"{rust.last['duration_ms'] / 1000:.2f}"),
        (f"log-etl, median of {len(walls)}", fmt_int(n), f"{median:.2f}", fmt_int(n / median),
         "", "", "", ""),
        ("python reference" + (f", best of {len(ref.runs)}" if len(ref.runs) > 1 else ""),
         fmt_int(m_ref), f"{ref_best:.2f}", fmt_int(ref_rate), f"{ref_rss:.1f}",
         fmt_int(ref_bytes), f"{ref_bytes / m_ref:.1f}", f"{ref.last['seconds']:.2f}"),
    ]
    say(table(["tool", "records", "wall s", "records/s", "peak RSS MiB", "bytes out",
               "bytes/record", "own s"], rows))
    say("  (wall: spawn to exit, interpreter or process start and file read included; own s: the "
        "tool's own figure, last run;\n   peak RSS: the largest of the runs; log-etl at its "
        "default gzip level, compact JSON; the reference gzip -9, json.dumps separators)")
    if m_ref != n:
        say(f"  NOTE: the reference ran on the first {fmt_int(m_ref)} records "
            f"(--reference-records), log-etl on {fmt_int(n)}: records/s are compared.")
    speed_best, speed_median = (n / best) / ref_rate, (n / median) / ref_rate
    say()
    say(f"  records/s, log-etl / python:    {fmt_ratio(speed_best)} (best)  "
        f"{fmt_ratio(speed_median)} (median)   "
        f"{target_note(speed_median, OFFLINE_SPEEDUP_TARGET, True)} (median)")
    say(f"  log-etl peak RSS, worst of {len(walls)}:  {rust_rss:.1f} MiB   "
        f"{target_note(rust_rss, OFFLINE_RSS_TARGET_MIB, False, ' MiB')};  "
        f"python {ref_rss:,.0f} MiB ({ref_rss / rust_rss:,.0f}x)")
    results["offline"] = {
        "records": n, "reference_records": m_ref, "rate_best": n / best, "rate_median": n / median,
        "ref_rate": ref_rate, "speed_best": speed_best, "speed_median": speed_median,
        "runs": len(walls), "rss": rust_rss, "ref_rss": ref_rss,
        "bytes_per_record": rust_bytes / n,
        "ref_bytes_per_record": ref_bytes / m_ref,
    }


# --- pass --------------------------------------------------------------------------------------

def pass_bench(args, launcher, scratch, results):
    import boto3  # the venv's; imported here so offline and pipeline need nothing outside stdlib

    begin(f"pass: one scheduled pass of {PASS_RECORDS} records, cold process, "
          "simulator + moto (S3, Secrets Manager)")
    work = scratch / "pass"
    work.mkdir()
    # Stopped at the end, failed or not, the last started first.
    with contextlib.ExitStack() as servers:
        s3, env, key_file = start_pass_servers(boto3, servers, work)
        rust, py, again = timed_passes(args, launcher, env)
        busy = busy_hour_passes(args, launcher, servers, work, s3, env, key_file)
        check_bucket(s3, args.runs)
    report_pass(rust, py, again, results)
    report_exactly_once(rust, again, busy, results)


def start_moto(boto3, servers, work):
    """moto (S3, Secrets Manager) with the bucket, registered on `servers` to be stopped; its
    endpoint and a boto3 session."""
    moto_port = free_port()
    moto = start_server([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                         str(moto_port)], work / "moto.log", clean_env())
    servers.callback(stop, moto, "moto")
    wait_for_port(moto_port, moto, "moto", work / "moto.log")
    endpoint = f"http://127.0.0.1:{moto_port}"
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                    region_name="us-east-1")
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    return endpoint, session


def start_pass_servers(boto3, servers, work):
    """moto with the bucket and the key's secret, and the simulator, both registered on `servers`
    to be stopped; the S3 client, the environment both tools run in, and the key's file."""
    endpoint, session = start_moto(boto3, servers, work)
    key_file = new_key(work)
    key = key_file.read_text().strip()
    secret_arn = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=SECRET_NAME, SecretString=key)["ARN"]
    sim_port, api_url = start_simulator(servers, work, key_file)
    env = pass_env(work, api_url, endpoint, FERNET_SECRET_ID=secret_arn)
    say(f"  moto on :{endpoint.rsplit(':', 1)[1]}, simulator on :{sim_port} (batch of "
        f"{PASS_RECORDS}, period 3600 s: every pass reads the same batch); secret by ARN")
    return session.client("s3", endpoint_url=endpoint), env, key_file


def start_simulator(servers, work, key_file):
    """log-etl simulate, checked to serve one batch of PASS_RECORDS; its port and API URL."""
    sim_port = free_port()
    sim = start_server([str(BIN), "simulate", "--port", str(sim_port), "--key-file",
                        str(key_file), "--period", "3600s", "--batch-size",
                        str(PASS_RECORDS)], work / "simulator.log", clean_env())
    servers.callback(stop, sim, "log-etl simulate", signal.SIGINT)
    wait_for_port(sim_port, sim, "log-etl simulate", work / "simulator.log")
    api_url = f"http://127.0.0.1:{sim_port}/api/data/log"
    with urllib.request.urlopen(api_url, timeout=10) as resp:
        served = len(json.loads(resp.read()))
    if served != PASS_RECORDS:
        raise BenchError(f"the simulator served {served} records, expected {PASS_RECORDS}")
    return sim_port, api_url


def pass_env(work, api_url, endpoint, **key):
    """The environment of a pass, the same for both tools; `key` is FERNET_SECRET_ID=... or
    FERNET_KEY=...."""
    return dict(aws_env(work, endpoint), LOG_API_URL=api_url, BUCKET_NAME=BUCKET, **key)


def aws_env(work, endpoint):
    """A clean environment with moto's endpoint and credentials."""
    return clean_env(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        # Neither SDK reads a developer's ~/.aws files: both start alike and see only these.
        AWS_CONFIG_FILE=work / "no-aws-config",
        AWS_SHARED_CREDENTIALS_FILE=work / "no-aws-credentials")


def prefixed(env, prefix):
    """`env` with the data and quarantine prefixes under `prefix`."""
    return dict(env, KEY_PREFIX=f"{prefix}/data", QUARANTINE_PREFIX=f"{prefix}/quarantine")


def timed_passes(args, launcher, env):
    """A warm-up pass of each tool, --runs passes of each interleaved (log-etl's each under a new
    prefix: into hours that hold nothing), then log-etl's pass of each run's batch again; the
    (Measured, summary) pairs of each tool and of the passes again."""
    # One untimed pass each warms the page cache (binary, Python modules) and moto.
    rust_pass(launcher, env, "bench/warm-up", "log-etl run (warm-up)")
    python_pass(launcher, env, "reference.py pass (warm-up)")

    rust, py = [], []
    for i in range(1, args.runs + 1):  # interleaved, so drift falls on both alike
        rust.append(rust_pass(launcher, env, f"bench/run-{i}", f"log-etl run {i}"))
        py.append(python_pass(launcher, env, f"reference.py pass {i}"))
        say(f"  pass {i}/{args.runs}: log-etl {rust[-1][0].wall_s * 1000:7.1f} ms "
            f"{mib(rust[-1][0]):>5} MiB   python {py[-1][0].wall_s * 1000:7.1f} ms "
            f"{mib(py[-1][0]):>5} MiB")
    again = [rust_pass(launcher, env, f"bench/run-{i}", f"log-etl run {i} again", new=False)
             for i in range(1, args.runs + 1)]
    say("  the same batch again, under each run's prefix: "
        + ", ".join(f"{m.wall_s * 1000:.1f}" for m, _ in again) + " ms")
    return rust, py, again


def rust_pass(launcher, env, prefix, label, new=True):
    """One log-etl run under `prefix`, checked: every record landed in new objects, or (`new`
    false) every record found already present and nothing written."""
    m = launcher.run([str(BIN), "run"], prefixed(env, prefix), label, timeout_s=120)
    s = m.summary(label)
    landed, present = s["records_landed"], s["records_already_present"]
    if s["records_in"] != PASS_RECORDS or s["records_quarantined"]:
        raise BenchError(f"{label}: records_in {s['records_in']}, quarantined "
                         f"{s['records_quarantined']}; expected {PASS_RECORDS}, 0")
    if new and (landed != PASS_RECORDS or present or s["objects_written"] < 1
                or s["objects_already_present"]):
        raise BenchError(f"{label}: records_landed {landed}, already present {present}, "
                         f"objects_written {s['objects_written']}, already present "
                         f"{s['objects_already_present']} under a new prefix")
    if not new and (landed or present != PASS_RECORDS or s["objects_written"]):
        raise BenchError(f"{label}: pass of a batch landed before: records_landed {landed}, "
                         f"already present {present}, objects_written {s['objects_written']}")
    return m, s


def python_pass(launcher, env, label):
    """One reference.py pass, checked for PASS_RECORDS records."""
    m = launcher.run([PYTHON, str(REFERENCE), "pass"], env, label, timeout_s=120)
    r = m.summary(label)
    if r["records"] != PASS_RECORDS:
        raise BenchError(f"{label}: {r['records']} records, expected {PASS_RECORDS}")
    return m, r


def busy_hour_passes(args, launcher, servers, work, s3, env, key_file):
    """--runs passes of a new batch into an hour that holds BUSY_HOUR_BATCHES earlier ones
    (landed once with log-etl process --bucket, then copied under each run's prefix); the
    batch served by a local http.server. The (Measured, summary) pairs."""
    batches = hour_batches(launcher, work / "busy-hour", key_file, BUSY_HOUR_BATCHES + 1,
                           BUSY_HOUR)
    template = "bench/busy-template"
    for k, response in enumerate(batches[:-1], 1):
        label = f"log-etl process --bucket (batch {k} of the busy hour)"
        m = launcher.run([str(BIN), "process", "--key-file", str(key_file), "--input",
                          str(response), "--bucket", BUCKET], prefixed(env, template), label,
                         timeout_s=120)
        if m.summary(label)["records_landed"] != PASS_RECORDS:
            raise BenchError(f"{label}: {m.summary(label)['records_landed']} records landed")
    keys = list_keys(s3, f"{template}/data/")
    if len(keys) != BUSY_HOUR_BATCHES:
        raise BenchError(f"the busy hour holds {len(keys)} objects, expected "
                         f"{BUSY_HOUR_BATCHES}")
    url = serve_files(servers, work / "busy-serve", {"batch.json": batches[-1]})
    runs = []
    for i in range(1, args.runs + 1):
        prefix = f"bench/busy-{i}"
        for key in keys:
            s3.copy_object(Bucket=BUCKET, Key=prefix + key[len(template):],
                           CopySource={"Bucket": BUCKET, "Key": key})
        m, s = rust_pass(launcher, dict(env, LOG_API_URL=url + "batch.json"), prefix,
                         f"log-etl run (busy hour) {i}")
        if s["objects_read"] != BUSY_HOUR_BATCHES:
            raise BenchError(f"log-etl run (busy hour) {i}: objects_read {s['objects_read']}, "
                             f"expected {BUSY_HOUR_BATCHES}")
        runs.append((m, s))
    say(f"  a new batch at the end of an hour holding {BUSY_HOUR_BATCHES} batches: "
        + ", ".join(f"{m.wall_s * 1000:.1f}" for m, _ in runs) + " ms")
    return runs


def serve_files(servers, folder: Path, files):
    """A local http.server on a free port serving `files` ({name: path}, linked into `folder`),
    registered on `servers` to be stopped; its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        (folder / name).symlink_to(path)
    port = free_port()
    log = folder.parent / f"{folder.name}.log"
    server = serve_folder(folder, port, log, clean_env())
    servers.callback(stop, server, "http.server")
    wait_for_port(port, server, "http.server", log)
    return f"http://127.0.0.1:{port}/"


def check_bucket(s3, runs):
    """What landed: every run's objects read back from the bucket."""
    for prefix, records in [*((f"bench/run-{i}/data/", PASS_RECORDS) for i in range(1, runs + 1)),
                            *((f"bench/busy-{i}/data/", (BUSY_HOUR_BATCHES + 1) * PASS_RECORDS)
                              for i in range(1, runs + 1)),
                            ("reference/", PASS_RECORDS)]:
        got = bucket_records(s3, prefix)
        if got != records:
            raise BenchError(f"s3://{BUCKET}/{prefix} holds {got} records, expected {records}")


def list_keys(s3, prefix):
    return [obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for obj in page.get("Contents", [])]


def bucket_records(s3, prefix):
    return sum(ndjson_lines(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
               for key in list_keys(s3, prefix))


def pass_stats(runs, own_ms):
    """Min and median wall ms, largest peak RSS MiB, median of the tool's own ms."""
    walls = [m.wall_s * 1000 for m, _ in runs]
    return (min(walls), statistics.median(walls), max(m.peak_rss_mib for m, _ in runs),
            statistics.median(own_ms(s) for _, s in runs))


def report_pass(rust, py, again, results):
    """The pass table, the ratios against their targets, and results["pass"]."""
    r_min, r_med, r_rss, r_own = pass_stats(rust, lambda s: s["duration_ms"])
    p_min, p_med, p_rss, p_own = pass_stats(py, lambda r: r["seconds"] * 1000)
    a_min, a_med, a_rss, a_own = pass_stats(again, lambda s: s["duration_ms"])
    say()
    rows = [
        ("log-etl run", len(rust), f"{r_min:.1f}", f"{r_med:.1f}", f"{r_own:.1f}", f"{r_rss:.1f}",
         fmt_int(rust[-1][1]["bytes_out"])),
        ("python reference pass", len(py), f"{p_min:.1f}", f"{p_med:.1f}", f"{p_own:.1f}",
         f"{p_rss:.1f}", fmt_int(py[-1][1]["bytes_out"])),
        ("log-etl run, the same batch again", len(again), f"{a_min:.1f}", f"{a_med:.1f}",
         f"{a_own:.1f}", f"{a_rss:.1f}", "0 (all present)"),
    ]
    say(table(["tool", "runs", "min ms", "median ms", "own ms", "peak RSS MiB", "bytes out"],
              rows))
    say("  (wall: spawn to exit of a new process: start-up, Secrets Manager, GET, transform, "
        "PutObject; own ms: the tool's own\n   figure, median; peak RSS: the largest of the "
        "runs; the reference's starts before it imports boto3)")
    speed_min, speed_med = p_min / r_min, p_med / r_med
    say()
    say(f"  cold pass, python / log-etl wall:  {fmt_ratio(speed_min)} (min)  "
        f"{fmt_ratio(speed_med)} (median)   {target_note(speed_med, PASS_SPEEDUP_TARGET, True)} "
        "(median)")
    say(f"  log-etl peak RSS, worst of {len(rust)}:     {r_rss:.1f} MiB   "
        f"{target_note(r_rss, PASS_RSS_TARGET_MIB, False, ' MiB')};  python {p_rss:.1f} MiB")
    results["pass"] = {"runs": len(rust), "min": r_min, "median": r_med, "rss": r_rss,
                       "ref_min": p_min, "ref_median": p_med, "ref_rss": p_rss,
                       "speed_min": speed_min, "speed_median": speed_med}


def report_exactly_once(new, again, busy, results):
    """What exactly once costs a pass: its listings and reads and their time, beside the pass's
    own time and its wall time, in three cases; results["exactly_once"]."""
    cases = [("into hours holding nothing", new), ("the same batch again", again),
             (f"end of an hour holding {BUSY_HOUR_BATCHES} batches", busy)]
    rows, figures = [], {}
    for name, runs in cases:
        med = {f: statistics.median(s[f] for _, s in runs)
               for f in ("lists", "objects_read", "existing_read_ms", "duration_ms")}
        wall = statistics.median(m.wall_s * 1000 for m, _ in runs)
        share = med["existing_read_ms"] / med["duration_ms"] if med["duration_ms"] else 0.0
        rows.append((name, len(runs), f"{med['lists']:g}", f"{med['objects_read']:g}",
                     f"{med['lists'] + med['objects_read']:g}", f"{med['existing_read_ms']:g}",
                     f"{med['duration_ms']:g}", f"{share:.0%}", f"{wall:.1f}"))
        figures[name] = dict(med, wall_ms=wall, runs=len(runs))
    say()
    say("  exactly once: what a pass reads to learn what its hours hold (medians)")
    say(table(["case", "runs", "LIST", "GET", "S3 requests", "read ms", "own ms", "share",
               "wall ms"], rows))
    say("  (LIST: listings of an hour folder, GET: objects read, both from the summary's lists "
        "and objects_read; read ms:\n   existing_read_ms, the time they took; own ms: the "
        "pass's duration_ms; share: read ms / own ms; wall: spawn to exit)")
    results["exactly_once"] = figures


# --- large -------------------------------------------------------------------------------------

@dataclass
class LargeCase:
    """A saved response of large records, what process must do with it, and its settings."""

    name: str
    what: str
    records: int
    plaintext_bytes: int
    lands: bool  # every record lands (else every record is quarantined)
    env: dict = field(default_factory=dict)


LARGE_CASES = [
    # 2.25 MiB of plaintext makes a token of 3 MiB: over MAX_RECORD_BYTES (1 MiB), quarantined
    # whole as received.
    LargeCase("large-quarantined", "250 elements of 3 MiB, over MAX_RECORD_BYTES: quarantined",
              250, 9 * MIB // 4, lands=False),
    LargeCase("large-landed", "200 records of 3 MiB plaintext under limits of 8 MiB: landed",
              200, 3 * MIB, lands=True,
              env={"MAX_RECORD_BYTES": 8 * MIB, "MAX_STRING_BYTES": 8 * MIB}),
]


def large(args, launcher, scratch, results):
    begin("large: saved responses of records of several MiB into a folder (process)")
    figures = {}
    for case in LARGE_CASES:
        response, _ = cached_big_response(launcher, case.name, case.records,
                                          case.plaintext_bytes, args.fresh)
        runs = [large_run(launcher, scratch, case, response, response.parent / "fernet.key", i)
                for i in range(1, args.memory_runs + 1)]
        figures[case.name] = (case, response.stat().st_size, runs)
    report_large(figures, results)


def large_run(launcher, scratch, case, response, key_file, i):
    """One log-etl process of a large case into a new folder, checked; its Measured."""
    out = scratch / f"{case.name}-{i}"
    label = f"log-etl process ({case.name}, run {i})"
    m, s = process_into_folder(launcher, response, key_file, out, label,
                               env=clean_env(**case.env), timeout_s=900)
    want = (case.records, 0) if case.lands else (0, case.records)
    got = (s["records_landed"], s["records_quarantined"])
    if s["records_in"] != case.records or got != want:
        raise BenchError(f"{label}: records_in {s['records_in']}, landed {got[0]}, quarantined "
                         f"{got[1]}; expected {case.records}, {want[0]}, {want[1]}")
    if case.lands and i == 1 and sum(records_by_hour(out, "quarantine").values()) != case.records:
        raise BenchError(f"{label}: the folder holds {sum(records_by_hour(out).values())} "
                         f"records, expected {case.records}")
    shutil.rmtree(out)
    say(f"  {case.name} run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, "
        f"{s['bytes_out'] / 1e6:,.0f} MB written")
    return m


def report_large(figures, results):
    """The large table, the worst peak RSS of each case against the target; results["large"]."""
    rows, out = [], {}
    for name, (case, size, runs) in figures.items():
        wall, rss = spread(m.wall_s for m in runs), spread(m.peak_rss_mib for m in runs)
        rows.append((case.what, f"{size / MIB:,.0f}", rss.n, f"{wall.median:.2f}",
                     f"{size / MIB / wall.median:,.0f}", f"{rss.worst:.1f}",
                     target_note(rss.worst, LARGE_RSS_TARGET_MIB, False, " MiB")))
        out[name] = {"what": case.what, "mib_in": size / MIB, "runs": rss.n,
                     "wall_median": wall.median, "rss_worst": rss.worst}
    say()
    say(table(["response", "MiB in", "runs", "median s", "MiB/s", "worst RSS MiB", "bound"], rows,
              ["<", ">", ">", ">", ">", ">", "<"]))
    say("  (log-etl process into a folder; worst RSS: the largest peak RSS of the runs)")
    results["large"] = out


# --- pass-memory -------------------------------------------------------------------------------

# Records of about 1 MiB: 699 KiB of plaintext makes a token of 0.91 MiB, under
# MAX_RECORD_BYTES, its blob under MAX_STRING_BYTES; 65 of them, 59 MiB.
PASS_LARGE_RECORDS = 65
PASS_LARGE_PLAINTEXT = 699 * 1024


def pass_memory(args, launcher, scratch, results):
    import boto3

    begin(f"pass-memory: one pass (log-etl run) of a {MAX_RESPONSE_BYTES // MIB} MiB response "
          "(MAX_RESPONSE_BYTES), moto S3")
    work = scratch / "pass-memory"
    work.mkdir()
    tiny = tiny_elements_body(DATA / "pass-memory-tiny.json")
    large_body, key = cached_big_response(launcher, "pass-memory-large", PASS_LARGE_RECORDS,
                                          PASS_LARGE_PLAINTEXT, args.fresh)
    with contextlib.ExitStack() as servers:
        endpoint, session = start_moto(boto3, servers, work)
        url = serve_files(servers, work / "served", {"tiny.json": tiny, "large.json": large_body})
        s3 = session.client("s3", endpoint_url=endpoint)
        env = pass_env(work, url, endpoint, FERNET_KEY=key)
        say(f"  moto on :{endpoint.rsplit(':', 1)[1]}, bodies served by http.server at {url}")
        tiny_runs = [tiny_pass(launcher, s3, env, url, i) for i in range(1, args.memory_runs + 1)]
        large_runs = [large_pass(launcher, s3, env, url, i)
                      for i in range(1, args.memory_runs + 1)]
    rows = [(f"{tiny.stat().st_size / MIB:.0f} MiB of tiny elements [0,0,...]: fails, "
             "nothing written", tiny_runs),
            (f"{large_body.stat().st_size / MIB:.0f} MiB: {PASS_LARGE_RECORDS} records of "
             f"{PASS_LARGE_PLAINTEXT // 1024} KiB plaintext, landed", large_runs)]
    report_pass_memory(rows, results)


def tiny_elements_body(path: Path):
    """A JSON array of single zeros filling MAX_RESPONSE_BYTES exactly (a newline ends it),
    written once."""
    if path.exists() and path.stat().st_size == MAX_RESPONSE_BYTES:
        return path
    zeros = (MAX_RESPONSE_BYTES - 4) // 2  # "[" + "0," * zeros + "0]\n"
    with open(path.with_suffix(".partial"), "wb") as f:
        f.write(b"[")
        for start in range(0, zeros, MIB):
            f.write(b"0," * min(MIB, zeros - start))
        f.write(b"0]\n")
    path.with_suffix(".partial").rename(path)
    return path


def tiny_pass(launcher, s3, env, url, i):
    """One run against the tiny elements: it must fail with ResponseError, too many records,
    and write nothing. Its Measured."""
    prefix, label = f"bench/tiny-{i}", f"log-etl run (tiny elements, run {i})"
    m = launcher.run([str(BIN), "run"], prefixed(dict(env, LOG_API_URL=url + "tiny.json"),
                                                 prefix),
                     label, timeout_s=300, check=False)
    want = f"more than {MAX_RECORDS_PER_RESPONSE} records"
    if m.returncode != 1 or want not in m.stderr_tail or "ResponseError" not in m.stderr_tail:
        raise BenchError(f"{label}: exit status {m.returncode}, expected 1 with a ResponseError "
                         f"'{want}'; stderr:\n    {m.stderr_tail or '(none)'}")
    if list_keys(s3, prefix + "/"):
        raise BenchError(f"{label}: wrote {len(list_keys(s3, prefix + '/'))} objects")
    say(f"  tiny elements run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, failed as "
        "expected, nothing written")
    return m


def large_pass(launcher, s3, env, url, i):
    """One run against the large records: every record must land. Its Measured."""
    prefix, label = f"bench/large-{i}", f"log-etl run (large records, run {i})"
    m = launcher.run([str(BIN), "run"], prefixed(dict(env, LOG_API_URL=url + "large.json"),
                                                 prefix), label, timeout_s=300)
    s = m.summary(label)
    if s["records_in"] != PASS_LARGE_RECORDS or s["records_landed"] != PASS_LARGE_RECORDS:
        raise BenchError(f"{label}: records_in {s['records_in']}, records_landed "
                         f"{s['records_landed']}, quarantined {s['records_quarantined']}; "
                         f"expected {PASS_LARGE_RECORDS} landed")
    if i == 1 and bucket_records(s3, f"{prefix}/data/") != PASS_LARGE_RECORDS:
        raise BenchError(f"{label}: s3://{BUCKET}/{prefix}/data/ holds "
                         f"{bucket_records(s3, prefix + '/data/')} records")
    say(f"  large records run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, "
        f"{s['records_landed']} landed")
    return m


def report_pass_memory(rows_in, results):
    """The pass-memory table: worst peak RSS beside the function's memory and the bound, wall
    time beside its timeout; results["pass_memory"]."""
    rows, out = [], []
    for what, runs in rows_in:
        wall, rss = spread(m.wall_s for m in runs), spread(m.peak_rss_mib for m in runs)
        within = "yes" if wall.worst < FUNCTION_TIMEOUT_S else "NO"
        rows.append((what, rss.n, f"{wall.median:.2f}", f"{wall.worst:.2f}",
                     f"within {FUNCTION_TIMEOUT_S} s: {within}", f"{rss.worst:.1f}",
                     target_note(rss.worst, PASS_MEMORY_TARGET_MIB, False, " MiB")))
        out.append({"what": what, "runs": rss.n, "wall_median": wall.median,
                    "wall_worst": wall.worst, "rss_worst": rss.worst})
    say()
    say(table(["response", "runs", "median s", "worst s", "timeout", "worst RSS MiB", "bound"],
              rows, ["<", ">", ">", ">", "<", ">", "<"]))
    say(f"  (the function: {FUNCTION_MEMORY_MIB} MiB, timeout {FUNCTION_TIMEOUT_S} s; bound: "
        f"< {PASS_MEMORY_TARGET_MIB:g} MiB, a 25% margin; worst: the largest of the runs)")
    results["pass_memory"] = out


# --- compaction --------------------------------------------------------------------------------

def compaction(args, launcher, scratch, results):
    begin("compaction: log-etl compact of one closed hour, on fresh copies of a folder")
    work = scratch / "compaction"
    key_file = new_key(work)
    usual = work / "usual-hour"
    for k, response in enumerate(hour_batches(launcher, work / "batches", key_file,
                                              BUSY_HOUR_BATCHES + 1, BUSY_HOUR), 1):
        process_into_folder(launcher, response, key_file, usual, f"log-etl process (batch {k})",
                            landed=PASS_RECORDS)
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
    cases = [(f"a usual hour: {(BUSY_HOUR_BATCHES + 1)} passes of {PASS_RECORDS} records", usual,
              (BUSY_HOUR_BATCHES + 1) * PASS_RECORDS, None),
             (f"a large hour: {fmt_int(n)} records", big, n, COMPACTION_RSS_TARGET_MIB)]
    rows = [(what, len(data_objects(folder)), records, target,
             [compact_run(launcher, scratch, folder, records, i)
              for i in range(1, args.memory_runs + 1)])
            for what, folder, records, target in cases]
    report_compaction(rows, results)


def compact_run(launcher, scratch, template, records, i):
    """log-etl compact of a fresh copy of `template` (one closed hour), checked: the hour merged
    into one object holding every record once. Its Measured."""
    copy = scratch / f"compact-{i}"
    shutil.copytree(template, copy)
    objects, label = len(data_objects(copy)), f"log-etl compact ({template.name}, run {i})"
    m = launcher.run([str(BIN), "compact", "--out-dir", str(copy)], clean_env(), label,
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


def report_compaction(rows_in, results):
    """The compaction table: wall time beside the compaction function's timeout, worst peak
    RSS beside the target; results["compaction"]."""
    rows, out = [], []
    for what, objects, records, target, runs in rows_in:
        wall, rss = spread(m.wall_s for m in runs), spread(m.peak_rss_mib for m in runs)
        bound = target_note(rss.worst, target, False, " MiB") if target else "(none set)"
        rows.append((what, objects, fmt_int(records), rss.n, f"{wall.median:.2f}",
                     f"{wall.worst:.2f}", f"{rss.worst:.1f}", bound))
        out.append({"what": what, "objects": objects, "records": records, "runs": rss.n,
                    "wall_median": wall.median, "rss_worst": rss.worst})
    say()
    say(table(["hour", "objects", "records", "runs", "median s", "worst s", "worst RSS MiB",
               "bound"], rows, ["<", ">", ">", ">", ">", ">", ">", "<"]))
    say(f"  (the compaction function: {FUNCTION_MEMORY_MIB} MiB, timeout {COMPACTION_TIMEOUT_S} "
        "s; records: in the merged object, as many as landed)")
    results["compaction"] = out


# --- day ---------------------------------------------------------------------------------------

def day(args, launcher, scratch, results):
    import boto3

    batches = args.day_batches
    begin(f"day: {batches} scheduled passes of {PASS_RECORDS} records, 3 minutes apart; "
          "restore before and after compact")
    work = scratch / "day"
    before, after = work / "landed", work / "compacted"
    records = land_day(launcher, work, before, batches)
    shutil.copytree(before, after)
    m = launcher.run([str(BIN), "compact", "--out-dir", str(after)], clean_env(),
                     "log-etl compact (day)", timeout_s=COMPACTION_TIMEOUT_S)
    s = m.summary("log-etl compact (day)")
    if s["records"] != records or s["duplicates_dropped"]:
        raise BenchError(f"log-etl compact (day): {json.dumps(s)}; expected {records} records")
    say(f"  log-etl compact (a copy): {m.wall_s:.2f} s, peak RSS {mib(m)} MiB, "
        f"{s['hours_compacted']} hours, {s['objects_read']} objects into {s['objects_written']}")
    folder = [(str(before), clean_env()), (str(after), clean_env())]
    rows = [("folder", before, after, restores(launcher, args.restore_runs, folder, records))]
    with contextlib.ExitStack() as servers:
        endpoint, session = start_moto(boto3, servers, work)
        s3 = session.client("s3", endpoint_url=endpoint)
        for name, local in (("before", before), ("after", after)):
            for path in data_objects(local):
                s3.put_object(Bucket=BUCKET, Key=f"day/{name}/{path.relative_to(local)}",
                              Body=path.read_bytes())
        env = aws_env(work, endpoint)
        bucket = [(f"s3://{BUCKET}/day/before/data", dict(env, KEY_PREFIX="day/before/data")),
                  (f"s3://{BUCKET}/day/after/data", dict(env, KEY_PREFIX="day/after/data"))]
        rows.append(("S3 (moto, local)", before, after,
                     restores(launcher, args.restore_runs, bucket, records)))
    report_day(batches, records, rows, m, results)


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


def restores(launcher, runs, places, records):
    """log-etl restore of each of `places` ([(where, env)], the day before and after
    compaction), `runs` times each, interleaved so that drift falls on both alike, output
    discarded; then once each, checked to give the same `records` records. The Spreads of the
    wall times."""
    walls = [[] for _ in places]
    for _ in range(runs):
        for i, (where, env) in enumerate(places):
            m = launcher.run([str(BIN), "restore", where], env, f"log-etl restore {where}",
                             stdout_to=os.devnull)
            walls[i].append(m.wall_s)
    digests = []
    for where, env in places:
        out = launcher.scratch / "restored.ndjson"
        launcher.run([str(BIN), "restore", where], env, f"log-etl restore {where}", stdout_to=out)
        lines = out.read_bytes().splitlines()
        out.unlink()
        if len(lines) != records:
            raise BenchError(f"log-etl restore {where}: {len(lines)} records, expected {records}")
        digests.append(hashlib.sha256(b"\n".join(sorted(lines))).hexdigest())
    if len(set(digests)) != 1:
        raise BenchError(f"log-etl restore gives other records after compaction than before "
                         f"({places[0][0]}, {places[1][0]})")
    for (where, _), w in zip(places, walls):
        say(f"  restore {where}: " + ", ".join(f"{x * 1000:.0f}" for x in w) + " ms")
    return [spread(w) for w in walls]


def report_day(batches, records, rows_in, compact, results):
    """The day table: objects, bytes and restore time before and after compaction, from a
    folder and from a bucket, and the ratios; results["day"]."""
    rows, out = [], []
    for where, before, after, (rb, ra) in rows_in:
        ob, oa = len(data_objects(before)), len(data_objects(after))
        rows.append((where, f"{ob:,}", f"{oa:,}", f"{tree_bytes(before) / 1e6:.2f}",
                     f"{tree_bytes(after) / 1e6:.2f}", rb.n, f"{rb.median * 1000:.0f}",
                     f"{ra.median * 1000:.0f}", f"{rb.median / ra.median:.1f}x"))
        out.append({"where": where, "objects_before": ob, "objects_after": oa, "runs": rb.n,
                    "restore_before": rb.median, "restore_after": ra.median})
    say()
    say(table(["restore from", "objects before", "after", "MB before", "after", "runs",
               "median ms before", "after", "before / after"], rows))
    say(f"  (a day of {batches} passes, {fmt_int(records)} records; restore to /dev/null, spawn "
        "to exit, the two interleaved; every record\n   restored the same before and after; "
        f"compact took {compact.wall_s:.2f} s, peak RSS {compact.peak_rss_mib:.1f} MiB)")
    results["day"] = {"batches": batches, "records": records, "places": out,
                      "compact_s": compact.wall_s, "compact_rss": compact.peak_rss_mib}


# --- pipeline ----------------------------------------------------------------------------------

def pipeline(args, results):
    begin("pipeline: cargo bench --bench pipeline (pure pipeline, one core, in process)")
    argv = ["cargo", "bench", "--bench", "pipeline"]
    if args.pipeline_records:
        argv += ["--", str(args.pipeline_records)]
    say(f"  $ {shlex.join(argv)}")
    env = clean_env(LOG_ETL_PYTHON=PYTHON)
    # A session of its own, so that the bound (a build included) stops cargo and what it ran.
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    timer = threading.Timer(PIPELINE_TIMEOUT_S, kill_group, (child.pid,))
    timer.start()
    speedup = None
    try:
        for line in child.stdout:
            say("  | " + line.rstrip("\n"))
            if line.strip().startswith("speed-up"):
                speedup = line.split()[-1]
    except BaseException:
        kill_group(child.pid)
        raise
    finally:
        child.stdout.close()
        status = child.wait()
        timer.cancel()
    if status != 0:
        raise BenchError(f"cargo bench exited with status {status}"
                         + (f" (stopped after {PIPELINE_TIMEOUT_S} s)" if status < 0 else ""))
    results["pipeline"] = {"speedup": speedup}


# --- Summary -----------------------------------------------------------------------------------

def summary(results, failures, command):
    section("summary (for the README)")
    say(f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, {cpu_model()}, "
        f"nproc {len(os.sched_getaffinity(0))}, load average {load_average()} at the end:")
    say()
    lines = [
        ("offline", summary_offline), ("large", summary_large), ("pass", summary_pass),
        ("exactly_once", summary_exactly_once), ("pass_memory", summary_pass_memory),
        ("compaction", summary_compaction), ("day", summary_day),
    ]
    for name, line in lines:
        if results.get(name):
            say(line(results[name]))
    b = results.get("pipeline")
    if b and b["speedup"]:
        say(f"- The pure pipeline in process, one core (cargo bench --bench pipeline): "
            f"**{b['speedup']}** the Python reference's records/s on the same records.")
    say()
    say(f"Command: {command}")
    if failures:
        say()
        for name, err in failures:
            say(f"FAILED: {name}: {err}")


def summary_offline(o):
    """The summary's line for the offline section."""
    prefix = "" if o["reference_records"] == o["records"] else \
        f" (the reference on the first {fmt_int(o['reference_records'])})"
    return (f"- Saved response of {fmt_int(o['records'])} records to a folder{prefix}: log-etl "
            f"{fmt_int(o['rate_median'])} records/s (median of {o['runs']}; best "
            f"{fmt_int(o['rate_best'])}), Python {fmt_int(o['ref_rate'])} records/s: "
            f"**{o['speed_median']:.0f}x** (best {o['speed_best']:.0f}x). Peak RSS "
            f"{o['rss']:.0f} MiB (worst of {o['runs']}) vs {o['ref_rss']:,.0f} MiB."
            f" {o['bytes_per_record']:.1f} vs {o['ref_bytes_per_record']:.1f} bytes/record "
            "gzip'd (log-etl's default level vs the reference's 9).")


def summary_large(cases):
    """The summary's line for the large section."""
    return "- Large records, `process` into a folder: " + "; ".join(
        f"{c['what']} ({c['mib_in']:,.0f} MiB): {c['wall_median']:.1f} s (median of {c['runs']}), "
        f"peak RSS {c['rss_worst']:.0f} MiB (worst)" for c in cases.values()) + "."


def summary_pass(p):
    """The summary's line for the pass section."""
    return (f"- One scheduled pass of {PASS_RECORDS} records, cold process, against moto and the "
            f"simulator: log-etl {p['median']:.0f} ms (median of {p['runs']}; min "
            f"{p['min']:.0f}), Python {p['ref_median']:.0f} ms: **{p['speed_median']:.1f}x "
            f"faster**. Peak RSS {p['rss']:.0f} MiB (worst) vs {p['ref_rss']:.0f} MiB.")


def summary_exactly_once(cases):
    """The summary's line for what exactly once costs a pass."""
    return "- Exactly once, what a pass reads first (medians): " + "; ".join(
        f"{name}: {c['lists']:g} LIST + {c['objects_read']:g} GET, {c['existing_read_ms']:g} ms "
        f"of a {c['duration_ms']:g} ms pass" for name, c in cases.items()) + "."


def summary_pass_memory(cases):
    """The summary's line for the pass-memory section."""
    return (f"- One pass of a {MAX_RESPONSE_BYTES // MIB} MiB response (the function has "
            f"{FUNCTION_MEMORY_MIB} MiB, {FUNCTION_TIMEOUT_S} s): " + "; ".join(
                f"{c['what']}: peak RSS {c['rss_worst']:.0f} MiB (worst of {c['runs']}), "
                f"{c['wall_median']:.1f} s" for c in cases) + ".")


def summary_compaction(cases):
    """The summary's line for the compaction section."""
    return "- `compact` of one closed hour into a folder: " + "; ".join(
        f"{c['what']} ({c['objects']} objects): {c['wall_median']:.2f} s (median of {c['runs']}), "
        f"peak RSS {c['rss_worst']:.0f} MiB (worst)" for c in cases) + "."


def summary_day(d):
    """The summary's line for the day section."""
    return (f"- A day of {d['batches']} passes ({fmt_int(d['records'])} records): `compact` "
            f"({d['compact_s']:.2f} s, {d['compact_rss']:.0f} MiB) turns "
            f"{d['places'][0]['objects_before']} objects into {d['places'][0]['objects_after']}; "
            "`restore` of the day before / after (median of "
            f"{d['places'][0]['runs']}): " + "; ".join(
                f"{p['where']} {p['restore_before'] * 1000:.0f} / {p['restore_after'] * 1000:.0f}"
                f" ms, **{p['restore_before'] / p['restore_after']:.1f}x**" for p in d["places"])
            + ".")


# --- Command line ------------------------------------------------------------------------------

SECTIONS = ["offline", "large", "pass", "pass-memory", "compaction", "day", "pipeline"]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=os.environ.get("LOG_ETL_BENCH_ENTRY", "bench/compare.py"),
        description="Benchmarks log-etl against the Python reference and prints the figures.")
    parser.add_argument("command", nargs="?", default="all", choices=["all", *SECTIONS])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--reference-records", type=int)
    parser.add_argument("--log-etl-runs", type=int, default=5)
    parser.add_argument("--reference-runs", type=int)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory-runs", type=int, default=3)
    parser.add_argument("--hour-records", type=int, default=1_000_000)
    parser.add_argument("--day-batches", type=int, default=480)
    parser.add_argument("--restore-runs", type=int, default=5)
    parser.add_argument("--pipeline-records", type=int)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args(argv)
    counts = ("records", "log_etl_runs", "runs", "memory_runs", "hour_records", "day_batches",
              "restore_runs")
    if any(getattr(args, name) < 1 for name in counts):
        parser.error("--" + ", --".join(n.replace("_", "-") for n in counts)
                     + " must be at least 1")
    if not 100_000 < args.hour_records <= 1_100_000:
        parser.error("--hour-records: more than 100000 (so that process makes more than one "
                     "object) and at most 1100000 (3 ms apart, they must fit in one hour)")
    if args.reference_records is not None and not 1 <= args.reference_records <= args.records:
        parser.error("--reference-records must be between 1 and --records")
    if args.reference_runs is None:
        args.reference_runs = 2 if (args.reference_records or args.records) <= 200_000 else 1
    return args


def main(argv):
    args = parse_args(argv)
    entry = os.environ.get("LOG_ETL_BENCH_ENTRY", f"{Path(PYTHON).name} bench/compare.py")
    command = " ".join([entry, *map(shlex.quote, argv)])
    if args.command != "pipeline" and not os.access(BUILT, os.X_OK):
        sys.exit(f"{BUILT} is missing: cargo build --release --bin log-etl (scripts/bench does it)")
    DATA.mkdir(parents=True, exist_ok=True)
    results, failures = {}, []
    with tempfile.TemporaryDirectory(prefix="log-etl-bench-") as tmp:
        scratch = Path(tmp)
        copy_binary(scratch)
        launcher = Launcher(scratch, cwd=ROOT)
        header(launcher, command)
        run_sections(args, launcher, scratch, results, failures)
    summary(results, failures, command)
    return 1 if failures else 0


def copy_binary(scratch):
    """Points BIN at a copy of the built binary in `scratch`, if it is built: every figure from
    one binary, whatever cargo rebuilds in the meantime."""
    global BIN
    if os.access(BUILT, os.X_OK):
        BIN = scratch / "log-etl"
        shutil.copy2(BUILT, BIN)


def run_sections(args, launcher, scratch, results, failures):
    """The sections the command asks for, in order; a failed one is reported and added to
    `failures`, and the next one runs."""
    steps = {
        "offline": lambda: offline(args, launcher, scratch, results),
        "large": lambda: large(args, launcher, scratch, results),
        "pass": lambda: pass_bench(args, launcher, scratch, results),
        "pass-memory": lambda: pass_memory(args, launcher, scratch, results),
        "compaction": lambda: compaction(args, launcher, scratch, results),
        "day": lambda: day(args, launcher, scratch, results),
        "pipeline": lambda: pipeline(args, results),
    }
    for name in SECTIONS:
        if args.command not in ("all", name):
            continue
        try:
            steps[name]()
        except (BenchError, OSError, subprocess.CalledProcessError) as err:
            say(f"  FAILED: {err}")
            failures.append((name, err))
        except Exception as err:  # boto3 and moto errors: report, go on with the next step
            say(f"  FAILED: {type(err).__name__}: {err}")
            failures.append((name, err))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

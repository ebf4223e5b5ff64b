"""Benchmarks log-etl against the Python script it replaces (bench/reference.py), both in the same
run on the same data, and prints the figures. Nothing here asserts a speed: the targets are printed
beside the figures. It exits non-zero only when something fails to run or a correctness check
fails (record counts, records per hour, objects in the bucket).

  scripts/bench [all|offline|pass|pipeline] [options]          (all is the default)
  (or: VENV/bin/python bench/compare.py ..., after cargo build --release --bin log-etl)

  offline    a saved API response processed into a folder, each tool a child process measured
             for wall time and peak RSS: log-etl process (best and median of --log-etl-runs)
             and reference.py offline (--reference-runs)
  pass       one scheduled pass of 100 records, cold process, against the log-API simulator
             (log-etl simulate) and moto (S3 and Secrets Manager): log-etl run and
             reference.py pass, --runs times each, interleaved; then one repeat pass
  pipeline   cargo bench --bench pipeline (the pure pipeline on one core: gzip levels, per-stage
             costs, the Python reference on the same records), passed through

  --records N              offline: records in the response (default 1000000)
  --reference-records M    offline: run the Python reference on a response of M records (the
                           same generator, seed and start: the first M of the N) instead of N,
                           and compare records/s (default N)
  --log-etl-runs K         offline: log-etl runs (default 3)
  --reference-runs K       offline: reference runs (default 1, or 2 for 200000 records or fewer)
  --runs R                 pass: timed passes of each tool (default 5)
  --pipeline-records N     pipeline: records for cargo bench (default: the bench's own, 100000)
  --fresh                  offline: generate the responses again instead of reusing them

Generated responses (about 540 bytes a record) are kept in target/bench-data/response-N/ and
reused by later runs; outputs go to a temporary folder removed at the end. Peak RSS is measured
with GNU time (/usr/bin/time) when present: os.wait4 on a child started from this process would
report at least this process's own peak, because Linux carries the parent's high-water mark into
the child's ru_maxrss across fork and exec. Without GNU time it falls back to os.wait4 and prints
that floor (the figure for /bin/true) beside the results.

What is log-etl's is here: the sections, their checks, the bucket, the cached responses. The
generic harness (measuring a child process, starting and stopping servers, describing the
machine, the text tables) is bench/harness.py.
"""

import argparse
import contextlib
import datetime
import gzip
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
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness import (BenchError, Launcher, built_at, command_output, cpu_model, fmt_int,
                     fmt_ratio, free_port, git_revision, load_average, mem_total_gib, say,
                     section, start_server, stop, table, target_note, wait_for_port)

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "target" / "release" / "log-etl"
BIN = BUILT  # main() points this at a copy taken at start
REFERENCE = ROOT / "bench" / "reference.py"
DATA = ROOT / "target" / "bench-data"
PYTHON = sys.executable
# What git_revision compares with HEAD: the sources of the binary and of the pipeline bench.
SOURCES = ["src", "Cargo.toml", "Cargo.lock", "benches"]

PASS_RECORDS = 100  # the simulator's batch, like the real server's
BUCKET = "log-etl-bench"
SECRET_NAME = "log-etl-bench/fernet-key"

# Targets, printed beside the figures; never asserted.
OFFLINE_SPEEDUP_TARGET = 15.0
OFFLINE_RSS_TARGET_MIB = 64.0
PASS_SPEEDUP_TARGET = 10.0
PASS_RSS_TARGET_MIB = 32.0

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


def tree_bytes(folder: Path):
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def records_by_hour(folder: Path, skip_prefix=None):
    """Records in the .json.gz objects under `folder`, by their YYYY/MM/DD/HH folder."""
    hours = {}
    for path in sorted(folder.rglob("*.json.gz")):
        rel = path.relative_to(folder).parts
        if skip_prefix and rel[0] == skip_prefix:
            continue
        with gzip.open(path, "rb") as f:
            body = f.read()
        hour = "/".join(rel[-5:-1])
        hours[hour] = hours.get(hour, 0) + ndjson_lines(body)
    return hours


def ndjson_lines(body: bytes):
    return body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)


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


# --- offline -----------------------------------------------------------------------------------

@dataclass
class ToolRuns:
    """The measured runs of one tool in a section, and the JSON summary of its last run."""

    runs: list
    last: dict


def cached_response(launcher, records, fresh):
    """A saved response of `records` records and its key, generated once into target/bench-data."""
    folder = DATA / f"response-{records}"
    response, key_file = folder / "response.json", folder / "key"
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if response.exists() and key_file.exists():
        age = datetime.datetime.fromtimestamp(response.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        say(f"  response: {response.relative_to(ROOT)} ({response.stat().st_size / 1e6:,.0f} MB, "
            f"generated {age}, reused; --fresh makes it again)")
        return response, key_file.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    key = subprocess.run([str(BIN), "keygen"], capture_output=True, text=True,
                         check=True).stdout.strip()
    partial = folder / "response.json.partial"
    m = launcher.run([str(BIN), "generate", "--key", key, "--records", str(records),
                      "--out", str(partial)], clean_env(), "log-etl generate",
                     timeout_s=120 + records / 1000)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    partial.rename(response)  # only a complete file is ever reused
    say(f"  response: {response.relative_to(ROOT)} ({response.stat().st_size / 1e6:,.0f} MB, "
        f"generated in {m.wall_s:.1f} s)")
    return response, key


def offline(args, launcher, scratch, results):
    n = args.records
    m_ref = args.reference_records or n
    section(f"offline: a saved response of {fmt_int(n)} records into a folder")
    response, key = cached_response(launcher, n, args.fresh)
    ref_response, ref_key = (response, key) if m_ref == n else cached_response(launcher, m_ref,
                                                                               args.fresh)
    env = clean_env()
    rust, rust_hours = offline_log_etl(args, launcher, scratch, env, response, key)
    ref = offline_reference(args, launcher, scratch, env, ref_response, ref_key, rust_hours)
    report_offline(n, m_ref, rust, ref, results)


def offline_log_etl(args, launcher, scratch, env, response, key):
    """log-etl process, --log-etl-runs times, checked; its runs and the first run's records per
    hour."""
    n = args.records
    rust_runs, rust_summary, rust_hours = [], None, None
    for i in range(args.log_etl_runs):
        out = scratch / f"offline-log-etl-{i}"
        m = launcher.run([str(BIN), "process", "--key", key, "--input", str(response),
                          "--out-dir", str(out)], env, "log-etl process",
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
    say(f"  records/s, log-etl / python:  {fmt_ratio(speed_best)} (best)  "
        f"{fmt_ratio(speed_median)} (median)   "
        f"{target_note(speed_median, OFFLINE_SPEEDUP_TARGET, True)} (median)")
    say(f"  log-etl peak RSS:             {rust_rss:.1f} MiB   "
        f"{target_note(rust_rss, OFFLINE_RSS_TARGET_MIB, False, ' MiB')};  "
        f"python {ref_rss:,.0f} MiB ({ref_rss / rust_rss:,.0f}x)")
    results["offline"] = {
        "records": n, "reference_records": m_ref, "rate_best": n / best, "rate_median": n / median,
        "ref_rate": ref_rate, "speed_best": speed_best, "speed_median": speed_median,
        "rss": rust_rss, "ref_rss": ref_rss, "bytes_per_record": rust_bytes / n,
        "ref_bytes_per_record": ref_bytes / m_ref,
    }


# --- pass --------------------------------------------------------------------------------------

def pass_bench(args, launcher, scratch, results):
    import boto3  # the venv's; imported here so offline and pipeline need nothing outside stdlib

    section(f"pass: one scheduled pass of {PASS_RECORDS} records, cold process, "
            "simulator + moto (S3, Secrets Manager)")
    work = scratch / "pass"
    work.mkdir()
    # Stopped at the end, failed or not, the last started first: the simulator, then moto.
    with contextlib.ExitStack() as servers:
        s3, env = start_pass_servers(boto3, servers, work)
        rust, py, repeat = timed_passes(args, launcher, env)
        check_bucket(s3, args.runs)
    report_pass(rust, py, repeat, results)


def start_pass_servers(boto3, servers, work):
    """moto with the bucket and the key's secret, and the simulator, both registered on `servers`
    to be stopped; the S3 client and the environment both tools run in."""
    moto_port = free_port()
    moto = start_server([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                         str(moto_port)], work / "moto.log", clean_env())
    servers.callback(stop, moto, "moto")
    wait_for_port(moto_port, moto, "moto", work / "moto.log")
    endpoint = f"http://127.0.0.1:{moto_port}"

    key = subprocess.run([str(BIN), "keygen"], capture_output=True, text=True,
                         check=True).stdout.strip()
    key_file = work / "fernet.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                    region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    secret_arn = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=SECRET_NAME, SecretString=key)["ARN"]

    sim_port, api_url = start_simulator(servers, work, key_file)
    env = pass_env(work, api_url, endpoint, secret_arn)
    say(f"  moto on :{moto_port}, simulator on :{sim_port} (batch of {PASS_RECORDS}, "
        f"period 3600 s: every pass reads the same batch); secret by ARN")
    return s3, env


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


def pass_env(work, api_url, endpoint, secret_arn):
    """The environment of a pass, the same for both tools."""
    return clean_env(
        LOG_API_URL=api_url, BUCKET_NAME=BUCKET, FERNET_SECRET_ID=secret_arn,
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        # Neither SDK reads a developer's ~/.aws files: both start alike and see only these.
        AWS_CONFIG_FILE=work / "no-aws-config",
        AWS_SHARED_CREDENTIALS_FILE=work / "no-aws-credentials")


def timed_passes(args, launcher, env):
    """A warm-up pass of each tool, --runs passes of each interleaved, then log-etl's repeat of
    run 1; the (Measured, summary) pairs of each tool and the repeat's."""
    # One untimed pass each warms the page cache (binary, Python modules) and moto.
    rust_pass(launcher, env, "bench/warm-up", "log-etl run (warm-up)")
    python_pass(launcher, env, "reference.py pass (warm-up)")

    rust, py = [], []
    for i in range(1, args.runs + 1):  # interleaved, so drift falls on both alike
        rust.append(rust_pass(launcher, env, f"bench/run-{i}", f"log-etl run {i}"))
        py.append(python_pass(launcher, env, f"reference.py pass {i}"))
        say(f"  pass {i}/{args.runs}: log-etl {rust[-1][0].wall_s * 1000:7.1f} ms "
            f"{rust[-1][0].peak_rss_mib:5.1f} MiB   python {py[-1][0].wall_s * 1000:7.1f} ms "
            f"{py[-1][0].peak_rss_mib:5.1f} MiB")
    repeat = rust_pass(launcher, env, "bench/run-1", "log-etl run (repeat)", expect_new=False)
    return rust, py, repeat


def rust_pass(launcher, env, prefix, label, expect_new=True):
    """One log-etl run under `prefix`, checked: all records written, as new objects unless
    `expect_new` is false (then every object already present)."""
    m = launcher.run([str(BIN), "run"], dict(env, KEY_PREFIX=f"{prefix}/data",
                                             QUARANTINE_PREFIX=f"{prefix}/quarantine"),
                     label, timeout_s=120)
    s = m.summary(label)
    if s["records_in"] != PASS_RECORDS or s["records_landed"] != PASS_RECORDS:
        raise BenchError(f"{label}: records_in {s['records_in']}, records_landed "
                         f"{s['records_landed']}; expected {PASS_RECORDS}")
    if expect_new and (s["objects_written"] < 1 or s["objects_already_present"]):
        raise BenchError(f"{label}: objects_written {s['objects_written']}, "
                         f"already present {s['objects_already_present']} under a new "
                         "prefix")
    if not expect_new and (s["objects_written"] or not s["objects_already_present"]):
        raise BenchError(f"{label}: repeat pass wrote {s['objects_written']} objects")
    return m, s


def python_pass(launcher, env, label):
    """One reference.py pass, checked for PASS_RECORDS records."""
    m = launcher.run([PYTHON, str(REFERENCE), "pass"], env, label, timeout_s=120)
    r = m.summary(label)
    if r["records"] != PASS_RECORDS:
        raise BenchError(f"{label}: {r['records']} records, expected {PASS_RECORDS}")
    return m, r


def check_bucket(s3, runs):
    """What landed: every run's objects read back from the bucket."""
    for i in range(1, runs + 1):
        got = bucket_records(s3, f"bench/run-{i}/data/")
        if got != PASS_RECORDS:
            raise BenchError(f"s3://{BUCKET}/bench/run-{i}/data/ holds {got} records, "
                             f"expected {PASS_RECORDS}")
    ref_got = bucket_records(s3, "reference/")
    if ref_got != PASS_RECORDS:
        raise BenchError(f"s3://{BUCKET}/reference/ holds {ref_got} records, "
                         f"expected {PASS_RECORDS}")


def bucket_records(s3, prefix):
    records = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
            records += ndjson_lines(body)
    return records


def pass_stats(runs, own_ms):
    """Min and median wall ms, largest peak RSS MiB, median of the tool's own ms."""
    walls = [m.wall_s * 1000 for m, _ in runs]
    return (min(walls), statistics.median(walls), max(m.peak_rss_mib for m, _ in runs),
            statistics.median(own_ms(s) for _, s in runs))


def report_pass(rust, py, repeat, results):
    """The pass table, the ratios against their targets, and results["pass"]."""
    repeat, repeat_summary = repeat
    r_min, r_med, r_rss, r_own = pass_stats(rust, lambda s: s["duration_ms"])
    p_min, p_med, p_rss, p_own = pass_stats(py, lambda r: r["seconds"] * 1000)
    say()
    rows = [
        ("log-etl run", len(rust), f"{r_min:.1f}", f"{r_med:.1f}", f"{r_own:.1f}", f"{r_rss:.1f}",
         fmt_int(rust[-1][1]["bytes_out"])),
        ("python reference pass", len(py), f"{p_min:.1f}", f"{p_med:.1f}", f"{p_own:.1f}",
         f"{p_rss:.1f}", fmt_int(py[-1][1]["bytes_out"])),
        ("log-etl run, repeat pass", 1, f"{repeat.wall_s * 1000:.1f}", "",
         f"{repeat_summary['duration_ms']:.1f}", f"{repeat.peak_rss_mib:.1f}",
         f"{repeat_summary['objects_already_present']} objects present"),
    ]
    say(table(["tool", "runs", "min ms", "median ms", "own ms", "peak RSS MiB", "bytes out"],
              rows))
    say("  (wall: spawn to exit of a new process: start-up, Secrets Manager, GET, transform, "
        "PutObject; own ms: the tool's own\n   figure, median; the reference's starts before "
        "it imports boto3; repeat pass: run 1's batch again, every key already present)")
    speed_min, speed_med = p_min / r_min, p_med / r_med
    say()
    say(f"  cold pass, python / log-etl wall:  {fmt_ratio(speed_min)} (min)  "
        f"{fmt_ratio(speed_med)} (median)   {target_note(speed_med, PASS_SPEEDUP_TARGET, True)} "
        "(median)")
    say(f"  log-etl peak RSS:                  {r_rss:.1f} MiB   "
        f"{target_note(r_rss, PASS_RSS_TARGET_MIB, False, ' MiB')};  python {p_rss:.1f} MiB")
    results["pass"] = {"runs": len(rust), "min": r_min, "median": r_med, "rss": r_rss,
                       "ref_min": p_min, "ref_median": p_med, "ref_rss": p_rss,
                       "speed_min": speed_min, "speed_median": speed_med}


# --- pipeline ----------------------------------------------------------------------------------

def pipeline(args, results):
    section("pipeline: cargo bench --bench pipeline (pure pipeline, one core, in process)")
    argv = ["cargo", "bench", "--bench", "pipeline"]
    if args.pipeline_records:
        argv += ["--", str(args.pipeline_records)]
    say(f"  $ {shlex.join(argv)}")
    env = clean_env(LOG_ETL_PYTHON=PYTHON)
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    speedup = None
    try:
        for line in child.stdout:
            say("  | " + line.rstrip("\n"))
            if line.strip().startswith("speed-up"):
                speedup = line.split()[-1]
    finally:
        child.stdout.close()
        if child.wait() != 0:
            raise BenchError(f"cargo bench exited with status {child.returncode}")
    results["pipeline"] = {"speedup": speedup}


# --- Summary -----------------------------------------------------------------------------------

def summary(results, failures, command):
    section("summary (for the README)")
    o, p, b = results.get("offline"), results.get("pass"), results.get("pipeline")
    say(f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, {cpu_model()}, "
        f"nproc {len(os.sched_getaffinity(0))}, load average {load_average()} at the end:")
    say()
    if o:
        say(summary_offline(o))
    if p:
        say(summary_pass(p))
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
            f"{fmt_int(o['rate_median'])} records/s (median of runs; best "
            f"{fmt_int(o['rate_best'])}), Python {fmt_int(o['ref_rate'])} records/s: "
            f"**{o['speed_median']:.0f}x** (best {o['speed_best']:.0f}x). Peak RSS "
            f"{o['rss']:.0f} MiB vs {o['ref_rss']:,.0f} MiB."
            f" {o['bytes_per_record']:.1f} vs {o['ref_bytes_per_record']:.1f} bytes/record "
            "gzip'd (log-etl's default level vs the reference's 9).")


def summary_pass(p):
    """The summary's line for the pass section."""
    return (f"- One scheduled pass of {PASS_RECORDS} records, cold process, against moto and the "
            f"simulator: log-etl {p['median']:.0f} ms (median of {p['runs']}; min "
            f"{p['min']:.0f}), Python {p['ref_median']:.0f} ms: **{p['speed_median']:.1f}x "
            f"faster**. Peak RSS {p['rss']:.0f} MiB vs {p['ref_rss']:.0f} MiB.")


# --- Command line ------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=os.environ.get("LOG_ETL_BENCH_ENTRY", "bench/compare.py"),
        description="Benchmarks log-etl against the Python reference and prints the figures.")
    parser.add_argument("command", nargs="?", default="all",
                        choices=["all", "offline", "pass", "pipeline"])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--reference-records", type=int)
    parser.add_argument("--log-etl-runs", type=int, default=3)
    parser.add_argument("--reference-runs", type=int)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pipeline-records", type=int)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args(argv)
    if args.records < 1 or args.log_etl_runs < 1 or args.runs < 1:
        parser.error("--records, --log-etl-runs and --runs must be at least 1")
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
        "pass": lambda: pass_bench(args, launcher, scratch, results),
        "pipeline": lambda: pipeline(args, results),
    }
    for name, step in steps.items():
        if args.command not in ("all", name):
            continue
        try:
            step()
        except (BenchError, OSError, subprocess.CalledProcessError) as err:
            say(f"  FAILED: {err}")
            failures.append((name, err))
        except Exception as err:  # boto3 and moto errors: report, go on with the next step
            say(f"  FAILED: {type(err).__name__}: {err}")
            failures.append((name, err))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

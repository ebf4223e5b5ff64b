"""The pass section: one scheduled pass, cold process, against the log-API simulator and moto,
log-etl run against reference.py pass, interleaved; then what exactly once costs a pass (its
listings and reads) into new hours, for the same batch again, and at the end of a busy hour.
"""

import contextlib
import statistics

from bucket import BUCKET, SECRET_NAME, bucket_records, list_keys, pass_env, prefixed, \
    serve_files, start_moto, start_simulator
from harness import BenchError, say, target_note
from logetl import BUSY_HOUR, BUSY_HOUR_BATCHES, PASS_RECORDS, PYTHON, REFERENCE, begin, \
    hour_batches, log_etl, mib, new_key
from report import Column, Report, Summary, Table

SPEEDUP_TARGET = 10.0
RSS_TARGET_MIB = 32.0

PASS_COLUMNS = [Column("tool", "tool"), Column("runs", "runs"), Column("min ms", "min", ".1f"),
                Column("median ms", "median", ".1f"), Column("own ms", "own", ".1f"),
                Column("peak RSS MiB", "rss", ".1f"), Column("bytes out", "bytes", ",.0f")]
PASS_NOTES = ["  (wall: spawn to exit of a new process: start-up, Secrets Manager, GET, "
              "transform, PutObject; own ms: the tool's own\n   figure, median; peak RSS: the "
              "largest of the runs; the reference's starts before it imports boto3)"]
ONCE_COLUMNS = [Column("case", "case"), Column("runs", "runs"), Column("LIST", "lists", "g"),
                Column("GET", "objects_read", "g"), Column("S3 requests", "requests", "g"),
                Column("read ms", "existing_read_ms", "g"), Column("own ms", "duration_ms", "g"),
                Column("share", "share", ".0%"), Column("wall ms", "wall_ms", ".1f")]
ONCE_CAPTION = "exactly once: what a pass reads to learn what its hours hold (medians)"
ONCE_NOTES = ["  (LIST: listings of an hour folder, GET: objects read, both from the summary's "
              "lists and objects_read; read ms:\n   existing_read_ms, the time they took; own ms: "
              "the pass's duration_ms; share: read ms / own ms; wall: spawn to exit)"]
VERDICTS = [
    "cold pass, python / log-etl wall:  {speed_min:,.1f}x (min)  {speed_median:,.1f}x (median)   "
    "{speed_target} (median)",
    "log-etl peak RSS, worst of {runs}:     {rss:.1f} MiB   {rss_target};  python "
    "{ref_rss:.1f} MiB",
]
SUMMARIES = [
    Summary(f"- One scheduled pass of {PASS_RECORDS} records, cold process, against moto and the "
            "simulator: log-etl {median:.0f} ms (median of {runs}; min {min:.0f}), Python "
            "{ref_median:.0f} ms: **{speed_median:.1f}x faster**. Peak RSS {rss:.0f} MiB (worst) "
            "vs {ref_rss:.0f} MiB."),
    Summary("- Exactly once, what a pass reads first (medians): {each}.",
            "{case}: {lists:g} LIST + {objects_read:g} GET, {existing_read_ms:g} ms of a "
            "{duration_ms:g} ms pass", table=1),
]


def run(args, launcher, scratch):
    import boto3  # the venv's; imported here so offline and pipeline need nothing outside stdlib

    begin(f"pass: one scheduled pass of {PASS_RECORDS} records, cold process, "
          "simulator + moto (S3, Secrets Manager)")
    work = scratch / "pass"
    work.mkdir()
    # Stopped at the end, failed or not, the last started first.
    with contextlib.ExitStack() as servers:
        s3, env, key_file = start_servers(boto3, servers, work)
        rust, py, again = timed_passes(args, launcher, env)
        busy = busy_hour_passes(args, launcher, servers, work, s3, env, key_file)
        check_bucket(s3, args.runs)
    return report(rust, py, again, busy)


def start_servers(boto3, servers, work):
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
    m = launcher.run(log_etl("run"), prefixed(env, prefix), label, timeout_s=120)
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
    keys = land_busy_hour(launcher, s3, env, key_file, batches[:-1], template)
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


def land_busy_hour(launcher, s3, env, key_file, batches, template):
    """The busy hour's earlier `batches` landed under `template` with log-etl process --bucket,
    one object each; their keys."""
    for k, response in enumerate(batches, 1):
        label = f"log-etl process --bucket (batch {k} of the busy hour)"
        m = launcher.run(log_etl("process", "--key-file", key_file, "--input", response,
                                 "--bucket", BUCKET), prefixed(env, template), label,
                         timeout_s=120)
        if m.summary(label)["records_landed"] != PASS_RECORDS:
            raise BenchError(f"{label}: {m.summary(label)['records_landed']} records landed")
    keys = list_keys(s3, f"{template}/data/")
    if len(keys) != BUSY_HOUR_BATCHES:
        raise BenchError(f"the busy hour holds {len(keys)} objects, expected "
                         f"{BUSY_HOUR_BATCHES}")
    return keys


def check_bucket(s3, runs):
    """What landed: every run's objects read back from the bucket."""
    for prefix, records in [*((f"bench/run-{i}/data/", PASS_RECORDS) for i in range(1, runs + 1)),
                            *((f"bench/busy-{i}/data/", (BUSY_HOUR_BATCHES + 1) * PASS_RECORDS)
                              for i in range(1, runs + 1)),
                            ("reference/", PASS_RECORDS)]:
        got = bucket_records(s3, prefix)
        if got != records:
            raise BenchError(f"s3://{BUCKET}/{prefix} holds {got} records, expected {records}")


def pass_row(tool, runs, own_ms, bytes_out):
    """Min and median wall ms, largest peak RSS MiB, median of the tool's own ms."""
    walls = [m.wall_s * 1000 for m, _ in runs]
    return {"tool": tool, "runs": len(runs), "min": min(walls), "median": statistics.median(walls),
            "rss": max(m.peak_rss_mib for m, _ in runs),
            "own": statistics.median(own_ms(s) for _, s in runs), "bytes": bytes_out}


def once_row(case, runs):
    """What exactly once cost the passes of one case: medians of their listings, reads, read
    time, own time and wall time."""
    med = {f: statistics.median(s[f] for _, s in runs)
           for f in ("lists", "objects_read", "existing_read_ms", "duration_ms")}
    share = med["existing_read_ms"] / med["duration_ms"] if med["duration_ms"] else 0.0
    return dict(med, case=case, runs=len(runs), requests=med["lists"] + med["objects_read"],
                share=share, wall_ms=statistics.median(m.wall_s * 1000 for m, _ in runs))


def report(rust, py, again, busy):
    """The figures: the pass of each tool and the pass again, the ratios against their targets,
    and what exactly once costs in three cases."""
    r = pass_row("log-etl run", rust, lambda s: s["duration_ms"], rust[-1][1]["bytes_out"])
    p = pass_row("python reference pass", py, lambda s: s["seconds"] * 1000,
                 py[-1][1]["bytes_out"])
    a = pass_row("log-etl run, the same batch again", again, lambda s: s["duration_ms"],
                 "0 (all present)")
    speed_min, speed_median = p["min"] / r["min"], p["median"] / r["median"]
    facts = {"runs": r["runs"], "min": r["min"], "median": r["median"], "rss": r["rss"],
             "ref_median": p["median"], "ref_rss": p["rss"], "speed_min": speed_min,
             "speed_median": speed_median,
             "speed_target": target_note(speed_median, SPEEDUP_TARGET, True),
             "rss_target": target_note(r["rss"], RSS_TARGET_MIB, False, " MiB")}
    once = [once_row("into hours holding nothing", rust), once_row("the same batch again", again),
            once_row(f"end of an hour holding {BUSY_HOUR_BATCHES} batches", busy)]
    tables = [Table(PASS_COLUMNS, [r, p, a], notes=PASS_NOTES, verdicts=VERDICTS),
              Table(ONCE_COLUMNS, once, caption=ONCE_CAPTION, notes=ONCE_NOTES)]
    return Report(facts, tables, SUMMARIES)

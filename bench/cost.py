"""The cost section: what a month of one deployment costs on AWS, from measured counts. Real
passes of the release binary (log-etl run, cold processes) against moto, over one hour of
batches at the source's rate (100 records every 3 minutes) and at 100 times that (10,000), then
log-etl compact --bucket of that closed hour: S3 requests by type (from moto's own request log,
checked against the summaries' lists, objects_read and objects_written), Secrets Manager calls,
durations, log bytes and landed bytes per record. The template gives memory sizes, schedules,
alarms and the dashboard; src/lambda/metrics.rs the custom metrics. PRICES is the one list of
prices, each with its page and the date it was read. It prints the README's table rows.
"""

import contextlib
import datetime
import json
import math
import re
import statistics
from dataclasses import dataclass

from bucket import BUCKET, SECRET_NAME, list_keys, pass_env, prefixed, serve_files, start_moto
from harness import BenchError, say
from logetl import BATCH_SECONDS, BUSY_HOUR, ROOT, begin, clean_env, log_etl, new_key
from report import Column, Report, Summary, Table

# --- Prices: us-east-1, on-demand, arm64 Lambda; the one place they are written --------------


@dataclass
class Price:
    """A price, its unit, the AWS page that lists it and when it was read there; `seen` says
    whether the stored copy read showed the figure itself (else it is the figure as listed on
    that page, not found in the stored copy)."""

    usd: float
    unit: str
    url: str
    read: str
    seen: str


READ = "2026-12-01"
NOT_SEEN = "as listed on the page (not found in the stored copy read)"
PRICES = {
    "lambda_gb_s": Price(0.0000133334, "GB-second, arm64 (first 7.5 billion a month)",
                         "https://aws.amazon.com/lambda/pricing/", READ,
                         NOT_SEEN + "; the stored copy gives the rounding up to 1 ms"),
    "lambda_requests": Price(0.20, "million requests", "https://aws.amazon.com/lambda/pricing/",
                             READ, NOT_SEEN),
    "s3_storage": Price(0.023, "GB-month, S3 Standard (first 50 TB)",
                        "https://aws.amazon.com/s3/pricing/", READ,
                        NOT_SEEN + " (its price cells are unrendered there)"),
    "s3_put_list": Price(0.005, "1,000 PUT, COPY, POST or LIST requests",
                         "https://aws.amazon.com/s3/pricing/", READ, NOT_SEEN),
    "s3_get": Price(0.0004, "1,000 GET requests", "https://aws.amazon.com/s3/pricing/", READ,
                    NOT_SEEN),
    "s3_delete": Price(0.0, "DELETE request (free)", "https://aws.amazon.com/s3/pricing/", READ,
                       NOT_SEEN),
    "secret_month": Price(0.40, "secret-month", "https://aws.amazon.com/secrets-manager/pricing/",
                          READ, NOT_SEEN),
    "secret_calls": Price(0.05, "10,000 API calls",
                          "https://aws.amazon.com/secrets-manager/pricing/", READ, NOT_SEEN),
    "cw_alarm": Price(0.10, "standard-resolution alarm metric-month",
                      "https://aws.amazon.com/cloudwatch/pricing/", READ,
                      NOT_SEEN + "; the stored copy gives the free tier only"),
    "cw_dashboard": Price(3.00, "dashboard-month", "https://aws.amazon.com/cloudwatch/pricing/",
                          READ, NOT_SEEN),
    "cw_metric": Price(0.30, "custom metric-month (first 10,000)",
                       "https://aws.amazon.com/cloudwatch/pricing/", READ, NOT_SEEN),
    "cw_logs": Price(0.50, "GB of logs ingested (standard)",
                     "https://aws.amazon.com/cloudwatch/pricing/", READ, NOT_SEEN),
    "scheduler": Price(1.00, "million Scheduler invocations",
                       "https://aws.amazon.com/eventbridge/pricing/", READ,
                       NOT_SEEN + "; cloudburn.io/blog/amazon-eventbridge-pricing lists the same"),
    "athena_tb": Price(5.00, "TB scanned (10 MB minimum a query)",
                       "https://aws.amazon.com/athena/pricing/", READ,
                       NOT_SEEN + "; athena.guide and rcpedia.stanford.edu list the same"),
    "firehose_gb": Price(0.029, "GB ingested by Direct PUT (first 500 TB; each record rounded up "
                         "to 5 KB)", "https://aws.amazon.com/firehose/pricing/", READ,
                         "5 KB rounding seen in the stored copy of aws.amazon.com/de/kinesis/"
                         "data-firehose/pricing/; the per-GB figure " + NOT_SEEN),
}
# Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB.
ONE_VCPU_MB = 1769
ONE_VCPU_SOURCE = "https://docs.aws.amazon.com/lambda/latest/dg/resource-model.html"
# What the free tier would cover (not subtracted in the table).
FREE_TIER = ("Lambda 1M requests and 400,000 GB-s a month; CloudWatch 10 custom metrics, 10 alarm "
             "metrics, 3 dashboards, 5 GB of logs; EventBridge Scheduler 14M invocations; S3 "
             "(the first 12 months only) 5 GB, 20,000 GET, 2,000 PUT/LIST")

# --- The load ----------------------------------------------------------------------------------

PASSES_PER_DAY = 24 * 3600 // BATCH_SECONDS  # 480: every 3 minutes
DAYS = 30
PASSES_PER_HOUR = 3600 // BATCH_SECONDS  # 20
RATES = [("source's rate", 100, 300), ("100x", 10_000, 16)]  # (name, records a pass, ms apart)
ATHENA_QUERIES_PER_DAY = 10
MB = 1_000_000
GB = 1_000_000_000
TB = 1_000_000_000_000
# Lambda's JSON log format: the CLI's log settings that stand for the function's.
LAMBDA_LOG_ENV = {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"}

REQUEST = re.compile(r'"(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP/[\d.]+" (\d{3})')
COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours the lines of some statuses


def run(args, launcher, scratch):
    import boto3  # the venv's, as the pass section does

    begin("cost: one hour of scheduled passes at two rates, then its compaction, against moto; "
          "the monthly AWS cost from those counts")
    work = scratch / "cost"
    work.mkdir()
    template = read_template()
    metrics = custom_metrics()
    rates = []
    with contextlib.ExitStack() as servers:
        endpoint, session = start_moto(boto3, servers, work)
        log = RequestLog(work / "moto.log")
        key_file = new_key(work)
        secret_arn = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
            Name=SECRET_NAME, SecretString=key_file.read_text().strip())["ARN"]
        s3 = session.client("s3", endpoint_url=endpoint)
        env = pass_env(work, "http://127.0.0.1:9/unused", endpoint, FERNET_SECRET_ID=secret_arn)
        for name, records, interval_ms in RATES:
            rates.append(measure_rate(launcher, servers, work, s3, env, log, key_file, name,
                                      records, interval_ms))
        backfill = measure_backfill(launcher, work, s3, env, log, key_file, rates[-1])
    monthly = [month(r, template, metrics) for r in rates]
    print_readme_rows(rates, monthly, template, metrics, backfill)
    return report(rates, monthly)


# --- Measuring ---------------------------------------------------------------------------------

class RequestLog:
    """moto's request log (werkzeug's access lines): the requests made since the last read,
    counted by type."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def since_last(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
            self.offset = f.tell()
        counts = {"LIST": 0, "GET": 0, "PUT": 0, "DELETE": 0, "HEAD": 0, "SECRETS": 0,
                  "OTHER": 0}
        for method, path, _status in REQUEST.findall(COLOUR.sub("", text)):
            counts[kind(method, path)] += 1
        return counts


def kind(method, path):
    """The billing kind of one request to moto: S3 (path style, the bench's bucket) or Secrets
    Manager (a POST to the root)."""
    bucket_path, _, query = path.partition("?")
    on_bucket = bucket_path.rstrip("/") == f"/{BUCKET}"
    if method == "POST" and bucket_path == "/":
        return "SECRETS"
    if method == "GET" and on_bucket and ("list-type" in query or "prefix" in query):
        return "LIST"
    if method == "POST" and on_bucket and "delete" in query:
        return "DELETE"  # DeleteObjects: billed as DELETE (free)
    if bucket_path.startswith(f"/{BUCKET}/") and method in ("GET", "PUT", "DELETE", "HEAD"):
        return method
    return "OTHER"


def measure_rate(launcher, servers, work, s3, env, log, key_file, name, records, interval_ms):
    """One hour of passes at `records` a pass into an empty prefix (each a new batch, 3 minutes
    after the last), one more pass with the Lambda's log settings for its log bytes, then the
    compaction of the closed hour: the counts, durations and bytes."""
    folder = work / f"batches-{records}"
    batches = generate_hour(launcher, folder, key_file, records, interval_ms)
    url = serve_files(servers, work / f"serve-{records}", {p.name: p for p in batches})
    prefix = f"cost/r{records}"
    penv = prefixed(env, prefix)
    log.since_last()
    passes = []
    for k, batch in enumerate(batches, 1):
        label = f"log-etl run ({name}, pass {k})"
        m = launcher.run(log_etl("run"), dict(penv, LOG_API_URL=url + batch.name), label,
                         timeout_s=300)
        s = m.summary(label)
        requests = log.since_last()
        check_pass(label, s, requests, records, k)
        passes.append({"wall_ms": m.wall_s * 1000, "summary": s, "requests": requests})
    say(f"  {name}: {len(passes)} passes of {records:,} records, wall "
        + ", ".join(f"{p['wall_ms']:.0f}" for p in passes) + " ms")
    log_bytes = pass_log_bytes(prefixed(env, f"cost/log-r{records}"), url + batches[-1].name,
                               records)
    log.since_last()
    compaction = compact_hour(launcher, penv, log, s3, prefix, records)
    return {"name": name, "records": records, "passes": passes, "log_bytes": log_bytes,
            "compaction": compaction}


def generate_hour(launcher, folder, key_file, records, interval_ms):
    """PASSES_PER_HOUR responses of `records` records, the first at BUSY_HOUR, each
    BATCH_SECONDS after the one before, all in that hour; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    first = datetime.datetime.fromisoformat(BUSY_HOUR.replace("Z", "+00:00"))
    paths = []
    for k in range(PASSES_PER_HOUR):
        at = first + datetime.timedelta(seconds=BATCH_SECONDS * k)
        path = folder / f"batch-{k + 1:02d}.json"
        launcher.run(log_etl("generate", "--key-file", key_file, "--records", records,
                             "--interval-ms", interval_ms, "--seed", k + 1,
                             "--start", at.strftime("%Y-%m-%dT%H:%M:%SZ"), "--out", path),
                     clean_env(), "log-etl generate", timeout_s=120)
        paths.append(path)
    return paths


def check_pass(label, s, requests, records, k):
    """A pass of a new batch: every record landed in one hour, none quarantined; it listed,
    read the k - 1 objects before it, wrote one; moto saw the same, and one secret read."""
    problems = []
    if (s["records_in"], s["records_landed"], s["records_quarantined"]) != (records, records, 0):
        problems.append(f"records in/landed/quarantined {s['records_in']}/{s['records_landed']}"
                        f"/{s['records_quarantined']}, expected {records}/{records}/0")
    if s["lists"] < 1 or requests["LIST"] < 1:
        problems.append(f"no LIST (summary {s['lists']}, moto {requests['LIST']})")
    if s["objects_read"] != k - 1:
        problems.append(f"objects_read {s['objects_read']}, expected {k - 1}")
    if (requests["LIST"], requests["GET"], requests["PUT"]) != (
            s["lists"], s["objects_read"], s["objects_written"]):
        problems.append(f"moto saw {requests}, the summary lists {s['lists']}, objects_read "
                        f"{s['objects_read']}, objects_written {s['objects_written']}")
    if requests["SECRETS"] != 1:
        problems.append(f"{requests['SECRETS']} Secrets Manager calls, expected 1")
    if problems:
        raise BenchError(f"{label}: " + "; ".join(problems))


def pass_log_bytes(env, url, records):
    """Bytes a pass of a new batch (into a prefix of its own) logs as the function logs them:
    stderr of log-etl run with the Lambda's log settings, and the EMF line the function prints
    (its metric declaration, the summary's figures and the metric values, as
    src/lambda/metrics.rs emf_line builds it)."""
    import subprocess  # a separate run: the Launcher keeps only stderr's tail
    out = subprocess.run(log_etl("run"), env=dict(env, LOG_API_URL=url, **LAMBDA_LOG_ENV),
                         capture_output=True, timeout=300, cwd=ROOT)
    if out.returncode != 0:
        raise BenchError(f"log-etl run (log bytes): exit {out.returncode}: {out.stderr[-500:]!r}")
    summary = json.loads(out.stdout.decode().strip().splitlines()[-1])
    if summary["records_landed"] != records:
        raise BenchError(f"log-etl run (log bytes): {summary['records_landed']} landed, "
                         f"expected {records}")
    emf = emf_line(summary, custom_metrics()["pass"])
    return {"stderr": len(out.stderr), "emf": len(emf.encode()) + 1}


def emf_line(summary, names):
    doc = {"_aws": {"Timestamp": 1764547200000, "CloudWatchMetrics": [{
        "Namespace": "LogEtl", "Dimensions": [["FunctionName"]],
        "Metrics": [{"Name": n, "Unit": u} for n, u in names]}]},
        "FunctionName": "log-etl-LogEtlFunction-ABCDEFGHIJKL"}
    doc.update(summary)
    doc.update({n: 0 for n, _ in names})
    return json.dumps(doc, separators=(",", ":"))


def compact_hour(launcher, env, log, s3, prefix, records):
    """log-etl compact --bucket over the compaction function's lookback (COMPACT_LOOKBACK_HOURS
    hours ending with the closed hour), twice: the run that merges the hour, and the next one,
    with nothing left to merge. Requests, durations, and the merged object's bytes per record."""
    hour = datetime.datetime.fromisoformat(BUSY_HOUR.replace("Z", "+00:00"))
    start = hour - datetime.timedelta(hours=read_template()["lookback_hours"] - 1)
    hours = f"{start:%Y-%m-%dT%H}..{hour:%Y-%m-%dT%H}"
    runs = []
    for n in (1, 2):
        label = f"log-etl compact --bucket ({records:,} a pass, run {n})"
        m = launcher.run(log_etl("compact", "--bucket", BUCKET, "--hours", hours), env, label,
                         timeout_s=900)
        runs.append({"wall_ms": m.wall_s * 1000, "summary": m.summary(label),
                     "requests": log.since_last()})
    merged, idle = runs
    s = merged["summary"]
    if (s["hours_compacted"], s["objects_read"], s["objects_deleted"], s["records"]) != (
            1, PASSES_PER_HOUR, PASSES_PER_HOUR, PASSES_PER_HOUR * records):
        raise BenchError(f"compaction of {prefix}: {json.dumps(s)}; expected 1 hour, "
                         f"{PASSES_PER_HOUR} objects read and deleted, "
                         f"{PASSES_PER_HOUR * records} records")
    if idle["summary"]["hours_compacted"] != 0:
        raise BenchError(f"a second compaction of {prefix} merged again: {idle['summary']}")
    keys = list_keys(s3, f"{prefix}/data/")
    if len(keys) != 1:
        raise BenchError(f"{prefix}/data/ holds {len(keys)} objects after compaction, expected 1")
    size = s3.head_object(Bucket=BUCKET, Key=keys[0])["ContentLength"]
    say(f"  compaction of the hour ({records:,} a pass): {merged['wall_ms']:.0f} ms, "
        f"{merged['requests']}; the next run {idle['wall_ms']:.0f} ms, {idle['requests']}")
    return {"merged": merged, "idle": idle, "bytes_per_record": size / (PASSES_PER_HOUR * records)}


def measure_backfill(launcher, work, s3, env, log, key_file, rate):
    """log-etl backfill --bucket of the hour of batches of `rate`, saved in the bucket, into a
    prefix of its own: what the backfill function does with them, its requests and duration."""
    saved = "cost/saved/"
    batches = sorted((work / f"batches-{rate['records']}").glob("batch-*.json"))
    for path in batches:
        s3.upload_file(str(path), BUCKET, saved + path.name)
    log.since_last()
    label = "log-etl backfill --bucket"
    m = launcher.run(log_etl("backfill", "--bucket", BUCKET, "--prefix", saved, "--key-file",
                             key_file), prefixed(env, "cost/backfill"), label, timeout_s=900)
    s = m.summary(label)
    expected = len(batches) * rate["records"]
    if (s["responses"], s["records_in"], s["records_landed"]) != (len(batches), expected,
                                                                  expected):
        raise BenchError(f"{label}: {json.dumps(s)}; expected {len(batches)} responses, "
                         f"{expected} records landed")
    requests = log.since_last()
    say(f"  backfill of {len(batches)} saved responses ({expected:,} records): "
        f"{m.wall_s * 1000:.0f} ms, {requests}")
    return {"summary": s, "requests": requests, "wall_ms": m.wall_s * 1000, "records": expected}


def print_backfill(b, template):
    """The backfill function's cost per use, per million records (it scales with the records)."""
    gb = template["functions"]["backfill"]["memory_mb"] / 1024
    per_m = 1e6 / b["records"]
    ms = math.ceil(b["summary"]["duration_ms"] or 1)
    r = b["requests"]
    gb_s = ms / 1000 * gb * per_m
    usd = (gb_s * PRICES["lambda_gb_s"].usd
           + (r["LIST"] + r["PUT"]) * per_m / 1000 * PRICES["s3_put_list"].usd
           + r["GET"] * per_m / 1000 * PRICES["s3_get"].usd)
    say(f"| Lambda backfill, per use (per million records; measured on {b['records']:,}) | "
        f"{ms:,} ms x {gb:.2f} GB per {b['records']:,} records: {gb_s:,.1f} GB-s and "
        f"{(r['LIST'] + r['PUT'] + r['GET']) * per_m:,.0f} S3 requests "
        f"({r['LIST'] * per_m:,.0f} LIST, {r['GET'] * per_m:,.0f} GET, {r['PUT'] * per_m:,.0f} "
        f"PUT) a million records: **{money(usd)}** |")


# --- What the template and the code declare ---------------------------------------------------

def read_template():
    """Memory of each function (its own MemorySize, else the Globals'), the alarms and the metrics
    each names, dashboards, schedules, the secret's cache TTL and the compaction's lookback."""
    text = (ROOT / "template.yaml").read_text()
    globals_memory = int(re.search(r"^Globals:.*?^    MemorySize: (\d+)", text, re.S | re.M)[1])
    resources = re.split(r"^  (\w+):\n", text.split("\nResources:\n", 1)[1], flags=re.M)
    blocks = dict(zip(resources[1::2], resources[2::2]))
    functions, alarms, dashboards = {}, [], 0
    for name, body in blocks.items():
        typ = re.search(r"^    Type: (\S+)", body, re.M)
        typ = typ[1] if typ else ""
        if typ == "AWS::Serverless::Function":
            job = re.search(r"LOG_ETL_JOB: (\w+)", body)
            memory = re.search(r"^      MemorySize: (\d+)", body, re.M)
            functions[job[1] if job else "pass"] = {
                "resource": name, "memory_mb": int(memory[1]) if memory else globals_memory}
        elif typ == "AWS::CloudWatch::Alarm":
            alarms.append(max(1, len(re.findall(r"MetricName:", body))))
        elif typ == "AWS::CloudWatch::Dashboard":
            dashboards += 1
    def default(param):
        return int(re.search(rf"^  {param}:\n(?:    .*\n)*?    Default: (\d+)", text, re.M)[1])
    if "pass" not in functions or "compact" not in functions or not alarms:
        raise BenchError(f"template.yaml: functions {functions}, alarms {alarms}")
    return {"functions": functions, "alarms": len(alarms), "alarm_metrics": sum(alarms),
            "dashboards": dashboards, "key_ttl_s": default("KeyCacheTtlSeconds"),
            "lookback_hours": default("CompactLookbackHours"),
            "log_retention_days": default("LogRetentionInDays")}


def custom_metrics():
    """The EMF metrics each job emits (name, unit), read from src/lambda/metrics.rs: each is a
    custom metric for each function (one dimension, FunctionName)."""
    text = (ROOT / "src" / "lambda" / "metrics.rs").read_text()
    jobs = {}
    for job, fn in (("pass", "of_pass"), ("compact", "of_compaction")):
        body = re.search(rf"pub fn {fn}\(.*?\n}}\n", text, re.S)[0]
        found = re.findall(r'count\(\s*"(\w+)"|name: "(\w+)",\s*unit: "(\w+)"', body)
        jobs[job] = [(c or n, "Count" if c else u) for c, n, u in found]
    if not jobs["pass"] or not jobs["compact"]:
        raise BenchError(f"src/lambda/metrics.rs: no metrics found: {jobs}")
    return jobs


# --- The month ---------------------------------------------------------------------------------

def month(r, template, metrics):
    """A month (DAYS days) of one deployment at rate `r`: each part's quantity and cost, without
    the free tier."""
    passes = r["passes"]
    n = PASSES_PER_DAY * DAYS
    hours = 24 * DAYS
    mean = lambda key: statistics.mean(p["requests"][key] for p in passes)
    # Billed as the handler's time, rounded up to 1 ms: the pass's own duration_ms stands for it
    # (a warm container: the schedule keeps one warm); a cold process's wall time is beside it.
    pass_ms = statistics.mean(math.ceil(p["summary"]["duration_ms"] or 1) for p in passes)
    cold_ms = statistics.median(p["wall_ms"] for p in passes)
    ingest_gb = template["functions"]["pass"]["memory_mb"] / 1024
    compact_gb = template["functions"]["compact"]["memory_mb"] / 1024
    merged, idle = r["compaction"]["merged"], r["compaction"]["idle"]
    compact_ms = math.ceil(merged["summary"]["duration_ms"] or 1)
    records_month = r["records"] * n
    bytes_landed = statistics.mean(p["summary"]["bytes_out"] / p["summary"]["records_landed"]
                                   for p in passes)
    bytes_kept = r["compaction"]["bytes_per_record"]
    stored_1 = records_month * bytes_kept / GB
    day_bytes = records_month / DAYS * bytes_kept
    athena = lambda scanned: max(scanned, 10 * MB) / TB * PRICES["athena_tb"].usd
    log_bytes = r["log_bytes"]["stderr"] + r["log_bytes"]["emf"]
    secret_reads = n * 1 / math.ceil(template["key_ttl_s"] / BATCH_SECONDS)
    p = {k: v.usd for k, v in PRICES.items()}
    parts = [
        ("Lambda ingest: GB-s", f"{n:,} x {pass_ms:.1f} ms x {ingest_gb:.2f} GB",
         n * pass_ms / 1000 * ingest_gb * p["lambda_gb_s"]),
        ("Lambda ingest: requests", f"{n:,}", n / 1e6 * p["lambda_requests"]),
        ("Lambda compaction: GB-s", f"{hours:,} x {compact_ms:,} ms x {compact_gb:.2f} GB",
         hours * compact_ms / 1000 * compact_gb * p["lambda_gb_s"]),
        ("Lambda compaction: requests", f"{hours:,}", hours / 1e6 * p["lambda_requests"]),
        ("S3 PUT + LIST, passes", f"{n:,} x ({mean('PUT'):.1f} PUT + {mean('LIST'):.1f} LIST)",
         n * (mean("PUT") + mean("LIST")) / 1000 * p["s3_put_list"]),
        ("S3 GET, passes (exactly-once reads)", f"{n:,} x {mean('GET'):.1f}",
         n * mean("GET") / 1000 * p["s3_get"]),
        ("S3 compaction: LIST + PUT / GET / DELETE",
         f"{hours:,} x ({merged['requests']['LIST']} LIST + {merged['requests']['PUT']} PUT / "
         f"{merged['requests']['GET']} GET / {merged['requests']['DELETE']} DELETE)",
         hours * ((merged["requests"]["LIST"] + merged["requests"]["PUT"]) / 1000 * p["s3_put_list"]
                  + merged["requests"]["GET"] / 1000 * p["s3_get"])),
        ("S3 storage after 1 month", f"{stored_1:,.3f} GB at its end ({bytes_kept:.1f} B/record "
         "compacted)",
         stored_1 * p["s3_storage"]),
        ("S3 storage after 12 months", f"{12 * stored_1:,.2f} GB, its 12th month",
         12 * stored_1 * p["s3_storage"]),
        ("Secrets Manager", f"1 secret + {secret_reads:,.0f} GetSecretValue",
         p["secret_month"] + secret_reads / 10_000 * p["secret_calls"]),
        ("CloudWatch alarms", f"{template['alarm_metrics']} alarm metrics ({template['alarms']} "
         "alarms)", template["alarm_metrics"] * p["cw_alarm"]),
        ("CloudWatch dashboard", f"{template['dashboards']}", template["dashboards"]
         * p["cw_dashboard"]),
        ("CloudWatch custom metrics (EMF)",
         f"{len(metrics['pass'])} ingest + {len(metrics['compact'])} compaction",
         (len(metrics["pass"]) + len(metrics["compact"])) * p["cw_metric"]),
        ("CloudWatch log ingestion", f"{n:,} x {log_bytes:,} B = {n * log_bytes / GB:.3f} GB",
         n * log_bytes / GB * p["cw_logs"]),
        ("EventBridge Scheduler", f"{n + hours:,} invocations",
         (n + hours) / 1e6 * p["scheduler"]),
        (f"Athena, {ATHENA_QUERIES_PER_DAY} queries a day over a day",
         f"{day_bytes / MB:,.1f} MB scanned, billed {max(day_bytes, 10 * MB) / MB:,.0f} MB",
         ATHENA_QUERIES_PER_DAY * DAYS * athena(day_bytes)),
        (f"Athena, {ATHENA_QUERIES_PER_DAY} queries a day over a month",
         f"{day_bytes * DAYS / MB:,.0f} MB scanned", ATHENA_QUERIES_PER_DAY * DAYS
         * athena(day_bytes * DAYS)),
    ]
    total = sum(c for name, _, c in parts if name != "S3 storage after 12 months")
    # The always-free tier (FREE_TIER, S3's 12-month one left out): what it would take off.
    gb_s = n * pass_ms / 1000 * ingest_gb + hours * compact_ms / 1000 * compact_gb
    free = (min(gb_s, 400_000) * p["lambda_gb_s"]
            + min(n + hours, 1_000_000) / 1e6 * p["lambda_requests"]
            + min(len(metrics["pass"]) + len(metrics["compact"]), 10) * p["cw_metric"]
            + min(template["alarm_metrics"], 10) * p["cw_alarm"]
            + min(template["dashboards"], 3) * p["cw_dashboard"]
            + min(n * log_bytes / GB, 5) * p["cw_logs"]
            + min(n + hours, 14_000_000) / 1e6 * p["scheduler"])
    firehose_gb = records_month * 5 * 1024 / GB
    ingest_lambda = parts[0][2] + parts[1][2]
    # The local pass ran on a whole core; at its memory the function has a share of one.
    slowdown = ONE_VCPU_MB / template["functions"]["pass"]["memory_mb"]
    return {"parts": parts, "total": total, "free": free, "slowdown": slowdown,
            "cpu_bound_lambda": (parts[0][2] + parts[2][2]) * slowdown,
            "records_month": records_month, "bytes_landed": bytes_landed,
            "bytes_kept": bytes_kept, "pass_ms": pass_ms, "cold_ms": cold_ms,
            "compact_ms": compact_ms,
            "duration_ms": statistics.median(p_["summary"]["duration_ms"] for p_ in passes),
            "firehose": {"gb": firehose_gb, "ingest": firehose_gb * p["firehose_gb"],
                         "poller": ingest_lambda}}


def money(usd):
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"


def print_readme_rows(rates, monthly, template, metrics, backfill):
    """The README's table: one row a part, a column for each rate, the backfill per use; then
    Firehose's for the same volume, what was measured, and the price list."""
    say()
    say("  README rows (What it costs to run):")
    say()
    head = " | ".join(f"{r['name']}: {r['records']:,} records a pass" for r in rates)
    say(f"| part | {head} |")
    say("|---|" + "---|" * len(rates))
    for i, (name, _, _) in enumerate(monthly[0]["parts"]):
        cells = " | ".join(f"{m['parts'][i][1]}: **{money(m['parts'][i][2])}**" for m in monthly)
        say(f"| {name} | {cells} |")
    say("| **total a month** (storage after 1 month; no free tier) | "
        + " | ".join(f"**{money(m['total'])}**" for m in monthly) + " |")
    say("| the same with the always-free tier (Lambda, CloudWatch, Scheduler; not S3's first "
        "year) | " + " | ".join(f"{money(m['total'] - m['free'])} ({money(m['free'])} off)"
                                for m in monthly) + " |")
    print_backfill(backfill, template)
    say()
    say("  Amazon Data Firehose for the same volume:")
    say()
    say(f"| part | {head} |")
    say("|---|" + "---|" * len(rates))
    say("| Direct PUT ingestion (each record rounded up to 5 KB) | " + " | ".join(
        f"{m['records_month']:,} x 5 KB = {m['firehose']['gb']:,.1f} GB: "
        f"**{money(m['firehose']['ingest'])}**" for m in monthly) + " |")
    say("| a poller Lambda (Firehose cannot pull from an HTTP API): about this ingest Lambda | "
        + " | ".join(f"**{money(m['firehose']['poller'])}**" for m in monthly) + " |")
    say("| a transform Lambda (Firehose cannot decrypt Fernet) | " + " | ".join(
        "a request per buffer of records, its duration the decrypt and parse (not measured here)"
        for _ in monthly) + " |")
    say("| log-etl's data path for comparison (its Lambda and S3 request rows above) | "
        + " | ".join(f"**{money(sum(c for _, _, c in m['parts'][:7]))}**" for m in monthly)
        + " |")
    say()
    say(f"  If every millisecond were CPU-bound at the functions' share of a core "
        f"({ONE_VCPU_MB} MB is one vCPU, {ONE_VCPU_SOURCE}): Lambda GB-s x"
        f"{monthly[0]['slowdown']:.1f}: "
        + ", ".join(f"{r['name']} {money(m['cpu_bound_lambda'])}" for r, m in zip(rates, monthly)))
    for r, m in zip(rates, monthly):
        c = r["compaction"]
        say(f"  {r['name']}: pass duration_ms (rounded up) mean {m['pass_ms']:.1f} ms, median "
            f"{m['duration_ms']:.0f} ms; wall of the cold process median {m['cold_ms']:.0f} ms; "
            f"{m['bytes_landed']:.1f} B/record as landed, "
            f"{m['bytes_kept']:.1f} compacted; log {r['log_bytes']['stderr']:,} B stderr + "
            f"{r['log_bytes']['emf']:,} B EMF a pass; compaction {m['compact_ms']} ms own, "
            f"{c['merged']['wall_ms']:.0f} ms wall, {c['merged']['requests']}, the next run "
            f"{c['idle']['wall_ms']:.0f} ms "
            f"{c['idle']['requests']}")
    fns = ", ".join(f"{job} {f['memory_mb']} MB" for job, f in template["functions"].items())
    say(f"  template: {fns}; {template['alarms']} alarms ({template['alarm_metrics']} metrics), "
        f"{template['dashboards']} dashboard; secret cached {template['key_ttl_s']} s; compaction "
        f"lookback {template['lookback_hours']} h; metrics: {len(metrics['pass'])} pass, "
        f"{len(metrics['compact'])} compaction")
    say()
    say("  Prices (us-east-1, on-demand, arm64 Lambda):")
    for key, price in PRICES.items():
        say(f"  - {key}: ${price.usd:g} per {price.unit}: {price.url}, read {price.read}, "
            f"{price.seen}")
    say(f"  Free tier (not subtracted): {FREE_TIER}")


def report(rates, monthly):
    columns = [Column("rate", "name"), Column("records a pass", "records", ",.0f"),
               Column("billed ms (mean)", "pass_ms", ".1f"),
               Column("cold wall ms (median)", "cold_ms", ".0f"),
               Column("duration_ms (median)", "duration_ms", ".0f"),
               Column("B/record landed", "bytes_landed", ".1f"),
               Column("B/record compacted", "bytes_kept", ".1f"),
               Column("compaction ms", "compact_ms", ",.0f"),
               Column("$ a month", "total", ",.2f")]
    rows = [dict(name=r["name"], records=r["records"], **{k: m[k] for k in (
        "pass_ms", "cold_ms", "duration_ms", "bytes_landed", "bytes_kept", "compact_ms",
        "total")})
        for r, m in zip(rates, monthly)]
    summary = Summary("- A month of one deployment, no free tier: {each}.",
                      "{name} ({records:,} records a pass) ${total:,.2f}")
    return Report({}, [Table(columns, rows)], [summary])

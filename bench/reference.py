"""The Python script log-etl replaces, as the reference for benchmarks: the same steps, done the
way the original did them (cryptography's Fernet, a literal per record, b64uuid, a 2-entry method
map, string surgery on inDate, gzip.compress per hour, boto3 put_object). `ast.literal_eval`
stands in for the original `eval()`, which must not run on untrusted input even here.

  reference.py offline RESPONSE.json KEY OUT_DIR
      decrypt -> parse -> compact -> group by hour -> gzip, objects under OUT_DIR; prints
      {"records": n, "seconds": s, "records_per_s": r, "bytes_out": b}
  reference.py pass
      one scheduled pass: GET $LOG_API_URL, key from $FERNET_SECRET_ID (Secrets Manager), objects
      to s3://$BUCKET_NAME via boto3 (honours $AWS_ENDPOINT_URL); prints the same figures.
"""
import ast
import gzip
import json
import os
import sys
import time
from collections import defaultdict

from b64uuid import B64UUID
from cryptography.fernet import Fernet

METHODS = {"GET": 1, "POST": 2}


def b64_change_44(user_id):
    return B64UUID(user_id[:32]).string + B64UUID(user_id[32:]).string


def method_mapping(method):
    return METHODS.get(method, method)


def short_date(in_date):
    return in_date[2:].replace("-", "").replace("T", "").replace(":", "").replace(".", "").replace("Z", "")


def compress_log(log):
    tmp = log.copy()
    tmp["user_id"] = b64_change_44(tmp["user_id"])
    tmp["method"] = method_mapping(tmp["method"])
    tmp["inDate"] = short_date(tmp["inDate"])
    return tmp


def transform_logs(items, fernet):
    out = []
    for item in items:
        plain = fernet.decrypt(item["data"].encode()).decode("utf-8")
        out.append(compress_log(ast.literal_eval(plain)))
    return out


def group_by_hour(logs):
    groups = defaultdict(list)
    for log in logs:
        d = log["inDate"]  # compacted: YYMMDDhh...
        groups[(d[0:2], d[2:4], d[4:6], d[6:8])].append(log)
    return groups


def objects(groups):
    for (yy, mm, dd, hh), logs in groups.items():
        first, last = logs[0]["inDate"][8:15], logs[-1]["inDate"][8:15]
        body = gzip.compress("\n".join(json.dumps(l) for l in logs).encode("utf-8"))
        yield f"data/20{yy}/{mm}/{dd}/{hh}/{first}_{last}.json.gz", body


def offline(response_path, key, out_dir):
    start = time.perf_counter()
    with open(response_path, "rb") as f:
        items = json.load(f)
    logs = transform_logs(items, Fernet(key.encode()))
    bytes_out = 0
    for name, body in objects(group_by_hour(logs)):
        path = os.path.join(out_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
        bytes_out += len(body)
    report(len(items), time.perf_counter() - start, bytes_out)


def scheduled_pass():
    start = time.perf_counter()
    import urllib.request

    import boto3

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    secrets = boto3.client("secretsmanager", endpoint_url=endpoint)
    key = secrets.get_secret_value(SecretId=os.environ["FERNET_SECRET_ID"])["SecretString"]
    with urllib.request.urlopen(os.environ["LOG_API_URL"], timeout=10) as resp:
        items = json.loads(resp.read())
    logs = transform_logs(items, Fernet(key.strip().encode()))
    s3 = boto3.client("s3", endpoint_url=endpoint)
    bytes_out = 0
    for name, body in objects(group_by_hour(logs)):
        s3.put_object(Bucket=os.environ["BUCKET_NAME"], Key="reference/" + name, Body=body)
        bytes_out += len(body)
    report(len(items), time.perf_counter() - start, bytes_out)


def report(records, seconds, bytes_out):
    print(json.dumps({
        "records": records,
        "seconds": round(seconds, 4),
        "records_per_s": round(records / seconds, 1) if seconds else None,
        "bytes_out": bytes_out,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "offline":
        offline(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "pass":
        scheduled_pass()
    else:
        sys.exit(__doc__)

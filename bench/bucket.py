"""The servers a pass runs against in the benchmarks: moto (S3 and Secrets Manager) holding the
bench's bucket, the log-API simulator (log-etl simulate), a local http.server for fixed bodies,
and the environment that points both tools at them.
"""

import gzip
import json
import signal
import urllib.request
from pathlib import Path

from harness import BenchError, free_port, serve_folder, start_server, stop, wait_for_port
from logetl import PASS_RECORDS, PYTHON, clean_env, log_etl

BUCKET = "log-etl-bench"
SECRET_NAME = "log-etl-bench/fernet-key"


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


def start_simulator(servers, work, key_file):
    """log-etl simulate, checked to serve one batch of PASS_RECORDS; its port and API URL."""
    sim_port = free_port()
    sim = start_server(log_etl("simulate", "--port", sim_port, "--key-file", key_file,
                               "--period", "3600s", "--batch-size", PASS_RECORDS),
                       work / "simulator.log", clean_env())
    servers.callback(stop, sim, "log-etl simulate", signal.SIGINT)
    wait_for_port(sim_port, sim, "log-etl simulate", work / "simulator.log")
    api_url = f"http://127.0.0.1:{sim_port}/api/data/log"
    with urllib.request.urlopen(api_url, timeout=10) as resp:
        served = len(json.loads(resp.read()))
    if served != PASS_RECORDS:
        raise BenchError(f"the simulator served {served} records, expected {PASS_RECORDS}")
    return sim_port, api_url


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


def aws_env(work, endpoint):
    """A clean environment with moto's endpoint and credentials."""
    return clean_env(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        # Neither SDK reads a developer's ~/.aws files: both start alike and see only these.
        AWS_CONFIG_FILE=work / "no-aws-config",
        AWS_SHARED_CREDENTIALS_FILE=work / "no-aws-credentials")


def pass_env(work, api_url, endpoint, **key):
    """The environment of a pass, the same for both tools; `key` is FERNET_SECRET_ID=... or
    FERNET_KEY=...."""
    return dict(aws_env(work, endpoint), LOG_API_URL=api_url, BUCKET_NAME=BUCKET, **key)


def prefixed(env, prefix):
    """`env` with the data and quarantine prefixes under `prefix`."""
    return dict(env, KEY_PREFIX=f"{prefix}/data", QUARANTINE_PREFIX=f"{prefix}/quarantine")


def list_keys(s3, prefix):
    return [obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for obj in page.get("Contents", [])]


def bucket_records(s3, prefix):
    return sum(ndjson_lines(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
               for key in list_keys(s3, prefix))


def ndjson_lines(body: bytes):
    return body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)

"""The deployed artifact, as Lambda runs it: the arm64 `bootstrap` of `sam build` under the AWS
Lambda Runtime Interface Emulator (scripts/local-invoke), against moto (S3, Secrets Manager) and
the project's simulator or a small source of the test's own.

Run by scripts/test after its `sam build`: LOG_ETL_BUILD_DIR names the build. A missing build,
emulator, moto or host `log-etl` fails the tests; nothing here is skipped.
"""

import datetime
import gzip
import http.client
import http.server
import importlib.machinery
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
LOG_ETL = ROOT / "target/debug/log-etl"
FIXTURES = ROOT / "tests/fixtures"
REGION = "us-east-1"
SHELL = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION}
FUNCTIONS = ["LogEtlFunction", "LogEtlCompactFunction"]
# The SAM CLI's template validation, used by the environment test as the oracle, warns of its
# own dependencies' deprecations.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _load_local_invoke():
    path = str(ROOT / "scripts/local-invoke")
    loader = importlib.machinery.SourceFileLoader("local_invoke", path)
    spec = importlib.util.spec_from_loader("local_invoke", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


local_invoke = _load_local_invoke()


def build_dir():
    """The `sam build` output; its absence fails the test (it is what these tests are about)."""
    path = os.environ.get("LOG_ETL_BUILD_DIR")
    assert path, "LOG_ETL_BUILD_DIR is not set: scripts/test sets it after scripts/sam-build"
    for function_id in FUNCTIONS:
        bootstrap = Path(path, function_id, "bootstrap")
        assert bootstrap.is_file(), f"{bootstrap} is missing: run scripts/sam-build {path}"
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, what):
    """Bounded: 300 tries, 100 ms apart."""
    for _ in range(300):
        assert process.poll() is None, f"{what} exited at start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on port {port} within 30 s")


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def log_etl(*args, env=None):
    assert LOG_ETL.is_file(), f"{LOG_ETL} is missing: cargo build (scripts/test does)"
    out = subprocess.run(
        [str(LOG_ETL), *args], env=env, capture_output=True, timeout=120, check=False
    )
    assert out.returncode == 0, f"log-etl {args[0]} failed: {out.stderr.decode()}"
    return out.stdout


@pytest.fixture(scope="session")
def moto():
    """A moto server (S3 and Secrets Manager over their HTTP APIs) for the whole session."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, "moto")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


class World:
    """A bucket and a secret of their own in moto, and the Fernet key in a file."""

    def __init__(self, endpoint, tmp_path, key=None):
        self.endpoint = endpoint
        self.tmp = tmp_path
        self.bucket = f"rie-{uuid.uuid4().hex[:12]}"
        self.secret_id = f"log-etl/rie-{uuid.uuid4().hex[:8]}"
        self.key_file = tmp_path / "fernet.key"
        if key is None:
            log_etl("keygen", "--out", str(self.key_file))
        else:
            self.key_file.write_text(key)
        kw = dict(
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.s3 = boto3.client("s3", **kw)
        self.s3.create_bucket(Bucket=self.bucket)
        boto3.client("secretsmanager", **kw).create_secret(
            Name=self.secret_id, SecretString=self.key_file.read_text().strip()
        )

    def env_vars(self, source_url, **overrides):
        """An env.json for both functions, as events/env.json is, pointed at this world."""
        common = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "BUCKET_NAME": self.bucket,
            "KEY_PREFIX": "data",
            "QUARANTINE_PREFIX": "quarantine",
            "PARTITION_STYLE": "flat",
        }
        return {
            "LogEtlFunction": dict(
                common,
                LOG_API_URL=source_url,
                FERNET_SECRET_ID=self.secret_id,
                START_DELAY_MS="0",
                **overrides,
            ),
            "LogEtlCompactFunction": dict(common, COMPACT_AFTER="1h", **overrides),
        }

    def keys(self, prefix):
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def lines(self, prefix):
        lines = []
        for key in self.keys(prefix):
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            lines += [json.loads(line) for line in gzip.decompress(body).splitlines()]
        return lines

    def restored(self):
        """The records `log-etl restore s3://bucket/data` gives back."""
        env = dict(SHELL, AWS_ENDPOINT_URL=self.endpoint, PATH=os.environ["PATH"])
        out = log_etl("restore", f"s3://{self.bucket}/data", env=env)
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def world(moto, tmp_path):
    return World(moto, tmp_path)


class Simulator:
    """`log-etl simulate` (the host build) on a port of its own, writing its ground truth."""

    def __init__(self, world, *args):
        self.port = free_port()
        self.truth = world.tmp / f"truth-{self.port}.ndjson"
        self.process = subprocess.Popen(
            [
                str(LOG_ETL), "simulate", "--port", str(self.port),
                "--key-file", str(world.key_file), "--truth", str(self.truth), *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process, "the simulator")
        self.url = f"http://127.0.0.1:{self.port}/api/data/log"

    def records(self):
        return [json.loads(line) for line in self.truth.read_text().splitlines()]


@pytest.fixture
def simulator(world):
    assert LOG_ETL.is_file(), f"{LOG_ETL} is missing: cargo build (scripts/test does)"
    sim = Simulator(world, "--batch-size", "100", "--seed", "7")
    yield sim
    stop(sim.process)


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that keeps the test's output free of access lines."""

    def log_message(self, *args):
        pass


class LocalServer:
    """An HTTP server of the test's own on 127.0.0.1, on a port of its own, serving `handler`
    from a thread until closed."""

    def __init__(self, handler):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class StaticSource(LocalServer):
    """A log API of the test's own: serves `body` after `delay` seconds."""

    def __init__(self, body=b"[]", delay=0.0):
        self.body, self.delay, self.requests = body, delay, 0
        source = self

        class Handler(QuietHandler):
            def do_GET(self):
                source.requests += 1
                time.sleep(source.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(source.body)))
                self.end_headers()
                self.wfile.write(source.body)

        super().__init__(Handler)
        self.url = f"{self.origin}/api/data/log"


@pytest.fixture
def static_source():
    source = StaticSource()
    yield source
    source.close()


def generate(world, seed, start, records=200):
    """A saved response of `records` records from `start` (and its ground truth)."""
    out, truth = world.tmp / f"response-{seed}.json", world.tmp / f"truth-{seed}.ndjson"
    log_etl(
        "generate", "--records", str(records), "--seed", str(seed), "--start", start,
        "--out", str(out), "--truth", str(truth), "--key-file", str(world.key_file),
    )
    return out.read_bytes(), [json.loads(line) for line in truth.read_text().splitlines()]


def function(function_id, env_vars, **kwargs):
    return local_invoke.LocalFunction(
        function_id, build_dir(), env_vars=env_vars, shell=SHELL, **kwargs
    )


def canonical(records):
    return sorted(json.dumps(r, sort_keys=True) for r in records)


def invocation_events():
    """The events a function may be invoked with: the template's Scheduler input (as Scheduler
    fills it in), Scheduler's own default event (its `detail` a string), an EventBridge rule's
    event (the checked-in sample), a manual invoke's `{}`."""
    template = local_invoke.load_template(ROOT / "template.yaml")
    schedule = template["Resources"]["LogEtlFunction"]["Properties"]["Events"]["Schedule"]
    scheduler_input = (
        schedule["Properties"]["Input"]["Fn::Sub"]
        .replace("${AWS::AccountId}", "123456789012")
        .replace("${AWS::Region}", REGION)
        .replace("<aws.scheduler.execution-id>", "d2b4e8a0-5b8e-4c2c-9c7d-1f0e6f1c2a3b")
        .replace("<aws.scheduler.scheduled-time>", "2023-03-18T15:09:00Z")
        .replace(
            "<aws.scheduler.schedule-arn>",
            "arn:aws:scheduler:us-east-1:123456789012:schedule/default/log-etl",
        )
    )
    json.loads(scheduler_input)  # the filled-in Input is JSON
    scheduler_default = {
        "version": "0", "id": "a1b2c3", "detail-type": "Scheduled Event",
        "source": "aws.scheduler", "account": "123456789012", "time": "2023-03-18T15:12:00Z",
        "region": REGION,
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/log-etl"],
        "detail": "{}",
    }
    return {
        "scheduler-input": scheduler_input.encode(),
        "scheduler-default": json.dumps(scheduler_default).encode(),
        "eventbridge-rule": (ROOT / "events/scheduled-event.json").read_bytes(),
        "manual": b"{}",
    }


EVENTS = invocation_events()


def assert_init_failed(invocation, logs):
    """As the emulator reports a runtime that exits before asking for its first event: 502 with
    no body, and its own log lines saying so."""
    assert invocation.failed
    assert (invocation.status, invocation.body) == (502, b""), f"{invocation.body!r}\n{logs}"
    # (its logger writes the fields of a line in any order)
    init_failed = [line for line in logs.splitlines() if "(rapid) Init failed" in line]
    assert init_failed, logs
    assert "error=Runtime exited with error: exit status 1" in init_failed[0], logs
    assert "Invoke DONE failed: Sandbox.Failure" in logs, logs


def hour_start(hours_ago):
    """The start of the UTC hour `hours_ago` hours back, plus ten minutes, in RFC 3339."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
    return (now - datetime.timedelta(hours=hours_ago, minutes=-10)).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_durations_ms(logs):
    """The Duration of each REPORT line the emulator printed."""
    return [float(d) for d in re.findall(r"^REPORT .*?\tDuration: ([0-9.]+) ms", logs, re.M)]


class StallingProxy(LocalServer):
    """An HTTP proxy in front of moto that, while `stall` is set, holds S3 listings (at most
    60 s, or until `release` is set) instead of forwarding them."""

    def __init__(self, upstream):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.stall, self.release, self.held = threading.Event(), threading.Event(), 0
        proxy = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def forward(self):
                if proxy.stall.is_set() and "list-type=2" in self.path:
                    proxy.held += 1
                    proxy.release.wait(timeout=60)
                    self.close_connection = True
                    return
                body = self.read_body()
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"
                }
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    length = response.getheader("Content-Length")
                    if self.command == "HEAD" and length is not None:
                        self.send_header("Content-Length", length)
                    elif self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            def read_body(self):
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = self.headers.get("Content-Length")
                return self.rfile.read(int(length)) if length else None

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

        super().__init__(Handler)
        self.url = self.origin

    def close(self):
        self.release.set()
        super().close()


def sam_cli_environment(template, function_id, env_vars):
    """The environment `sam local invoke` gives the function's container, from the SAM CLI's own
    code (its template provider and its LocalLambdaRunner), with the shell as it is."""
    from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    stacks, _ = SamLocalStackProvider.get_stacks(str(template), parameter_overrides={})
    provider = SamFunctionProvider(stacks)
    runner = LocalLambdaRunner(
        local_runtime=None,
        function_provider=provider,
        cwd=str(ROOT),
        real_path=str(ROOT),
        env_vars_values=env_vars,
    )
    function = provider.get(function_id)
    return runner._make_env_vars(function).resolve(), function.timeout, function.memory


def local_invoke_command(function_id, env_file):
    """scripts/local-invoke as a command, with the checked-in event."""
    return subprocess.run(
        [
            sys.executable, str(ROOT / "scripts/local-invoke"), function_id,
            "--build-dir", build_dir(), "--env-vars", str(env_file),
        ],
        env=dict(SHELL, PATH=os.environ["PATH"], LOG_ETL_PYTHON=sys.executable),
        capture_output=True,
        timeout=300,
        check=False,
    )


def template_with_globals(tmp_path, function=(), variables=()):
    """template.yaml with its Globals changed: `function` lines ("Timeout: 30") set keys of
    Globals.Function and `variables` pairs set its environment variables, each replacing the
    template's own line for that key, if any."""
    text = (ROOT / "template.yaml").read_text()
    start = text.index("\nGlobals:\n")
    end = text.index("\nResources:\n", start)
    block = text[start:end].splitlines(keepends=True)

    def without(prefix):
        return [line for line in block if not line.startswith(prefix)]

    for line in function:
        block = without(f"    {line.split(':')[0]}:")
        at = block.index("  Function:\n") + 1
        block.insert(at, f"    {line}\n")
    for name, value in variables:
        block = without(f"        {name}:")
        at = block.index("      Variables:\n") + 1
        block.insert(at, f"        {name}: {value}\n")
    template = tmp_path / "template.yaml"
    template.write_text(text[:start] + "".join(block) + text[end:])
    return template


# --- Tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("function_id", FUNCTIONS)
@pytest.mark.parametrize("templates", ["checked-in", "with-globals"])
def test_the_environment_is_the_one_the_sam_cli_gives(
    tmp_path, monkeypatch, function_id, templates
):
    # Given the template (as checked in, or with Globals that set a variable, the timeout and
    # the memory), events/env.json plus a Parameters entry, and a shell that sets a declared
    # variable and the credentials
    template = ROOT / "template.yaml"
    if templates == "with-globals":
        template = template_with_globals(
            tmp_path,
            function=["Timeout: 30", "MemorySize: 512"],
            variables=[("GZIP_LEVEL", 4), ("KEY_PREFIX", "globals")],
        )
    env_vars = json.loads((ROOT / "events/env.json").read_text())
    env_vars["Parameters"] = {"PARTITION_STYLE": "hive", "GZIP_LEVEL": "5", "UNDECLARED": "x"}
    for name, value in dict(
        SHELL, METRICS_NAMESPACE="FromShell", AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    ).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # When scripts/local-invoke works out the function's environment
    ours, timeout, memory, arch = local_invoke.function_environment(
        local_invoke.load_template(template), function_id, env_vars, dict(os.environ)
    )
    # Then it is what the SAM CLI gives (host.docker.internal meaning this machine)
    theirs, sam_timeout, sam_memory = sam_cli_environment(template, function_id, env_vars)
    assert ours == {name: local_invoke.local_value(value) for name, value in theirs.items()}
    # And so are the timeout and memory (the function's own, over the Globals')
    assert (timeout, memory) == (sam_timeout, sam_memory)
    # (each function declares its timeout; the memory is the Globals')
    memory_declared = 512 if templates == "with-globals" else 256
    expected_timeout = 90 if function_id == "LogEtlFunction" else 900
    assert (timeout, memory) == (expected_timeout, memory_declared)
    assert arch == "arm64"
    assert ours["PARTITION_STYLE"] == "flat"  # the function's own entry wins over Parameters
    assert ours["METRICS_NAMESPACE"] == "FromShell"
    assert "UNDECLARED" not in ours
    if templates == "with-globals":
        assert ours["GZIP_LEVEL"] == "5"  # declared by Globals, so Parameters reach it


@pytest.mark.parametrize("shape", sorted(EVENTS))
def test_a_pass_lands_the_batch_once_whatever_the_event(world, simulator, shape):
    # Given moto holding the key in Secrets Manager and the simulator serving a batch of 100
    env_vars = world.env_vars(simulator.url)
    with function("LogEtlFunction", env_vars) as fn:
        # When the arm64 function is invoked with this shape of event
        first = fn.invoke(EVENTS[shape])
        # Then it succeeds and every record served is in the bucket, restorable, once
        assert not first.failed, f"{first.status} {first.body!r}\n{fn.logs()}"
        assert first.payload["records_in"] == 100
        assert first.payload["records_landed"] == 100
        served = simulator.records()
        assert len(served) == 100
        assert canonical(world.restored()) == canonical(served)
        objects = world.keys("data/")
        assert objects and all(k.endswith(".json.gz") for k in objects)

        # When it is invoked again on the same batch
        second = fn.invoke(EVENTS[shape])
        # Then nothing new lands
        assert not second.failed, f"{second.status} {second.body!r}\n{fn.logs()}"
        assert second.payload["records_landed"] == 0
        assert second.payload["records_already_present"] == 100
        assert world.keys("data/") == objects
        assert world.keys("quarantine/") == []
        # And the logs are the function's JSON lines (its summary among them), under the emulator
        logs = fn.logs()
        assert "START RequestId" in logs and "REPORT RequestId" in logs
        assert any(
            line.startswith("{") and '"records_landed"' in line for line in logs.splitlines()
        ), logs


def test_the_command_prints_the_response_and_exits_zero(world, simulator, tmp_path):
    # Given an env.json in the SAM CLI's format, with the per-function form and the Parameters
    # form (which sets KEY_PREFIX for every function)
    env_vars = world.env_vars(simulator.url)
    del env_vars["LogEtlFunction"]["KEY_PREFIX"]
    env_vars["Parameters"] = {"KEY_PREFIX": "landed"}
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps(env_vars))
    # When scripts/local-invoke runs the ingest function with the checked-in event
    out = local_invoke_command("LogEtlFunction", env_file)
    # Then it exits 0, prints the summary on stdout and the function's logs on stderr, and the
    # batch landed under the prefix the Parameters form gave
    assert out.returncode == 0, out.stderr.decode()
    summary = json.loads(out.stdout)
    assert summary["records_landed"] == 100
    assert b"REPORT RequestId" in out.stderr
    assert len(world.keys("landed/")) >= 1
    assert world.keys("data/") == []


def test_the_command_exits_1_when_the_invocation_fails(world, simulator, tmp_path):
    # Given an env.json that empties BUCKET_NAME of the compaction function
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps(world.env_vars(simulator.url, BUCKET_NAME="")))
    # When scripts/local-invoke runs it
    out = local_invoke_command("LogEtlCompactFunction", env_file)
    # Then it exits 1 and says the invocation failed
    assert out.returncode == 1, out.stderr.decode()
    assert b"the invocation failed (HTTP 502)" in out.stderr


def test_a_bad_setting_fails_the_init_as_the_emulator_reports_it(world, simulator, tmp_path):
    # Given the template with a Globals section that gives every function GZIP_LEVEL=12 (0 to 9)
    template = template_with_globals(tmp_path, variables=[("GZIP_LEVEL", 12)])
    env_vars = world.env_vars(simulator.url)
    for function_id in FUNCTIONS:
        with function(function_id, env_vars, template=template) as fn:
            # When the function is invoked
            invocation = fn.invoke(EVENTS["manual"])
            logs = fn.logs()
        # Then the emulator reports that the runtime exited during init, and the function's
        # log names the variable
        assert_init_failed(invocation, logs)
        assert "GZIP_LEVEL" in logs, logs
    # And nothing was written
    assert world.keys("") == []


def test_a_missing_bucket_name_fails_the_init(world, simulator):
    # Given an env.json that empties BUCKET_NAME
    env_vars = world.env_vars(simulator.url, BUCKET_NAME="")
    for function_id in FUNCTIONS:
        with function(function_id, env_vars) as fn:
            # When the function is invoked
            invocation = fn.invoke(EVENTS["manual"])
            logs = fn.logs()
        # Then the init fails, reported as the emulator reports it, naming the variable
        assert_init_failed(invocation, logs)
        assert "BUCKET_NAME" in logs, logs


def test_a_source_slower_than_the_timeout_fails_the_pass_in_time_and_the_next_lands_it_once(
    world, static_source
):
    # Given a source that answers after 20 s and a function given a 4 s timeout
    body, truth = generate(world, seed=11, start=hour_start(0), records=150)
    static_source.body, static_source.delay = body, 20.0
    env_vars = world.env_vars(static_source.url)
    with function("LogEtlFunction", env_vars, timeout=4) as fn:
        # When it is invoked
        slow = fn.invoke(EVENTS["scheduler-input"])
        # Then the function gives up the fetch inside its deadline (two thirds of it) and says
        # so, rather than being cut off: the emulator returns its FetchError, not a timeout
        assert slow.failed and not slow.timed_out, f"{slow.body!r}\n{fn.logs()}"
        assert slow.error_type == "FetchError", f"{slow.body!r}\n{fn.logs()}"
        assert "timed out after" in slow.payload["errorMessage"]
        assert report_durations_ms(fn.logs())[-1] < 4000, fn.logs()
        assert world.keys("data/") == []

        # When the source is quick again and the function is invoked once more
        static_source.delay = 0.0
        quick = fn.invoke(EVENTS["scheduler-input"])
        # Then every record lands, once
        assert not quick.failed, f"{quick.body!r}\n{fn.logs()}"
        assert canonical(world.restored()) == canonical(truth)


def test_a_pass_whose_writes_stall_ends_before_its_timeout_and_the_next_lands_it_once(
    world, static_source
):
    # Given S3 behind a proxy that holds every listing, a quick source, and a function given a
    # 4 s timeout
    body, truth = generate(world, seed=12, start=hour_start(0), records=150)
    static_source.body = body
    proxy = StallingProxy(world.endpoint)
    try:
        env_vars = world.env_vars(static_source.url, AWS_ENDPOINT_URL=proxy.url)
        with function("LogEtlFunction", env_vars, timeout=4) as fn:
            # When it is invoked while the listings are held
            proxy.stall.set()
            stalled = fn.invoke(EVENTS["scheduler-input"])
            # Then the function ends its writes at its deadline and says so, rather than being
            # cut off by the emulator: a StoreError, inside the timeout
            assert stalled.failed and not stalled.timed_out, f"{stalled.body!r}\n{fn.logs()}"
            assert stalled.error_type == "StoreError", f"{stalled.body!r}\n{fn.logs()}"
            assert "deadline came before its writes ended" in stalled.payload["errorMessage"]
            assert report_durations_ms(fn.logs())[-1] < 4000, fn.logs()
            assert proxy.held >= 1
            assert world.keys("data/") == []

            # When S3 answers again and the function is invoked once more
            proxy.stall.clear()
            proxy.release.set()
            again = fn.invoke(EVENTS["scheduler-input"])
            # Then every record lands, once
            assert not again.failed, f"{again.body!r}\n{fn.logs()}"
            assert again.payload["records_landed"] == 150
            assert canonical(world.restored()) == canonical(truth)
    finally:
        proxy.close()


def test_the_compaction_function_merges_closed_hours(world, static_source):
    # Given two passes over different records of the same closed hour (three hours ago), so the
    # hour holds two objects
    start = hour_start(3)
    first_body, first = generate(world, seed=21, start=start)
    second_body, second = generate(world, seed=22, start=start)
    env_vars = world.env_vars(static_source.url)
    with function("LogEtlFunction", env_vars) as fn:
        for body in (first_body, second_body):
            static_source.body = body
            landed = fn.invoke(EVENTS["scheduler-input"])
            assert not landed.failed, f"{landed.body!r}\n{fn.logs()}"
            assert landed.payload["records_landed"] == 200
    hour = start[:13].replace("-", "/").replace("T", "/")
    assert len(world.keys(f"data/{hour}/")) == 2

    with function("LogEtlCompactFunction", env_vars) as fn:
        # When the compaction function is invoked with each shape of event in turn
        results = {shape: fn.invoke(event) for shape, event in EVENTS.items()}
    # Then the first run merges the hour into one object holding every record once, and the
    # others change nothing
    for shape, result in results.items():
        assert not result.failed, f"{shape}: {result.body!r}"
    runs = list(results.values())
    assert runs[0].payload["hours_compacted"] == 1
    assert runs[0].payload["objects_deleted"] == 2
    assert runs[0].payload["records"] == 400
    assert all(run.payload["hours_compacted"] == 0 for run in runs[1:])
    assert len(world.keys(f"data/{hour}/")) == 1
    assert canonical(world.restored()) == canonical(first + second)


def test_the_fernet_spec_vectors_decrypt_on_arm64_as_specified(moto, tmp_path, static_source):
    # Given the spec's vectors (all under one secret) served by a source as records
    verify = json.loads((FIXTURES / "fernet/verify.json").read_text())
    invalid = json.loads((FIXTURES / "fernet/invalid.json").read_text())
    secrets = {v["secret"] for v in verify + invalid}
    assert len(secrets) == 1
    world = World(moto, tmp_path, key=secrets.pop())
    records = [{"data": v["token"], "vector": f"verify {i}"} for i, v in enumerate(verify)]
    records += [{"data": v["token"], "vector": v["desc"]} for v in invalid]
    static_source.body = json.dumps(records).encode()
    with function("LogEtlFunction", world.env_vars(static_source.url)) as fn:
        # When the arm64 function reads them
        result = fn.invoke(EVENTS["scheduler-input"])
    assert not result.failed, f"{result.body!r}"
    # Then nothing lands (no plaintext is a record) and each vector is quarantined once
    assert world.keys("data/") == []
    quarantined = world.lines("quarantine/")
    lines = {line["record"]["vector"]: line for line in quarantined}
    assert len(quarantined) == len(records)
    assert sorted(lines) == sorted(r["vector"] for r in records)
    assert all(lines[r["vector"]]["record"] == r for r in records)
    # And the `verify` tokens decrypted (HMAC and padding passed): their plaintext is refused
    # at the parse stage; so are the two time-based `invalid` ones, as token age is not judged
    time_based = {"far-future TS (unacceptable clock skew)", "expired TTL"}
    not_a_record = "plaintext is not a Python dict literal or a JSON object"
    for vector, line in lines.items():
        if vector.startswith("verify") or vector in time_based:
            assert line["stage"] == "parse", (vector, line["stage"], line["reason"])
            assert line["reason"].startswith(not_a_record), (vector, line["reason"])
    # And every other `invalid` one is refused at decryption, with what failed
    bad_padding = "token verifies, but its plaintext padding is invalid"
    reasons = {
        "incorrect mac": "token does not verify under any of the 1 key(s): wrong key or tampered",
        "too short": "token is too short (",
        "invalid base64": "token is not base64 (as Python's Fernet reads it)",
        # 72 bytes: one short of the smallest token, so refused before its blocks are counted
        "payload size not multiple of block size": "token is too short (72 bytes decoded",
        "payload padding error": bad_padding,
        "incorrect IV (causes padding error)": bad_padding,
    }
    for vector, reason in reasons.items():
        assert lines[vector]["stage"] == "decrypt", lines[vector]
        assert lines[vector]["reason"].startswith(reason), (vector, lines[vector]["reason"])
    assert set(reasons) | time_based == {v["desc"] for v in invalid}


# Lambda's arm64 is Graviton2 (Neoverse N1); `max` is every extension qemu emulates. There is no
# case without the instructions: cargo-lambda builds for `target-cpu=neoverse-n1`, so the build
# stops at an illegal instruction before `main` on the older models qemu-aarch64 7.2 offers
# (cortex-a35/a53/a57/a72, a64fx), and every model it runs on has the AES and SHA2 extensions.
# The unit test `hardware_is_used_exactly_when_the_cpu_lists_its_instructions` holds the choice
# to the flags of the CPU it runs on, either way.
@pytest.mark.parametrize("cpu", ["max", "neoverse-n1"])
def test_the_arm64_build_decrypts_tokens_with_the_cpus_aes_and_sha256_instructions(tmp_path, cpu):
    # Given the arm64 bootstrap on an emulated CPU with the AES and SHA2 extensions, set up as
    # the function is, but with the Runtime API (and every other peer) at a port nothing serves
    bootstrap = Path(build_dir(), "LogEtlFunction", "bootstrap")
    qemu, libs = local_invoke.ensure_foreign_runner("arm64")
    closed = f"127.0.0.1:{free_port()}"
    key_file = tmp_path / "fernet.key"
    log_etl("keygen", "--out", str(key_file))
    env = dict(
        SHELL,
        PATH=os.environ["PATH"],
        AWS_LAMBDA_RUNTIME_API=closed,
        AWS_LAMBDA_LOG_FORMAT="JSON",
        AWS_ENDPOINT_URL=f"http://{closed}",
        BUCKET_NAME="unused",
        LOG_API_URL=f"http://{closed}/api/data/log",
        FERNET_KEY=key_file.read_text().strip(),
    )
    # When it starts (and stops, finding no Runtime API)
    out = subprocess.run(
        [qemu, "-cpu", cpu, "-L", libs, str(bootstrap)],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode != 0, "the bootstrap ran without a Runtime API"
    stderr = out.stderr.decode()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    # Then its first log line says tokens are decrypted with the CPU's AES and SHA-256 instructions
    assert lines, f"no JSON log line on stderr: {stderr!r}"
    first = lines[0]
    assert first["message"] == "token decryption", first
    assert (first["aes_hardware"], first["sha256_hardware"]) == (True, True), first


def test_the_backfill_function_lands_distributed_map_items_and_batches_each_record_once(world):
    # Given three overlapping saved responses under saved/ (the same records from the same
    # start: 40, 70 and 100 of them), the first gzip'd, as Distributed Map lists them
    start = hour_start(5)
    saved = {}
    for records, key in ((40, "saved/r040.json.gz"), (70, "saved/r070.json"), (100, "saved/r100.json")):
        body, truth = generate(world, seed=31, start=start, records=records)
        body = gzip.compress(body) if key.endswith(".gz") else body
        world.s3.put_object(Bucket=world.bucket, Key=key, Body=body)
        saved[key] = (len(body), truth)
    item = lambda key: {  # noqa: E731 (one listing item, as the S3 item reader gives it)
        "Key": key, "Size": saved[key][0], "ETag": '"0"', "LastModified": "2024-05-01T00:00:00Z",
    }
    env_vars = {
        "LogEtlBackfillFunction": {
            "AWS_ENDPOINT_URL": world.endpoint,
            "BUCKET_NAME": world.bucket,
            "FERNET_SECRET_ID": world.secret_id,
        }
    }
    with function("LogEtlBackfillFunction", env_vars) as fn:
        # When the arm64 function is invoked with one item (ItemSelector adding the bucket)
        one = fn.invoke(json.dumps(dict(item("saved/r040.json.gz"), Bucket=world.bucket)).encode())
        # Then that response lands
        assert not one.failed, f"{one.body!r}\n{fn.logs()}"
        assert (one.payload["responses"], one.payload["records_landed"]) == (1, 40)
        # When it is invoked with a batch of the other two (ItemBatcher)
        batch = {
            "Items": [item("saved/r070.json"), item("saved/r100.json")],
            "BatchInput": {"Bucket": world.bucket},
        }
        many = fn.invoke(json.dumps(batch).encode())
        # Then only the records the first did not hold land, and again, nothing
        assert not many.failed, f"{many.body!r}\n{fn.logs()}"
        assert (many.payload["responses"], many.payload["records_landed"]) == (2, 60)
        again = fn.invoke(json.dumps(batch).encode())
        assert not again.failed and again.payload["records_landed"] == 0
        # And an item of another bucket is refused, typed
        other = fn.invoke(json.dumps(dict(item("saved/r070.json"), Bucket="elsewhere")).encode())
        assert other.failed and other.error_type == "BackfillEventError", other.body
    # And the bucket holds every record once
    assert canonical(world.restored()) == canonical(saved["saved/r100.json"][1])

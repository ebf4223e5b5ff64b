"""What every benchmark section knows about log-etl: the binary under test (a copy taken at the
start), the clean environment it runs in, the saved responses it is given (generated once and
cached in target/bench-data/), and the folders of objects it writes.
"""

import datetime
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness import BenchError, load_average, say, section

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "target" / "release" / "log-etl"
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
MIB = 1 << 20

# What the function is given (template.yaml), printed beside what a pass or a compaction takes.
FUNCTION_MEMORY_MIB = 256
FUNCTION_TIMEOUT_S = 90
COMPACTION_TIMEOUT_S = 900

# Settings a developer's shell may carry that would change what is measured: every variable
# log-etl reads (its own list, `log-etl settings --names`) and its log settings. AWS_* are dropped
# as a whole too.
LOG_SETTINGS = {"RUST_LOG", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_FORMAT"}
_binary = BUILT  # use_copy() points this at a copy taken at start
_inherited_settings = None


def use_copy(scratch: Path):
    """Runs a copy of the built binary in `scratch` from now on, if it is built: every figure
    from one binary, whatever cargo rebuilds in the meantime."""
    global _binary
    if os.access(BUILT, os.X_OK):
        _binary = scratch / "log-etl"
        shutil.copy2(BUILT, _binary)


def log_etl(*args):
    """The argv of log-etl (the copy, once taken) with `args`."""
    return [str(_binary), *map(str, args)]


def inherited_settings():
    """The variables clean_env drops, read once from the binary."""
    global _inherited_settings
    if _inherited_settings is None:
        names = subprocess.run(log_etl("settings", "--names"), capture_output=True, text=True,
                               check=True).stdout.split()
        _inherited_settings = set(names) | LOG_SETTINGS
    return _inherited_settings


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in inherited_settings() and not k.startswith("AWS_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def begin(title):
    """A section's heading, and the load average it starts at."""
    section(title)
    say(f"  load average {load_average()} at the start of the section")


def mib(m):
    """A Measured's peak RSS, as printed."""
    return f"{m.peak_rss_mib:.1f}"


# --- Folders of objects ------------------------------------------------------------------------

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


def process_into_folder(launcher, response, key_file, out, label, env=None, timeout_s=120,
                        landed=None):
    """log-etl process of `response` into the folder `out`, checked to land `landed` records
    when given; the Measured and its summary."""
    m = launcher.run(log_etl("process", "--key-file", key_file, "--input", response,
                             "--out-dir", out), env or clean_env(), label, timeout_s=timeout_s)
    s = m.summary(label)
    if landed is not None and (s["records_landed"], s["records_quarantined"]) != (landed, 0):
        raise BenchError(f"{label}: records_landed {s['records_landed']}, quarantined "
                         f"{s['records_quarantined']}; expected {landed}, 0")
    return m, s


# --- Generated responses -----------------------------------------------------------------------

def new_key(folder: Path):
    """A new Fernet key in `folder`/fernet.key (mode 0600, made by log-etl keygen); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "fernet.key"
    subprocess.run(log_etl("keygen", "--out", key_file), capture_output=True, check=True,
                   timeout=60)
    return key_file


def cached(name, fresh, make, what):
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
        return launcher.run(log_etl("generate", "--key-file", key_file, "--records", records,
                                    "--out", partial, *generate_args), clean_env(),
                            "log-etl generate", timeout_s=120 + records / 1000)
    return cached(name or f"response-{records}", fresh, make, "response")


def cached_big_response(launcher, name, records, plaintext_bytes, fresh):
    """A saved response of `records` records of `plaintext_bytes` each (bench/bigresponse.py),
    and its key."""
    def make(partial, key_file):
        return launcher.run([PYTHON, str(BIG_RESPONSE), "--key-file", str(key_file), "--out",
                             str(partial), "--records", str(records), "--plaintext-bytes",
                             str(plaintext_bytes)], clean_env(), "bigresponse.py",
                            timeout_s=600)
    return cached(name, fresh, make, "response")


def hour_batches(launcher, folder: Path, key_file: Path, count, start, records=PASS_RECORDS):
    """`count` responses of `records` records (log-etl generate, seeds 1, 2, ...), the first at
    `start`, each BATCH_SECONDS after the one before: what a scheduled pass reads. Their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    first = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    paths = []
    for k in range(count):
        at = first + datetime.timedelta(seconds=BATCH_SECONDS * k)
        path = folder / f"batch-{k + 1:04d}.json"
        launcher.run(log_etl("generate", "--key-file", key_file, "--records", records,
                             "--start", at.strftime("%Y-%m-%dT%H:%M:%SZ"), "--seed", k + 1,
                             "--out", path), clean_env(), "log-etl generate", timeout_s=60)
        paths.append(path)
    return paths

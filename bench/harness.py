"""A small harness for benchmarking command-line tools as child processes; nothing in it knows
about log-etl (bench/compare.py is the entry of the log-etl benchmark that uses it).

  Launcher     runs a child to its end and measures it: wall time from spawn to exit, its own
               peak RSS, what it printed on stdout (Measured); kills it, with what it started,
               after a timeout
  figures      spread, runs_figures: the best, median and worst of several runs
  servers      free_port, start_server, serve_folder, wait_for_port, log_tail, stop: a server
               child started for the length of a benchmark and stopped at its end
  machine      cpu_model, mem_total_gib, load_average, git_revision, built_at, command_output:
               what the figures were measured on
  text         section, say, table, fmt_int, fmt_ratio, target_note: the printed report

Peak RSS is measured with GNU time (/usr/bin/time) when present: os.wait4 on a child started
from this process would report at least this process's own peak, because Linux carries the
parent's high-water mark into the child's ru_maxrss across fork and exec. Without GNU time it
falls back to os.wait4, and Launcher.describe() gives that floor (the figure for /bin/true).
"""

import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"


class BenchError(Exception):
    """Something did not run, or a correctness check failed."""


# --- Measuring a child process -----------------------------------------------------------------

@dataclass
class Measured:
    """One child process: wall time from spawn to exit, its own peak RSS, what it printed on
    stdout (unless sent elsewhere), its exit code and the end of its stderr."""

    wall_s: float
    peak_rss_kib: int
    stdout: str
    returncode: int = 0
    stderr_tail: str = ""

    @property
    def peak_rss_mib(self):
        return self.peak_rss_kib / 1024

    def summary(self, label):
        """The last JSON line the child printed on stdout (its one-line summary)."""
        lines = [l for l in self.stdout.splitlines() if l.strip().startswith("{")]
        if not lines:
            raise BenchError(f"{label} printed no JSON summary: {self.stdout[-500:]!r}")
        return json.loads(lines[-1])


class Launcher:
    """Starts a child, waits for it with os.wait4, and reads its peak RSS from GNU time (see the
    header) or from the rusage wait4 returns. Children run in `cwd`; their captured output and
    GNU time's report go through files in `scratch`."""

    def __init__(self, scratch: Path, cwd: Path):
        self.scratch = scratch
        self.cwd = cwd
        self.gnu_time = os.access(GNU_TIME, os.X_OK) and _is_gnu_time()
        self.floor_kib = 0
        self.overhead_ms = 0.0
        trivial = [self.run(["/bin/true"], os.environ.copy(), "/bin/true") for _ in range(5)]
        self.floor_kib = min(m.peak_rss_kib for m in trivial)
        self.overhead_ms = statistics.median(m.wall_s for m in trivial) * 1000

    def describe(self):
        how = "GNU time %M (the child's own ru_maxrss)" if self.gnu_time else "os.wait4 ru_maxrss"
        text = (f"{how}; launch cost, as /bin/true: {self.floor_kib / 1024:.1f} MiB, "
                f"{self.overhead_ms:.1f} ms")
        if not self.gnu_time:
            text += " (a floor inherited from this process: RSS figures are at least that)"
        return text

    def run(self, argv, env, label, timeout_s=600.0, check=True, stdout_to=None) -> Measured:
        """Runs `argv` to its end (killed, with what it started, after `timeout_s`). A failure
        raises BenchError unless `check` is false. Its stdout goes to the file `stdout_to` when
        given (os.devnull: discarded), else it is captured (its first MiB)."""
        if stdout_to is not None:
            fd_out, out_path = os.open(stdout_to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), None
        else:
            fd_out, out_path = tempfile.mkstemp(dir=self.scratch, prefix="stdout-")
        fd_err, err_path = tempfile.mkstemp(dir=self.scratch, prefix="stderr-")
        fd_time, time_path = tempfile.mkstemp(dir=self.scratch, prefix="time-")
        os.close(fd_time)
        cmd = [GNU_TIME, "-f", "%M", "-o", time_path, *argv] if self.gnu_time else list(argv)
        try:
            wall, status, usage = self._spawn_and_wait(cmd, env, fd_out, fd_err, timeout_s)
            returncode = os.waitstatus_to_exitcode(status)
            stdout = ""
            if out_path is not None:
                os.lseek(fd_out, 0, os.SEEK_SET)
                stdout = os.read(fd_out, 1 << 20).decode("utf-8", "replace")
            if check and returncode != 0:
                raise BenchError(_failure(label, fd_err, wall, timeout_s, returncode))
            if self.gnu_time:
                # GNU time writes "Command exited with non-zero status N" first when it fails,
                # and nothing when it is killed (a timeout, check=False): 0 then.
                words = Path(time_path).read_text().split()
                peak = int(words[-1]) if words else 0
            else:
                peak = usage.ru_maxrss
            return Measured(wall, peak, stdout, returncode, _tail(fd_err))
        finally:
            os.close(fd_out)
            os.close(fd_err)
            for path in (out_path, err_path, time_path):
                if path is not None:
                    Path(path).unlink(missing_ok=True)

    def _spawn_and_wait(self, cmd, env, fd_out, fd_err, timeout_s):
        """Wall time, wait status and rusage of `cmd`, run to its end or killed at `timeout_s`."""
        start = time.perf_counter()
        # A session of its own, so a timeout or Ctrl-C stops GNU time and the tool together.
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd_out, stderr=fd_err,
                                 env=env, cwd=self.cwd, start_new_session=True)
        timer = threading.Timer(timeout_s, kill_group, (child.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:
            kill_group(child.pid)
            child.wait()
            raise
        finally:
            timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
        return time.perf_counter() - start, status, usage


def _tail(fd_err, lines=15):
    """The last `lines` lines of the stderr file `fd_err`, joined and indented."""
    os.lseek(fd_err, 0, os.SEEK_SET)
    stderr = os.read(fd_err, 1 << 20).decode("utf-8", "replace")
    return "\n    ".join(stderr.strip().splitlines()[-lines:])


def _failure(label, fd_err, wall, timeout_s, returncode):
    """The error for a child that failed: how it ended and the tail of its stderr."""
    tail = _tail(fd_err) or "(no output)"
    why = (f"was stopped after {timeout_s:.0f} s" if wall >= timeout_s
           else f"exited with status {returncode}")
    return f"{label} {why}:\n    {tail}"


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_gnu_time():
    try:
        out = subprocess.run([GNU_TIME, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "GNU" in out.stdout + out.stderr


# --- Figures -----------------------------------------------------------------------------------

@dataclass
class Spread:
    """The best, median and worst of several figures (lower is better), and how many."""

    best: float
    median: float
    worst: float
    n: int


def spread(values):
    values = sorted(values)
    if not values:
        raise BenchError("no runs to sum up")
    return Spread(values[0], statistics.median(values), values[-1], len(values))


def runs_figures(runs):
    """Of several Measured runs of one case: how many, the median and worst wall time, and the
    worst (largest) peak RSS."""
    wall, rss = spread(m.wall_s for m in runs), spread(m.peak_rss_mib for m in runs)
    return {"runs": rss.n, "wall_median": wall.median, "wall_worst": wall.worst,
            "rss_worst": rss.worst}


# --- Servers -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(argv, log: Path, env):
    """A server child, its output to `log`; stopped by `stop`."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env)


def serve_folder(folder: Path, port, log: Path, env):
    """Python's threaded static file server (http.server) on 127.0.0.1:`port`, serving the files
    of `folder` at /<name> with their length; stopped by `stop`."""
    return start_server([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                         "--directory", str(folder)], log, env)


def wait_for_port(port, child, name, log: Path, seconds=30.0):
    """Bounded wait for a server to accept connections; fails early if it exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"{name} exited with status {child.returncode} before listening:"
                             f"\n    {log_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{name} did not accept connections on port {port} within {seconds:.0f} s:"
                     f"\n    {log_tail(log)}")


def log_tail(log: Path, lines=10):
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n    ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def stop(child, name, sig=signal.SIGTERM):
    """Stops a server started here: `sig`, then SIGKILL after 10 s."""
    if child is None or child.poll() is not None:
        return
    child.send_signal(sig)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        print(f"  ({name} ignored {sig.name}; killed)", file=sys.stderr)
        child.kill()
        child.wait()


# --- The machine -------------------------------------------------------------------------------

def command_output(argv, cwd=None):
    """What `argv` prints on stdout, stripped; "" if it cannot be run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              cwd=cwd).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return None


def load_average():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def built_at(path: Path):
    """When `path` (a built binary) was last modified, to the minute."""
    try:
        return datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    except OSError:
        return "unknown"


def git_revision(repo: Path, paths):
    """HEAD's short hash in `repo`, and whether `paths` differ from it."""
    rev = command_output(["git", "rev-parse", "--short", "HEAD"], cwd=repo)
    if not rev:
        return "unknown"
    # Plumbing that only reads: `git diff` may rewrite the index's stat cache.
    dirty = subprocess.run(["git", "--no-optional-locks", "diff-index", "--quiet", "HEAD", "--",
                            *paths], cwd=repo, capture_output=True).returncode
    return rev + (" + uncommitted changes" if dirty else "")


# --- Text --------------------------------------------------------------------------------------

def fmt_int(n):
    return f"{n:,.0f}"


def fmt_ratio(x):
    return f"{x:,.1f}x" if x is not None else "n/a"


def table(headers, rows, align=None):
    """Aligned text table: first column left, the rest right unless `align` says otherwise."""
    align = align or ["<"] + [">"] * (len(headers) - 1)
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  " + "  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def target_note(value, target, higher_is_better, unit="x"):
    met = value >= target if higher_is_better else value < target
    sign = ">=" if higher_is_better else "<"
    return f"target {sign} {target:g}{unit}: {'met' if met else 'NOT MET'}"


def section(title):
    print()
    print(f"== {title} " + "=" * max(0, 94 - len(title)))
    sys.stdout.flush()


def say(text=""):
    print(text)
    sys.stdout.flush()

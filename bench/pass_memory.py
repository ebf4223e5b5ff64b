"""The pass-memory section: one pass (log-etl run) against a fixed body of MAX_RESPONSE_BYTES
served by a local http.server: 64 MiB of tiny elements (the run must fail, writing nothing) and
about 60 MiB of records of about 1 MiB (they land); worst peak RSS beside the function's memory.
"""

import contextlib
from pathlib import Path

from bucket import BUCKET, bucket_records, list_keys, pass_env, prefixed, serve_files, start_moto
from harness import BenchError, runs_figures, say, target_note
from logetl import DATA, FUNCTION_MEMORY_MIB, FUNCTION_TIMEOUT_S, MIB, begin, \
    cached_big_response, log_etl, mib
from report import Column, Report, Summary, Table

MAX_RESPONSE_BYTES = 64 * MIB  # the default of MAX_RESPONSE_BYTES
MAX_RECORDS_PER_RESPONSE = 100_000  # the default of MAX_RECORDS_PER_RESPONSE
RSS_TARGET_MIB = 192.0  # the function's 256 MiB less a 25% margin
# Records of about 1 MiB: 699 KiB of plaintext makes a token of 0.91 MiB, under
# MAX_RECORD_BYTES, its blob under MAX_STRING_BYTES; 65 of them, 59 MiB.
LARGE_RECORDS = 65
LARGE_PLAINTEXT = 699 * 1024

COLUMNS = [Column("response", "what"), Column("runs", "runs"),
           Column("median s", "wall_median", ".2f"), Column("worst s", "wall_worst", ".2f"),
           Column("timeout", "timeout", align="<"), Column("worst RSS MiB", "rss_worst", ".1f"),
           Column("bound", "bound", align="<")]
NOTES = [f"  (the function: {FUNCTION_MEMORY_MIB} MiB, timeout {FUNCTION_TIMEOUT_S} s; bound: "
         f"< {RSS_TARGET_MIB:g} MiB, a 25% margin; worst: the largest of the runs)"]
SUMMARY = Summary(f"- One pass of a {MAX_RESPONSE_BYTES // MIB} MiB response (the function has "
                  f"{FUNCTION_MEMORY_MIB} MiB, {FUNCTION_TIMEOUT_S} s): " + "{each}.",
                  "{what}: peak RSS {rss_worst:.0f} MiB (worst of {runs}), {wall_median:.1f} s")


def run(args, launcher, scratch):
    import boto3

    begin(f"pass-memory: one pass (log-etl run) of a {MAX_RESPONSE_BYTES // MIB} MiB response "
          "(MAX_RESPONSE_BYTES), moto S3")
    work = scratch / "pass-memory"
    work.mkdir()
    tiny = tiny_elements_body(DATA / "pass-memory-tiny.json")
    large_body, key = cached_big_response(launcher, "pass-memory-large", LARGE_RECORDS,
                                          LARGE_PLAINTEXT, args.fresh)
    with contextlib.ExitStack() as servers:
        endpoint, session = start_moto(boto3, servers, work)
        url = serve_files(servers, work / "served", {"tiny.json": tiny, "large.json": large_body})
        s3 = session.client("s3", endpoint_url=endpoint)
        env = pass_env(work, url, endpoint, FERNET_KEY=key)
        say(f"  moto on :{endpoint.rsplit(':', 1)[1]}, bodies served by http.server at {url}")
        tiny_runs = [tiny_pass(launcher, s3, env, url, i) for i in range(1, args.memory_runs + 1)]
        large_runs = [large_pass(launcher, s3, env, url, i)
                      for i in range(1, args.memory_runs + 1)]
    rows = [row(f"{tiny.stat().st_size / MIB:.0f} MiB of tiny elements [0,0,...]: fails, "
                "nothing written", tiny_runs),
            row(f"{large_body.stat().st_size / MIB:.0f} MiB: {LARGE_RECORDS} records of "
                f"{LARGE_PLAINTEXT // 1024} KiB plaintext, landed", large_runs)]
    return Report({}, [Table(COLUMNS, rows, notes=NOTES)], [SUMMARY])


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
    """One run against the tiny elements: it must fail, saying the response is not a batch of
    records (too many), and write nothing. Its Measured."""
    prefix, label = f"bench/tiny-{i}", f"log-etl run (tiny elements, run {i})"
    m = launcher.run(log_etl("run"), prefixed(dict(env, LOG_API_URL=url + "tiny.json"), prefix),
                     label, timeout_s=300, check=False)
    want = ("the response is not a batch of records: response holds more than "
            f"{MAX_RECORDS_PER_RESPONSE} records")
    if m.returncode != 1 or want not in m.stderr_tail:
        raise BenchError(f"{label}: exit status {m.returncode}, expected 1 with '{want}'; "
                         f"stderr:\n    {m.stderr_tail or '(none)'}")
    if list_keys(s3, prefix + "/"):
        raise BenchError(f"{label}: wrote {len(list_keys(s3, prefix + '/'))} objects")
    say(f"  tiny elements run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, failed as "
        "expected, nothing written")
    return m


def large_pass(launcher, s3, env, url, i):
    """One run against the large records: every record must land. Its Measured."""
    prefix, label = f"bench/large-{i}", f"log-etl run (large records, run {i})"
    m = launcher.run(log_etl("run"), prefixed(dict(env, LOG_API_URL=url + "large.json"), prefix),
                     label, timeout_s=300)
    s = m.summary(label)
    if s["records_in"] != LARGE_RECORDS or s["records_landed"] != LARGE_RECORDS:
        raise BenchError(f"{label}: records_in {s['records_in']}, records_landed "
                         f"{s['records_landed']}, quarantined {s['records_quarantined']}; "
                         f"expected {LARGE_RECORDS} landed")
    if i == 1 and bucket_records(s3, f"{prefix}/data/") != LARGE_RECORDS:
        raise BenchError(f"{label}: s3://{BUCKET}/{prefix}/data/ holds "
                         f"{bucket_records(s3, prefix + '/data/')} records")
    say(f"  large records run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, "
        f"{s['records_landed']} landed")
    return m


def row(what, runs):
    """A body's figures: worst peak RSS beside the bound, wall time beside the timeout."""
    figures = runs_figures(runs)
    within = "yes" if figures["wall_worst"] < FUNCTION_TIMEOUT_S else "NO"
    return dict(figures, what=what, timeout=f"within {FUNCTION_TIMEOUT_S} s: {within}",
                bound=target_note(figures["rss_worst"], RSS_TARGET_MIB, False, " MiB"))

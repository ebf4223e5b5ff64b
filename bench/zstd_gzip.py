"""The encodings section: cargo bench --bench encodings (gzip and zstd at their levels on the same
usual records, one core, in process: bytes per record, encode and read time), its output passed
through, its zstd-against-gzip line kept for the summary.
"""

import shlex

from logetl import PYTHON, begin, clean_env
from harness import say
from pipeline import passed_through
from report import Report, Summary

SUMMARY = Summary("- gzip and zstd on the same records (cargo bench --bench encodings): {ratios}.")


def run(args, launcher, scratch):
    begin("encodings: cargo bench --bench encodings (gzip and zstd levels, one core, in process)")
    argv = ["cargo", "bench", "--bench", "encodings"]
    say(f"  $ {shlex.join(argv)}")
    ratios = passed_through(argv, clean_env(LOG_ETL_PYTHON=PYTHON), marker="zstd 3 against")
    return Report({"ratios": ratios}, summaries=[SUMMARY] if ratios else [])

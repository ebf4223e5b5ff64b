"""The large section: saved responses of records of several MiB processed into a folder, the
worst peak RSS of each against its bound: elements over MAX_RECORD_BYTES, quarantined whole, and
large records that land under raised limits.
"""

import shutil
from dataclasses import dataclass, field

from harness import BenchError, runs_figures, say, target_note
from logetl import MIB, begin, cached_big_response, clean_env, mib, process_into_folder, \
    records_by_hour
from report import Column, Report, Summary, Table

RSS_TARGET_MIB = 128.0

COLUMNS = [Column("response", "what"), Column("MiB in", "mib_in", ",.0f"),
           Column("runs", "runs"), Column("median s", "wall_median", ".2f"),
           Column("MiB/s", "mib_per_s", ",.0f"), Column("worst RSS MiB", "rss_worst", ".1f"),
           Column("bound", "bound", align="<")]
NOTES = ["  (log-etl process into a folder; worst RSS: the largest peak RSS of the runs)"]
SUMMARY = Summary("- Large records, `process` into a folder: {each}.",
                  "{what} ({mib_in:,.0f} MiB): {wall_median:.1f} s (median of {runs}), peak RSS "
                  "{rss_worst:.0f} MiB (worst)")


@dataclass
class LargeCase:
    """A saved response of large records, what process must do with it, and its settings."""

    name: str
    what: str
    records: int
    plaintext_bytes: int
    lands: bool  # every record lands (else every record is quarantined)
    env: dict = field(default_factory=dict)


CASES = [
    # 2.25 MiB of plaintext makes a token of 3 MiB: over MAX_RECORD_BYTES (1 MiB), quarantined
    # whole as received.
    LargeCase("large-quarantined", "250 elements of 3 MiB, over MAX_RECORD_BYTES: quarantined",
              250, 9 * MIB // 4, lands=False),
    LargeCase("large-landed", "200 records of 3 MiB plaintext under limits of 8 MiB: landed",
              200, 3 * MIB, lands=True,
              env={"MAX_RECORD_BYTES": 8 * MIB, "MAX_STRING_BYTES": 8 * MIB}),
]


def run(args, launcher, scratch):
    begin("large: saved responses of records of several MiB into a folder (process)")
    rows = []
    for case in CASES:
        response, _ = cached_big_response(launcher, case.name, case.records,
                                          case.plaintext_bytes, args.fresh)
        runs = [large_run(launcher, scratch, case, response, response.parent / "fernet.key", i)
                for i in range(1, args.memory_runs + 1)]
        rows.append(row(case, response.stat().st_size, runs))
    return Report({}, [Table(COLUMNS, rows, notes=NOTES)], [SUMMARY])


def large_run(launcher, scratch, case, response, key_file, i):
    """One log-etl process of a large case into a new folder, checked; its Measured."""
    out = scratch / f"{case.name}-{i}"
    label = f"log-etl process ({case.name}, run {i})"
    m, s = process_into_folder(launcher, response, key_file, out, label,
                               env=clean_env(**case.env), timeout_s=900)
    want = (case.records, 0) if case.lands else (0, case.records)
    got = (s["records_landed"], s["records_quarantined"])
    if s["records_in"] != case.records or got != want:
        raise BenchError(f"{label}: records_in {s['records_in']}, landed {got[0]}, quarantined "
                         f"{got[1]}; expected {case.records}, {want[0]}, {want[1]}")
    if case.lands and i == 1 and sum(records_by_hour(out, "quarantine").values()) != case.records:
        raise BenchError(f"{label}: the folder holds {sum(records_by_hour(out).values())} "
                         f"records, expected {case.records}")
    shutil.rmtree(out)
    say(f"  {case.name} run {i}: {m.wall_s:6.2f} s, peak RSS {mib(m):>6} MiB, "
        f"{s['bytes_out'] / 1e6:,.0f} MB written")
    return m


def row(case, size, runs):
    """A case's figures: its size, time, throughput and worst peak RSS against the bound."""
    figures = runs_figures(runs)
    return dict(figures, what=case.what, mib_in=size / MIB,
                mib_per_s=size / MIB / figures["wall_median"],
                bound=target_note(figures["rss_worst"], RSS_TARGET_MIB, False, " MiB"))

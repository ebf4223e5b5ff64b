"""The one renderer of the benchmark's figures. A section hands over a Report: its figures as
rows of plain values and a dict of facts, with the layout that reads them (columns, notes, the
lines that set ratios beside targets, the summary line for the README). render() prints it as the
section's tables; summary() prints every section's README line at the end.

Every text here is a str.format template over the report's facts (a summary's `each` over one
row at a time); a cell is a value formatted with its column's spec, None a blank, text as is.
"""

import datetime
import os
import platform
from dataclasses import dataclass, field

from harness import cpu_model, load_average, say, section, table


@dataclass
class Column:
    """A table column: its header, the row key it shows, the format spec of a number there and
    the unit after it, and its alignment ("" for the default: the first column left, the others
    right)."""

    header: str
    key: str
    spec: str = ""
    align: str = ""
    unit: str = ""


@dataclass
class Table:
    """Rows (dicts by column key) shown under `columns`, a caption above, notes below, and then
    `verdicts`: the lines that set ratios beside their targets."""

    columns: list
    rows: list
    caption: str = ""
    notes: list = field(default_factory=list)
    verdicts: list = field(default_factory=list)


@dataclass
class Summary:
    """A README line: `text`, in which {each} stands for `each` filled from every row of the
    report's table `table`, joined by "; "."""

    text: str
    each: str = ""
    table: int = 0


@dataclass
class Report:
    """A section's figures and their layout: its tables and its summary lines."""

    facts: dict
    tables: list = field(default_factory=list)
    summaries: list = field(default_factory=list)


def cell(value, column):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return format(value, column.spec) + column.unit


def render(report):
    """A section's tables, as printed at its end."""
    for t in report.tables:
        say()
        if t.caption:
            say("  " + t.caption.format(**report.facts))
        aligns = [c.align or ("<" if i == 0 else ">") for i, c in enumerate(t.columns)]
        rows = [[cell(row.get(c.key), c) for c in t.columns] for row in t.rows]
        say(table([c.header for c in t.columns], rows, aligns))
        for note in t.notes:
            say(note.format(**report.facts))
        if t.verdicts:
            say()
            for line in t.verdicts:
                say("  " + line.format(**report.facts))


def summary_line(report, s):
    each = "; ".join(s.each.format(**row) for row in report.tables[s.table].rows) if s.each \
        else ""
    return s.text.format(**report.facts, each=each)


def render_facts(title, pairs):
    """A heading, and `pairs` ((name, value)) aligned under it."""
    section(title)
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        say(f"  {key:<{width}}  {value}")


def summary(reports, failures, command):
    """The README lines of every report, the command, and what failed."""
    section("summary (for the README)")
    say(f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, {cpu_model()}, "
        f"nproc {len(os.sched_getaffinity(0))}, load average {load_average()} at the end:")
    say()
    for report in reports:
        for s in report.summaries:
            say(summary_line(report, s))
    say()
    say(f"Command: {command}")
    if failures:
        say()
        for name, err in failures:
            say(f"FAILED: {name}: {err}")

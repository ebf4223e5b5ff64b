"""Runs the Athena table's view and named queries on a real SQL engine (DuckDB) over objects as
`log-etl process --out-dir` writes them, with everything about the table as the template declares
it.

Reads on stdin one JSON document, the template's parts with their intrinsics already evaluated for
one stack (tests/template/stack.rs does that, the one evaluator of the template):
{"database": name, "table": the Glue table's TableInput, "queries": {logical id: SQL}}, the
queries being every AWS::Athena::NamedQuery. From the table: its columns, partition key, SerDe
and its parameters, location template and partition projection (format, range, interval). The
table is built as the OpenX JSON SerDe reads the objects (`read_row`): a string column gets a JSON
string's content, or any other JSON value's text (as written); a missing key or JSON null gives
NULL; keys are matched exactly or case-insensitively as `case.insensitive` says, through the
`mapping.*` parameters, and a key repeated under that rule fails the row as OpenX does ("Duplicate
key"). An object whose hour folder the projection does not generate (outside the range, or not in
the format) is invisible to Athena: it is listed, not read.

The named queries are Trino SQL: sqlglot transpiles them from dialect athena to duckdb, and
TRINO_TO_DUCKDB below is the one place where a function's DuckDB form is written by hand. The
views are created first, then each view and each other query is run.

Prints one JSON document: {"views": {name: [row, ...]}, "queries": {logical id: [row, ...]},
"invisible": [{"object": path, "why": text}, ...], "sql": {logical id: DuckDB SQL}}; timestamps
as "YYYY-MM-DDThh:mm:ss.mmm". Fails (exit 1, the reason on stderr) where Athena's query would.

usage: athena_sql.py --out-dir DIR < stack.json
"""

import argparse
import datetime as dt
import gzip
import json
import os
import re
import sys

import duckdb
import sqlglot
from sqlglot import exp

# Trino functions whose DuckDB form is written here rather than left to sqlglot: DuckDB lacks
# them, or its function of the same name behaves otherwise on values a landed record can hold.
# Each is DuckDB SQL over the arguments' DuckDB SQL ({0}, {1}). date_parse's %f needs no entry:
# DuckDB's strptime reads "284" as .284 s, as Trino does (the in_time comparison checks it).
TRINO_TO_DUCKDB = {
    # DuckDB has only from_base64 (standard alphabet, padded).
    "from_base64url": "from_base64(rpad(replace(replace({0}, '-', '+'), '_', '/'),"
    " CAST(ceil(length({0}) / 4) * 4 AS INTEGER), '='))",
    # Not in DuckDB. Trino: the keys of an object, the length of an array, 0 for a scalar, NULL
    # for text that is not JSON or a path that is not there.
    "json_size": "CASE WHEN NOT json_valid({0}) THEN NULL"
    " WHEN json_type({0}, {1}) = 'OBJECT' THEN len(json_keys({0}, {1}))"
    " WHEN json_type({0}, {1}) = 'ARRAY' THEN json_array_length({0}, {1})"
    " WHEN json_type({0}, {1}) IS NOT NULL THEN 0 END",
    # DuckDB fails on text that is not JSON; Trino gives NULL.
    "json_extract": "CASE WHEN json_valid({0}) THEN {0} -> {1} END",
    # As json_extract; and Trino gives NULL for an object, an array or null, where DuckDB gives
    # their JSON text.
    "json_extract_scalar": "CASE WHEN json_valid({0}) THEN CASE WHEN json_type({0}, {1})"
    " NOT IN ('OBJECT', 'ARRAY', 'NULL') THEN {0} ->> {1} END END",
    # DuckDB's cast also reads '1.5' (as 2) and '1e3'; Trino's reads a sign and digits only.
    "try_cast_bigint": "CASE WHEN regexp_full_match({0}, '[+-]?[0-9]+')"
    " THEN TRY_CAST({0} AS BIGINT) END",
}


class QueryFailure(Exception):
    """What would fail the query in Athena."""


# --- partition projection ------------------------------------------------------------------------

JAVA_FIELDS = {"yyyy": "year", "MM": "month", "dd": "day", "HH": "hour"}
WIDTHS = {"year": 4, "month": 2, "day": 2, "hour": 2}


def java_tokens(pattern):
    """A Java DateTimeFormatter pattern of yyyy, MM, dd, HH and quoted literals, as
    ("field", name) and ("text", literal) tokens."""
    tokens, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "'":
            end = pattern.index("'", i + 1)
            tokens.append(("text", pattern[i + 1 : end] or "'"))
            i = end + 1
        elif c.isalpha():
            run = len(pattern[i:]) - len(pattern[i:].lstrip(c))
            letters = pattern[i : i + run]
            if letters not in JAVA_FIELDS:
                raise SystemExit(f"athena_sql: pattern letters {letters!r} are not emulated")
            tokens.append(("field", JAVA_FIELDS[letters]))
            i += run
        else:
            tokens.append(("text", c))
            i += 1
    return tokens


def java_regex(pattern):
    return re.compile(
        "".join(
            f"(?P<{value}>[0-9]{{{WIDTHS[value]}}})" if kind == "field" else re.escape(value)
            for kind, value in java_tokens(pattern)
        )
        + r"\Z"
    )


def java_format(pattern, when):
    """`when` formatted with the pattern, as Athena writes a projected value."""
    return "".join(
        f"{getattr(when, value):0{WIDTHS[value]}}" if kind == "field" else value
        for kind, value in java_tokens(pattern)
    )


RELATIVE_DATE = re.compile(
    r"\s*NOW\s*(([\+\-])\s*([0-9]+)\s*(YEARS?|MONTHS?|WEEKS?|DAYS?|HOURS?|MINUTES?|SECONDS?)\s*)?\Z"
)
UNIT_SECONDS = {"WEEK": 7 * 86400, "DAY": 86400, "HOUR": 3600, "MINUTE": 60, "SECOND": 1}


class Projection:
    """The hour folders Athena generates for the partition key: the format, range and interval."""

    def __init__(self, parameters, key, now):
        prefix = f"projection.{key}."
        if parameters.get(prefix + "type") != "date":
            raise SystemExit(f"athena_sql: only a date projection of {key} is emulated")
        if (parameters.get(prefix + "interval"), parameters.get(prefix + "interval.unit")) != ("1", "HOURS"):
            raise SystemExit("athena_sql: only a projection by the hour is emulated")
        self.format = parameters[prefix + "format"]
        self.regex = java_regex(self.format)
        start, end = parameters[prefix + "range"].split(",")
        self.start, self.end = self.bound(start, now), self.bound(end, now)

    def bound(self, text, now):
        match = RELATIVE_DATE.match(text)
        if match:
            if not match.group(1):
                return now
            unit = match.group(4).rstrip("S")
            if unit not in UNIT_SECONDS:
                raise SystemExit(f"athena_sql: a relative range in {unit}S is not emulated")
            sign = 1 if match.group(2) == "+" else -1
            return now + dt.timedelta(seconds=sign * int(match.group(3)) * UNIT_SECONDS[unit])
        when = self.parse(text)
        if when is None:
            raise SystemExit(f"athena_sql: range bound {text!r} is not in the format {self.format!r}")
        return when

    def parse(self, value):
        match = self.regex.match(value)
        if not match:
            return None
        try:
            return dt.datetime(**{k: int(v) for k, v in match.groupdict().items()}, tzinfo=dt.timezone.utc)
        except ValueError:
            return None

    def why_not_projected(self, value):
        """None when Athena generates `value` as a partition; else why it does not."""
        when = self.parse(value)
        if when is None or java_format(self.format, when) != value:
            return f"{value!r} is not a value of the format {self.format!r}"
        if not self.start <= when <= self.end:
            return f"{value} is outside the range {self.start:%Y-%m-%dT%H} .. {self.end:%Y-%m-%dT%H:%M}"
        if (when - self.start) % dt.timedelta(hours=1):
            return f"{value} is not a whole number of hours after the range's start"
        return None


# --- the OpenX JSON SerDe ------------------------------------------------------------------------


class RawNumber:
    """A JSON number kept as written, as the SerDe's text of it is."""

    def __init__(self, text):
        self.text = text


def json_text(value):
    """The JSON text of a parsed value, compact, numbers as written."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, RawNumber):
        return value.text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    return "{" + ",".join(json_text(k) + ":" + json_text(v) for k, v in value.items()) + "}"


class SerDe:
    """How org.openx.data.jsonserde.JsonSerDe reads a line into string columns."""

    def __init__(self, info, columns):
        library = info["SerializationLibrary"]
        if library != "org.openx.data.jsonserde.JsonSerDe":
            raise SystemExit(f"athena_sql: SerDe {library} is not emulated")
        parameters = info.get("Parameters", {})
        self.case_insensitive = str(parameters.get("case.insensitive", "true")).lower() == "true"
        self.keys = {column: column for column in columns}
        for name, value in parameters.items():
            if name.startswith("mapping."):
                column = name[len("mapping."):]
                if column not in self.keys:
                    raise SystemExit(f"athena_sql: {name} maps no column")
                self.keys[column] = value
            elif name != "case.insensitive":
                raise SystemExit(f"athena_sql: SerDe parameter {name} is not emulated")

    def fold(self, key):
        return key.lower() if self.case_insensitive else key

    def object_from_pairs(self, pairs):
        found = {}
        for key, value in pairs:
            folded = self.fold(key)
            if folded in found:
                raise QueryFailure(
                    f'Row is not a valid JSON Object - JSONException: Duplicate key "{folded}"'
                )
            found[folded] = value
        return found

    def read_row(self, line):
        def no_constant(name):
            raise QueryFailure(f"Row is not a valid JSON Object: {name}")

        try:
            record = json.loads(
                line,
                object_pairs_hook=self.object_from_pairs,
                parse_int=RawNumber,
                parse_float=RawNumber,
                parse_constant=no_constant,
            )
        except json.JSONDecodeError as e:
            raise QueryFailure(f"Row is not a valid JSON Object: {e}") from e
        if not isinstance(record, dict):
            raise QueryFailure("Row is not a valid JSON Object")
        row = []
        for column, key in self.keys.items():
            value = record.get(self.fold(key))
            row.append(value if isinstance(value, str) or value is None else json_text(value))
        return row


# --- the table -----------------------------------------------------------------------------------


def table_rows(stack, out_dir):
    """(database, table name, columns, partition key, rows, invisible objects) of the table."""
    database = stack["database"]
    table_input = stack["table"]
    storage = table_input["StorageDescriptor"]
    columns = [c["Name"] for c in storage["Columns"]]
    for c in storage["Columns"]:
        if c["Type"] != "string":
            raise SystemExit(
                f"athena_sql: column {c['Name']} is {c['Type']}: only string columns are read here"
                " (a value that does not fit a typed column fails the query)"
            )
    (key,) = [k["Name"] for k in table_input["PartitionKeys"]]
    parameters = {k: str(v) for k, v in table_input["Parameters"].items()}
    now = dt.datetime.now(dt.timezone.utc)
    projection = Projection(parameters, key, now)
    serde = SerDe(storage["SerdeInfo"], columns)

    location = parameters["storage.location.template"]
    match = re.fullmatch(r"s3://[^/]+/(.*)\$\{" + key + r"\}", location)
    if not match:
        raise SystemExit(f"athena_sql: location template {location!r} is not s3://bucket/prefix/${{{key}}}")
    root = os.path.join(out_dir, match.group(1))

    rows, invisible = [], []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            value = os.path.relpath(folder, root).replace(os.sep, "/")
            why = projection.why_not_projected(value)
            if why:
                invisible.append({"object": os.path.relpath(path, out_dir), "why": why})
                continue
            for line in object_lines(path):
                rows.append(serde.read_row(line) + [value])
    return database, table_input["Name"], columns, key, rows, invisible


def object_lines(path):
    """The lines of a landed object, decompressed by its extension as Athena does: .gz by Python's
    gzip, .zst by DuckDB's own zstd reader (each line one VARCHAR, read as written: no delimiter,
    quote or escape can occur in a JSON line, which holds no raw control character)."""
    if path.endswith(".zst"):
        sql = (
            "SELECT line FROM read_csv(?, columns = {'line': 'VARCHAR'}, delim = chr(1),"
            " quote = '', escape = '', header = false, auto_detect = false, compression = 'zstd')"
        )
        return [line for (line,) in duckdb.execute(sql, [path]).fetchall() if line]
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


# --- the queries ---------------------------------------------------------------------------------


def mapped(node):
    """The hand-written DuckDB form of a Trino function node, or None (see TRINO_TO_DUCKDB)."""
    if isinstance(node, exp.Anonymous):
        name, args = node.name.lower(), node.expressions
    elif isinstance(node, exp.JSONExtractScalar):
        name, args = "json_extract_scalar", [node.this, node.expression]
    elif isinstance(node, exp.JSONExtract):
        name, args = "json_extract", [node.this, node.expression]
    elif isinstance(node, exp.TryCast) and node.to.is_type("bigint"):
        name, args = "try_cast_bigint", [node.this]
    else:
        return None
    if name not in TRINO_TO_DUCKDB:
        return None
    sql = TRINO_TO_DUCKDB[name].format(*(f"({a.sql(dialect='duckdb')})" for a in args))
    return sqlglot.parse_one(sql, read="duckdb")


def to_duckdb(trino_sql):
    """Trino (Athena) SQL as DuckDB SQL: sqlglot's transpilation, with TRINO_TO_DUCKDB applied."""
    tree = sqlglot.parse_one(trino_sql, read="athena")
    # Deepest nodes first, so an argument is already in its DuckDB form when its caller is mapped.
    for node in reversed(list(tree.walk(bfs=True))):
        replacement = mapped(node)
        if replacement is not None:
            node.replace(replacement)
    return tree.sql(dialect="duckdb")


def cell(value):
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="milliseconds")
    return value


def fetch(con, sql):
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, map(cell, row))) for row in cursor.fetchall()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    stack = json.load(sys.stdin)

    try:
        database, table, columns, key, rows, invisible = table_rows(stack, args.out_dir)
    except QueryFailure as e:
        print(f"athena_sql: the query fails: {e}", file=sys.stderr)
        return 1

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # Athena's session time zone
    con.execute(f'CREATE SCHEMA "{database}"')
    names = ", ".join(f'"{c}" VARCHAR' for c in columns + [key])
    con.execute(f'CREATE TABLE "{database}"."{table}" ({names})')
    if rows:
        marks = ", ".join("?" for _ in columns + [key])
        con.executemany(f'INSERT INTO "{database}"."{table}" VALUES ({marks})', rows)

    queries = list(stack["queries"].items())
    creates = [(i, q) for i, q in queries if re.match(r"\s*CREATE\b", q, re.IGNORECASE)]
    selects = [(i, q) for i, q in queries if (i, q) not in creates]
    out = {"views": {}, "queries": {}, "invisible": invisible, "sql": {}}
    for logical_id, sql in creates + selects:
        duck = to_duckdb(sql)
        out["sql"][logical_id] = duck
        try:
            if (logical_id, sql) in creates:
                con.execute(duck)
                view = sqlglot.parse_one(sql, read="athena").this
                name = view.name if isinstance(view, exp.Table) else view.this.name
                out["views"][name] = fetch(con, f'SELECT * FROM "{database}"."{name}"')
            else:
                out["queries"][logical_id] = fetch(con, duck)
        except duckdb.Error as e:
            print(f"athena_sql: {logical_id} fails on DuckDB: {e}\n{duck}", file=sys.stderr)
            return 1
    json.dump(out, sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

//! The Athena table's SQL on a real engine. A mixed batch (the generator's unusual records, and
//! hand-made ones of every shape a typed table fails on) goes through `log-etl process`; the
//! objects it writes are read as the template's table by `tests/py/athena_sql.py` (the OpenX
//! SerDe's rules, the partition projection and the named queries, on DuckDB), given the table and
//! the queries as `tests/template/stack.rs` evaluates them, and the view's rows and the
//! requests-per-method query are compared with the original records; once over gzip objects
//! and once over zstd ones (`COMPRESSION=zstd`, which DuckDB decompresses itself). The same comparison run on
//! a deliberately broken copy of the view must report the difference.

use crate::common;
use crate::common::folder::files_under;
use crate::template::{self, stack::Stack};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use log_etl::batch::encode::ObjectEncoding;
use log_etl::batch::layout::{ObjectLayout, PartitionStyle};
use log_etl::local::synth::{self, SourceItem, Synth, SynthOptions};
use log_etl::record::fernet::{KeyRing, generate_key};
use log_etl::record::fields::Field;
use log_etl::record::{hour, pyrepr};
use serde_json::{Map, Value, json};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
const SHA256_OF_1: &str = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";

/// A batch landed by `log-etl process` in a folder of its own, with the records it holds.
struct Landed {
    dir: tempfile::TempDir,
    style: PartitionStyle,
    records: Vec<Map<String, Value>>,
    summary: Value,
}

impl Landed {
    /// Encrypts `records`, saves them as an API response and runs `process` on it (gzip).
    fn process(records: Vec<Map<String, Value>>, style: PartitionStyle) -> Self {
        Self::process_as(records, style, ObjectEncoding::GzipNdjson)
    }

    /// [`Landed::process`] with `COMPRESSION` set to `encoding`; every data object is checked to
    /// be of it.
    fn process_as(
        records: Vec<Map<String, Value>>,
        style: PartitionStyle,
        encoding: ObjectEncoding,
    ) -> Self {
        let key = generate_key();
        let ring = KeyRing::parse(&key).unwrap();
        let items: Vec<SourceItem> = records.iter().map(|r| source_item(&ring, r)).collect();
        let dir = tempfile::tempdir().unwrap();
        let response = dir.path().join("response.json");
        std::fs::write(&response, synth::response_body(&items)).unwrap();
        let out = common::log_etl(
            &[
                "process",
                "--input",
                response.to_str().unwrap(),
                "--out-dir",
                dir.path().join("out").to_str().unwrap(),
            ],
            &[
                ("FERNET_KEY", key.as_str()),
                ("PARTITION_STYLE", &style.to_string()),
                ("COMPRESSION", &encoding.to_string()),
            ],
        );
        common::assert_success(&out);
        let data = dir.path().join("out/data");
        if data.exists() {
            for name in files_under(&data) {
                assert!(name.ends_with(encoding.extension()), "{name}");
            }
        }
        let summary = serde_json::from_slice(&out.stdout).expect("process prints a JSON summary");
        Self {
            dir,
            style,
            records,
            summary,
        }
    }

    fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// The hour folder Athena's projection names for a record: its `datehour`.
    fn datehour(&self, record: &Map<String, Value>) -> String {
        let placement = hour::place(record.get("inDate")).expect("a landed record has an hour");
        let layout = ObjectLayout::new("data", "quarantine", self.style).unwrap();
        let path = layout.data_hour_path(placement.hour);
        path.strip_prefix("data/")
            .expect("under the prefix")
            .to_owned()
    }

    /// Runs the template's SQL over the landed objects; panics with the script's error if it
    /// fails.
    fn query(&self, template: &Path) -> Value {
        let out = run_athena_sql(template, &self.out_dir(), self.style);
        assert!(
            out.status.success(),
            "athena_sql.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("athena_sql.py prints JSON")
    }
}

/// Runs the template's SQL over the objects in `out_dir`, for a stack with the template's
/// defaults and `style` folders: the table and the named queries are evaluated here (the one
/// evaluator of the template) and handed to the script as JSON on stdin.
fn run_athena_sql(template: &Path, out_dir: &Path, style: PartitionStyle) -> Output {
    let style = style.to_string();
    let stack = athena_stack(template, &[("PartitionStyle", &style)]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/athena_sql.py");
    let mut child = Command::new(common::python())
        .arg(script)
        .args(["--out-dir", out_dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("athena_sql.py starts");
    child
        .stdin
        .take()
        .expect("a pipe")
        .write_all(stack.to_string().as_bytes())
        .expect("athena_sql.py reads its input");
    child.wait_with_output().expect("athena_sql.py runs")
}

/// What the script needs of a stack of `template` with `parameters`: the Glue table's
/// `TableInput`, its database's name and every named query's SQL, intrinsics evaluated.
fn athena_stack(template: &Path, parameters: &[(&str, &str)]) -> Value {
    let t = template::read(template);
    let stack = Stack::new(&t, parameters);
    let resources = template::resources_of_type(&t, "AWS::Glue::Table");
    let [(_, table)] = &resources[..] else {
        panic!("expected one AWS::Glue::Table")
    };
    let database = template::ref_name(template::at(table, &["Properties", "DatabaseName"]));
    let queries: Map<String, Value> = template::resources_of_type(&t, "AWS::Athena::NamedQuery")
        .into_iter()
        .map(|(id, query)| {
            let sql = stack.text(template::at(query, &["Properties", "QueryString"]));
            (id.to_owned(), Value::String(sql))
        })
        .collect();
    json!({
        "database": stack.text(template::at(
            template::properties(&t, database),
            &["DatabaseInput", "Name"]
        )),
        "table": stack.eval(template::at(table, &["Properties", "TableInput"])),
        "queries": queries,
    })
}

fn source_item(ring: &KeyRing, record: &Map<String, Value>) -> SourceItem {
    let plaintext = pyrepr::to_repr(&Value::Object(record.clone()));
    SourceItem {
        source: json!({"data": ring.encrypt(plaintext.as_bytes())}).to_string(),
        truth: Some(record.clone()),
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A usual record, named by its `activity`, dated `in_date`.
fn usual(activity: &str, in_date: &str) -> Map<String, Value> {
    let record = json!({
        "user_id": SHA256_OF_1, "record_id": 98830, "activity": activity,
        "url": "/api/products/product/", "method": "POST", "name": "json_logger",
        "inDate": in_date, "detail": {"message": "POST purchase", "levelname": "INFO"},
    });
    record.as_object().unwrap().clone()
}

/// A usual record with `key` set to `value` (or removed, for `None`).
fn with(activity: &str, key: &str, value: Option<Value>) -> Map<String, Value> {
    let mut record = usual(activity, "2023-03-18T15:30:00.000Z");
    match value {
        Some(value) => record.insert(key.to_owned(), value),
        None => record.shift_remove(key),
    };
    record
}

fn number(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Records of every shape a typed or case-insensitive table fails on, values kept verbatim or
/// escaped, and dates at the edges of what the table shows.
fn unusual_records(now: DateTime<Utc>) -> Vec<Map<String, Value>> {
    let mut both_dates = usual("both inDate and indate", "2023-03-18T15:31:00.000Z");
    both_dates.insert("indate".into(), json!("not the date"));
    vec![
        // record_id that does not fit a bigint
        with("record_id text", "record_id", Some(json!("98830-b"))),
        with(
            "record_id 2^63",
            "record_id",
            Some(number("9223372036854775808")),
        ),
        with(
            "record_id huge",
            "record_id",
            Some(number("123456789012345678901234567890")),
        ),
        with("record_id fraction", "record_id", Some(number("1.5"))),
        with("record_id negative", "record_id", Some(number("-7"))),
        // detail that does not fit a struct
        with("detail text", "detail", Some(json!("disk full"))),
        with("detail list", "detail", Some(json!(["a", 1, null]))),
        with("detail missing", "detail", None),
        with(
            "detail odd fields",
            "detail",
            Some(json!({"message": 5, "levelname": null, "extra": {"a": [1]}})),
        ),
        with(
            "detail nested message",
            "detail",
            Some(json!({"message": {"nested": true}, "levelname": "WARNING"})),
        ),
        // keys that differ only in case
        both_dates,
        // user_id kept verbatim or escaped
        with(
            "user_id base64 tail not canonical",
            "user_id",
            Some(json!("a4ayc_80_OGda4BO_1o_VxR62k6qIvHUnAHlLdt4dbSw")),
        ),
        with(
            "user_id looks compact",
            "user_id",
            Some(json!("a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw")),
        ),
        with(
            "user_id upper",
            "user_id",
            Some(json!(SHA256_OF_1.to_uppercase())),
        ),
        with("user_id number", "user_id", Some(json!(12345))),
        with("user_id null", "user_id", Some(Value::Null)),
        with("user_id list", "user_id", Some(json!(["x"]))),
        with(
            "user_id escape-shaped",
            "user_id",
            Some(json!({"~": {"~": null}})),
        ),
        // method kept verbatim or escaped
        with("method code", "method", Some(json!(7))),
        with("method unknown", "method", Some(json!("PROPFIND"))),
        with("method lower case", "method", Some(json!("get"))),
        with("method float", "method", Some(number("1.0"))),
        with("method two keys", "method", Some(json!({"~": 1, "x": 2}))),
        with("method escape-shaped", "method", Some(json!({"~": "GET"}))),
        with("method null", "method", Some(Value::Null)),
        // other fields missing, empty or of another type
        with("url missing", "url", None),
        with("name number", "name", Some(json!(3))),
        with("", "url", Some(json!("/q?name=\"x\"&\u{e9}=\u{1f600}\t'"))),
        // inDate not canonical, and at the edges of the hours the table shows
        usual("inDate seconds", "2023-03-18T15:30:00Z"),
        usual("inDate offset", "2023-03-19T00:30:00.000+09:00"),
        usual("inDate last millisecond", "2023-03-18T15:59:59.999Z"),
        usual("inDate first hour shown", "2000-01-01T00:00:00.000Z"),
        usual("inDate 2015", "2015-06-01T12:00:00.000Z"),
        usual("inDate a day ahead", &millis(now + Duration::hours(23))),
    ]
}

/// The generator's records (400 in 1000 unusual) an hour ago and in 2023, across an hour, and
/// the hand-made ones.
fn mixed_batch(now: DateTime<Utc>) -> Vec<Map<String, Value>> {
    let ring = KeyRing::parse(&generate_key()).unwrap();
    let mut synth = Synth::new(SynthOptions {
        seed: 11,
        unusual_per_mille: 400,
        ..SynthOptions::default()
    });
    let mut records: Vec<Map<String, Value>> = synth
        .batch(&ring, at("2023-03-18T15:59:40.000Z"), 100)
        .into_iter()
        .chain(synth.batch(&ring, now - Duration::hours(1), 100))
        .map(|item| item.truth.expect("no undecryptable records were asked for"))
        .collect();
    records.extend(unusual_records(now));
    records
}

/// A value as a string column holds it: a string's content, any other value's JSON text, NULL
/// for null or no key.
fn column_text(value: Option<&Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => json!(s),
        Some(other) => json!(other.to_string()),
    }
}

/// A field of `detail` as `json_extract_scalar` gives it: a string, number or boolean as text.
fn detail_field(record: &Map<String, Value>, field: &str) -> Value {
    match record.get("detail").and_then(|d| d.get(field)) {
        Some(Value::String(s)) => json!(s),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => json!(v.to_string()),
        _ => Value::Null,
    }
}

/// The row the restore view must give for an original record.
fn expected_row(landed: &Landed, record: &Map<String, Value>) -> Value {
    let record_id = column_text(record.get("record_id"))
        .as_str()
        .and_then(|t| t.parse::<i64>().ok())
        .map_or(Value::Null, Value::from);
    // A canonical inDate (one the compaction shortens, not escapes) as a timestamp, UTC
    let in_time = match record.get("inDate") {
        Some(Value::String(s)) if matches!(Field::InDate.shorten(json!(s)), Value::String(short) if short != *s) =>
        {
            json!(s.trim_end_matches('Z'))
        }
        _ => Value::Null,
    };
    json!({
        "user_id": column_text(record.get("user_id")),
        "record_id": record_id,
        "activity": column_text(record.get("activity")),
        "url": column_text(record.get("url")),
        "method": column_text(record.get("method")),
        "name": column_text(record.get("name")),
        "indate": column_text(record.get("inDate")),
        "in_time": in_time,
        "detail": column_text(record.get("detail")),
        "detail_message": detail_field(record, "message"),
        "detail_levelname": detail_field(record, "levelname"),
        "datehour": landed.datehour(record),
    })
}

/// Rows as sorted JSON text, so two lists compare as multisets.
fn counted(rows: &[Value]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for row in rows {
        let sorted: BTreeMap<&String, &Value> = row.as_object().expect("a row").iter().collect();
        *counts
            .entry(serde_json::to_string(&sorted).unwrap())
            .or_default() += 1;
    }
    counts
}

/// `Err` naming the rows that only one side has.
fn compare(what: &str, expected: &[Value], actual: &[Value]) -> Result<(), String> {
    let mut counts = counted(expected);
    for (row, n) in counted(actual) {
        *counts.entry(row).or_default() -= n;
    }
    let missing: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, _)| r)
        .collect();
    let unexpected: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n < 0)
        .map(|(r, _)| r)
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let list = |rows: &[&String]| {
        rows.iter()
            .take(5)
            .map(|r| format!("\n    {r}"))
            .collect::<String>()
    };
    Err(format!(
        "{what}: {} expected rows missing, {} rows not expected\n  missing:{}\n  not expected:{}",
        missing.len(),
        unexpected.len(),
        list(&missing),
        list(&unexpected)
    ))
}

/// The restore view's rows against the records.
fn compare_view(landed: &Landed, result: &Value) -> Result<(), String> {
    let expected: Vec<Value> = landed
        .records
        .iter()
        .map(|r| expected_row(landed, r))
        .collect();
    let actual = result["views"]["log_records_restored"]
        .as_array()
        .expect("the restore view's rows");
    compare("log_records_restored", &expected, actual)
}

/// The requests-per-method query against the records of the last day, counted here.
fn compare_requests_per_method(landed: &Landed, result: &Value) -> Result<(), String> {
    let layout = ObjectLayout::new("data", "quarantine", landed.style).unwrap();
    let day_ago = layout.data_hour_path(hour::Hour::of(Utc::now() - Duration::days(1)));
    let since = day_ago.strip_prefix("data/").unwrap().to_owned();
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for record in &landed.records {
        let row = expected_row(landed, record);
        let datehour = row["datehour"].as_str().unwrap().to_owned();
        if datehour >= since {
            *counts
                .entry((datehour, row["method"].to_string()))
                .or_default() += 1;
        }
    }
    let expected: Vec<Value> = counts
        .into_iter()
        .map(|((datehour, method), n)| {
            let method: Value = serde_json::from_str(&method).unwrap();
            json!({"datehour": datehour, "method": method, "requests": n})
        })
        .collect();
    assert!(expected.len() >= 3, "too few records in the last day");
    let actual = result["queries"]["RequestsPerMethodQuery"]
        .as_array()
        .expect("the query's rows");
    compare("requests per method", &expected, actual)
}

/// A copy of the template with each `(from, to)` replaced once; `from` must be there.
fn broken_template(dir: &Path, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(TEMPLATE).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "the template no longer has {from:?}");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join("template.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_landed_all(landed: &Landed) {
    assert_eq!(
        landed.summary["records_landed"].as_u64(),
        Some(landed.records.len() as u64),
        "{}",
        landed.summary
    );
    assert_eq!(landed.summary["records_quarantined"], 0);
}

/// A mixed batch landed by the command line in `style` folders, queried through the template's
/// table, view and requests-per-method query: every object is in a projected hour, the view gives
/// each original record back, and the query counts the last day's requests per method and hour.
fn assert_the_sql_gives_back_a_mixed_batch(style: PartitionStyle, encoding: ObjectEncoding) {
    let landed = Landed::process_as(mixed_batch(Utc::now()), style, encoding);
    assert_landed_all(&landed);
    let result = landed.query(Path::new(TEMPLATE));
    assert_eq!(result["invisible"], json!([]));
    compare_view(&landed, &result).unwrap_or_else(|e| panic!("{e}"));
    compare_requests_per_method(&landed, &result).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_restore_view_gives_back_every_record_of_a_mixed_batch() {
    assert_the_sql_gives_back_a_mixed_batch(PartitionStyle::Flat, ObjectEncoding::GzipNdjson);
}

#[test]
fn the_restore_view_gives_back_every_record_of_a_mixed_batch_landed_as_zstd() {
    assert_the_sql_gives_back_a_mixed_batch(PartitionStyle::Flat, ObjectEncoding::ZstdNdjson);
}

#[test]
fn the_restore_view_reads_the_hive_layout_too() {
    assert_the_sql_gives_back_a_mixed_batch(PartitionStyle::Hive, ObjectEncoding::GzipNdjson);
}

#[test]
fn a_view_with_two_method_codes_swapped_fails_the_comparison() {
    // Given a copy of the view that maps 1 to POST and 2 to GET
    let landed = Landed::process(mixed_batch(Utc::now()), PartitionStyle::Flat);
    let template = broken_template(
        landed.dir.path(),
        &[
            ("WHEN '1' THEN 'GET'", "WHEN '1' THEN 'POST'"),
            ("WHEN '2' THEN 'POST'", "WHEN '2' THEN 'GET'"),
        ],
    );
    // When the comparison runs on it
    let result = landed.query(&template);
    // Then both the view and the query differ from the records, on the method
    let view = compare_view(&landed, &result).expect_err("a swapped method table must be caught");
    assert!(
        view.contains(r#""method":"GET""#) && view.contains(r#""method":"POST""#),
        "{view}"
    );
    compare_requests_per_method(&landed, &result)
        .expect_err("a swapped method table must change the counts");
}

#[test]
fn a_view_parsing_the_date_in_the_wrong_format_fails_the_comparison() {
    // Given a copy of the view that reads the compact date as year, day, month
    let landed = Landed::process(mixed_batch(Utc::now()), PartitionStyle::Flat);
    let template = broken_template(
        landed.dir.path(),
        &[("'%Y%m%d%H%i%s%f'", "'%Y%d%m%H%i%s%f'")],
    );
    // When the comparison runs on it
    let result = landed.query(&template);
    // Then the view's in_time differs from the records' dates
    let view = compare_view(&landed, &result).expect_err("a wrong date format must be caught");
    assert!(view.contains(r#""in_time":"2023-03-18T15:"#), "{view}");
}

#[test]
fn a_view_writing_indate_in_the_wrong_order_fails_the_comparison() {
    // Given a copy of the view that writes the day before the month
    let landed = Landed::process(mixed_batch(Utc::now()), PartitionStyle::Flat);
    let template = broken_template(
        landed.dir.path(),
        &[(
            "substr(indate, 3, 2) || '-' || substr(indate, 5, 2)",
            "substr(indate, 5, 2) || '-' || substr(indate, 3, 2)",
        )],
    );
    // When the comparison runs on it
    let result = landed.query(&template);
    // Then the view's indate differs from the records'
    let view = compare_view(&landed, &result).expect_err("a wrong date order must be caught");
    assert!(view.contains(r#""indate":"2023-18-03T15:"#), "{view}");
}

#[test]
fn a_case_insensitive_table_would_fail_on_a_record_holding_indate_twice() {
    // Given a landed record with both inDate and indate, and a copy of the table that folds
    // keys to lower case (OpenX's default)
    let mut record = usual("both", "2023-03-18T15:31:00.000Z");
    record.insert("indate".into(), json!("not the date"));
    let landed = Landed::process(vec![record], PartitionStyle::Flat);
    let template = broken_template(
        landed.dir.path(),
        &[
            (
                r#"case.insensitive: "false""#,
                r#"case.insensitive: "true""#,
            ),
            ("\n              mapping.indate: inDate", ""),
        ],
    );
    // When the SQL runs on it, and on the template's own table
    let failed = run_athena_sql(&template, &landed.out_dir(), landed.style);
    let result = landed.query(Path::new(TEMPLATE));
    // Then the folded table fails the query on the duplicate key, the template's reads it
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains(r#"Duplicate key "indate""#), "{stderr}");
    compare_view(&landed, &result).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn records_dated_outside_the_hours_the_table_shows_are_quarantined_not_landed() {
    // Given records dated just before the first hour the table shows and past the last one the
    // function admits, and records at both edges inside
    let now = Utc::now();
    let records = vec![
        usual("too early", "1999-12-31T23:59:59.999Z"),
        usual("first hour", "2000-01-01T00:00:00.000Z"),
        usual("a day ahead", &millis(now + Duration::hours(23))),
        usual("two days ahead", &millis(now + Duration::hours(48))),
    ];
    // When they are processed with the defaults the template deploys
    let mut landed = Landed::process(records, PartitionStyle::Flat);
    // Then the two outside are quarantined at the placing stage
    assert_eq!(
        landed.summary["records_quarantined"], 2,
        "{}",
        landed.summary
    );
    let quarantine = landed.out_dir().join("quarantine");
    let lines: Vec<Map<String, Value>> = files_under(&quarantine)
        .iter()
        .flat_map(|file| common::gunzip_lines(&std::fs::read(quarantine.join(file)).unwrap()))
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["stage"], "place", "{line:?}");
    }
    // and every landed record is in an hour the table shows, and in the view
    landed
        .records
        .retain(|r| ["first hour", "a day ahead"].contains(&r["activity"].as_str().unwrap()));
    let result = landed.query(Path::new(TEMPLATE));
    assert_eq!(result["invisible"], json!([]));
    compare_view(&landed, &result).unwrap_or_else(|e| panic!("{e}"));
}

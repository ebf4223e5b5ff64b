//! The Athena table: it reads exactly the folders the code writes, every hour the function may
//! write, and every record without failing; the view knows the code's compact forms. (The view's
//! SQL itself runs in tests/athena_sql.rs.)

use super::*;

use chrono::Duration;
use log_etl::batch::encode::ObjectEncoding;
use log_etl::config::var::{Kind, Setting};
use log_etl::local::synth::{Synth, SynthOptions};
use log_etl::record::fields::{self, Field};
use log_etl::record::hour::HourWindow;

/// Formats an hour with a Java `DateTimeFormatter` pattern, as Athena's partition projection
/// does; supports `yyyy`, `MM`, `dd`, `HH` and quoted literals.
fn java_format(pattern: &str, hour: Hour) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // `''` is a quote; otherwise everything up to the next quote is literal.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            let end = chars[i + 1..]
                .iter()
                .position(|&q| q == '\'')
                .expect("quoted literal is closed");
            out.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
        } else if c.is_ascii_alphabetic() {
            let run = chars[i..].iter().take_while(|&&d| d == c).count();
            let letters: String = chars[i..i + run].iter().collect();
            out.push_str(&match letters.as_str() {
                "yyyy" => format!("{:04}", hour.year()),
                "MM" => format!("{:02}", hour.month()),
                "dd" => format!("{:02}", hour.day()),
                "HH" => format!("{:02}", hour.hour()),
                other => panic!("pattern letters {other:?} are not supported here"),
            });
            i += run;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn hour(y: i32, mo: u32, d: u32, h: u32) -> Hour {
    Hour::of(Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap())
}

/// The table's projection format and range (the range's `!Sub` text) for a partition style,
/// picked as CloudFormation would from `!If [IsHive, hive, flat]`.
fn projection_for(t: &Value, style: PartitionStyle) -> (&str, &str) {
    let parameters = at(
        properties(t, "LogRecordsTable"),
        &["TableInput", "Parameters"],
    );
    let pick = |key: &str| {
        let (condition, hive, flat) = if_branches(at(parameters, &[key]));
        assert_eq!(condition, "IsHive");
        match style {
            PartitionStyle::Flat => flat,
            PartitionStyle::Hive => hive,
        }
    };
    let format = pick("projection.datehour.format")
        .as_str()
        .expect("the format is text");
    (format, sub_text(pick("projection.datehour.range")))
}

/// The table's storage description: columns and SerDe.
fn storage(t: &Value) -> &Value {
    at(
        properties(t, "LogRecordsTable"),
        &["TableInput", "StorageDescriptor"],
    )
}

/// The code's default, minimum and maximum of a numeric setting.
pub(super) fn number_setting(setting: Setting) -> (u64, u64, u64) {
    match setting.kind {
        Kind::Number { default, min, max } => (default, min, max),
        _ => panic!("{} is not a number", setting.name),
    }
}

#[test]
fn the_table_names_no_single_compression_so_it_reads_every_encoding() {
    // Given the table's parameters and the encodings the code writes
    let t = template();
    let parameters = at(
        properties(&t, "LogRecordsTable"),
        &["TableInput", "Parameters"],
    );
    assert_eq!(parameters["classification"], "json");
    // Then no compressionType says the objects are of one of them: Athena reads each object by
    // its extension, and a bucket switched midway holds both
    assert!(
        parameters.get("compressionType").is_none(),
        "{:?}",
        parameters.get("compressionType")
    );
    let extensions: Vec<&str> = ObjectEncoding::ALL.iter().map(|e| e.extension()).collect();
    assert_eq!(extensions, ["json.gz", "json.zst"]);
    // and the input format is plain text, which Athena decompresses by extension
    assert_eq!(
        storage(&t)["InputFormat"],
        "org.apache.hadoop.mapred.TextInputFormat"
    );
}

#[test]
fn projection_format_is_the_codes_for_each_style() {
    // Given the table's projection settings
    let t = template();
    for style in [PartitionStyle::Flat, PartitionStyle::Hive] {
        // When the format for a style is picked
        let (format, _) = projection_for(&t, style);
        // Then it is the one the code declares for that style
        assert_eq!(format, style.projection_format(), "{style}");
    }
    // And the IsHive condition is the PARTITION_STYLE parameter being "hive"
    let condition = at(&t, &["Conditions", "IsHive"]);
    let (tag, args) = tagged(condition).expect("!Equals");
    assert_eq!(tag, "Equals");
    assert_eq!(ref_name(&args[0]), "PartitionStyle");
    assert_eq!(
        args[1].as_str(),
        Some(PartitionStyle::Hive.to_string().as_str())
    );
    let env = function_environment(&t);
    assert_eq!(ref_name(&env[var::PARTITION_STYLE.name]), "PartitionStyle");
}

#[test]
fn projected_folder_is_the_folder_the_code_writes() {
    // Given an hour, and each style's projection format as the template declares it
    let t = template();
    let when = hour(2023, 3, 8, 5);
    for style in [PartitionStyle::Flat, PartitionStyle::Hive] {
        let (format, range) = projection_for(&t, style);
        // When Athena's projection formats the hour, and the code names the hour's folder
        let projected = java_format(format, when);
        let layout = ObjectLayout::new("data", "quarantine", style).unwrap();
        let written = layout.data_hour_path(when);
        // Then they are the same folder under the data prefix
        assert_eq!(
            Some(projected.as_str()),
            written.strip_prefix("data/"),
            "{style}"
        );
        // And the range's start is written in that same format
        let range = render_sub(range, &[("EarliestYear", "2023"), ("MaxHoursAhead", "6")]);
        let (start, _) = range.split_once(',').expect("range is start,end");
        assert_eq!(start, java_format(format, hour(2023, 1, 1, 0)), "{style}");
    }
}

#[test]
fn projection_covers_every_hour_the_function_may_write() {
    // Given the table's range, and the two parameters that bound it
    let t = template();
    let env = function_environment(&t);
    let year = number_setting(var::EARLIEST_YEAR);
    let ahead = number_setting(var::MAX_HOURS_AHEAD);
    for (parameter, setting, (default, min, max)) in [
        ("EarliestYear", var::EARLIEST_YEAR, year),
        ("MaxHoursAhead", var::MAX_HOURS_AHEAD, ahead),
    ] {
        // Then each parameter is the function's setting, with the code's default and range
        assert_eq!(ref_name(&env[setting.name]), parameter);
        let spec = at(&t, &["Parameters", parameter]);
        assert_eq!(text(spec, &["Type"]), "Number");
        assert_eq!(number(spec, &["Default"]), default, "{parameter}");
        assert_eq!(number(spec, &["MinValue"]), min, "{parameter}");
        assert_eq!(number(spec, &["MaxValue"]), max, "{parameter}");
    }
    // When the range is rendered with the defaults, for each style
    let defaults = [
        ("EarliestYear", year.0.to_string()),
        ("MaxHoursAhead", ahead.0.to_string()),
    ];
    let defaults: Vec<(&str, &str)> = defaults.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = Utc.with_ymd_and_hms(2024, 6, 1, 12, 30, 0).unwrap();
    let window = HourWindow::new(year.0 as i32, ahead.0 as u32, run);
    for style in [PartitionStyle::Flat, PartitionStyle::Hive] {
        let (format, range) = projection_for(&t, style);
        let (start, end) = render_sub(range, &defaults)
            .split_once(',')
            .map(|(s, e)| (s.to_owned(), e.to_owned()))
            .expect("range is start,end");
        // Then it starts at the first hour the function admits
        assert_eq!(start, java_format(format, window.earliest), "{style}");
        // and ends, relative to the query's time, as many hours ahead as the function admits
        // (Athena's form NOW+<n>HOURS), so the last admitted hour is shown from its run on
        let hours = end
            .strip_prefix("NOW+")
            .and_then(|e| e.strip_suffix("HOURS"))
            .unwrap_or_else(|| panic!("{style}: {end} is not NOW+<n>HOURS"));
        assert_eq!(hours, ahead.0.to_string(), "{style}");
        assert_eq!(
            window.latest,
            Hour::of(run + Duration::hours(ahead.0 as i64))
        );
    }
}

#[test]
fn every_column_is_text_so_no_landed_value_fails_a_query() {
    // Given the table's columns (any field of a record may hold any JSON value)
    let t = template();
    let columns = at(storage(&t), &["Columns"]).as_sequence().expect("a list");
    assert!(!columns.is_empty());
    // Then each is a string, which the OpenX SerDe fills with any JSON value's text, where a
    // typed column fails the whole query on the first value that does not fit it
    for column in columns {
        assert_eq!(
            text(column, &["Type"]),
            "string",
            "{}",
            text(column, &["Name"])
        );
    }
    // And the view offers the typed forms, NULL where a record does not fit
    let view = sub_text(at(properties(&t, "RestoreViewQuery"), &["QueryString"]));
    for typed in [
        "try_cast(record_id AS bigint) AS record_id",
        "json_extract_scalar(detail, '$.message') AS detail_message",
        "json_extract_scalar(detail, '$.levelname') AS detail_levelname",
        "try(date_parse(",
    ] {
        assert!(view.contains(typed), "the view lacks {typed}");
    }
}

#[test]
fn keys_that_differ_only_in_case_never_collide() {
    // Given the SerDe and the columns of the table, and a record as the server writes it
    let t = template();
    let serde = at(storage(&t), &["SerdeInfo"]);
    assert_eq!(
        text(serde, &["SerializationLibrary"]),
        "org.openx.data.jsonserde.JsonSerDe"
    );
    let parameters = at(serde, &["Parameters"]).as_mapping().expect("a mapping");
    let columns: Vec<&str> = at(storage(&t), &["Columns"])
        .as_sequence()
        .expect("a list")
        .iter()
        .map(|c| text(c, &["Name"]))
        .collect();
    let mut record = Synth::new(SynthOptions::default()).usual_record(Utc::now());
    fields::shorten(&mut record);
    let written: Vec<&str> = record.keys().map(String::as_str).collect();
    // When the key each column reads is worked out (its mapping, else its own name)
    let mut read = Vec::new();
    for (name, value) in parameters {
        let name = name.as_str().expect("names are text");
        let value = value
            .as_str()
            .unwrap_or_else(|| panic!("{name} is not text"));
        match name.strip_prefix("mapping.") {
            Some(column) => assert!(columns.contains(&column), "{name} maps no column"),
            // Keys are matched exactly: inDate and indate are two keys, not a duplicate
            None if name == "case.insensitive" => assert_eq!(value, "false"),
            // Nothing that would hide a malformed row or a value that does not fit
            None => panic!("SerDe parameter {name} is not expected"),
        }
    }
    for column in &columns {
        let key = parameters
            .get(format!("mapping.{column}"))
            .map(|k| k.as_str().expect("a key"))
            .unwrap_or(column);
        read.push(key);
    }
    // Then the columns read exactly the keys the code writes, in order, each once
    assert_eq!(read, written);
    for field in Field::ALL {
        assert!(read.contains(&field.name()), "{} is not read", field.name());
    }
    // and Athena's lower-case column names reach a key with capitals only through a mapping
    for (column, key) in columns.iter().zip(&read) {
        assert_eq!(*column, key.to_lowercase());
    }
}

#[test]
fn location_template_is_the_data_prefix_then_the_hour() {
    // Given the table's storage location and location template
    let t = template();
    let table = at(properties(&t, "LogRecordsTable"), &["TableInput"]);
    let template_text = sub_text(at(table, &["Parameters", "storage.location.template"]));
    let location_text = sub_text(at(table, &["StorageDescriptor", "Location"]));
    let prefix = default_of(&t, "KeyPrefix").as_str().expect("text");
    // When both are rendered with the default prefix
    let vars = [("Bucket", "bucket"), ("KeyPrefix", prefix)];
    let template = render_sub(template_text, &vars);
    let location = render_sub(location_text, &vars);
    // Then the template is the data prefix followed by the projected hour folder
    assert_eq!(prefix, "data");
    assert!(template.ends_with("/data/${datehour}"), "{template}");
    assert_eq!(template, format!("{location}${{datehour}}"));
    assert_eq!(location, "s3://bucket/data/");
    // And projection is on, by the hour, over a single string partition key
    let parameters = at(table, &["Parameters"]);
    assert_eq!(text(parameters, &["projection.enabled"]), "true");
    assert_eq!(text(parameters, &["projection.datehour.type"]), "date");
    assert_eq!(text(parameters, &["projection.datehour.interval"]), "1");
    assert_eq!(
        text(parameters, &["projection.datehour.interval.unit"]),
        "HOURS"
    );
    let keys = at(table, &["PartitionKeys"]).as_sequence().expect("a list");
    assert_eq!(keys.len(), 1);
    assert_eq!(text(&keys[0], &["Name"]), "datehour");
    assert_eq!(text(&keys[0], &["Type"]), "string");
}

#[test]
fn restore_view_knows_every_method_code() {
    // Given the named query that creates the restore view
    let t = template();
    let query = sub_text(at(properties(&t, "RestoreViewQuery"), &["QueryString"]));
    // When compared with the code's method table
    // Then every code is mapped back to its name
    for (name, code) in METHOD_CODES {
        let arm = format!("WHEN '{code}' THEN '{name}'");
        assert!(query.contains(&arm), "the view lacks {arm}");
    }
}

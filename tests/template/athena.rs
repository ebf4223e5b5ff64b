//! The Athena table: it reads exactly the folders the code writes, and the view knows the
//! code's compact forms.

use super::*;

/// Formats an hour with a Java `DateTimeFormatter` pattern, as Athena's partition projection
/// does; supports `yyyy`, `MM`, `dd`, `HH` and quoted literals.
fn java_format(pattern: &str, hour: HourKey) -> String {
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

fn hour(y: i32, mo: u32, d: u32, h: u32) -> HourKey {
    HourKey::of(Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap())
}

/// The table's projection format and range for a partition style, picked as CloudFormation
/// would from `!If [IsHive, hive, flat]`.
fn projection_for(t: &Value, style: PartitionStyle) -> (&str, &str) {
    let parameters = at(
        properties(t, "LogRecordsTable"),
        &["TableInput", "Parameters"],
    );
    let pick = |key: &str| {
        let (condition, hive, flat) = if_branches(at(parameters, &[key]));
        assert_eq!(condition, "IsHive");
        let chosen = match style {
            PartitionStyle::Flat => flat,
            PartitionStyle::Hive => hive,
        };
        chosen.as_str().expect("a projection setting is text")
    };
    (
        pick("projection.datehour.format"),
        pick("projection.datehour.range"),
    )
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
        let (start, end) = range.split_once(',').expect("range is start,end");
        assert_eq!(start, java_format(format, hour(2023, 1, 1, 0)), "{style}");
        assert_eq!(end, "NOW");
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

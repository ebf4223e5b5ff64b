//! The README against the code: its configuration table is the code's one list of settings.

use log_etl::config::var;

const README: &str = include_str!("../README.md");

/// The rows of the README's configuration table: `(variable, default cell)`.
fn configuration_rows() -> Vec<(String, String)> {
    let section = README
        .split("## Configuration")
        .nth(1)
        .expect("the README has a Configuration section");
    section
        .lines()
        .skip_while(|line| !line.starts_with("| variable |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

#[test]
fn the_configuration_table_lists_every_setting_with_its_default() {
    // Given the README's table and the code's list
    let rows = configuration_rows();
    // Then they name the same variables, in the same order
    let names: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    let expected: Vec<&str> = var::ALL.iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    // and each default is the code's
    for (setting, (_, default)) in var::ALL.iter().zip(&rows) {
        match setting.default_text() {
            Some(value) => assert!(
                default.starts_with(&format!("`{value}`")),
                "{}: the README says {default}, the code {value}",
                setting.name
            ),
            None => assert!(
                !default.starts_with('`'),
                "{}: the README gives a default ({default}), the code has none",
                setting.name
            ),
        }
    }
}

/// The README's section `title` (up to the next `## ` heading).
fn section(title: &str) -> &'static str {
    let start = README
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("the README has a section {title:?}"));
    let body = &README[start + title.len() + 5..];
    &body[..body.find("\n## ").unwrap_or(body.len())]
}

#[test]
fn the_cost_section_follows_performance_and_prices_each_part_from_the_bench() {
    // Given the README's sections in order
    let performance = README
        .find("\n## Performance\n")
        .expect("a Performance section");
    let cost = README
        .find("\n## What it costs to run\n")
        .expect("a cost section");
    let next = README[performance + 1..]
        .find("\n## ")
        .map(|at| at + performance + 1);
    // Then the cost section comes right after Performance
    assert_eq!(next, Some(cost));
    // and names every part it prices, the command that measures them and where prices come from
    let text = section("What it costs to run");
    for part in [
        "Lambda ingest: GB-s",
        "Lambda compaction: GB-s",
        "requests",
        "S3 PUT + LIST",
        "S3 GET",
        "S3 compaction",
        "S3 storage after 1 month",
        "S3 storage after 12 months",
        "Secrets Manager",
        "CloudWatch alarms",
        "CloudWatch dashboard",
        "CloudWatch custom metrics",
        "CloudWatch log ingestion",
        "EventBridge Scheduler",
        "Athena",
        "Firehose",
        "backfill",
        "free tier",
        "`scripts/bench cost`",
        "https://aws.amazon.com/lambda/pricing/",
        "https://aws.amazon.com/s3/pricing/",
        "https://aws.amazon.com/firehose/pricing/",
    ] {
        assert!(
            text.contains(part),
            "the cost section does not name {part:?}"
        );
    }
    // and its two rates, the source's and a hundred times that
    assert!(text.contains("100 records a pass") && text.contains("10,000 records a pass"));
}

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

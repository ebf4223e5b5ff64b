//! Tools for trying and testing the pipeline on one machine, which the Lambda never uses: a
//! stand-in for the log API ([`simulator`]), realistic source records ([`synth`]) and the demo
//! that runs the whole job against both ([`demo`]), what a store holds hour by hour ([`status`]), and how
//! refused records are counted for people ([`describe_reasons`]).

pub mod demo;
pub mod simulator;
pub mod status;
pub mod synth;

use std::collections::BTreeMap;

/// `; by reason: decrypt: no key matched 5, parse: not a dict 2`: records refused, counted by
/// reason (the labels of `RecordError::label`), the most frequent first, then by name; nothing
/// when none was refused. For summaries on a terminal, never the JSON line.
pub fn describe_reasons(counts: &BTreeMap<&'static str, u64>) -> String {
    let mut reasons: Vec<_> = counts.iter().filter(|&(_, &n)| n > 0).collect();
    if reasons.is_empty() {
        return String::new();
    }
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listed: Vec<_> = reasons
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    format!("; by reason: {}", listed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_most_frequent_first_and_none_says_nothing() {
        // Given counts by reason, two of them tied
        let counts = BTreeMap::from([
            ("parse: not a dict", 2),
            ("decrypt: no key matched", 5),
            ("decrypt: not base64", 2),
        ]);
        // When they are described, and when there are none
        // Then the largest comes first, ties by name, and no count says nothing
        assert_eq!(
            describe_reasons(&counts),
            "; by reason: decrypt: no key matched 5, decrypt: not base64 2, parse: not a dict 2"
        );
        assert_eq!(describe_reasons(&BTreeMap::new()), "");
    }
}

//! Any text as a Python literal: `pyrepr::parse` never panics, and what it accepts is written
//! back by `to_repr` as text that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_etl::record::pyrepr::{self, ParseLimits};

/// Roomier than the default, so a failed re-parse can only mean the writer and the parser
/// disagree, never that a limit was hit.
const REPARSE: ParseLimits = ParseLimits {
    max_depth: 64,
    max_string_len: usize::MAX,
};

fuzz_target!(|text: &str| {
    let Ok(value) = pyrepr::parse(text, ParseLimits::default()) else {
        return;
    };
    let repr = pyrepr::to_repr(&value);
    assert!(repr.is_ascii(), "to_repr wrote non-ASCII: {repr:?}");
    let again = pyrepr::parse(&repr, REPARSE);
    assert_eq!(again.as_ref(), Ok(&value), "repr round trip: {repr:?}");
    // The writer's output is its own fixed point.
    assert_eq!(pyrepr::to_repr(&value), repr);
});

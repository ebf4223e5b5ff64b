//! Any bytes as a decrypted plaintext: `parse_payload` never panics, a text that is both JSON
//! and a Python literal reads the same either way, and a record it accepts comes back
//! unchanged from its Python `repr` and from its JSON text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_etl::record::payload::parse_payload;
use log_etl::record::pyrepr::{self, ParseLimits};
use serde_json::Value;

/// Roomier than the default, so a failed re-parse can only mean the writer and the parser
/// disagree, never that a limit was hit.
const REPARSE: ParseLimits = ParseLimits {
    max_depth: 64,
    max_string_len: usize::MAX,
};

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits::default();
    let Ok(record) = parse_payload(data, limits) else {
        return;
    };
    let value = Value::Object(record);

    // A text that is also a Python literal means the same in both syntaxes, as parse_payload
    // promises; JSON's `\/`, which `repr` never writes, is the one known exception.
    if let Ok(text) = std::str::from_utf8(data)
        && !text.contains("\\/")
        && let Ok(as_python) = pyrepr::parse(text, limits)
    {
        assert_eq!(
            as_python, value,
            "JSON and Python readings differ: {text:?}"
        );
    }

    // The server's own form: the writer escapes to ASCII and the parser reads it back.
    let repr = pyrepr::to_repr(&value);
    assert!(repr.is_ascii(), "to_repr wrote non-ASCII: {repr:?}");
    assert_eq!(
        pyrepr::parse(&repr, REPARSE).as_ref(),
        Ok(&value),
        "repr round trip: {repr:?}"
    );

    // As plaintexts, both forms are records within the same limits, equal to the first.
    let Value::Object(record) = value else {
        unreachable!("built as an object above")
    };
    assert_eq!(
        parse_payload(repr.as_bytes(), limits).as_ref(),
        Ok(&record),
        "repr as a plaintext: {repr:?}"
    );
    let json = serde_json::to_string(&record).expect("a JSON map always serialises");
    assert_eq!(
        parse_payload(json.as_bytes(), limits).as_ref(),
        Ok(&record),
        "JSON as a plaintext: {json:?}"
    );
});

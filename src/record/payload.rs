//! A decrypted plaintext to an ordered record: a JSON object, or the Python `repr` of a dict.

use serde_json::{Map, Value};

use crate::record::pyrepr::{self, ParseLimits, ReprError};

/// Why a plaintext is not a record. Never contains the plaintext.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error("plaintext is not UTF-8 (invalid byte at {offset})")]
    NotUtf8 { offset: usize },
    #[error("plaintext is not a Python dict literal or a JSON object: {0}")]
    Syntax(#[source] ReprError),
    #[error("plaintext is a JSON value nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("plaintext is a JSON value with a string longer than {max} bytes")]
    StringTooLong { max: usize },
    #[error("plaintext is not a dict")]
    NotADict,
    #[error(
        "plaintext contains serde_json's reserved marker {RESERVED_MARKER:?}, which would not come back unchanged from JSON"
    )]
    ReservedMarker,
}

/// serde_json (with exact numbers and raw values) reads an object whose only key starts with this
/// as a number or raw JSON, not as an object: such a record could not be stored losslessly.
const RESERVED_MARKER: &str = "$serde_json::private::";

/// Parses a plaintext into a record, keeping its key order.
///
/// JSON is tried first: a `repr` of a dict fails it at its first quote, and a text valid as
/// both has the same meaning in both (`repr` never writes JSON's only differing escape, `\/`).
pub fn parse_payload(
    plaintext: &[u8],
    limits: ParseLimits,
) -> Result<Map<String, Value>, ParseError> {
    let text = std::str::from_utf8(plaintext).map_err(|e| ParseError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    if memchr::memmem::find(plaintext, RESERVED_MARKER.as_bytes()).is_some() {
        return Err(ParseError::ReservedMarker);
    }
    // The server's usual `{'` cannot start JSON: skip the JSON attempt for it.
    let python_dict = text
        .trim_start()
        .strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with('\''));
    let json = if python_dict {
        None
    } else {
        serde_json::from_str::<Value>(text).ok()
    };
    let value = match json {
        Some(value) => {
            check_json_limits(&value, 1, limits)?;
            value
        }
        None => pyrepr::parse(text, limits).map_err(ParseError::Syntax)?,
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ParseError::NotADict),
    }
}

/// serde_json has its own recursion limit (128); ours is the same for both syntaxes.
fn check_json_limits(value: &Value, depth: usize, limits: ParseLimits) -> Result<(), ParseError> {
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(map) => {
            if map.keys().any(|k| k.len() > limits.max_string_len) {
                return Err(ParseError::StringTooLong {
                    max: limits.max_string_len,
                });
            }
            Box::new(map.values())
        }
        Value::String(s) if s.len() > limits.max_string_len => {
            return Err(ParseError::StringTooLong {
                max: limits.max_string_len,
            });
        }
        _ => return Ok(()),
    };
    if depth > limits.max_depth {
        return Err(ParseError::TooDeep {
            max: limits.max_depth,
        });
    }
    for child in children {
        check_json_limits(child, depth + 1, limits)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Map<String, Value>, ParseError> {
        parse_payload(text.as_bytes(), ParseLimits::default())
    }

    #[test]
    fn json_and_repr_give_the_same_record() {
        let from_json = parse(r#"{"a": null, "b": [true, 1.5], "c": "it's"}"#).unwrap();
        let from_repr = parse(r#"{'a': None, 'b': [True, 1.5], 'c': "it's"}"#).unwrap();
        assert_eq!(from_json, from_repr);
        assert_eq!(
            Value::Object(from_json),
            json!({"a": null, "b": [true, 1.5], "c": "it's"})
        );
    }

    #[test]
    fn non_dicts_and_non_utf8_are_refused() {
        assert_eq!(parse("[1, 2]"), Err(ParseError::NotADict));
        assert_eq!(parse("'text'"), Err(ParseError::NotADict));
        assert_eq!(
            parse_payload(b"{'a': '\xff'}", ParseLimits::default()),
            Err(ParseError::NotUtf8 { offset: 7 })
        );
        assert!(matches!(parse("{'a': "), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn serde_json_reserved_keys_are_refused_in_both_syntaxes() {
        for text in [
            r#"{"a": {"$serde_json::private::Number": "5"}}"#,
            "{'b': {'$serde_json::private::Number': '7'}}",
            "{'$serde_json::private::RawValue': True}",
        ] {
            assert_eq!(parse(text), Err(ParseError::ReservedMarker), "{text}");
        }
    }

    #[test]
    fn json_obeys_the_same_limits() {
        let limits = ParseLimits {
            max_depth: 2,
            max_string_len: 4,
        };
        assert!(parse_payload(br#"{"a": [1]}"#, limits).is_ok());
        assert_eq!(
            parse_payload(br#"{"a": [[1]]}"#, limits),
            Err(ParseError::TooDeep { max: 2 })
        );
        assert_eq!(
            parse_payload(br#"{"a": "12345"}"#, limits),
            Err(ParseError::StringTooLong { max: 4 })
        );
        assert_eq!(
            parse_payload(br#"{"abcde": 1}"#, limits),
            Err(ParseError::StringTooLong { max: 4 })
        );
    }
}

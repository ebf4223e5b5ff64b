//! The quarantine line, in one place: how a refused record is written
//! (`{"stage", "reason", "record"}`, the record as received) and what identifies it (the record,
//! whatever reason it was refused for). An element that is not JSON is kept as received too,
//! under `element`: `{"text": ...}` when it is UTF-8, else `{"base64": ...}` (standard alphabet,
//! padded), so its bytes come back exactly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::record::RecordError;

/// The stage of an element that is not JSON: like a record of the wrong shape, it never got to
/// decryption.
pub const NOT_JSON_STAGE: &str = "shape";

#[derive(Serialize, Deserialize)]
struct QuarantineLine<'a> {
    stage: &'a str,
    reason: String,
    #[serde(borrow)]
    record: &'a RawValue,
}

/// The quarantine line of `raw`, refused for `err`, without its newline.
pub fn line(raw: &RawValue, err: &RecordError) -> Vec<u8> {
    // A record may arrive pretty-printed. Line breaks can only stand between JSON tokens, so
    // turning them into spaces keeps the record and keeps it on one NDJSON line.
    let one_line;
    let record = if raw.get().contains(['\n', '\r']) {
        one_line = RawValue::from_string(raw.get().replace(['\n', '\r'], " "))
            .expect("whitespace between tokens changes nothing");
        &*one_line
    } else {
        raw
    };
    let line = QuarantineLine {
        stage: err.stage(),
        reason: err.to_string(),
        record,
    };
    serde_json::to_vec(&line).expect("quarantine line serialises")
}

/// An element that is not JSON, as received.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Element {
    Text(String),
    Base64(String),
}

#[derive(Serialize)]
struct NotJsonLine<'a> {
    stage: &'a str,
    reason: &'a str,
    element: Element,
}

/// The quarantine line of an array element that is not JSON, refused for `reason`.
pub fn not_json_line(bytes: &[u8], reason: &str) -> Vec<u8> {
    let element = match std::str::from_utf8(bytes) {
        Ok(text) => Element::Text(text.to_owned()),
        Err(_) => Element::Base64(STANDARD.encode(bytes)),
    };
    let line = NotJsonLine {
        stage: NOT_JSON_STAGE,
        reason,
        element,
    };
    serde_json::to_vec(&line).expect("quarantine line serialises")
}

/// What identifies a quarantined record: the source object its line holds, as received (or the
/// element that was not JSON). A line that is not a quarantine line is its own identity.
pub fn identity(line: &[u8]) -> &[u8] {
    #[derive(Deserialize)]
    struct Held<'a> {
        #[serde(borrow)]
        record: Option<&'a RawValue>,
        #[serde(borrow)]
        element: Option<&'a RawValue>,
    }
    match serde_json::from_slice::<Held<'_>>(line) {
        Ok(Held {
            record: Some(held), ..
        })
        | Ok(Held {
            element: Some(held),
            ..
        }) => held.get().as_bytes(),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarantined_record_is_the_record_whatever_the_reason() {
        let a = br#"{"stage":"decrypt","reason":"does not verify under any of the 1 key(s)","record":{"data":"x"}}"#;
        let b = br#"{"stage":"decrypt","reason":"does not verify under any of the 2 key(s)","record":{"data":"x"}}"#;
        assert_eq!(identity(a), br#"{"data":"x"}"#);
        assert_eq!(identity(a), identity(b));
    }

    #[test]
    fn an_element_that_is_not_json_is_kept_as_text_or_base64_byte_for_byte() {
        // Given an element with NaN (UTF-8) and one with an invalid UTF-8 byte
        let nan = br#"{"data": "x", "ArrivalTimeStamp": NaN}"#;
        let bad = b"{\"data\": \"\xff\"}";
        // When each is written as a quarantine line
        let nan_line: serde_json::Value =
            serde_json::from_slice(&not_json_line(nan, "element is not valid JSON")).unwrap();
        let bad_line: serde_json::Value =
            serde_json::from_slice(&not_json_line(bad, "element is not valid JSON")).unwrap();
        // Then the text, or the base64 of the bytes, gives back exactly what was received
        assert_eq!(nan_line["stage"], "shape");
        assert_eq!(
            nan_line["element"]["text"].as_str().unwrap().as_bytes(),
            nan
        );
        let decoded = STANDARD
            .decode(bad_line["element"]["base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, bad);
        // and two lines of one element are one record, whatever their reasons
        assert_eq!(
            identity(&not_json_line(bad, "a")),
            identity(&not_json_line(bad, "b"))
        );
        assert_ne!(
            identity(&not_json_line(bad, "a")),
            identity(&not_json_line(nan, "a"))
        );
    }

    #[test]
    fn a_line_holds_the_record_as_received_and_is_identified_by_it() {
        // Given a record, pretty-printed, refused at the shape stage
        let raw = RawValue::from_string("{\n  \"data\": 7\r\n}".into()).unwrap();
        let line = line(&raw, &RecordError::Shape);
        // Then the line is one line, and its identity is the record with spaces for line breaks
        assert!(!line.contains(&b'\n'));
        assert_eq!(identity(&line), b"{   \"data\": 7  }");
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["stage"], "shape");
    }
}

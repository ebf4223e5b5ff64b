//! Interop with the reference implementations: Python's `cryptography` Fernet and
//! `ast.literal_eval`, and the `b64uuid` package that defined the `user_id` rule.

use crate::common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use log_etl::record::fernet::{KeyRing, generate_key};
use log_etl::record::fields::Field;
use log_etl::record::payload::parse_payload;
use log_etl::record::pyrepr::{ParseLimits, to_repr};
use serde_json::{Value, json};

#[test]
fn python_tokens_of_repr_payloads_parse_to_what_literal_eval_gives() {
    // Given tokens made by `cryptography` from repr()/ascii() payloads
    let key = generate_key();
    let cases: Vec<Value> =
        serde_json::from_slice(&common::run_python("interop.py", &["make", &key], b"")).unwrap();
    assert!(cases.len() >= 10, "too few interop cases");
    let ring = KeyRing::parse(&key).unwrap();
    for case in &cases {
        let label = case["label"].as_str().unwrap();
        // When each is decrypted and parsed by log-etl
        let plain = ring.decrypt(case["token"].as_str().unwrap()).unwrap();
        let record = parse_payload(&plain, ParseLimits::default())
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        // Then the record is what ast.literal_eval gave, number text included
        assert_eq!(Value::Object(record), case["expected"], "{label}");
    }
}

#[test]
fn python_reads_tokens_and_payloads_made_by_log_etl() {
    // Given payloads written by log-etl's repr writer and encrypted by log-etl
    let key = generate_key();
    let ring = KeyRing::parse(&key).unwrap();
    let values = [
        json!({"user_id": null, "method": "GET", "inDate": "2023-03-18T15:08:02.284Z"}),
        json!({"q": "it's \"both\"", "b": "back\\slash\nnl\ttab\u{7f}", "u": "é😀\u{200b}", "n": [1, true, null, {}]}),
    ];
    let tokens: Vec<String> = values
        .iter()
        .map(|v| ring.encrypt(to_repr(v).as_bytes()))
        .collect();
    // When Python decrypts them and evaluates the literals
    let stdin = serde_json::to_vec(&tokens).unwrap();
    let back: Vec<Value> =
        serde_json::from_slice(&common::run_python("interop.py", &["open", &key], &stdin)).unwrap();
    // Then it gets the same values
    assert_eq!(back, values);
}

#[test]
fn user_id_rule_matches_b64uuid_on_random_ids() {
    // Given 1,000 random SHA-256 ids compacted by b64uuid itself
    let pairs: Vec<(String, String)> =
        serde_json::from_slice(&common::run_python("b64uuid_oracle.py", &["1000"], b"")).unwrap();
    assert_eq!(pairs.len(), 1000);
    for (hex, expected) in pairs {
        // When log-etl compacts each
        let compact = Field::UserId.shorten(json!(hex));
        // Then it is the oracle's 44 characters, and it restores to the id
        assert_eq!(compact, json!(expected), "{hex}");
        assert_eq!(expected.len(), 44);
        assert_eq!(Field::UserId.restore(compact), json!(hex));
    }
}

#[test]
fn tokens_are_accepted_exactly_when_python_fernet_accepts_them() {
    // Given tokens made by `cryptography` (ahead of the clock, years back, with whitespace, in the
    // standard alphabet, wrapped) and mutations of valid ones, each decided by Python's Fernet
    let cases: Vec<Value> =
        serde_json::from_slice(&common::run_python("fernet_oracle.py", &["7"], b"")).unwrap();
    let accepted = cases.iter().filter(|c| c["accepted"] == true).count();
    assert!(
        cases.len() >= 80 && accepted >= 20 && cases.len() - accepted >= 50,
        "too few cases: {} ({accepted} accepted)",
        cases.len()
    );
    // When log-etl decides each with the same keys
    let mut disagreements = Vec::new();
    for case in &cases {
        let keys: Vec<&str> = case["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let ring = KeyRing::parse(&serde_json::to_string(&keys).unwrap()).unwrap();
        let ours = ring.decrypt(case["token"].as_str().unwrap());
        let python = case["plaintext"]
            .as_str()
            .map(|b64| STANDARD.decode(b64).unwrap());
        // Then the decision, and the plaintext when accepted, are Python's
        if ours.as_ref().ok() != python.as_ref() {
            disagreements.push(format!(
                "{}: python {}, log-etl {:?}",
                case["what"],
                if python.is_some() {
                    "accepts"
                } else {
                    "refuses"
                },
                ours.map(|_| "accepts")
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

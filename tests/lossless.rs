//! Lossless, proven by property: `restore(compact(r)) == r` for generated records, usual and
//! adversarial, directly and through the NDJSON text an archive holds; and the Python literal
//! writer and parser are inverse to each other.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use log_etl::record::fields::{self, ESCAPE_KEY, Field, METHOD_CODES};
use log_etl::record::pyrepr::{self, ParseLimits};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

/// Any JSON value, numbers given as text (so big integers and float spellings appear too).
pub(crate) fn any_json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[1-9][0-9]{19,40}",
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        Just("1e-05".to_owned()),
        Just("-0.0".to_owned()),
        Just("1.0".to_owned()),
        Just("1E+16".to_owned()),
    ]
    .prop_map(|text| Value::Number(text.parse::<Number>().expect("valid number text")));
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        any::<String>().prop_map(Value::String),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner.clone()), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            inner.prop_map(|v| json!({ ESCAPE_KEY: v })),
        ]
    })
}

pub(crate) fn hex(len: usize, upper: bool) -> BoxedStrategy<String> {
    let pattern = if upper {
        format!("[0-9A-F]{{{len}}}")
    } else {
        format!("[0-9a-f]{{{len}}}")
    };
    proptest::string::string_regex(&pattern)
        .expect("valid pattern")
        .boxed()
}

/// A string that looks compact: two 22-char base64url halves of random 16-byte values.
fn compact_looking_user_id() -> impl Strategy<Value = String> {
    (any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_map(|(a, b)| format!("{}{}", URL_SAFE_NO_PAD.encode(a), URL_SAFE_NO_PAD.encode(b)))
}

pub(crate) fn user_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => hex(64, false).prop_map(Value::String),
        1 => Just(Value::Null),
        1 => hex(64, true).prop_map(Value::String),
        1 => hex(63, false).prop_map(Value::String),
        1 => hex(65, false).prop_map(Value::String),
        1 => compact_looking_user_id().prop_map(Value::String),
        1 => "[A-Za-z0-9_-]{44}".prop_map(Value::String),
        1 => any_json(),
    ]
}

pub(crate) fn method() -> impl Strategy<Value = Value> {
    let names: Vec<&str> = METHOD_CODES.iter().map(|(n, _)| *n).collect();
    prop_oneof![
        4 => prop::sample::select(names).prop_map(|n| json!(n)),
        1 => "[a-z]{3,7}".prop_map(Value::String),
        1 => "[A-Z]{3,9}".prop_map(Value::String),
        1 => (0u64..12).prop_map(|n| json!(n)),
        1 => Just(serde_json::from_str("2.0").unwrap()),
        1 => any_json(),
    ]
}

pub(crate) fn in_date() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z".prop_map(Value::String),
        1 => "[0-9]{15}".prop_map(Value::String),
        1 => "[0-9]{14,16}".prop_map(Value::String),
        1 => "19[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z".prop_map(Value::String),
        1 => "20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|\\+09:00|\\.[0-9]{6}Z)".prop_map(Value::String),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any_json(),
    ]
}

/// A record: the three fields (each maybe absent), in a random position among other fields.
pub(crate) fn record() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::option::weighted(0.9, user_id()),
        prop::option::weighted(0.9, method()),
        prop::option::weighted(0.9, in_date()),
        prop::collection::vec(("[a-z_]{1,8}", any_json()), 0..6),
        any::<u64>(),
    )
        .prop_map(|(u, m, d, extra, order_seed)| {
            let mut fields: Vec<(String, Value)> = extra;
            for (name, value) in [("user_id", u), ("method", m), ("inDate", d)] {
                if let Some(v) = value {
                    let at = (order_seed as usize).wrapping_add(name.len()) % (fields.len() + 1);
                    fields.insert(at, (name.to_owned(), v));
                }
            }
            // Map semantics: a repeated key keeps its first position and last value.
            fields.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn restore_undoes_compact(r in record()) {
        let mut c = r.clone();
        fields::shorten(&mut c);
        fields::restore(&mut c);
        prop_assert_eq!(c, r);
    }

    #[test]
    fn restore_undoes_compact_through_archive_text(r in record()) {
        let mut c = r.clone();
        fields::shorten(&mut c);
        let line = serde_json::to_string(&c).unwrap();
        prop_assert!(!line.contains('\n'));
        let mut back: Map<String, Value> = serde_json::from_str(&line).unwrap();
        fields::restore(&mut back);
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&r).unwrap());
        prop_assert_eq!(back, r);
    }

    #[test]
    fn usual_records_carry_no_escape(
        id in hex(64, false),
        m in prop::sample::select(METHOD_CODES.to_vec()),
        d in "20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z",
    ) {
        let mut r = Map::new();
        r.insert("user_id".into(), json!(id));
        r.insert("method".into(), json!(m.0));
        r.insert("inDate".into(), json!(d));
        fields::shorten(&mut r);
        prop_assert_eq!(r["user_id"].as_str().unwrap().len(), 44);
        prop_assert_eq!(&r["method"], &json!(m.1));
        prop_assert_eq!(r["inDate"].as_str().unwrap().len(), 15);
    }

    #[test]
    fn every_field_value_round_trips_alone(v in any_json()) {
        for field in Field::ALL {
            prop_assert_eq!(field.restore(field.shorten(v.clone())), v.clone());
        }
    }

    #[test]
    fn python_literal_writer_and_parser_are_inverse(v in any_json()) {
        let record = json!({ "v": v });
        let limits = ParseLimits { max_depth: 64, ..ParseLimits::default() };
        let text = pyrepr::to_repr(&record);
        prop_assert!(text.is_ascii());
        prop_assert_eq!(pyrepr::parse(&text, limits).unwrap(), record);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = pyrepr::parse(&text, ParseLimits::default());
    }
}

#[test]
fn the_adversarial_corner_cases_named_in_the_design() {
    // Each of these must come back exactly, as a whole record.
    let cases = [
        json!({"user_id": null, "method": "GET", "inDate": "2023-03-18T15:08:02.284Z"}),
        json!({"user_id": "6B86B273FF34FCE19D6B804EFF5A3F5747ADA4EAA22F1D49C01E52DDB7875B4B"}),
        json!({"user_id": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4"}),
        json!({"user_id": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b0"}),
        json!({"user_id": "a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw", "method": 2, "inDate": "230318150802284"}),
        json!({"method": "PROPFIND", "inDate": "2023-03-18T15:08:02Z"}),
        json!({"method": {"~": "GET"}, "inDate": {"~": {"~": 1}}}),
        json!({"user_id": 12345, "method": null, "inDate": 230318150802284_u64}),
        json!({"inDate": "999999999999999"}),
    ];
    for case in cases {
        let r = case.as_object().unwrap().clone();
        let mut c = r.clone();
        fields::shorten(&mut c);
        fields::restore(&mut c);
        assert_eq!(c, r, "{case}");
    }
}

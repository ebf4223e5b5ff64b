//! The transcoder against the tree path: for every plaintext, the one-pass path (the transcoder,
//! or the tree when it hands a text back) gives exactly the tree's line and placement, or the
//! tree's error. Over the adversarial generators of the lossless properties, every file of the
//! fuzz corpus, seeds and regressions, hand-made texts at each edge of the transcoder's subset,
//! and generated source records end to end.

use std::path::PathBuf;

use chrono::{SecondsFormat, TimeZone, Utc};
use log_etl::local::synth::{Synth, SynthOptions};
use log_etl::record::fernet::{KeyRing, generate_key};
use log_etl::record::hour::HourWindow;
use log_etl::record::pyrepr::{self, ParseLimits};
use log_etl::record::transcode::{TranscodeScratch, transcode};
use log_etl::record::{
    self, RecordLimits, RecordScratch, plaintext_by_transcoder, plaintext_by_tree,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value, json};

use crate::lossless;

/// The limits of a run and tight ones, so texts near a bound are compared too.
fn limit_sets() -> [RecordLimits; 2] {
    [
        RecordLimits::default(),
        RecordLimits {
            parse: ParseLimits {
                max_depth: 3,
                max_string_len: 24,
            },
            ..RecordLimits::default()
        },
    ]
}

/// A run in 2023, so that records dated outside its hours are refused.
fn window(limits: &RecordLimits) -> HourWindow {
    limits.window(Utc.with_ymd_and_hms(2023, 3, 18, 16, 0, 0).unwrap())
}

/// Why the two paths disagree on `plain`, if they do; and whether the transcoder took it.
fn compare(plain: &[u8], limits: &RecordLimits) -> (Option<String>, bool) {
    let window = window(limits);
    let tree = plaintext_by_tree(plain, limits, &window).map(|p| (p.placement, p.line));
    let mut line = Vec::new();
    let mut scratch = TranscodeScratch::default();
    let fast = plaintext_by_transcoder(plain, limits, &window, &mut scratch, &mut line)
        .map(|placement| (placement, line.clone()));
    let mut probe = Vec::new();
    let taken = transcode(plain, limits.parse, &window, &mut scratch, &mut probe).is_some();
    let differs = (tree != fast).then(|| {
        let show = |r: &Result<(_, Vec<u8>), record::RecordError>| match r {
            Ok((placement, line)) => format!("{placement:?} {}", String::from_utf8_lossy(line)),
            Err(err) => format!("error: {err}"),
        };
        format!(
            "plaintext {:?}\n  tree:       {}\n  transcoder: {}",
            String::from_utf8_lossy(plain),
            show(&tree),
            show(&fast)
        )
    });
    (differs, taken)
}

fn assert_same(plain: &[u8]) -> bool {
    let mut taken = false;
    for limits in limit_sets() {
        let (differs, took) = compare(plain, &limits);
        if let Some(why) = differs {
            panic!("the transcoder differs from the tree ({limits:?}): {why}");
        }
        taken |= took;
    }
    taken
}

/// Values inside the transcoder's subset, mostly, so that its own code is what is compared.
fn subset_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0u64..12).prop_map(|n| json!(n)),
        "[ -~]{0,30}".prop_map(Value::String),
        "[0-9]{15}".prop_map(Value::String),
        Just(json!("a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw")),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z~_]{1,6}", inner.clone()), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            inner.prop_map(|v| json!({ "~": v })),
        ]
    })
}

/// A record like the server's, its three fields drawn from the lossless generators (usual
/// values mostly, look-alikes and any JSON too) among fields inside the subset.
fn server_like_record() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::option::weighted(0.95, lossless::user_id()),
        prop::option::weighted(0.95, lossless::method()),
        prop::option::weighted(0.95, in_date()),
        prop::collection::vec(("[a-zA-Z_]{1,10}", subset_json()), 0..6),
        any::<u64>(),
    )
        .prop_map(|(u, m, d, extra, seed)| {
            let mut fields = extra;
            for (name, value) in [("user_id", u), ("method", m), ("inDate", d)] {
                if let Some(v) = value {
                    let at = (seed as usize).wrapping_add(name.len()) % (fields.len() + 1);
                    fields.insert(at, (name.to_owned(), v));
                }
            }
            fields.into_iter().collect()
        })
}

/// Dates in the server's format from 2000 to a week after the run (some outside its hours),
/// in other valid forms, and the lossless generator's.
fn in_date() -> impl Strategy<Value = Value> {
    let instant = (946_684_800_000i64..1_679_760_000_000)
        .prop_map(|ms| Utc.timestamp_millis_opt(ms).unwrap());
    prop_oneof![
        4 => instant.clone().prop_map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Millis, true))),
        1 => instant.prop_map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, false))),
        2 => lossless::in_date(),
    ]
}

/// Bytes that sit at the transcoder's edges: quotes, escapes, separators, number syntax.
const EDGE_BYTES: &[u8] = b"'\"\\ ,:{}[]()-+.eE0123456789_$~NTFjx\t\n\xc3\xa9";

/// The `repr` text of a record with one byte changed: inserted, replaced or removed.
fn mutated_repr() -> impl Strategy<Value = Vec<u8>> {
    (
        server_like_record(),
        any::<prop::sample::Index>(),
        0u8..3,
        prop::sample::select(EDGE_BYTES.to_vec()),
    )
        .prop_map(|(record, at, how, byte)| {
            let mut text = pyrepr::to_repr(&Value::Object(record)).into_bytes();
            let i = at.index(text.len() + 1);
            match how {
                0 => text.insert(i, byte),
                1 if i < text.len() => text[i] = byte,
                _ if i < text.len() => {
                    text.remove(i);
                }
                _ => text.push(byte),
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_transcoder_matches_the_tree_on_adversarial_records(r in lossless::record()) {
        // Given any record of the lossless generators, as the server's repr and as JSON
        let value = Value::Object(r);
        // Then both paths give the same line and placement, or the same error
        assert_same(pyrepr::to_repr(&value).as_bytes());
        assert_same(serde_json::to_string(&value).unwrap().as_bytes());
    }

    #[test]
    fn the_transcoder_matches_the_tree_on_server_like_records(r in server_like_record()) {
        assert_same(pyrepr::to_repr(&Value::Object(r)).as_bytes());
    }

    #[test]
    fn the_transcoder_matches_the_tree_one_byte_off_the_subset(text in mutated_repr()) {
        assert_same(&text);
    }
}

#[test]
fn the_transcoder_takes_most_server_like_records() {
    // Given server-like records (a check that the comparisons above exercise the transcoder,
    // not only the fallback)
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = server_like_record();
    let mut taken = 0;
    for _ in 0..500 {
        let record = strategy.new_tree(&mut runner).unwrap().current();
        let text = pyrepr::to_repr(&Value::Object(record));
        taken += usize::from(assert_same(text.as_bytes()));
    }
    // Then a fair share of them (a fifth at least) is transcoded
    assert!(taken > 100, "only {taken} of 500 transcoded");
}

#[test]
fn every_fuzz_input_gives_the_same_result_on_both_paths() {
    // Given every checked-in fuzz input, of every target, as a plaintext
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for folder in ["corpus", "seeds", "regressions"] {
        for target in std::fs::read_dir(root.join(folder)).unwrap() {
            for file in std::fs::read_dir(target.unwrap().path()).unwrap() {
                files.push(file.unwrap().path());
            }
        }
    }
    assert!(
        files.len() > 100,
        "the fuzz inputs are missing: {}",
        files.len()
    );
    // Then each gives the tree's result, and the transcoder took some of them
    let mut taken = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let result = std::panic::catch_unwind(|| assert_same(&bytes));
        match result {
            Ok(took) => taken += usize::from(took),
            Err(_) => panic!("{} differs (see above)", file.display()),
        }
    }
    assert!(taken >= 5, "the transcoder took only {taken} fuzz inputs");
}

#[test]
fn texts_at_each_edge_of_the_subset_give_the_same_result_on_both_paths() {
    let d = "'inDate': '2023-03-18T15:08:02.284Z'";
    let uid = "'user_id': '6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b'";
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let long = |n: usize| "x".repeat(n);
    let mut cases: Vec<String> = vec![
        // the usual record and its neighbours
        format!("{{{uid}, 'method': 'GET', {d}}}"),
        format!("{{{uid}, 'method': 'GET', {d}, 'method': 'POST'}}"),
        format!("{{{d}, {d}}}"),
        format!("{{{d}, 'a': 1, 'a': 1}}"),
        format!("{{{d}, 'x': {{'a': 1, 'b': {{'a': 2}}, 'a': 3}}}}"),
        format!("{{{d}, 'x': {{'a': 1}}, 'y': {{'a': 1}}}}"),
        // numbers whose JSON text could differ
        format!("{{{d}, 'n': 1.0}}"),
        format!("{{{d}, 'n': -0}}"),
        format!("{{{d}, 'n': -0.0}}"),
        format!("{{{d}, 'n': 0}}"),
        format!("{{{d}, 'n': 00}}"),
        format!("{{{d}, 'n': 1e5}}"),
        format!("{{{d}, 'n': 1E5}}"),
        format!("{{{d}, 'n': 1_000}}"),
        format!("{{{d}, 'n': 0x10}}"),
        format!("{{{d}, 'n': 1j}}"),
        format!("{{{d}, 'n': - 5}}"),
        format!("{{{d}, 'n': -5}}"),
        format!("{{{d}, 'n': 999999999999999999}}"),
        format!("{{{d}, 'n': 1999999999999999999}}"),
        format!("{{{d}, 'n': 123456789012345678901234567890}}"),
        format!("{{{d}, 'method': 1}}"),
        format!("{{{d}, 'method': 9}}"),
        format!("{{{d}, 'method': 10}}"),
        format!("{{{d}, 'method': 1.0}}"),
        format!("{{{d}, 'method': -1}}"),
        format!("{{{d}, 'method': 01}}"),
        // strings JSON escapes, or Python does
        format!("{{{d}, 's': '\\x41'}}"),
        format!("{{{d}, 's': 'a\\'b'}}"),
        format!("{{{d}, 's': 'say \"hi\"'}}"),
        format!("{{{d}, 's': \"it's\"}}"),
        format!("{{{d}, 's': \"it's \\\"x\\\"\"}}"),
        format!("{{{d}, 's': 'tab\there'}}"),
        format!("{{{d}, 's': 'line\nbreak'}}"),
        format!("{{{d}, 's': 'bell\x07'}}"),
        format!("{{{d}, 's': 'del\x7f'}}"),
        format!("{{{d}, 's': 'é'}}"),
        format!("{{{d}, 's': '😀'}}"),
        format!("{{{d}, 's': '\\u00e9'}}"),
        format!("{{{d}, 's': ''}}"),
        format!("{{{d}, 's': '''x'''}}"),
        format!("{{{d}, 's': '$serde_json::private::Number'}}"),
        format!("{{{d}, '$serde_json::private::Number': '1'}}"),
        format!("{{{d}, 's': 'a/b'}}"),
        // look-alikes of compact forms, and escapes
        format!("{{'user_id': 'a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw', {d}}}"),
        format!("{{'user_id': 'a4ayc_80_OGda4BO_1o_VxR62k6qIvHUnAHlLdt4dbSw', {d}}}"),
        format!("{{'user_id': 'a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbS', {d}}}"),
        format!("{{'user_id': 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', {d}}}"),
        format!(
            "{{'user_id': '6B86B273FF34FCE19D6B804EFF5A3F5747ADA4EAA22F1D49C01E52DDB7875B4B', {d}}}"
        ),
        format!(
            "{{'user_id': '6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4', {d}}}"
        ),
        format!("{{'user_id': None, {d}}}"),
        format!("{{'user_id': 12345, {d}}}"),
        format!("{{'user_id': True, {d}}}"),
        format!("{{'user_id': [], {d}}}"),
        format!("{{'user_id': {{'~': 'x'}}, {d}}}"),
        format!("{{{d}, 'method': {{'~': 1}}}}"),
        format!("{{{d}, 'method': {{'~': 1, 'b': 2}}}}"),
        format!("{{{d}, 'x': {{'~': 1}}}}"),
        format!("{{{d}, 'method': 'get'}}"),
        format!("{{{d}, 'method': 'PROPFIND'}}"),
        format!("{{{d}, 'x': '230318150802284'}}"),
        "{'inDate': '230318150802284'}".to_owned(),
        "{'inDate': '2023031815080228'}".to_owned(),
        "{'inDate': {'~': '2023-03-18T15:08:02.284Z'}}".to_owned(),
        // dates: other shapes, outside the window, not dates
        "{'inDate': '2023-03-18T15:08:02Z'}".to_owned(),
        "{'inDate': '2023-03-19T00:30:00.500+09:00'}".to_owned(),
        "{'inDate': '2023-03-18T15:08:02.284'}".to_owned(),
        "{'inDate': '1999-03-18T15:08:02.284Z'}".to_owned(),
        "{'inDate': '2031-03-18T15:08:02.284Z'}".to_owned(),
        "{'inDate': '2023-02-30T15:08:02.284Z'}".to_owned(),
        "{'inDate': 1679152082}".to_owned(),
        "{'inDate': None}".to_owned(),
        "{'a': 1}".to_owned(),
        // syntax the tree takes and the subset does not
        format!("{{{d}, 'a': 1,}}"),
        format!("{{{d}, 'l': [1, 2, ]}}"),
        format!("{{{d}, 't': (1, 2)}}"),
        format!("{{{d},'a': 1}}"),
        format!("{{{d} , 'a': 1}}"),
        format!("{{{d}, 'a' : 1}}"),
        format!("{{{d}, 'a':1}}"),
        format!(" {{{d}}}"),
        format!("{{{d}}} "),
        format!("{{{d}}}\n"),
        format!("{{ {d}}}"),
        format!("{{{d}, \"a\": 1}}"),
        format!("{{\"x\": 1, {d}}}"),
        format!("{{{d}, 'a': none}}"),
        format!("{{{d}, 'a': Nonesuch}}"),
        format!("{{{d}, 'a': {{1, 2}}}}"),
        format!("{{{d}, 'a': {{xyzx: 1}}}}"),
        format!("{{{d}, 'a': {{1: 1}}}}"),
        format!("{{{d}, 'a': {{None: 1}}}}"),
        format!("{{{d}, 'a': b'x'}}"),
        format!("{{{d}, 'a': inf}}"),
        format!("{{{d}}}{{'b': 1}}"),
        format!("{{{d}"),
        r#"{"inDate": "2023-03-18T15:08:02.284Z", "method": "GET"}"#.to_owned(),
        "{}".to_owned(),
        String::new(),
        // depth and length at and near the limits (default: 32 levels, 1 MiB strings)
        format!("{{{d}, 'a': {}}}", deep(29)),
        format!("{{{d}, 'a': {}}}", deep(30)),
        format!("{{{d}, 'a': {}}}", deep(31)),
        format!("{{{d}, 'a': {}}}", deep(32)),
        format!("{{{d}, 'a': {}}}", deep(2)),
        format!("{{{d}, 'a': {}}}", deep(3)),
        format!("{{{d}, 'a': '{}'}}", long(11)),
        format!("{{{d}, 'a': '{}'}}", long(12)),
        format!("{{{d}, 'a': '{}'}}", long(13)),
        format!("{{{d}, 'a': '{}'}}", long(24)),
        format!("{{{d}, 'a': '{}'}}", long(25)),
        format!("{{{d}, '{}': 1}}", long(25)),
        format!("{{{d}, 'a': '{}'}}", long(1 << 19)),
        format!("{{{d}, 'a': '{}'}}", long(1 << 20)),
        format!("{{{d}, 'a': '{}'}}", long((1 << 20) + 1)),
    ];
    // control characters, each alone in a string
    cases.extend((0u8..0x20).map(|c| format!("{{{d}, 's': 'a{}b'}}", c as char)));
    let mut taken = 0;
    for case in &cases {
        taken += usize::from(assert_same(case.as_bytes()));
    }
    // and invalid UTF-8
    assert!(!assert_same(
        b"{'inDate': '2023-03-18T15:08:02.284Z', 's': '\xff'}"
    ));
    assert!(taken > 20, "only {taken} edge cases transcoded");
}

#[test]
fn generated_source_records_land_alike_on_both_paths_and_usual_ones_take_the_transcoder() {
    // Given generated records, usual and with the generator's unusual and bad mixes
    let ring = KeyRing::parse(&generate_key()).unwrap();
    let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 8, 2).unwrap();
    let limits = RecordLimits::default();
    let window = window(&limits);
    let mut scratch = RecordScratch::default();
    let mut line = Vec::new();
    for (unusual, bad) in [(0, 0), (1000, 0), (80, 20)] {
        let options = SynthOptions {
            unusual_per_mille: unusual,
            bad_per_mille: bad,
            ..SynthOptions::default()
        };
        let items = Synth::new(options).batch(&ring, start, 600);
        for item in &items {
            // When each is processed by the one-pass path and by the tree
            let fast = record::process_record_into(
                &item.source,
                &ring,
                &limits,
                &window,
                &mut scratch,
                &mut line,
            )
            .map(|placement| (placement, line.clone()));
            let tree = record::process_record_tree(&item.source, &ring, &limits, &window)
                .map(|p| (p.placement, p.line));
            // Then both give the same line and placement, or the same error
            assert_eq!(fast, tree, "{unusual} unusual, {bad} bad per mille");
            // and a usual record is transcoded, never handed to the tree
            if unusual == 0 && bad == 0 {
                let plain = item.truth.clone().map(Value::Object).unwrap();
                let text = pyrepr::to_repr(&plain);
                let mut probe = Vec::new();
                let mut transcode_scratch = TranscodeScratch::default();
                assert!(
                    transcode(
                        text.as_bytes(),
                        limits.parse,
                        &window,
                        &mut transcode_scratch,
                        &mut probe
                    )
                    .is_some(),
                    "a usual record took the tree"
                );
            }
        }
    }
}

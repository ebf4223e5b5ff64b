//! The whole per-record path on hostile input: the input as a plaintext (encrypted here under a
//! fixed test key) and as a raw source record, through `process_record`, then through a
//! `Batch` into gzip'd objects that are read back with `restore_object`.
//!
//! Checked: the one-pass path (the transcoder, or the tree when it hands a text back) gives
//! exactly the tree path's line and placement, or its error, for the input as a plaintext and
//! as a source record; `process_record` lands exactly the records `parse_payload` and `hour::place`
//! accept inside the run's hour window, in the hour `place` gives, and refuses the rest at the
//! stage that refused them; every landed record comes back from the data objects unchanged; an
//! object that says its records are distinct holds each once; every other record is in the
//! quarantine object, one per line, exactly as received; the batch's counts add up.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::sync::LazyLock;

use chrono::TimeZone as _;
use flate2::read::MultiGzDecoder;
use libfuzzer_sys::fuzz_target;
use log_etl::batch::{Batch, BatchSettings, Element, ObjectKind, ObjectSettings};
use log_etl::record::fields::{self, Field};
use log_etl::record::hour::{self, HourWindow};
use log_etl::record::fernet::KeyRing;
use log_etl::batch::layout::{ObjectLayout, PartitionStyle};
use log_etl::record::payload::parse_payload;
use log_etl::record::pyrepr;
use log_etl::record::transcode::TranscodeScratch;
use log_etl::record::{
    RecordLimits, plaintext_by_transcoder, plaintext_by_tree, process_record, process_record_tree,
};
use log_etl::batch::encode::ReadLimits;
use log_etl::restore::restore_object;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Made by `log-etl keygen` for fuzzing only; it protects nothing.
const TEST_KEY: &str = "mt4wGtTOM7V_mawBWAvupax20CWkF-zhdWmCFQLGwh4=";

/// Given to a parsed record whose own `inDate` cannot be placed, so that the rest of an
/// arbitrary record still reaches compaction and the objects.
const IN_DATE: &str = "2023-03-18T15:08:02.284Z";

static KEYS: LazyLock<KeyRing> =
    LazyLock::new(|| KeyRing::parse(TEST_KEY).expect("the test key is a Fernet key"));

/// The run's time: it bounds the hours records may land in.
static RUN_TIME: LazyLock<chrono::DateTime<chrono::Utc>> = LazyLock::new(|| {
    chrono::Utc
        .timestamp_opt(1_700_000_000, 0)
        .single()
        .expect("a valid instant")
});

static WINDOW: LazyLock<HourWindow> = LazyLock::new(|| SETTINGS.limits.window(*RUN_TIME));

static SETTINGS: LazyLock<BatchSettings> = LazyLock::new(|| {
    BatchSettings::new(
        ObjectSettings::new(
            ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).expect("a valid layout"),
        ),
        RecordLimits::default(),
    )
});

/// A source record as the API sends it, carrying `plaintext` encrypted under the test key.
fn source_record(plaintext: &[u8]) -> String {
    serde_json::json!({ "data": KEYS.encrypt(plaintext) }).to_string()
}

/// One source record pushed into the batch, with the record it must land (`None`: it must be
/// quarantined).
struct Source {
    raw: Box<RawValue>,
    lands: Option<Map<String, Value>>,
}

impl Source {
    /// A source record made here, which is always JSON.
    fn made(text: String, lands: Option<Map<String, Value>>) -> Self {
        let raw = RawValue::from_string(text).expect("a source record made here is JSON");
        Self { raw, lands }
    }
}

/// What a token of `plaintext` must become: the record to land, or the stage that refuses it.
fn expected(plaintext: &[u8], limits: &RecordLimits) -> Result<Map<String, Value>, &'static str> {
    let record = parse_payload(plaintext, limits.parse).map_err(|_| "parse")?;
    hour::place(record.get(Field::InDate.name()))
        .and_then(|placement| WINDOW.admit(placement))
        .map_err(|_| "place")?;
    Ok(record)
}

/// The record a compact line stands for.
fn restored(line: &[u8]) -> Map<String, Value> {
    let mut record: Map<String, Value> =
        serde_json::from_slice(line).expect("a compact line is a JSON object");
    fields::restore(&mut record);
    record
}

fn as_line(record: &Map<String, Value>) -> String {
    serde_json::to_string(record).expect("a JSON map always serialises")
}

/// The transcoder against the tree on one plaintext: the same line and placement, or the
/// same error.
fn assert_transcoder_matches_tree(plaintext: &[u8], limits: &RecordLimits) {
    let tree = plaintext_by_tree(plaintext, limits, &WINDOW).map(|p| (p.placement, p.line));
    let mut line = Vec::new();
    let fast =
        plaintext_by_transcoder(plaintext, limits, &WINDOW, &mut TranscodeScratch::default(), &mut line)
            .map(|placement| (placement, line));
    assert_eq!(fast, tree, "the transcoder differs from the tree");
}

fuzz_target!(|data: &[u8]| {
    let limits = SETTINGS.limits;
    let mut sources: Vec<Source> = Vec::new();

    // The transcoder against the tree, on the input as a plaintext and as a source record.
    assert_transcoder_matches_tree(data, &limits);
    if let Ok(text) = std::str::from_utf8(data) {
        let fast = process_record(text, &KEYS, &limits, &WINDOW);
        let tree = process_record_tree(text, &KEYS, &limits, &WINDOW);
        assert_eq!(fast, tree, "process_record differs from the tree path");
    }

    // The input as a plaintext.
    let raw = source_record(data);
    let want = expected(data, &limits);
    match (&want, process_record(&raw, &KEYS, &limits, &WINDOW)) {
        (Ok(record), Ok(out)) => {
            let placement = hour::place(record.get(Field::InDate.name()));
            assert_eq!(Ok(out.placement), placement, "placed in another hour");
            assert_eq!(
                &restored(&out.line),
                record,
                "compact line does not restore"
            );
        }
        (Err(stage), Err(err)) => assert_eq!(*stage, err.stage(), "refused at another stage"),
        (want, got) => panic!(
            "process_record disagrees with parse_payload and place: expected {:?}, got {:?}",
            want.as_ref().map(|_| "landed"),
            got.map(|_| "landed")
        ),
    }
    let parsed = parse_payload(data, limits.parse).ok();
    sources.push(Source::made(raw, want.ok()));

    // A record parsed from the input, placed in an hour if it was not, encrypted in both of
    // the plaintext forms the server may send: it must land whatever its other fields hold.
    if let Some(mut record) = parsed {
        let placed = hour::place(record.get(Field::InDate.name()));
        if placed.and_then(|placement| WINDOW.admit(placement)).is_err() {
            record.insert(Field::InDate.name().to_owned(), IN_DATE.into());
        }
        let repr = pyrepr::to_repr(&Value::Object(record.clone()));
        assert_transcoder_matches_tree(repr.as_bytes(), &limits);
        let repr = source_record(repr.as_bytes());
        sources.push(Source::made(repr, Some(record.clone())));
        let json = source_record(as_line(&record).as_bytes());
        sources.push(Source::made(json, Some(record)));
    }

    // The input as the source record itself: any text must be refused or landed without a
    // panic; JSON goes on into the batch, as the response reader would pass it (trimmed).
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = process_record(text, &KEYS, &limits, &WINDOW);
        if let Ok(raw) = RawValue::from_string(text.to_owned()) {
            let landed = process_record(raw.get(), &KEYS, &limits, &WINDOW)
                .ok()
                .map(|out| restored(&out.line));
            sources.push(Source { raw, lands: landed });
        }
    }

    let mut batch = Batch::new(&KEYS, &SETTINGS, *RUN_TIME);
    for source in &sources {
        batch
            .push(Element::Json(&source.raw))
            .expect("in-memory batches cannot fail");
    }
    let out = batch.finish().expect("in-memory batches cannot fail");

    let stats = out.stats;
    assert_eq!(stats.records_in, sources.len() as u64);
    assert_eq!(
        stats.records_in,
        stats.records_placed + stats.records_refused,
        "batch counts: {stats:?}"
    );

    // Every landed record back from the data objects, exactly once per distinct record, and
    // every other source record in quarantine as received (line breaks, which can only stand
    // between tokens, written as spaces to keep each on one line).
    let want: BTreeSet<String> = sources
        .iter()
        .filter_map(|source| source.lands.as_ref().map(as_line))
        .collect();
    let mut want_quarantined: Vec<String> = sources
        .iter()
        .filter(|source| source.lands.is_none())
        .map(|source| source.raw.get().replace(['\n', '\r'], " "))
        .collect();
    want_quarantined.sort_unstable();
    let mut got = Vec::new();
    let mut quarantined = Vec::new();
    for object in &out.objects {
        let body = object.body.to_vec().expect("in-memory body");
        match object.kind {
            ObjectKind::Data { .. } => {
                let mut text = Vec::new();
                let count = restore_object(&object.key, &body[..], ReadLimits::default(), &mut text)
                    .unwrap_or_else(|err| panic!("object {} does not restore: {err}", object.key));
                assert_eq!(count, object.records, "records in {}", object.key);
                let text = String::from_utf8(text).expect("restored records are UTF-8");
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if object.distinct {
                    let distinct: BTreeSet<&String> = lines.iter().collect();
                    assert_eq!(distinct.len(), lines.len(), "{} holds a record twice", object.key);
                }
                got.extend(lines);
            }
            ObjectKind::Quarantine { .. } => quarantined.extend(quarantine_records(&body)),
        }
    }
    assert_eq!(got.len() as u64, stats.records_placed, "placed records");
    let got_set: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        got_set, want,
        "restored records differ from the records that landed"
    );
    assert_eq!(
        quarantined.len() as u64,
        stats.records_refused,
        "quarantined records"
    );
    quarantined.sort_unstable();
    assert_eq!(quarantined, want_quarantined, "quarantined source records");
});

/// The source records kept in a quarantine object, one per NDJSON line, as their raw text.
/// Read as raw JSON rather than through `restore_object`: quarantine keeps a record exactly as
/// received, which may hold escapes (a lone surrogate) that a `String` cannot.
fn quarantine_records(gzipped: &[u8]) -> Vec<String> {
    let mut text = Vec::new();
    MultiGzDecoder::new(gzipped)
        .read_to_end(&mut text)
        .expect("a quarantine object gunzips");
    text.strip_suffix(b"\n")
        .expect("a quarantine object ends its last line")
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| {
            let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(line)
                .unwrap_or_else(|err| {
                    panic!("quarantine line {} is not a JSON object: {err}", i + 1)
                });
            let record = fields
                .get("record")
                .expect("a quarantine line holds the record");
            record.get().to_owned()
        })
        .collect()
}

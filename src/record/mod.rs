//! One source record through the pure stages: decrypt ([`fernet`]), then parse, place in an hour
//! ([`hour`]) and compact its fields ([`fields`]), in one pass for the usual plaintext
//! ([`transcode`]) or through a tree for any other ([`payload`], over [`pyrepr`]). Pure: no
//! clock, no environment, no I/O.

pub mod fernet;
pub mod fields;
pub mod hour;
pub mod payload;
pub mod pyrepr;
pub mod transcode;

use std::borrow::Cow;

use serde::Deserialize;

use fernet::{DecryptError, KeyRing, TokenBuffers};
use fields::Field;
use hour::{HourWindow, PlaceError, Placement};
use payload::ParseError;
use pyrepr::ParseLimits;
use transcode::TranscodeScratch;

/// Default of [`RecordLimits::max_record_bytes`] (`MAX_RECORD_BYTES`).
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 1 << 20;

/// Bounds on one record; anything over them is quarantined, never allocated without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// Largest source record (the JSON object as received, token included), in bytes.
    pub max_record_bytes: usize,
    /// Bounds on the decrypted plaintext's structure.
    pub parse: ParseLimits,
    /// First year a record may be dated in.
    pub earliest_year: i32,
    /// Hours a record may be dated after the run's hour.
    pub max_hours_ahead: u32,
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES as usize,
            parse: ParseLimits::default(),
            earliest_year: hour::DEFAULT_EARLIEST_YEAR as i32,
            max_hours_ahead: hour::DEFAULT_MAX_HOURS_AHEAD as u32,
        }
    }
}

impl RecordLimits {
    /// The hours records of a run at `run_time` may land in.
    pub fn window(&self, run_time: chrono::DateTime<chrono::Utc>) -> HourWindow {
        HourWindow::new(self.earliest_year, self.max_hours_ahead, run_time)
    }
}

/// Why one record was quarantined. Its message never contains the token, a key or plaintext.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("source record is not an object with a string \"data\" field")]
    Shape,
    #[error("source record is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Place(#[from] PlaceError),
}

impl RecordError {
    /// The stage that refused the record, as written in quarantine lines and metrics.
    pub fn stage(&self) -> &'static str {
        match self {
            RecordError::Shape | RecordError::TooLarge { .. } => "shape",
            RecordError::Decrypt(_) => "decrypt",
            RecordError::Parse(_) => "parse",
            RecordError::Place(_) => "place",
        }
    }

    /// A short label of what failed (`stage: what`), for counting refused records by reason: one
    /// of a small fixed set, never an offset, a length or anything of the record itself.
    pub fn label(&self) -> &'static str {
        match self {
            RecordError::Shape => "shape: no string data field",
            RecordError::TooLarge { .. } => "shape: over the record limit",
            RecordError::Decrypt(err) => match err {
                DecryptError::NotBase64 => "decrypt: not base64",
                DecryptError::TooShort { .. } => "decrypt: too short",
                DecryptError::BadVersion { .. } => "decrypt: bad version",
                DecryptError::NoKeyMatched { .. } => "decrypt: no key matched",
                DecryptError::BadLength => "decrypt: bad ciphertext length",
                DecryptError::BadPadding => "decrypt: bad padding",
            },
            RecordError::Parse(err) => match err {
                ParseError::NotUtf8 { .. } => "parse: not UTF-8",
                ParseError::Syntax(_) => "parse: not a dict literal or JSON object",
                ParseError::TooDeep { .. } => "parse: nested too deep",
                ParseError::StringTooLong { .. } => "parse: string too long",
                ParseError::NotADict => "parse: not a dict",
                ParseError::ReservedMarker => "parse: reserved marker",
            },
            RecordError::Place(err) => match err {
                PlaceError::Missing => "place: no inDate",
                PlaceError::NotAString => "place: inDate not a string",
                PlaceError::Unparseable => "place: inDate without a time zone or unreadable",
                PlaceError::OutOfRange { .. } => "place: inDate outside the table's hours",
            },
        }
    }
}

/// A record ready to be written: where it goes and its NDJSON line (without the newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedLine {
    pub placement: Placement,
    pub line: Vec<u8>,
}

impl PlacedLine {
    /// The same record, its line borrowed.
    pub fn as_placed(&self) -> Placed<'_> {
        Placed {
            placement: self.placement,
            line: &self.line,
        }
    }
}

/// A record ready to be written, its line (without the newline) borrowed from a reused buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed<'a> {
    pub placement: Placement,
    pub line: &'a [u8],
}

/// The buffers one thread reuses from record to record, so that the usual record allocates
/// nothing: the token's bytes, its plaintext and the transcoder's own.
#[derive(Debug, Default)]
pub struct RecordScratch {
    token: TokenBuffers,
    transcode: TranscodeScratch,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// The instant a compact line's `inDate` names: restored, then read as [`process_record`] read it
/// when it placed the record. `None` for a line without one (no landed record is such a line).
pub fn line_instant(line: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    #[derive(Deserialize)]
    struct InDate {
        #[serde(rename = "inDate")]
        in_date: Option<serde_json::Value>,
    }
    let value = serde_json::from_slice::<InDate>(line).ok()?.in_date?;
    hour::instant(Some(&Field::InDate.restore(value))).ok()
}

/// The `mmssSSS` stamp of a landed line's record, as it was placed when it landed (the default
/// stamp for a line without an `inDate`).
pub fn line_stamp(line: &[u8]) -> hour::Stamp {
    line_instant(line).map_or_else(hour::Stamp::default, hour::Stamp::of)
}

/// Runs one source record (its raw JSON text) through decrypt → parse → place (inside `window`)
/// → compact.
pub fn process_record(
    raw: &str,
    ring: &KeyRing,
    limits: &RecordLimits,
    window: &HourWindow,
) -> Result<PlacedLine, RecordError> {
    let mut line = Vec::new();
    let placement = process_record_into(
        raw,
        ring,
        limits,
        window,
        &mut RecordScratch::default(),
        &mut line,
    )?;
    Ok(PlacedLine { placement, line })
}

/// [`process_record`] writing the line into `line` (cleared first), with buffers reused from
/// record to record: the usual record allocates nothing. The usual plaintext is transcoded in
/// one pass; any other takes the tree, so the result (line or error) is always the tree's.
pub fn process_record_into(
    raw: &str,
    ring: &KeyRing,
    limits: &RecordLimits,
    window: &HourWindow,
    scratch: &mut RecordScratch,
    line: &mut Vec<u8>,
) -> Result<Placement, RecordError> {
    let plaintext = decrypt_record(raw, ring, limits, &mut scratch.token)?;
    plaintext_by_transcoder(plaintext, limits, window, &mut scratch.transcode, line)
}

/// The reference path, a tree for every record: decrypt, [`payload::parse_payload`],
/// [`hour::place`], [`fields::shorten`] and serde_json. The transcoder's results are checked
/// against it (tests, fuzzing, the benchmark).
pub fn process_record_tree(
    raw: &str,
    ring: &KeyRing,
    limits: &RecordLimits,
    window: &HourWindow,
) -> Result<PlacedLine, RecordError> {
    let mut buffers = TokenBuffers::default();
    let plaintext = decrypt_record(raw, ring, limits, &mut buffers)?;
    plaintext_by_tree(plaintext, limits, window)
}

/// The plaintext of a source record within the limits, decrypted into `buffers`.
fn decrypt_record<'b>(
    raw: &str,
    ring: &KeyRing,
    limits: &RecordLimits,
    buffers: &'b mut TokenBuffers,
) -> Result<&'b [u8], RecordError> {
    if raw.len() > limits.max_record_bytes {
        return Err(RecordError::TooLarge {
            len: raw.len(),
            max: limits.max_record_bytes,
        });
    }
    let envelope: Envelope<'_> = serde_json::from_str(raw).map_err(|_| RecordError::Shape)?;
    Ok(ring.decrypt_into(&envelope.data, buffers)?)
}

/// A decrypted plaintext through the tree: parse, place (inside `window`), compact, serialise.
pub fn plaintext_by_tree(
    plaintext: &[u8],
    limits: &RecordLimits,
    window: &HourWindow,
) -> Result<PlacedLine, RecordError> {
    let mut record = payload::parse_payload(plaintext, limits.parse)?;
    let placement = window.admit(hour::place(record.get(Field::InDate.name()))?)?;
    fields::shorten(&mut record);
    let line = serde_json::to_vec(&record).expect("a JSON map always serialises");
    Ok(PlacedLine { placement, line })
}

/// A decrypted plaintext through the transcoder when it takes it, else the tree: what
/// [`process_record_into`] does after decrypting (the differential tests and fuzzing compare
/// it with [`plaintext_by_tree`]).
pub fn plaintext_by_transcoder(
    plaintext: &[u8],
    limits: &RecordLimits,
    window: &HourWindow,
    scratch: &mut TranscodeScratch,
    line: &mut Vec<u8>,
) -> Result<Placement, RecordError> {
    if let Some(placement) = transcode::transcode(plaintext, limits.parse, window, scratch, line) {
        return Ok(placement);
    }
    let tree = plaintext_by_tree(plaintext, limits, window)?;
    line.clear();
    line.extend_from_slice(&tree.line);
    Ok(tree.placement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fernet::generate_key;

    fn fresh_ring() -> KeyRing {
        KeyRing::parse(&generate_key()).unwrap()
    }

    fn source(token: &str) -> String {
        serde_json::json!({"recordId": "1", "data": token, "ArrivalTimeStamp": 1.5}).to_string()
    }

    #[test]
    fn usual_record_becomes_a_compact_line() {
        // Given a token of the server's usual payload
        let ring = fresh_ring();
        let token = ring
            .encrypt(b"{'user_id': None, 'method': 'GET', 'inDate': '2023-03-18T15:08:02.284Z'}");
        // When it is processed
        let out = process_record(
            &source(&token),
            &ring,
            &RecordLimits::default(),
            &HourWindow::unbounded(),
        )
        .unwrap();
        // Then it lands in its hour with the compact line
        assert_eq!(out.placement.hour.to_string(), "2023-03-18T15");
        assert_eq!(
            String::from_utf8(out.line).unwrap(),
            r#"{"user_id":null,"method":1,"inDate":"230318150802284"}"#
        );
    }

    #[test]
    fn a_usual_record_allocates_nothing_once_the_buffers_have_grown() {
        use crate::local::synth::{Synth, SynthOptions};
        use crate::record::transcode::counting::allocations;
        // Given usual generated records and one thread's buffers, grown on the first record
        let ring = fresh_ring();
        let start = chrono::DateTime::from_timestamp(1_679_152_082, 0).unwrap();
        let items = Synth::new(SynthOptions::default()).batch(&ring, start, 300);
        let limits = RecordLimits::default();
        let window = HourWindow::unbounded();
        let mut scratch = RecordScratch::default();
        let mut line = Vec::with_capacity(1024);
        process_record_into(
            &items[0].source,
            &ring,
            &limits,
            &window,
            &mut scratch,
            &mut line,
        )
        .unwrap();
        // When the others are processed
        let (count, landed) = allocations(|| {
            items[1..]
                .iter()
                .filter(|item| {
                    process_record_into(
                        &item.source,
                        &ring,
                        &limits,
                        &window,
                        &mut scratch,
                        &mut line,
                    )
                    .is_ok()
                })
                .count()
        });
        // Then every one lands and not one allocation is made
        assert_eq!(landed, items.len() - 1);
        assert_eq!(count, 0, "allocations for {landed} usual records");
        // while the allocating entry point is seen to allocate (the count counts)
        let (count, _) =
            allocations(|| process_record(&items[1].source, &ring, &limits, &window).unwrap());
        assert!(count >= 1);
    }

    #[test]
    fn each_failure_names_its_stage() {
        let ring = fresh_ring();
        let limits = RecordLimits::default();
        let cases = [
            (r#"{"nodata": 1}"#.to_owned(), "shape"),
            (r#"{"data": 5}"#.to_owned(), "shape"),
            ("[1]".to_owned(), "shape"),
            (source(&fresh_ring().encrypt(b"{}")), "decrypt"),
            (source("not a token"), "decrypt"),
            (source(&ring.encrypt(b"print(1)")), "parse"),
            (source(&ring.encrypt(b"{'inDate': 'yesterday'}")), "place"),
            (source(&ring.encrypt(b"{'a': 1}")), "place"),
            (
                source(&ring.encrypt(b"{'inDate': '1999-03-18T15:08:02.284Z'}")),
                "place",
            ),
        ];
        for (raw, stage) in cases {
            let window = limits.window(chrono::Utc::now());
            let err = process_record(&raw, &ring, &limits, &window).unwrap_err();
            assert_eq!(err.stage(), stage, "{raw}: {err}");
        }
    }

    #[test]
    fn a_landed_line_is_stamped_as_its_record_was_placed() {
        let line = br#"{"user_id":null,"inDate":"230318150802284"}"#;
        assert_eq!(line_stamp(line).to_string(), "0802284");
        let verbatim = br#"{"inDate":"2023-03-19T00:30:00.5+09:00"}"#;
        assert_eq!(line_stamp(verbatim).to_string(), "3000500");
        assert_eq!(line_stamp(b"{}"), hour::Stamp::default());
    }

    #[test]
    fn oversized_records_are_refused_before_decrypting() {
        let ring = fresh_ring();
        let limits = RecordLimits {
            max_record_bytes: 64,
            ..RecordLimits::default()
        };
        let raw = source(&ring.encrypt(&[b'x'; 100]));
        assert!(matches!(
            process_record(&raw, &ring, &limits, &HourWindow::unbounded()),
            Err(RecordError::TooLarge { max: 64, .. })
        ));
    }

    #[test]
    fn a_failure_is_labelled_by_its_stage_and_kind_alone() {
        // Given records refused at each stage, two of them for the same kind of failure with
        // different details (a token of another key; tokens too short by different lengths)
        let ring = fresh_ring();
        let limits = RecordLimits::default();
        let cases = [
            (r#"{"nodata": 1}"#.to_owned(), "shape: no string data field"),
            (
                source(&fresh_ring().encrypt(b"{}")),
                "decrypt: no key matched",
            ),
            (source("gAAAAAAA"), "decrypt: too short"),
            (source("gAAAAABhYWFhYWFh"), "decrypt: too short"),
            (source(&ring.encrypt(b"[1, 2]")), "parse: not a dict"),
            (source(&ring.encrypt(b"{'a': 1}")), "place: no inDate"),
        ];
        for (raw, label) in cases {
            // When each is processed
            let window = limits.window(chrono::Utc::now());
            let err = process_record(&raw, &ring, &limits, &window).unwrap_err();
            // Then its label is the stage and the kind, and starts with the stage it names
            assert_eq!(err.label(), label, "{raw}: {err}");
            assert!(err.label().starts_with(err.stage()), "{err}");
        }
    }
}

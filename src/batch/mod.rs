//! A batch of source records into the objects to write: one gzip'd NDJSON object per UTC hour,
//! plus one quarantine object for the records that could not be processed.
//!
//! Records are pushed one at a time, so a batch of any size is encoded in bounded memory: at most
//! [`BatchSettings::max_open_hours`] hours are open at once (the least recently used one is closed
//! when another is needed), an object is closed at [`BatchSettings::max_records_per_object`]
//! records, and bodies past the spool's memory limit live in temporary files. All of it is
//! deterministic: the same records in the same order give the same objects, byte for byte.
//!
//! Beside it: the one builder of objects and their settings ([`object`]), the quarantine line
//! ([`quarantine`]), the object names ([`layout`]), the gzip encoding ([`encode`]) and its bodies
//! ([`spool`]), reading a response's array ([`response`]), and encoding a saved response on every
//! core ([`parallel`]).

pub mod encode;
pub mod layout;
pub mod object;
pub(crate) mod parallel;
pub mod quarantine;
pub(crate) mod response;
pub mod spool;

pub use object::{EncodeError, EncodedObject, ObjectBuilder, ObjectKind, ObjectSettings};
pub use response::{Element, ResponseError, SourceJson};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::record::fernet::{DecryptError, KeyRing};
use crate::record::hour::{Hour, HourWindow, Stamp};
use crate::record::{self, Placed, PlacedLine, RecordError, RecordLimits};

/// Everything that shapes a batch's output, fixed for a run.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub objects: ObjectSettings,
    pub limits: RecordLimits,
    /// Hours encoded at the same time before the least recently used one is closed.
    pub max_open_hours: usize,
    /// Records in one object before it is closed and the hour continues in a new one.
    pub max_records_per_object: u64,
}

impl BatchSettings {
    /// A batch of `objects` under `limits`, with the default bounds on open hours and objects.
    pub fn new(objects: ObjectSettings, limits: RecordLimits) -> Self {
        Self {
            objects,
            limits,
            max_open_hours: 16,
            max_records_per_object: 100_000,
        }
    }
}

/// Counts over a batch, before anything is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    /// Source records seen.
    pub records_in: u64,
    /// Records placed in data objects.
    pub records_placed: u64,
    /// Records sent to quarantine.
    pub records_refused: u64,
    /// Bytes of the source records as received.
    pub bytes_in: u64,
    /// Records whose token verifies under none of the keys (quarantined at the decrypt stage):
    /// a wrong or rotated key when it is every record that reached the keys.
    pub records_undecryptable: u64,
    /// Records whose token verified under one of the keys (landed, or refused at a later stage).
    pub records_verified: u64,
}

impl BatchStats {
    /// Records reached the keys and not one verified: the key is wrong or was rotated.
    pub fn no_record_verified(&self) -> bool {
        self.records_undecryptable > 0 && self.records_verified == 0
    }
}

/// All objects of a batch: data objects in key order, then the quarantine object, if any.
#[derive(Debug)]
pub struct BatchOutput {
    pub objects: Vec<EncodedObject>,
    pub stats: BatchStats,
}

struct OpenHour {
    hour: Hour,
    object: ObjectBuilder,
    last_used: u64,
}

/// A batch being built.
pub struct Batch<'a> {
    ring: &'a KeyRing,
    settings: &'a BatchSettings,
    open: Vec<OpenHour>,
    closed: Vec<EncodedObject>,
    quarantine: ObjectBuilder,
    stats: BatchStats,
    tick: u64,
    /// The hours records may land in.
    window: HourWindow,
}

impl<'a> Batch<'a> {
    /// A batch of a run at `run_time`, which bounds the hours records may land in and names the
    /// quarantine object's folder.
    pub fn new(ring: &'a KeyRing, settings: &'a BatchSettings, run_time: DateTime<Utc>) -> Self {
        let run_hour = Hour::of(run_time);
        Self {
            ring,
            settings,
            open: Vec::new(),
            closed: Vec::new(),
            quarantine: ObjectBuilder::new(ObjectKind::Quarantine { run_hour }, &settings.objects),
            stats: BatchStats::default(),
            tick: 0,
            window: settings.limits.window(run_time),
        }
    }

    /// Adds one element of the response: a source record, or an element that is not JSON.
    /// Only I/O on a spool file can fail here; a bad record is quarantined, not returned as an
    /// error.
    pub fn push(&mut self, element: Element<'_>) -> Result<(), EncodeError> {
        match element {
            Element::Json(raw) => {
                let outcome = record::process_record(
                    raw.get(),
                    self.ring,
                    &self.settings.limits,
                    &self.window,
                );
                let outcome = outcome.as_ref().map(PlacedLine::as_placed);
                self.push_processed(&raw.into(), outcome.map_err(Clone::clone))
            }
            Element::NotJson { bytes, reason } => self.push_not_json(bytes, reason),
        }
    }

    /// Quarantines an element that is not JSON, as received.
    pub fn push_not_json(&mut self, bytes: &[u8], reason: &str) -> Result<(), EncodeError> {
        self.stats.records_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        self.stats.records_refused += 1;
        self.quarantine
            .push(&quarantine::not_json_line(bytes, reason), Stamp::default())
    }

    /// Adds one source record already run through [`record::process_record`] (possibly on
    /// another thread). Records must come in source order for the output to be deterministic.
    pub fn push_processed(
        &mut self,
        raw: &SourceJson<'_>,
        outcome: Result<Placed<'_>, RecordError>,
    ) -> Result<(), EncodeError> {
        self.stats.records_in += 1;
        self.stats.bytes_in += raw.get().len() as u64;
        match &outcome {
            Err(RecordError::Decrypt(DecryptError::NoKeyMatched { .. })) => {
                self.stats.records_undecryptable += 1;
            }
            Ok(_) | Err(RecordError::Parse(_) | RecordError::Place(_)) => {
                self.stats.records_verified += 1;
            }
            Err(RecordError::Decrypt(DecryptError::BadLength | DecryptError::BadPadding)) => {
                self.stats.records_verified += 1;
            }
            Err(_) => {}
        }
        match outcome {
            Ok(rec) => self.add_line(rec.placement.hour, rec.placement.stamp, rec.line),
            Err(err) => {
                self.stats.records_refused += 1;
                self.quarantine
                    .push(&quarantine::line(raw, &err), Stamp::default())
            }
        }
    }

    fn add_line(&mut self, hour: Hour, stamp: Stamp, line: &[u8]) -> Result<(), EncodeError> {
        self.tick += 1;
        let index = self.open_index(hour)?;
        let group = &mut self.open[index];
        group.last_used = self.tick;
        group.object.push(line, stamp)?;
        self.stats.records_placed += 1;
        if group.object.lines() >= self.settings.max_records_per_object {
            let full = self.open.swap_remove(index);
            self.close(full)?;
        }
        Ok(())
    }

    /// Index of the open object for `hour`, opening one (and closing the least recently used
    /// one if too many are open) when needed.
    fn open_index(&mut self, hour: Hour) -> Result<usize, EncodeError> {
        if let Some(i) = self.open.iter().position(|g| g.hour == hour) {
            return Ok(i);
        }
        if self.open.len() >= self.settings.max_open_hours.max(1) {
            let lru = (0..self.open.len())
                .min_by_key(|&i| self.open[i].last_used)
                .expect("at least one open hour");
            let evicted = self.open.swap_remove(lru);
            self.close(evicted)?;
        }
        self.open.push(OpenHour {
            hour,
            object: ObjectBuilder::new(ObjectKind::Data { hour }, &self.settings.objects),
            last_used: self.tick,
        });
        Ok(self.open.len() - 1)
    }

    fn close(&mut self, group: OpenHour) -> Result<(), EncodeError> {
        if let Some(object) = group.object.finish(&self.settings.objects)? {
            self.closed.push(object);
        }
        Ok(())
    }

    /// Closes every object. The quarantine object goes under the run's hour, named by the digest
    /// of its content, so a retried run names it alike.
    pub fn finish(mut self) -> Result<BatchOutput, EncodeError> {
        let mut open = std::mem::take(&mut self.open);
        open.sort_by_key(|g| g.hour);
        for group in open {
            self.close(group)?;
        }
        let mut objects = std::mem::take(&mut self.closed);
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.extend(self.quarantine.finish(&self.settings.objects)?);
        Ok(BatchOutput {
            objects,
            stats: self.stats,
        })
    }
}

/// Builds a whole in-memory batch at once (the Lambda's 100 records).
pub fn encode_batch(
    records: &[impl std::borrow::Borrow<RawValue>],
    ring: &KeyRing,
    settings: &BatchSettings,
    run_time: DateTime<Utc>,
) -> Result<BatchOutput, EncodeError> {
    let mut batch = Batch::new(ring, settings, run_time);
    for raw in records {
        batch.push(Element::Json(raw.borrow()))?;
    }
    batch.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fernet::generate_key;
    use chrono::TimeZone;
    use flate2::read::GzDecoder;
    use layout::{ObjectLayout, PartitionStyle};
    use std::io::Read;

    fn settings() -> BatchSettings {
        let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
        BatchSettings::new(ObjectSettings::new(layout), RecordLimits::default())
    }

    fn raw_record(ring: &KeyRing, in_date: &str, id: u32) -> Box<RawValue> {
        let plain = format!("{{'record_id': {id}, 'method': 'GET', 'inDate': '{in_date}'}}");
        let json = serde_json::json!({ "data": ring.encrypt(plain.as_bytes()) }).to_string();
        RawValue::from_string(json).unwrap()
    }

    fn gunzip(object: &EncodedObject) -> String {
        let mut text = String::new();
        GzDecoder::new(&object.body.to_vec().unwrap()[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    fn run_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 2, 5).unwrap()
    }

    #[test]
    fn records_straddling_midnight_land_in_two_objects() {
        // Given records on both sides of midnight, in source order
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let records = vec![
            raw_record(&ring, "2023-12-31T23:59:59.700Z", 1),
            raw_record(&ring, "2024-01-01T00:00:00.000Z", 2),
            raw_record(&ring, "2024-01-01T00:00:00.300Z", 3),
        ];
        // When the batch is encoded
        let out = encode_batch(&records, &ring, &settings(), run_time()).unwrap();
        // Then there is one object per date + hour, named by first and last stamps
        let keys_written: Vec<_> = out.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys_written.len(), 2);
        assert!(keys_written[0].starts_with("data/2023/12/31/23/5959700_5959700_"));
        assert!(keys_written[1].starts_with("data/2024/01/01/00/0000000_0000300_"));
        assert_eq!(gunzip(&out.objects[1]).lines().count(), 2);
        assert_eq!(out.stats.records_placed, 3);
    }

    #[test]
    fn a_batch_no_record_of_which_verifies_under_the_key_says_so() {
        // Given records encrypted under a key the ring does not hold, and one of the wrong shape
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let stranger = KeyRing::parse(&generate_key()).unwrap();
        let records = vec![
            raw_record(&stranger, "2023-03-18T15:08:02.284Z", 1),
            raw_record(&stranger, "2023-03-18T15:08:02.584Z", 2),
            RawValue::from_string(r#"{"data": 7}"#.into()).unwrap(),
        ];
        // When the batch is encoded
        let out = encode_batch(&records, &ring, &settings(), run_time()).unwrap();
        // Then every record is quarantined, and the stats say none verified under the key
        assert_eq!(out.stats.records_refused, 3);
        assert_eq!(out.stats.records_undecryptable, 2);
        assert_eq!(out.stats.records_verified, 0);
        assert!(out.stats.no_record_verified());
    }

    #[test]
    fn bad_records_are_quarantined_and_the_rest_land() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let stranger = KeyRing::parse(&generate_key()).unwrap();
        let records = vec![
            raw_record(&ring, "2023-03-18T15:08:02.284Z", 1),
            raw_record(&stranger, "2023-03-18T15:08:02.584Z", 2),
            RawValue::from_string(r#"{"data": 7}"#.into()).unwrap(),
        ];
        let out = encode_batch(&records, &ring, &settings(), run_time()).unwrap();
        assert_eq!(out.stats.records_placed, 1);
        assert_eq!(out.stats.records_refused, 2);
        assert_eq!(out.stats.records_undecryptable, 1);
        assert_eq!(out.stats.records_verified, 1);
        assert!(!out.stats.no_record_verified());
        let q = out.objects.last().unwrap();
        assert_eq!(
            q.kind,
            ObjectKind::Quarantine {
                run_hour: Hour::of(run_time())
            }
        );
        assert!(q.key.starts_with("quarantine/2024/01/01/00/"));
        let lines: Vec<serde_json::Value> = gunzip(q)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["stage"], "decrypt");
        // the record is kept exactly as received
        assert_eq!(lines[1]["record"], serde_json::json!({"data": 7}));
        assert_eq!(lines[1]["stage"], "shape");
    }

    #[test]
    fn a_pretty_printed_bad_record_stays_on_one_quarantine_line() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let records = vec![RawValue::from_string("{\n  \"data\": 7\r\n}".into()).unwrap()];
        let out = encode_batch(&records, &ring, &settings(), run_time()).unwrap();
        let text = gunzip(&out.objects[0]);
        assert_eq!(text.lines().count(), 1);
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["record"], serde_json::json!({"data": 7}));
    }

    #[test]
    fn an_object_that_may_hold_a_record_twice_says_so() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        // Given two tokens of the same plaintext (they differ by their random IV)
        let twice = vec![
            raw_record(&ring, "2023-03-18T15:08:02.284Z", 1),
            raw_record(&ring, "2023-03-18T15:08:02.284Z", 1),
            raw_record(&ring, "2023-03-18T15:08:02.584Z", 2),
        ];
        // Then the object holding them is not known to be distinct (the writer compares its
        // lines before it lands), while one of different records is
        let out = encode_batch(&twice, &ring, &settings(), run_time()).unwrap();
        assert!(!out.objects[0].distinct);
        let once = vec![twice[0].clone(), twice[2].clone()];
        let out = encode_batch(&once, &ring, &settings(), run_time()).unwrap();
        assert!(out.objects[0].distinct);
    }

    #[test]
    fn records_outside_the_hours_the_table_shows_are_quarantined() {
        // Given records from 1999 and two days after the run, among one inside
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let records = vec![
            raw_record(&ring, "1999-12-31T23:00:00.000Z", 1),
            raw_record(&ring, "2024-01-01T00:00:01.000Z", 2),
            raw_record(&ring, "2024-01-03T00:00:00.000Z", 3),
        ];
        // When the batch is encoded
        let out = encode_batch(&records, &ring, &settings(), run_time()).unwrap();
        // Then only the one inside lands; the others are quarantined saying why
        assert_eq!(
            (out.stats.records_placed, out.stats.records_refused),
            (1, 2)
        );
        let reasons = gunzip(out.objects.last().unwrap());
        assert_eq!(
            reasons.matches("outside the hours the table shows").count(),
            2
        );
    }

    #[test]
    fn same_batch_gives_same_keys_and_bytes() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let records: Vec<_> = (0..50)
            .map(|i| raw_record(&ring, &format!("2023-03-18T15:{:02}:00.000Z", i), i))
            .collect();
        let a = encode_batch(&records, &ring, &settings(), run_time()).unwrap();
        let b = encode_batch(&records, &ring, &settings(), run_time()).unwrap();
        assert_eq!(a.objects.len(), 1);
        assert_eq!(a.objects[0].key, b.objects[0].key);
        assert_eq!(
            a.objects[0].body.to_vec().unwrap(),
            b.objects[0].body.to_vec().unwrap()
        );
    }

    #[test]
    fn open_hours_and_object_size_are_bounded() {
        // Given at most 2 open hours and 3 records per object
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let mut s = settings();
        s.max_open_hours = 2;
        s.max_records_per_object = 3;
        // When hours 10, 11, 12 alternate and 10 comes back later
        let dates = [
            "2023-03-18T10:00:00.000Z",
            "2023-03-18T11:00:00.000Z",
            "2023-03-18T12:00:00.000Z",
            "2023-03-18T10:00:01.000Z",
            "2023-03-18T12:00:01.000Z",
            "2023-03-18T12:00:02.000Z",
            "2023-03-18T12:00:03.000Z",
        ];
        let records: Vec<_> = dates
            .iter()
            .enumerate()
            .map(|(i, d)| raw_record(&ring, d, i as u32))
            .collect();
        let out = encode_batch(&records, &ring, &s, run_time()).unwrap();
        // Then every record lands once, in more objects than hours
        let per_object: Vec<(String, u64)> = out
            .objects
            .iter()
            .map(|o| (o.key[..19].to_owned(), o.records))
            .collect();
        assert_eq!(
            per_object,
            [
                ("data/2023/03/18/10/".to_owned(), 1),
                ("data/2023/03/18/10/".to_owned(), 1),
                ("data/2023/03/18/11/".to_owned(), 1),
                ("data/2023/03/18/12/".to_owned(), 3),
                ("data/2023/03/18/12/".to_owned(), 1),
            ]
        );
        assert_eq!(out.stats.records_placed, 7);
    }
}

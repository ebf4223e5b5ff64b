//! A batch of source records into the objects to write: one gzip'd NDJSON object per UTC hour,
//! plus one quarantine object for the records that could not be processed.
//!
//! Records are pushed one at a time, and a batch of any size, in any order, is encoded in
//! memory bounded by its structure, not by its input:
//! - at most [`BatchSettings::max_open_hours`] hours are open at once, each an object being
//!   encoded of at most [`BatchSettings::max_records_per_object`] records (its compressor,
//!   buffers of 64 KiB, a body of at most 256 KiB before it moves to a spill file, and 8 bytes
//!   of line hash per record: about 1.5 MiB at 100,000 records; when it compresses on a thread
//!   of its own, at most four more blocks, each of 64 KiB and the line that filled it);
//! - a record of an hour that is not open takes the place of the least recently used open hour
//!   only when that one has had no record for [`BatchSettings::idle_after_records`] records (it
//!   is closed: a sorted input closes each hour once it is done). While every open hour is in
//!   use (a shuffled input), the record goes to the *overflow*, a spill file, and so do all
//!   later records of its hour, and of any hour closed that way: at [`Batch::finish`] the
//!   overflow is read back, split by hour into at most 16 spill files a pass, and encoded
//!   `max_open_hours` hours at a time, so every hour still ends in few objects (one for the
//!   records it had while open, then one per `max_records_per_object` of its overflow);
//! - the quarantine is one more object, closed at `max_records_per_object` lines too;
//! - finished objects wait with their bodies and sorted line hashes in spill files: what stays
//!   in memory is their key and counts (a few hundred bytes each; an hour makes one object per
//!   100,000 records, plus one if it was closed while records of it were still to come), and the
//!   set of hours closed or overflowed (a few dozen bytes an hour).
//!
//! At the end, the sorted line hashes of the objects of each hour are merged: objects that
//! share no hash with another object of the batch are marked
//! [`EncodedObject::distinct_in_batch`], and exactly-once compares those only with what the hour
//! held before the run. All of it is deterministic: the same records in the same order give
//! the same objects, byte for byte.
//!
//! Beside it: the one builder of objects and their settings ([`object`]), the quarantine line
//! ([`quarantine`]), the object names ([`layout`]), the gzip encoding ([`encode`]) and its bodies
//! ([`spool`]), the overflow and the line hashes kept on the side (`overflow`), reading a
//! response's array ([`response`]), and encoding a saved response on every core ([`parallel`]).

pub mod encode;
pub mod layout;
pub mod object;
mod overflow;
pub(crate) mod parallel;
pub mod quarantine;
pub(crate) mod response;
pub mod spool;

pub use object::{EncodeError, EncodedObject, ObjectBuilder, ObjectKind, ObjectSettings};
pub use response::{Element, ResponseError, SourceJson};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::batch::spool::{Body, Spool};

use crate::record::fernet::{DecryptError, KeyRing};
use crate::record::hour::{Hour, HourWindow, Stamp};
use crate::record::{self, Placed, PlacedLine, RecordError, RecordLimits};

/// Everything that shapes a batch's output, fixed for a run.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub objects: ObjectSettings,
    pub limits: RecordLimits,
    /// Hours encoded at the same time; past it, records go to the overflow (see the module).
    pub max_open_hours: usize,
    /// Records in one object before it is closed and the hour continues in a new one.
    pub max_records_per_object: u64,
    /// Records without one of an open hour before that hour may be closed to open another.
    pub idle_after_records: u64,
}

/// Default of [`BatchSettings::idle_after_records`]: more than an hour of the source's records
/// (12,000), so a sorted input closes an hour once it is done and sends nothing to the overflow,
/// and far more than the gaps of a shuffled input over many hours (an open hour of 80 gets a
/// record every 80 or so), whose open hours therefore stay open.
pub const DEFAULT_IDLE_AFTER_RECORDS: u64 = 16_384;

/// Objects of one hour whose line hashes are merged at once, at most (one open file each): an
/// hour of more (over 25,000,000 records) is compared object by object by exactly-once, as
/// every object not made by a batch is.
const MAX_MERGED_OBJECTS: usize = 256;

impl BatchSettings {
    /// A batch of `objects` under `limits`, with the default bounds on open hours and objects.
    pub fn new(objects: ObjectSettings, limits: RecordLimits) -> Self {
        Self {
            objects,
            limits,
            max_open_hours: 16,
            max_records_per_object: 100_000,
            idle_after_records: DEFAULT_IDLE_AFTER_RECORDS,
        }
    }
}

/// Counts over a batch, before anything is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    /// Records sent to quarantine, by [`RecordError::label`] (and [`NOT_JSON_LABEL`]): a small
    /// fixed set of labels, for the command line's summary; not in the JSON summary.
    #[serde(skip)]
    pub refused_by_reason: BTreeMap<&'static str, u64>,
}

/// The label an element of the response that is not JSON is counted under.
pub const NOT_JSON_LABEL: &str = "shape: element not JSON";

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

/// A finished object and the sorted hashes of its lines (a spill file), until the batch ends.
struct Closed {
    object: EncodedObject,
    hashes: Body,
}

/// A batch being built.
pub struct Batch<'a> {
    ring: &'a KeyRing,
    settings: &'a BatchSettings,
    open: Vec<OpenHour>,
    closed: Vec<Closed>,
    /// Hours that may not open again, and whether the overflow holds records of them: an hour
    /// closed to make room (false until a record of it comes back), or one whose records went
    /// to the overflow (true). All of an hour's records after it is here go to the overflow.
    sealed: BTreeMap<Hour, bool>,
    overflow: Option<Spool>,
    quarantine: ObjectBuilder,
    quarantine_kind: ObjectKind,
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
        let quarantine_kind = ObjectKind::Quarantine { run_hour };
        Self {
            ring,
            settings,
            open: Vec::new(),
            closed: Vec::new(),
            sealed: BTreeMap::new(),
            overflow: None,
            quarantine: ObjectBuilder::new(quarantine_kind, &settings.objects),
            quarantine_kind,
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
        *self
            .stats
            .refused_by_reason
            .entry(NOT_JSON_LABEL)
            .or_default() += 1;
        self.quarantine_line(&quarantine::not_json_line(bytes, reason))
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
                *self.stats.refused_by_reason.entry(err.label()).or_default() += 1;
                self.quarantine_line(&quarantine::line(raw, &err))
            }
        }
    }

    fn quarantine_line(&mut self, line: &[u8]) -> Result<(), EncodeError> {
        self.quarantine.push(line, Stamp::default())?;
        if self.quarantine.lines() >= self.settings.max_records_per_object {
            let fresh = ObjectBuilder::new(self.quarantine_kind, &self.settings.objects);
            let full = std::mem::replace(&mut self.quarantine, fresh);
            self.close(full)?;
        }
        Ok(())
    }

    fn add_line(&mut self, hour: Hour, stamp: Stamp, line: &[u8]) -> Result<(), EncodeError> {
        self.tick += 1;
        self.stats.records_placed += 1;
        let Some(index) = self.open_index(hour)? else {
            let overflow = self
                .overflow
                .get_or_insert_with(|| Spool::new(&self.settings.objects.spool));
            return overflow::write_entry(overflow, hour, stamp, line).map_err(EncodeError::Body);
        };
        let group = &mut self.open[index];
        group.last_used = self.tick;
        group.object.push(line, stamp)?;
        if group.object.lines() >= self.settings.max_records_per_object {
            let fresh = ObjectBuilder::new(ObjectKind::Data { hour }, &self.settings.objects);
            let full = std::mem::replace(&mut group.object, fresh);
            self.close(full)?;
        }
        Ok(())
    }

    /// Index of the open object for `hour`, opening one when needed (and closing the least
    /// recently used open hour if too many are open and it is idle); `None` when the record
    /// goes to the overflow.
    fn open_index(&mut self, hour: Hour) -> Result<Option<usize>, EncodeError> {
        if let Some(i) = self.open.iter().position(|g| g.hour == hour) {
            return Ok(Some(i));
        }
        if let Some(overflowed) = self.sealed.get_mut(&hour) {
            *overflowed = true;
            return Ok(None);
        }
        if self.open.len() >= self.settings.max_open_hours.max(1) {
            let lru = (0..self.open.len())
                .min_by_key(|&i| self.open[i].last_used)
                .expect("at least one open hour");
            if self.tick - self.open[lru].last_used < self.settings.idle_after_records {
                self.sealed.insert(hour, true);
                return Ok(None);
            }
            let evicted = self.open.swap_remove(lru);
            self.sealed.insert(evicted.hour, false);
            self.close(evicted.object)?;
        }
        self.open.push(OpenHour {
            hour,
            object: ObjectBuilder::new(ObjectKind::Data { hour }, &self.settings.objects),
            last_used: self.tick,
        });
        Ok(Some(self.open.len() - 1))
    }

    fn close(&mut self, object: ObjectBuilder) -> Result<(), EncodeError> {
        if let Some((object, hashes)) = object.finish_with_hashes(&self.settings.objects)? {
            let hashes = overflow::hash_list(&hashes, &self.settings.objects.spool)
                .map_err(EncodeError::Body)?;
            self.closed.push(Closed { object, hashes });
        }
        Ok(())
    }

    /// Closes every object: the open hours, then the overflow's hours, then the quarantine,
    /// which goes under the run's hour, named by the digest of its content, so a retried run
    /// names it alike.
    pub fn finish(mut self) -> Result<BatchOutput, EncodeError> {
        let mut open = std::mem::take(&mut self.open);
        open.sort_by_key(|g| g.hour);
        for group in open {
            self.close(group.object)?;
        }
        if let Some(overflow) = self.overflow.take() {
            let body = overflow.finish_scratch().map_err(EncodeError::Body)?;
            let hours: Vec<Hour> = (self.sealed.iter())
                .filter_map(|(&hour, &overflowed)| overflowed.then_some(hour))
                .collect();
            self.encode_overflow(body, &hours)?;
        }
        let quarantine = std::mem::replace(
            &mut self.quarantine,
            ObjectBuilder::new(self.quarantine_kind, &self.settings.objects),
        );
        self.close(quarantine)?;
        mark_distinct_in_batch(&mut self.closed)?;
        let (mut objects, mut quarantine): (Vec<_>, Vec<_>) = (self.closed.into_iter())
            .map(|closed| closed.object)
            .partition(|o| o.kind.data_hour().is_some());
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        quarantine.sort_by(|a, b| a.key.cmp(&b.key));
        objects.extend(quarantine);
        Ok(BatchOutput {
            objects,
            stats: self.stats,
        })
    }

    /// Encodes the overflow `body`, which holds records of `hours` (sorted) only. At most
    /// `max_open_hours` hours are encoded at once: more are first split, in one pass, into at
    /// most [`OVERFLOW_FANOUT`] spill files of consecutive hours, each then encoded alike.
    fn encode_overflow(&mut self, body: Body, hours: &[Hour]) -> Result<(), EncodeError> {
        let at_once = self.settings.max_open_hours.max(1);
        if hours.len() <= at_once {
            return self.encode_hours(body, hours);
        }
        let per_part = hours.len().div_ceil(at_once).div_ceil(OVERFLOW_FANOUT) * at_once;
        let parts: Vec<&[Hour]> = hours.chunks(per_part).collect();
        let policy = overflow::straight_to_file(&self.settings.objects.spool);
        let mut spools: Vec<Spool> = parts.iter().map(|_| Spool::new(&policy)).collect();
        let mut entries = overflow::Entries::new(body.reader().map_err(EncodeError::Body)?);
        while let Some((hour, stamp, line)) = entries.next_entry().map_err(EncodeError::Body)? {
            let at = hours.binary_search(&hour).map_err(|_| stray_hour())?;
            overflow::write_entry(&mut spools[at / per_part], hour, stamp, line)
                .map_err(EncodeError::Body)?;
        }
        drop(entries);
        drop(body);
        for (part, spool) in parts.into_iter().zip(spools) {
            let body = spool.finish_scratch().map_err(EncodeError::Body)?;
            self.encode_overflow(body, part)?;
        }
        Ok(())
    }

    /// Encodes the overflow `body` of at most `max_open_hours` `hours` (sorted), in source
    /// order, an object per `max_records_per_object` records of each hour.
    fn encode_hours(&mut self, body: Body, hours: &[Hour]) -> Result<(), EncodeError> {
        let mut builders: Vec<Option<ObjectBuilder>> = hours.iter().map(|_| None).collect();
        let mut entries = overflow::Entries::new(body.reader().map_err(EncodeError::Body)?);
        while let Some((hour, stamp, line)) = entries.next_entry().map_err(EncodeError::Body)? {
            let at = hours.binary_search(&hour).map_err(|_| stray_hour())?;
            let objects = &self.settings.objects;
            let builder = builders[at]
                .get_or_insert_with(|| ObjectBuilder::new(ObjectKind::Data { hour }, objects));
            builder.push(line, stamp)?;
            if builder.lines() >= self.settings.max_records_per_object {
                let full = builders[at].take().expect("just pushed to");
                self.close(full)?;
            }
        }
        for builder in builders.into_iter().flatten() {
            self.close(builder)?;
        }
        Ok(())
    }
}

/// Spill files an overflow of many hours is split into in one pass, at most.
const OVERFLOW_FANOUT: usize = 16;

/// An overflow entry of an hour the batch did not send there: the spill file was changed.
fn stray_hour() -> EncodeError {
    EncodeError::Body(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the overflow holds a record of an hour it was not given",
    ))
}

/// Marks the objects that share no line hash with another object of their kind (their hour,
/// or the quarantine) as [`EncodedObject::distinct_in_batch`], by merging the sorted hashes of
/// each kind's objects.
fn mark_distinct_in_batch(closed: &mut [Closed]) -> Result<(), EncodeError> {
    let mut order: Vec<(ObjectKind, usize)> = (closed.iter().enumerate())
        .map(|(i, c)| (c.object.kind, i))
        .collect();
    order.sort();
    let groups: Vec<Vec<usize>> = (order.chunk_by(|a, b| a.0 == b.0))
        .map(|group| group.iter().map(|&(_, i)| i).collect())
        .collect();
    for group in groups {
        if group.len() == 1 {
            closed[group[0]].object.distinct_in_batch = true;
            continue;
        }
        if group.len() > MAX_MERGED_OBJECTS {
            continue;
        }
        let lists: Vec<&Body> = group.iter().map(|&i| &closed[i].hashes).collect();
        let shared = overflow::shared_hashes(&lists).map_err(EncodeError::Body)?;
        for (&i, shared) in group.iter().zip(shared) {
            closed[i].object.distinct_in_batch = !shared;
        }
    }
    Ok(())
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

    /// `records` of (inDate, record id), encoded under `settings`.
    fn encode_dates(
        ring: &KeyRing,
        settings: &BatchSettings,
        dates: &[(String, u32)],
    ) -> BatchOutput {
        let records: Vec<_> = dates
            .iter()
            .map(|(d, id)| raw_record(ring, d, *id))
            .collect();
        encode_batch(&records, ring, settings, run_time()).unwrap()
    }

    /// Hour folder and record count of each object.
    fn per_object(out: &BatchOutput) -> Vec<(String, u64)> {
        (out.objects.iter())
            .map(|o| (o.key[..19].to_owned(), o.records))
            .collect()
    }

    /// Hours 10, 11 and 12 alternating, 10 coming back once, then three more records of 12.
    fn alternating_hours() -> Vec<(String, u32)> {
        [
            "2023-03-18T10:00:00.000Z",
            "2023-03-18T11:00:00.000Z",
            "2023-03-18T12:00:00.000Z",
            "2023-03-18T10:00:01.000Z",
            "2023-03-18T12:00:01.000Z",
            "2023-03-18T12:00:02.000Z",
            "2023-03-18T12:00:03.000Z",
        ]
        .iter()
        .enumerate()
        .map(|(i, d)| (d.to_string(), i as u32))
        .collect()
    }

    #[test]
    fn an_idle_open_hour_is_closed_for_another_and_its_later_records_overflow() {
        // Given at most 2 open hours, 3 records per object, and an hour idle after 1 record
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let mut s = settings();
        s.max_open_hours = 2;
        s.max_records_per_object = 3;
        s.idle_after_records = 1;
        // When hours 10, 11, 12 alternate and 10 comes back later
        let dates = alternating_hours();
        let out = encode_dates(&ring, &s, &dates);
        // Then 10 was closed for 12, its record that came back is in an object of its own,
        // and 12 was split at 3 records
        assert_eq!(
            per_object(&out),
            [
                ("data/2023/03/18/10/".to_owned(), 1),
                ("data/2023/03/18/10/".to_owned(), 1),
                ("data/2023/03/18/11/".to_owned(), 1),
                ("data/2023/03/18/12/".to_owned(), 3),
                ("data/2023/03/18/12/".to_owned(), 1),
            ]
        );
        assert_eq!(out.stats.records_placed, 7);
        // and every object is known to share no record with another of its hour
        assert!(out.objects.iter().all(|o| o.distinct_in_batch));
    }

    #[test]
    fn while_every_open_hour_is_in_use_another_hour_goes_whole_to_the_overflow() {
        // Given at most 2 open hours, each in use (the default idle bound)
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let mut s = settings();
        s.max_open_hours = 2;
        s.max_records_per_object = 3;
        let dates = alternating_hours();
        // When the batch is encoded
        let out = encode_dates(&ring, &s, &dates);
        // Then 10 and 11 stay open, and 12, read back from the overflow, is split at 3 records
        assert_eq!(
            per_object(&out),
            [
                ("data/2023/03/18/10/".to_owned(), 2),
                ("data/2023/03/18/11/".to_owned(), 1),
                ("data/2023/03/18/12/".to_owned(), 3),
                ("data/2023/03/18/12/".to_owned(), 1),
            ]
        );
        // and 12's first object starts at its first record: source order is kept in the hour
        assert!(out.objects[2].key.contains("/12/0000000_0002000_"));
    }

    /// 20 records in each of `hours` hours, shuffled by a fixed seed.
    fn shuffled_hours(hours: u32) -> Vec<(String, u32)> {
        let mut dates: Vec<(String, u32)> = (0..hours * 20)
            .map(|i| {
                let (day, hour) = (10 + i % hours / 24, i % hours % 24);
                let date = format!("2023-03-{day:02}T{hour:02}:{:02}:00.000Z", i / hours);
                (date, i)
            })
            .collect();
        fastrand::Rng::with_seed(7).shuffle(&mut dates);
        dates
    }

    #[test]
    fn a_shuffled_batch_over_more_hours_than_may_be_open_lands_each_hour_in_one_object() {
        // Given 20 records in each of 30 hours, shuffled, with at most 4 hours open
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let mut s = settings();
        s.max_open_hours = 4;
        let dates = shuffled_hours(30);
        // When the batch is encoded twice
        let a = encode_dates(&ring, &s, &dates);
        let b = encode_dates(&ring, &s, &dates);
        // Then each hour is one object of its 20 records, each record once
        assert_eq!(a.objects.len(), 30);
        assert!(a.objects.iter().all(|o| o.records == 20 && o.distinct));
        let mut lines: Vec<String> = a
            .objects
            .iter()
            .flat_map(|o| gunzip(o).lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        lines.sort();
        lines.dedup();
        assert_eq!(lines.len(), 600);
        assert!(a.objects.iter().all(|o| o.distinct_in_batch));
        // and the same records in the same order give the same keys and bytes
        let bytes = |out: &BatchOutput| -> Vec<(String, Vec<u8>)> {
            (out.objects.iter())
                .map(|o| (o.key.clone(), o.body.to_vec().unwrap()))
                .collect()
        };
        assert_eq!(bytes(&a), bytes(&b));
    }

    #[test]
    fn the_overflow_is_a_private_spill_file_removed_when_the_batch_ends() {
        // Given a batch spilling into a private folder, fed a shuffled input over 12 hours with
        // at most 2 open
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let parent = tempfile::tempdir().unwrap();
        let spill = spool::spill_dir(parent.path()).unwrap();
        let mut s = settings();
        s.max_open_hours = 2;
        s.objects.spool = spool::SpoolPolicy::spill_to(spill.path().to_owned(), 1);
        let records: Vec<_> = (shuffled_hours(12).iter())
            .map(|(d, id)| raw_record(&ring, d, *id))
            .collect();
        let mut batch = Batch::new(&ring, &s, run_time());
        for raw in &records {
            batch.push(Element::Json(raw)).unwrap();
        }
        // When the records are in, then the overflow is a file of the owner's alone
        let files = |dir: &std::path::Path| -> Vec<u32> {
            use std::os::unix::fs::PermissionsExt;
            (std::fs::read_dir(dir).unwrap())
                .map(|e| e.unwrap().metadata().unwrap().permissions().mode() & 0o777)
                .collect()
        };
        assert!(batch.overflow.is_some());
        assert!(!files(spill.path()).is_empty());
        assert!(files(spill.path()).iter().all(|&mode| mode == 0o600));
        // and when the batch ends, only the 12 objects' bodies are left, then nothing
        let out = batch.finish().unwrap();
        assert_eq!(out.objects.len(), 12);
        assert_eq!(files(spill.path()).len(), 12);
        drop(out);
        assert!(files(spill.path()).is_empty());
    }

    #[test]
    fn objects_of_one_hour_sharing_a_record_are_not_distinct_in_the_batch() {
        // Given one hour of 7 records at 3 an object, the first record given again as the last
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let mut s = settings();
        s.max_records_per_object = 3;
        let mut dates: Vec<(String, u32)> = (0..6)
            .map(|i| (format!("2023-03-18T10:00:0{i}.000Z"), i))
            .collect();
        dates.push(dates[0].clone());
        // When the batch is encoded
        let out = encode_dates(&ring, &s, &dates);
        // Then the first and last objects share it and say so, the middle one does not (in key
        // order: the last object, of the first record alone, is named first)
        let flags: Vec<(u64, bool)> = (out.objects.iter())
            .map(|o| (o.records, o.distinct_in_batch))
            .collect();
        assert_eq!(flags, [(1, false), (3, false), (3, true)]);
    }

    #[test]
    fn refused_records_are_counted_by_their_reason() {
        // Given two records under another key, one of the wrong shape, one that lands, and an
        // element that is not JSON
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let stranger = KeyRing::parse(&generate_key()).unwrap();
        let settings = settings();
        let mut batch = Batch::new(&ring, &settings, run_time());
        for raw in [
            raw_record(&stranger, "2023-03-18T15:08:02.284Z", 1),
            raw_record(&stranger, "2023-03-18T15:08:02.584Z", 2),
            RawValue::from_string(r#"{"data": 7}"#.into()).unwrap(),
            raw_record(&ring, "2023-03-18T15:08:02.884Z", 3),
        ] {
            batch.push(Element::Json(&raw)).unwrap();
        }
        batch.push_not_json(b"[NaN]", "not JSON").unwrap();
        // When the batch is finished
        let out = batch.finish().unwrap();
        // Then each reason is counted once per record it refused, and they add up
        let counts: Vec<_> = out.stats.refused_by_reason.clone().into_iter().collect();
        assert_eq!(
            counts,
            [
                ("decrypt: no key matched", 2),
                (NOT_JSON_LABEL, 1),
                ("shape: no string data field", 1)
            ]
        );
        assert_eq!(out.stats.records_refused, 4);
    }
}

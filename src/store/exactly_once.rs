//! Exactly once per record, whatever batches it arrives in: before records are written to an
//! hour, what the hour already holds is read, and only the records it does not hold are
//! written, in a new object named by its content. Records are compared by content (a hash only
//! narrows the search), so two records are never taken for one.
//!
//! A data record's identity is its line (its decrypted content, compacted); a quarantined
//! record's is the source object as received. Quarantine is checked against the run's hour and
//! the hour before it (a batch read again after the hour turned), and written before the data.
//! Two writers racing for the same hour may still both write a record; the compaction of closed
//! hours drops such copies.

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{PutOutcome, Store, StoreError};
use crate::batch::encode::{self, ObjectEncoding, ObjectWriter};
use crate::batch::layout::ObjectLayout;
use crate::batch::spool::SpoolPolicy;
use crate::batch::{BatchOutput, EncodedObject, ObjectKind};
use crate::record::hour::Stamp;

/// Listings of a folder whose objects keep vanishing before a run gives up (a compaction merges
/// an hour once; more than this means something else deletes there).
const RELISTS: usize = 3;

/// Objects of an hour downloaded ahead while one is compared.
const READ_AHEAD: usize = 8;

/// Lines of a new object compared at a time, in bytes: memory stays bounded however large the
/// object (a larger object is compared, and written, in parts).
pub const COMPARE_BYTES: usize = 8 << 20;

/// How objects are written and read back.
#[derive(Debug, Clone)]
pub struct WriteSettings {
    pub layout: ObjectLayout,
    pub encoding: ObjectEncoding,
    pub gzip_level: u32,
    /// Where new bodies, and existing objects read back from a bucket, are kept.
    pub spool: SpoolPolicy,
}

impl WriteSettings {
    /// The settings a batch was encoded with.
    pub fn of(batch: &crate::batch::BatchSettings) -> Self {
        Self {
            layout: batch.layout.clone(),
            encoding: batch.encoding,
            gzip_level: batch.gzip_level,
            spool: batch.spool.clone(),
        }
    }
}

/// Why writing failed. What was written stays; a rerun finds it and writes nothing twice.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading back or encoding {key} failed")]
    Body {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("the objects under {folder} kept disappearing while they were read")]
    Unsettled { folder: String },
}

/// What writing a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteReport {
    /// Records written by this run.
    pub records_landed: u64,
    /// Records the hour already held (an earlier or overlapping run, or a racing writer).
    pub records_already_present: u64,
    /// Records the batch held more than once, written once.
    pub duplicates_dropped: u64,
    /// Quarantine lines written by this run.
    pub records_quarantined: u64,
    /// Quarantined records already in the quarantine of this run's hour or the one before.
    pub quarantined_already_present: u64,
    /// Objects created by this run (data and quarantine).
    pub objects_written: u64,
    /// Objects whose key already existed (the same content, written by a racing writer).
    pub objects_already_present: u64,
    /// Uncompressed and compressed bytes of the objects written.
    pub bytes_uncompressed: u64,
    pub bytes_out: u64,
    /// Hours (UTC, `YYYY-MM-DDTHH`) the batch had records for.
    pub hours: Vec<String>,
    /// Listings and object reads made to learn what the hours held, and the time they took.
    pub lists: u64,
    pub objects_read: u64,
    pub existing_read_ms: u64,
}

/// Writes the records of `output` that their hours do not hold yet: quarantine first, then
/// each data object. Stops at the first failure.
pub async fn write_new_records(
    output: &BatchOutput,
    store: &Store,
    settings: &WriteSettings,
) -> Result<WriteReport, WriteError> {
    let mut writer = Writer {
        store,
        settings,
        existing: HashMap::new(),
        report: WriteReport::default(),
    };
    let (quarantine, data): (Vec<_>, Vec<_>) = output
        .objects
        .iter()
        .partition(|o| matches!(o.kind, ObjectKind::Quarantine { .. }));
    for object in quarantine.into_iter().chain(data) {
        if let ObjectKind::Data { hour } = object.kind {
            let hour = hour.to_string();
            if !writer.report.hours.contains(&hour) {
                writer.report.hours.push(hour);
            }
        }
        writer.write(object).await?;
    }
    Ok(writer.report)
}

struct Writer<'a> {
    store: &'a Store,
    settings: &'a WriteSettings,
    /// Keys of the objects each folder holds, listed once per run and kept up to date.
    existing: HashMap<String, Vec<String>>,
    report: WriteReport,
}

/// The lines of a new object being compared, and which of them are still to be written.
struct Part {
    lines: Vec<Vec<u8>>,
    /// Bytes of `lines`.
    size: usize,
    keep: Vec<bool>,
    /// Identity hash → indexes of the lines with that hash.
    index: HashMap<u64, Vec<usize>>,
}

impl Writer<'_> {
    async fn write(&mut self, object: &EncodedObject) -> Result<(), WriteError> {
        let folders = self.folders(object.kind);
        let started = Instant::now();
        for folder in &folders {
            self.list_once(folder).await?;
        }
        self.report.existing_read_ms += started.elapsed().as_millis() as u64;
        if self.existing_keys(&folders).is_empty() && object.distinct {
            // Nothing to compare with: the object lands as it is.
            return self.put(object, object.records, &folders[0]).await;
        }
        let body_err = |source| WriteError::Body {
            key: object.key.clone(),
            source,
        };
        let mut lines = encode::lines(object.body.reader().map_err(body_err)?).peekable();
        let mut first_part = true;
        while lines.peek().is_some() {
            let mut part = Part::new();
            while let Some(line) = lines.next_if(|_| part.size < COMPARE_BYTES) {
                part.add(line.map_err(body_err)?, object.kind, &mut self.report);
            }
            let whole = std::mem::take(&mut first_part) && lines.peek().is_none();
            let started = Instant::now();
            self.strike_all_present(&folders, &mut part, object.kind)
                .await?;
            self.report.existing_read_ms += started.elapsed().as_millis() as u64;
            let kept = part.keep.iter().filter(|k| **k).count() as u64;
            if whole && kept == object.records {
                // Every line is new: the object lands as it is, under the name it has.
                return self.put(object, kept, &folders[0]).await;
            }
            if kept > 0 {
                let encoded = self.encode(&part, object).map_err(body_err)?;
                self.put(&encoded, kept, &folders[0]).await?;
            }
        }
        Ok(())
    }

    /// The folders an object's records are compared with; the first is where it goes.
    fn folders(&self, kind: ObjectKind) -> Vec<String> {
        let layout = &self.settings.layout;
        match kind {
            ObjectKind::Data { hour } => vec![format!("{}/", layout.data_hour_path(hour))],
            ObjectKind::Quarantine { run_hour } => vec![
                format!("{}/", layout.quarantine_hour_path(run_hour)),
                format!("{}/", layout.quarantine_hour_path(run_hour.previous())),
            ],
        }
    }

    /// Lists `folder` unless this run already did (the run keeps the list up to date).
    async fn list_once(&mut self, folder: &str) -> Result<(), WriteError> {
        if !self.existing.contains_key(folder) {
            self.report.lists += 1;
            let mut keys = self.store.list(folder).await?;
            keys.retain(|key| self.settings.layout.is_object(key));
            self.existing.insert(folder.to_owned(), keys);
        }
        Ok(())
    }

    /// The objects the listed `folders` hold.
    fn existing_keys(&self, folders: &[String]) -> Vec<String> {
        folders
            .iter()
            .flat_map(|folder| self.existing.get(folder).into_iter().flatten().cloned())
            .collect()
    }

    /// Marks the lines of `part` that the objects of `folders` already hold. An object gone
    /// between the listing and the read was merged by a compaction, whose merged object exists
    /// before its inputs are deleted: the folders are listed again and the new objects read too.
    async fn strike_all_present(
        &mut self,
        folders: &[String],
        part: &mut Part,
        kind: ObjectKind,
    ) -> Result<(), WriteError> {
        let mut read: Vec<String> = Vec::new();
        for _ in 0..RELISTS {
            let keys: Vec<String> = self
                .existing_keys(folders)
                .into_iter()
                .filter(|key| !read.contains(key))
                .collect();
            // The next few objects download while one is compared: an hour's objects are many
            // small requests, and waiting for each in turn was most of a pass.
            let (store, spool) = (self.store, &self.settings.spool);
            let mut downloads = stream::iter(&keys)
                .map(|key| async move { (key, store.open(key, spool).await) })
                .buffered(READ_AHEAD);
            let mut gone = false;
            while let Some((key, opened)) = downloads.next().await {
                match opened {
                    Ok(reader) => self.strike_present(key, reader, part, kind),
                    Err(e) if e.is_not_found() => gone = true,
                    Err(e) => return Err(e.into()),
                }
                read.push(key.clone());
            }
            if !gone {
                return Ok(());
            }
            for folder in folders {
                self.existing.remove(folder);
                self.list_once(folder).await?;
            }
        }
        Err(WriteError::Unsettled {
            folder: folders[0].clone(),
        })
    }

    /// Marks the lines of `part` that the object `key`, read by `reader`, already holds.
    fn strike_present(
        &mut self,
        key: &str,
        reader: impl std::io::Read,
        part: &mut Part,
        kind: ObjectKind,
    ) {
        self.report.objects_read += 1;
        for line in encode::lines(reader) {
            let line = match line {
                Ok(line) => line,
                Err(err) => {
                    // An object that cannot be read cannot say it holds a record: the records
                    // land again rather than being lost, and compaction keeps them once.
                    tracing::warn!(key, error = %err, "an existing object could not be read; its records are not counted as present");
                    return;
                }
            };
            let struck = part.strike(&line, kind);
            match kind {
                ObjectKind::Data { .. } => self.report.records_already_present += struck,
                ObjectKind::Quarantine { .. } => self.report.quarantined_already_present += struck,
            }
        }
    }

    /// A new object of the lines of `part` still to be written, named by its content.
    fn encode(&self, part: &Part, original: &EncodedObject) -> io::Result<EncodedObject> {
        let settings = self.settings;
        let mut writer = ObjectWriter::new(settings.gzip_level, &settings.spool);
        let kept = part.lines.iter().zip(&part.keep).filter(|(_, k)| **k);
        let (mut first, mut last) = (None, Stamp::default());
        for (line, _) in kept {
            writer.write_line(line)?;
            if let ObjectKind::Data { .. } = original.kind {
                let stamp = stamp_of(line);
                first.get_or_insert(stamp);
                last = stamp;
            }
        }
        let encoded = writer.finish()?;
        let key = match original.kind {
            ObjectKind::Data { hour } => settings.layout.data_key(
                hour,
                first.unwrap_or_default(),
                last,
                &encoded.digest,
                settings.encoding,
            ),
            ObjectKind::Quarantine { run_hour } => {
                settings
                    .layout
                    .quarantine_key(run_hour, &encoded.digest, settings.encoding)
            }
        };
        Ok(EncodedObject {
            key,
            kind: original.kind,
            encoding: settings.encoding,
            body: encoded.body,
            records: encoded.lines,
            uncompressed: encoded.uncompressed,
            distinct: true,
        })
    }

    /// Creates the object, counting its `records` as landed (or present, if the key exists).
    async fn put(
        &mut self,
        object: &EncodedObject,
        records: u64,
        folder: &str,
    ) -> Result<(), WriteError> {
        let outcome = self.store.put_once(object).await?;
        let report = &mut self.report;
        let quarantine = matches!(object.kind, ObjectKind::Quarantine { .. });
        match (outcome, quarantine) {
            (PutOutcome::Written, false) => report.records_landed += records,
            (PutOutcome::Written, true) => report.records_quarantined += records,
            (PutOutcome::AlreadyPresent, false) => report.records_already_present += records,
            (PutOutcome::AlreadyPresent, true) => report.quarantined_already_present += records,
        }
        match outcome {
            PutOutcome::Written => {
                report.objects_written += 1;
                report.bytes_uncompressed += object.uncompressed;
                report.bytes_out += object.body.len();
            }
            PutOutcome::AlreadyPresent => report.objects_already_present += 1,
        }
        if let Some(keys) = self.existing.get_mut(folder)
            && !keys.contains(&object.key)
        {
            keys.push(object.key.clone());
        }
        Ok(())
    }
}

impl Part {
    fn new() -> Self {
        Self {
            lines: Vec::new(),
            size: 0,
            keep: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds a line of the new object, unless an earlier line of this part is the same record.
    fn add(&mut self, line: Vec<u8>, kind: ObjectKind, report: &mut WriteReport) {
        let id = identity(&line, kind);
        let hash = xxhash_rust::xxh3::xxh3_64(id);
        let same = self.index.get(&hash).is_some_and(|indexes| {
            indexes
                .iter()
                .any(|&i| identity(&self.lines[i], kind) == id)
        });
        if same {
            match kind {
                ObjectKind::Data { .. } => report.duplicates_dropped += 1,
                ObjectKind::Quarantine { .. } => report.quarantined_already_present += 1,
            }
            return;
        }
        self.index.entry(hash).or_default().push(self.lines.len());
        self.size += line.len();
        self.lines.push(line);
        self.keep.push(true);
    }

    /// Marks as present the lines of this part that are the record `existing`; how many.
    fn strike(&mut self, existing: &[u8], kind: ObjectKind) -> u64 {
        let id = identity(existing, kind);
        let Some(indexes) = self.index.get(&xxhash_rust::xxh3::xxh3_64(id)) else {
            return 0;
        };
        let mut struck = 0;
        for &i in indexes {
            if self.keep[i] && identity(&self.lines[i], kind) == id {
                self.keep[i] = false;
                struck += 1;
            }
        }
        struck
    }
}

/// What makes two lines the same record: a data line itself; for a quarantine line, the
/// source object it holds (whatever reason it was refused for).
fn identity(line: &[u8], kind: ObjectKind) -> &[u8] {
    #[derive(Deserialize)]
    struct Quarantined<'a> {
        #[serde(borrow)]
        record: &'a RawValue,
    }
    match kind {
        ObjectKind::Data { .. } => line,
        ObjectKind::Quarantine { .. } => serde_json::from_slice::<Quarantined<'_>>(line)
            .map(|q| q.record.get().as_bytes())
            .unwrap_or(line),
    }
}

/// The `mmssSSS` stamp of a compact line, as its record was placed.
fn stamp_of(line: &[u8]) -> Stamp {
    crate::record::line_instant(line).map_or_else(Stamp::default, Stamp::of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::hour::HourKey;

    fn data() -> ObjectKind {
        ObjectKind::Data {
            hour: HourKey::of(chrono::Utc::now()),
        }
    }

    #[test]
    fn lines_that_share_a_hash_are_told_apart_by_content() {
        // Given a part holding one line, and another line filed under the same hash (as a hash
        // collision would)
        let mut report = WriteReport::default();
        let mut part = Part::new();
        part.add(br#"{"a":1}"#.to_vec(), data(), &mut report);
        let hash = xxhash_rust::xxh3::xxh3_64(br#"{"a":1}"#);
        let other = br#"{"b":2}"#.to_vec();
        part.index
            .insert(xxhash_rust::xxh3::xxh3_64(&other), vec![0]);
        // When the other line is found in the hour, or added to the part
        let struck = part.strike(&other, data());
        part.index.insert(hash, vec![0]);
        part.add(other.clone(), data(), &mut report);
        // Then neither takes it for the first: nothing struck, nothing dropped
        assert_eq!(struck, 0);
        assert_eq!(report.duplicates_dropped, 0);
        assert_eq!(part.keep, [true, true]);
        // while the same line is struck, and dropped when added again
        assert_eq!(part.strike(br#"{"a":1}"#, data()), 1);
        part.add(br#"{"a":1}"#.to_vec(), data(), &mut report);
        assert_eq!(report.duplicates_dropped, 1);
    }

    #[tokio::test]
    async fn an_object_merged_away_between_listing_and_reading_is_found_in_the_merged_one() {
        // Given an hour listed as holding an object that a compaction has since merged away:
        // only the merged object, holding the record, is still there
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Folder(crate::store::FolderStore::new(dir.path()));
        let layout = ObjectLayout::new(
            "data",
            "quarantine",
            crate::batch::layout::PartitionStyle::Flat,
        )
        .unwrap();
        let mut merged = ObjectWriter::new(6, &SpoolPolicy::in_memory());
        merged.write_line(br#"{"a":1}"#).unwrap();
        let body = merged.finish().unwrap().body.to_vec().unwrap();
        std::fs::create_dir_all(dir.path().join("data/h")).unwrap();
        std::fs::write(dir.path().join("data/h/merged.json.gz"), body).unwrap();
        let settings = WriteSettings {
            layout,
            encoding: ObjectEncoding::GzipNdjson,
            gzip_level: 6,
            spool: SpoolPolicy::in_memory(),
        };
        let mut writer = Writer {
            store: &store,
            settings: &settings,
            existing: HashMap::from([(
                "data/h/".to_owned(),
                vec!["data/h/gone.json.gz".to_owned()],
            )]),
            report: WriteReport::default(),
        };
        // When the record is compared with what the hour holds
        let mut part = Part::new();
        part.add(br#"{"a":1}"#.to_vec(), data(), &mut writer.report);
        writer
            .strike_all_present(&["data/h/".to_owned()], &mut part, data())
            .await
            .unwrap();
        // Then the folder was listed again and the record found present
        assert_eq!(part.keep, [false]);
        assert_eq!(writer.report.lists, 1);
    }

    #[test]
    fn a_quarantined_record_is_the_record_whatever_the_reason() {
        let kind = ObjectKind::Quarantine {
            run_hour: HourKey::of(chrono::Utc::now()),
        };
        let a = br#"{"stage":"decrypt","reason":"does not verify under any of the 1 key(s)","record":{"data":"x"}}"#;
        let b = br#"{"stage":"decrypt","reason":"does not verify under any of the 2 key(s)","record":{"data":"x"}}"#;
        assert_eq!(identity(a, kind), br#"{"data":"x"}"#);
        assert_eq!(identity(a, kind), identity(b, kind));
        assert_ne!(identity(a, data()), identity(b, data()));
    }

    #[test]
    fn a_compact_line_is_stamped_as_its_record_was_placed() {
        let line = br#"{"user_id":null,"inDate":"230318150802284"}"#;
        assert_eq!(stamp_of(line).to_string(), "0802284");
        let verbatim = br#"{"inDate":"2023-03-19T00:30:00.5+09:00"}"#;
        assert_eq!(stamp_of(verbatim).to_string(), "3000500");
    }
}

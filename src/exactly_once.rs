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
//!
//! An hour a run writes as many objects (a backfill of one hour) costs one read of each object
//! the hour held before the run, per object written, not a read of every object the run wrote
//! before it: an object its batch knows shares no record with the batch's other objects of the
//! hour ([`EncodedObject::distinct_in_batch`]) is compared only with the objects this run did
//! not write. Any other object is compared with everything the hour holds.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures_util::stream::{self, StreamExt};

use crate::batch::encode;
use crate::batch::{
    BatchOutput, EncodeError, EncodedObject, ObjectBuilder, ObjectKind, ObjectSettings,
};
use crate::record;
use crate::store::{PutOutcome, Store, StoreError};

/// Listings of a folder whose objects keep vanishing before a run gives up (a compaction merges
/// an hour once; more than this means something else deletes there).
const RELISTS: usize = 3;

/// Objects of an hour downloaded ahead while one is compared.
const READ_AHEAD: usize = 8;

/// Lines of a new object compared at a time, in bytes: memory stays bounded however large the
/// object (a larger object is compared, and written, in parts).
pub const COMPARE_BYTES: usize = 8 << 20;

/// Why writing failed. What was written stays; a rerun finds it and writes nothing twice.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
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
    /// Objects read that are not what this code writes (see [`encode::Unreadable`]): left in
    /// place, nothing in them counted as present.
    pub objects_unreadable: u64,
}

/// Writes the records of `output` that their hours do not hold yet: quarantine first, then
/// each data object. Stops at the first failure.
pub async fn write_new_records(
    output: &BatchOutput,
    store: &Store,
    settings: &ObjectSettings,
) -> Result<WriteReport, WriteError> {
    let mut writer = Writer {
        store,
        settings,
        existing: HashMap::new(),
        ours: HashSet::new(),
        report: WriteReport::default(),
    };
    let (quarantine, data): (Vec<_>, Vec<_>) = output
        .objects
        .iter()
        .partition(|o| matches!(o.kind, ObjectKind::Quarantine { .. }));
    for object in quarantine.into_iter().chain(data) {
        if let Some(hour) = object.kind.data_hour() {
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
    settings: &'a ObjectSettings,
    /// Keys of the objects each folder holds, listed once per run and kept up to date.
    existing: HashMap<String, Vec<String>>,
    /// Keys of the objects this run wrote (or found already written with the same content).
    ours: HashSet<String>,
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
        let folders = object.kind.folders(&self.settings.layout);
        let started = Instant::now();
        for folder in &folders {
            self.list_once(folder).await?;
        }
        self.report.existing_read_ms += started.elapsed().as_millis() as u64;
        let skip_ours = object.distinct_in_batch;
        if self.keys_to_compare(&folders, skip_ours).is_empty() && object.distinct {
            // Nothing to compare with: the object lands as it is.
            return self.put(object, object.records, &folders[0]).await;
        }
        let body_err = |source| EncodeError::ReadBack {
            key: object.key.clone(),
            source,
        };
        let body = object.body.reader().map_err(body_err)?;
        let mut lines = encode::read_lines(body, self.settings.read).peekable();
        let mut first_part = true;
        while lines.peek().is_some() {
            let mut part = Part::new();
            while let Some(line) = lines.next_if(|_| part.size < COMPARE_BYTES) {
                let line = line.map_err(|e| body_err(std::io::Error::other(e)))?;
                part.add(line, object.kind, &mut self.report);
            }
            let whole = std::mem::take(&mut first_part) && lines.peek().is_none();
            let started = Instant::now();
            self.strike_all_present(&folders, &mut part, object.kind, skip_ours)
                .await?;
            self.report.existing_read_ms += started.elapsed().as_millis() as u64;
            let kept = part.keep.iter().filter(|k| **k).count() as u64;
            if whole && kept == object.records {
                // Every line is new: the object lands as it is, under the name it has.
                return self.put(object, kept, &folders[0]).await;
            }
            if let Some(encoded) = self.encode(&part, object.kind)? {
                self.put(&encoded, kept, &folders[0]).await?;
            }
        }
        Ok(())
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

    /// The objects the listed `folders` hold, less those this run wrote when `skip_ours`.
    fn keys_to_compare(&self, folders: &[String], skip_ours: bool) -> Vec<String> {
        folders
            .iter()
            .flat_map(|folder| self.existing.get(folder).into_iter().flatten())
            .filter(|key| !(skip_ours && self.ours.contains(*key)))
            .cloned()
            .collect()
    }

    /// Marks the lines of `part` that the objects of `folders` already hold (those this run did
    /// not write, when `skip_ours`). An object gone between the listing and the read was merged
    /// by a compaction, whose merged object exists before its inputs are deleted: the folders
    /// are listed again and the new objects read too.
    async fn strike_all_present(
        &mut self,
        folders: &[String],
        part: &mut Part,
        kind: ObjectKind,
        skip_ours: bool,
    ) -> Result<(), WriteError> {
        let mut read: Vec<String> = Vec::new();
        for _ in 0..RELISTS {
            let keys: Vec<String> = self
                .keys_to_compare(folders, skip_ours)
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
        Err(StoreError::Unsettled {
            folder: folders[0].clone(),
        }
        .into())
    }

    /// Marks the lines of `part` that the object `key`, read by `reader`, already holds. An
    /// object that cannot be read whole (see [`encode::Unreadable`]) counts nothing as present:
    /// its records land again rather than being lost, and compaction, once the object is dealt
    /// with, keeps them once.
    fn strike_present(
        &mut self,
        key: &str,
        reader: impl std::io::Read,
        part: &mut Part,
        kind: ObjectKind,
    ) {
        self.report.objects_read += 1;
        let mut found = Vec::new();
        for line in encode::read_lines(reader, self.settings.read) {
            match line {
                Ok(line) => found.extend(part.matches(&line, kind)),
                Err(reason) => {
                    self.report.objects_unreadable += 1;
                    tracing::warn!(key, reason = %reason, "unreadable object: nothing it holds counts as landed; it is left in place");
                    return;
                }
            }
        }
        let struck = part.strike(&found);
        self.report.count(kind, Counted::Present, struck);
    }

    /// A new object of the lines of `part` still to be written, named by its content; `None`
    /// when every line is already present.
    fn encode(&self, part: &Part, kind: ObjectKind) -> Result<Option<EncodedObject>, EncodeError> {
        let mut builder = ObjectBuilder::new(kind, self.settings);
        let kept = part.lines.iter().zip(&part.keep).filter(|(_, k)| **k);
        for (line, _) in kept {
            let stamp = kind.data_hour().map(|_| record::line_stamp(line));
            builder.push(line, stamp.unwrap_or_default())?;
        }
        builder.finish(self.settings)
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
        let counted = match outcome {
            PutOutcome::Written => Counted::Landed,
            PutOutcome::AlreadyPresent => Counted::Present,
        };
        report.count(object.kind, counted, records);
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
            self.ours.insert(object.key.clone());
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
        let id = kind.identity(&line);
        let hash = xxhash_rust::xxh3::xxh3_64(id);
        let same = self
            .index
            .get(&hash)
            .is_some_and(|indexes| indexes.iter().any(|&i| kind.identity(&self.lines[i]) == id));
        if same {
            report.count(kind, Counted::Repeated, 1);
            return;
        }
        self.index.entry(hash).or_default().push(self.lines.len());
        self.size += line.len();
        self.lines.push(line);
        self.keep.push(true);
    }

    /// The lines of this part that are the record `existing`.
    fn matches(&self, existing: &[u8], kind: ObjectKind) -> Vec<usize> {
        let id = kind.identity(existing);
        let Some(indexes) = self.index.get(&xxhash_rust::xxh3::xxh3_64(id)) else {
            return Vec::new();
        };
        indexes
            .iter()
            .copied()
            .filter(|&i| kind.identity(&self.lines[i]) == id)
            .collect()
    }

    /// Marks the lines at `found` as present; how many were not marked yet.
    fn strike(&mut self, found: &[usize]) -> u64 {
        let mut struck = 0;
        for &i in found {
            if std::mem::replace(&mut self.keep[i], false) {
                struck += 1;
            }
        }
        struck
    }
}

/// What happened to records, as a report counts them.
#[derive(Debug, Clone, Copy)]
enum Counted {
    /// Written by this run.
    Landed,
    /// Already in the store.
    Present,
    /// Repeated within the batch.
    Repeated,
}

impl WriteReport {
    /// Counts `n` records of `kind`: data records, or quarantined ones (a quarantined record
    /// repeated in the batch counts as already present).
    fn count(&mut self, kind: ObjectKind, what: Counted, n: u64) {
        let counter = match (kind, what) {
            (ObjectKind::Data { .. }, Counted::Landed) => &mut self.records_landed,
            (ObjectKind::Data { .. }, Counted::Present) => &mut self.records_already_present,
            (ObjectKind::Data { .. }, Counted::Repeated) => &mut self.duplicates_dropped,
            (ObjectKind::Quarantine { .. }, Counted::Landed) => &mut self.records_quarantined,
            (ObjectKind::Quarantine { .. }, Counted::Present | Counted::Repeated) => {
                &mut self.quarantined_already_present
            }
        };
        *counter += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::hour::Hour;

    fn data() -> ObjectKind {
        ObjectKind::Data {
            hour: Hour::of(chrono::Utc::now()),
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
        let struck = part.strike(&part.matches(&other, data()));
        part.index.insert(hash, vec![0]);
        part.add(other.clone(), data(), &mut report);
        // Then neither takes it for the first: nothing struck, nothing dropped
        assert_eq!(struck, 0);
        assert_eq!(report.duplicates_dropped, 0);
        assert_eq!(part.keep, [true, true]);
        // while the same line is struck, and dropped when added again
        assert_eq!(part.strike(&part.matches(br#"{"a":1}"#, data())), 1);
        part.add(br#"{"a":1}"#.to_vec(), data(), &mut report);
        assert_eq!(report.duplicates_dropped, 1);
    }

    /// A gzip'd object of `lines`.
    fn gzip(lines: &[&[u8]]) -> Vec<u8> {
        let mut w = encode::ObjectWriter::new(6, &crate::batch::spool::SpoolPolicy::in_memory());
        for line in lines {
            w.write_line(line).unwrap();
        }
        w.finish().unwrap().body.to_vec().unwrap()
    }

    /// A folder store under `dir` holding `objects` (name, body) in the hour folder `data/h/`,
    /// and the settings of its layout.
    fn hour_holding(dir: &std::path::Path, objects: &[(&str, &[u8])]) -> (Store, ObjectSettings) {
        std::fs::create_dir_all(dir.join("data/h")).unwrap();
        for (name, body) in objects {
            std::fs::write(dir.join("data/h").join(name), body).unwrap();
        }
        let layout = crate::batch::layout::ObjectLayout::new(
            "data",
            "quarantine",
            crate::batch::layout::PartitionStyle::Flat,
        )
        .unwrap();
        let store = Store::Folder(crate::store::FolderStore::new(dir));
        (store, ObjectSettings::new(layout))
    }

    /// A writer that listed `data/h/` as holding `listed`.
    fn writer_after_listing<'a>(
        store: &'a Store,
        settings: &'a ObjectSettings,
        listed: &[&str],
    ) -> Writer<'a> {
        let keys = listed.iter().map(|name| format!("data/h/{name}")).collect();
        Writer {
            store,
            settings,
            existing: HashMap::from([("data/h/".to_owned(), keys)]),
            ours: HashSet::new(),
            report: WriteReport::default(),
        }
    }

    #[tokio::test]
    async fn an_object_merged_away_between_listing_and_reading_is_found_in_the_merged_one() {
        // Given an hour listed as holding an object that a compaction has since merged away:
        // only the merged object, holding the record, is still there
        let dir = tempfile::tempdir().unwrap();
        let merged = gzip(&[br#"{"a":1}"#]);
        let (store, settings) = hour_holding(dir.path(), &[("merged.json.gz", &merged)]);
        let mut writer = writer_after_listing(&store, &settings, &["gone.json.gz"]);
        // When the record is compared with what the hour holds
        let mut part = Part::new();
        part.add(br#"{"a":1}"#.to_vec(), data(), &mut writer.report);
        writer
            .strike_all_present(&["data/h/".to_owned()], &mut part, data(), false)
            .await
            .unwrap();
        // Then the folder was listed again and the record found present
        assert_eq!(part.keep, [false]);
        assert_eq!(writer.report.lists, 1);
    }

    #[tokio::test]
    async fn an_unreadable_object_counts_nothing_as_present_and_the_rest_is_compared() {
        // Given an hour holding a good object with record a, and a truncated one whose first
        // line is record b
        let dir = tempfile::tempdir().unwrap();
        let (good, broken) = (
            gzip(&[br#"{"a":1}"#]),
            gzip(&[br#"{"b":2}"#, br#"{"c":3}"#]),
        );
        let objects: [(&str, &[u8]); 2] = [
            ("good.json.gz", &good),
            ("broken.json.gz", &broken[..broken.len() - 8]),
        ];
        let (store, settings) = hour_holding(dir.path(), &objects);
        let mut writer =
            writer_after_listing(&store, &settings, &["broken.json.gz", "good.json.gz"]);
        // When records a and b are compared with what the hour holds
        let mut part = Part::new();
        part.add(br#"{"a":1}"#.to_vec(), data(), &mut writer.report);
        part.add(br#"{"b":2}"#.to_vec(), data(), &mut writer.report);
        writer
            .strike_all_present(&["data/h/".to_owned()], &mut part, data(), false)
            .await
            .unwrap();
        // Then a is present, b is still to land, and the broken object is counted, not lost
        assert_eq!(part.keep, [false, true]);
        assert_eq!(writer.report.objects_unreadable, 1);
        assert_eq!(writer.report.records_already_present, 1);
        assert!(dir.path().join("data/h/broken.json.gz").exists());
    }
}

//! Compaction of closed hours: each scheduled pass writes a small object per hour it touches
//! (about 20 an hour); once an hour is closed (`COMPACT_AFTER` after it ends), its objects are
//! merged into one, with the usual key and encoding, records ordered by `inDate` then content
//! and exact duplicates dropped (the backstop of exactly-once when two writers raced).
//!
//! Crash-safe and idempotent: only the objects listed when the run started are merged; the
//! merged object is created (once: its name is its content's digest) before any input is
//! deleted, and only those inputs are deleted. A run killed at any moment leaves every record
//! in place, at worst twice until the next run, which merges the merged object with what is
//! left into the same object again and deletes the rest. An object landing meanwhile survives
//! and is merged by the next run.
//!
//! Memory stays bounded for an hour of any size: lines are sorted in runs of [`RUN_BYTES`],
//! spilled to files, and merged.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::batch::encode;
use crate::batch::spool;
use crate::batch::{EncodeError, EncodedObject, ObjectBuilder, ObjectKind, ObjectSettings};
use crate::progress::Progress;
use crate::record;
use crate::record::hour::{Hour, Stamp};
use crate::store::{PutOutcome, Store, StoreError};

/// Bytes of lines sorted in memory at a time; an hour larger than this is sorted in runs that
/// wait in spill files and are merged.
pub const RUN_BYTES: usize = 16 << 20;

/// Hours a listing is made hour by hour rather than over the whole data prefix.
const LIST_HOUR_BY_HOUR: u32 = 1000;

/// Which hours a run looks at and when it must stop.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// The run's time: an hour is closed once `closed_after` has passed since it ended.
    pub now: DateTime<Utc>,
    pub closed_after: Duration,
    /// Only hours in this range, both ends included; `None`: every hour under the data prefix.
    pub hours: Option<(Hour, Hour)>,
    /// No hour is started after this; the hours left are counted for the next run.
    pub deadline: Option<Instant>,
}

/// What a compaction run did; printed as one JSON line and emitted as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactSummary {
    /// Closed hours merged into one object.
    pub hours_compacted: u64,
    /// Closed hours with more than one object that this run had no time for.
    pub hours_left: u64,
    /// Objects read (the inputs) and bytes read.
    pub objects_read: u64,
    pub bytes_in: u64,
    /// Merged objects created, and those found already created (a rerun after a killed run).
    pub objects_written: u64,
    pub objects_already_present: u64,
    /// Inputs deleted once their records were in the merged object.
    pub objects_deleted: u64,
    /// Records in the merged objects.
    pub records: u64,
    /// Exact duplicates dropped.
    pub duplicates_dropped: u64,
    /// Compressed bytes of the merged objects.
    pub bytes_out: u64,
    /// The hours compacted (UTC, `YYYY-MM-DDTHH`).
    pub hours: Vec<String>,
    pub duration_ms: u64,
    /// Closed hours left as they are because one of their objects is unreadable (not what this
    /// code writes: see [`encode::Unreadable`]), and those objects' keys.
    pub hours_unreadable: u64,
    pub unreadable_objects: Vec<String>,
}

/// Why a compaction run stopped. What it did stays consistent; the next run carries on.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sorting the records of hour {hour} failed")]
    Sort {
        hour: Hour,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl CompactError {
    /// The type of the error that failed the run, as a Lambda error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            CompactError::Store(_) => "StoreError",
            CompactError::Sort { .. } => "SortError",
            CompactError::Encode(_) => "EncodeError",
        }
    }
}

/// Merges every closed hour (of `options.hours`) that holds more than one object, as the
/// command and the function run it: objects named and encoded by `settings`, bodies and sorted
/// runs in a private temporary folder beside the store's objects (or in the system's).
pub async fn run(
    store: &Store,
    settings: &ObjectSettings,
    options: &CompactOptions,
) -> Result<CompactSummary, CompactError> {
    run_with_progress(store, settings, options, &Progress::default()).await
}

/// As [`run`], counting into `progress` the input objects to merge (once listed), and the
/// objects, records and bytes merged, an hour at a time.
pub async fn run_with_progress(
    store: &Store,
    settings: &ObjectSettings,
    options: &CompactOptions,
    progress: &Progress,
) -> Result<CompactSummary, CompactError> {
    let started = Instant::now();
    let spill = spool::spill_dir(&store.spill_parent()).map_err(EncodeError::SpillFolder)?;
    let settings = &settings.spilling_into(spill.path());
    let mut summary = CompactSummary::default();
    let hours = closed_hours(store, settings, options).await?;
    progress.add_objects_total(hours.values().map(|inputs| inputs.len() as u64).sum());
    for (hour, inputs) in hours {
        if options.deadline.is_some_and(|d| Instant::now() >= d) {
            summary.hours_left += 1;
            continue;
        }
        let before = (summary.records, summary.bytes_in);
        compact_hour(store, settings, hour, &inputs, &mut summary).await?;
        progress.add_objects(inputs.len() as u64);
        progress.add_records(summary.records - before.0);
        progress.add_bytes(summary.bytes_in - before.1);
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// The closed hours with more than one object, each with the objects listed now (its inputs).
async fn closed_hours(
    store: &Store,
    settings: &ObjectSettings,
    options: &CompactOptions,
) -> Result<BTreeMap<Hour, Vec<String>>, StoreError> {
    let layout = &settings.layout;
    let keys = match options.hours {
        Some((from, to)) if hours_between(from, to) <= LIST_HOUR_BY_HOUR => {
            let mut keys = Vec::new();
            let mut hour = to;
            while hour >= from {
                keys.extend(
                    store
                        .list(&format!("{}/", layout.data_hour_path(hour)))
                        .await?,
                );
                hour = hour.previous();
            }
            keys
        }
        _ => store.list(&format!("{}/", layout.data_prefix())).await?,
    };
    let mut by_hour: BTreeMap<Hour, Vec<String>> = BTreeMap::new();
    for key in keys {
        let Some(hour) = layout.hour_of_data_key(&key) else {
            continue;
        };
        let in_range = options
            .hours
            .is_none_or(|(from, to)| (from..=to).contains(&hour));
        let closed =
            hour.start() + chrono::Duration::hours(1) + options.closed_after <= options.now;
        if in_range && closed && layout.is_object(&key) {
            by_hour.entry(hour).or_default().push(key);
        }
    }
    by_hour.retain(|_, keys| keys.len() > 1);
    for keys in by_hour.values_mut() {
        keys.sort();
    }
    Ok(by_hour)
}

fn hours_between(from: Hour, to: Hour) -> u32 {
    ((to.start() - from.start()).num_hours().max(0) as u64).min(u32::MAX as u64) as u32
}

/// Merges the `inputs` of `hour` into one object, then deletes them.
async fn compact_hour(
    store: &Store,
    settings: &ObjectSettings,
    hour: Hour,
    inputs: &[String],
    summary: &mut CompactSummary,
) -> Result<(), CompactError> {
    let sort_err = |source| CompactError::Sort { hour, source };
    let mut sorter = Sorter::new(settings.spool.dir.clone(), RUN_BYTES);
    let (mut objects_read, mut bytes_in) = (0, 0);
    for key in inputs {
        let mut reader = Counted::new(store.open(key, &settings.spool).await?);
        for line in encode::read_lines(&mut reader, settings.read) {
            match line {
                Ok(line) => sorter.add(line).map_err(sort_err)?,
                Err(reason) => {
                    // Merging what can be read and deleting the rest would lose what cannot:
                    // the hour stays as it is, for a person to look at, and the others go on.
                    tracing::warn!(key = %key, hour = %hour, reason = %reason, "unreadable object: its hour is left uncompacted");
                    summary.hours_unreadable += 1;
                    summary.unreadable_objects.push(key.clone());
                    return Ok(());
                }
            }
        }
        objects_read += 1;
        bytes_in += reader.count;
    }
    // Counted only for an hour that is merged: a skipped hour's reads changed nothing.
    summary.objects_read += objects_read;
    summary.bytes_in += bytes_in;
    let merged = sorter.finish(settings, hour)?;
    summary.duplicates_dropped += merged.duplicates;
    match store.put_once(&merged.object).await? {
        PutOutcome::Written => summary.objects_written += 1,
        PutOutcome::AlreadyPresent => summary.objects_already_present += 1,
    }
    summary.records += merged.object.records;
    summary.bytes_out += merged.object.body.len();
    for key in inputs.iter().filter(|key| **key != merged.object.key) {
        store.delete(key).await?;
        summary.objects_deleted += 1;
    }
    summary.hours_compacted += 1;
    summary.hours.push(hour.to_string());
    tracing::info!(
        hour = %hour,
        inputs = inputs.len(),
        records = merged.object.records,
        duplicates_dropped = merged.duplicates,
        "hour compacted"
    );
    Ok(())
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Counted<R> {
    fn new(inner: R) -> Self {
        Self { inner, count: 0 }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// A line with what it is ordered by: its record's instant (milliseconds; lines without one
/// first), then its content.
type Keyed = (i64, Vec<u8>);

/// The merged object of an hour, and the exact duplicates left out of it.
struct Merged {
    object: EncodedObject,
    duplicates: u64,
}

/// Sorts lines in runs of bounded size, spilling full runs to files, and merges the runs.
struct Sorter {
    run: Vec<Keyed>,
    run_bytes: usize,
    /// A run is spilled once it holds this many bytes (and there is a spill folder).
    run_limit: usize,
    spilled: Vec<tempfile::TempPath>,
    dir: Option<PathBuf>,
    duplicates: u64,
}

impl Sorter {
    fn new(dir: Option<PathBuf>, run_limit: usize) -> Self {
        Self {
            run: Vec::new(),
            run_bytes: 0,
            run_limit,
            spilled: Vec::new(),
            dir,
            duplicates: 0,
        }
    }

    fn add(&mut self, line: Vec<u8>) -> io::Result<()> {
        self.run_bytes += line.len() + 32;
        self.run.push((instant_millis(&line), line));
        if self.run_bytes >= self.run_limit
            && let Some(dir) = self.dir.clone()
        {
            self.spill(&dir)?;
        }
        Ok(())
    }

    /// Sorts the run in memory, without duplicates.
    fn sorted_run(&mut self) -> Vec<Keyed> {
        let mut run = std::mem::take(&mut self.run);
        self.run_bytes = 0;
        run.sort_unstable();
        let before = run.len();
        run.dedup();
        self.duplicates += (before - run.len()) as u64;
        run
    }

    fn spill(&mut self, dir: &std::path::Path) -> io::Result<()> {
        let run = self.sorted_run();
        let (file, path) = tempfile::Builder::new().tempfile_in(dir)?.into_parts();
        let mut out = BufWriter::with_capacity(1 << 16, file);
        for (millis, line) in &run {
            out.write_all(&millis.to_be_bytes())?;
            out.write_all(&(line.len() as u64).to_be_bytes())?;
            out.write_all(line)?;
        }
        out.flush()?;
        self.spilled.push(path);
        Ok(())
    }

    /// The merged object: every run merged in order, each line once.
    fn finish(mut self, settings: &ObjectSettings, hour: Hour) -> Result<Merged, CompactError> {
        let sort_err = |source| CompactError::Sort { hour, source };
        let mut runs: Vec<Box<dyn Iterator<Item = io::Result<Keyed>>>> = Vec::new();
        let last_run = self.sorted_run();
        runs.push(Box::new(last_run.into_iter().map(Ok)));
        for path in &self.spilled {
            let file = File::open(path).map_err(sort_err)?;
            runs.push(Box::new(SpilledRun {
                reader: BufReader::with_capacity(1 << 16, file),
            }));
        }
        let mut heads = BinaryHeap::new();
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some(first) = run.next() {
                heads.push(Reverse((first.map_err(sort_err)?, i)));
            }
        }
        let mut builder = ObjectBuilder::new(ObjectKind::Data { hour }, settings);
        let mut previous: Option<Keyed> = None;
        while let Some(Reverse((keyed, i))) = heads.pop() {
            if let Some(next) = runs[i].next() {
                heads.push(Reverse((next.map_err(sort_err)?, i)));
            }
            if previous.as_ref() == Some(&keyed) {
                self.duplicates += 1;
                continue;
            }
            builder.push(&keyed.1, stamp_at(keyed.0))?;
            previous = Some(keyed);
        }
        let object = builder
            .finish(settings)?
            .expect("an hour with more than one object holds a line");
        Ok(Merged {
            object,
            duplicates: self.duplicates,
        })
    }
}

/// A sorted run read back from its spill file.
struct SpilledRun {
    reader: BufReader<File>,
}

impl Iterator for SpilledRun {
    type Item = io::Result<Keyed>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.fill_buf() {
            Ok([]) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(e)),
        }
        let mut head = [0u8; 16];
        let read = self.reader.read_exact(&mut head).and_then(|()| {
            let millis = i64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
            let len = u64::from_be_bytes(head[8..].try_into().expect("8 bytes")) as usize;
            let mut line = vec![0; len];
            self.reader.read_exact(&mut line)?;
            Ok((millis, line))
        });
        Some(read)
    }
}

/// The instant of a landed line's record, in milliseconds (`i64::MIN` if it has none).
fn instant_millis(line: &[u8]) -> i64 {
    record::line_instant(line).map_or(i64::MIN, |t| t.timestamp_millis())
}

/// The stamp of a line sorted at `millis` (its record's instant, as [`instant_millis`] read it).
fn stamp_at(millis: i64) -> Stamp {
    DateTime::from_timestamp_millis(millis).map_or_else(Stamp::default, Stamp::of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::layout::{ObjectLayout, PartitionStyle};

    fn settings(dir: Option<PathBuf>) -> ObjectSettings {
        let settings = ObjectSettings::new(
            ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap(),
        );
        match dir {
            Some(dir) => settings.spilling_into(&dir),
            None => settings,
        }
    }

    fn line(ms: u32, n: u32) -> Vec<u8> {
        format!(r#"{{"n":{n},"inDate":"2303181508{:02}{ms:03}"}}"#, ms % 60).into_bytes()
    }

    fn lines_of(object: &EncodedObject) -> Vec<String> {
        encode::read_lines(object.body.reader().unwrap(), encode::ReadLimits::default())
            .map(|l| String::from_utf8(l.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn lines_come_out_ordered_by_instant_then_content_each_once() {
        // Given lines out of order, one of them twice
        let mut sorter = Sorter::new(None, RUN_BYTES);
        for l in [line(5, 2), line(1, 9), line(5, 1), line(1, 9), line(3, 3)] {
            sorter.add(l).unwrap();
        }
        // When they are merged
        let hour = Hour::of(Utc::now());
        let merged = sorter.finish(&settings(None), hour).unwrap();
        // Then they are in order, the duplicate dropped and counted
        let expected: Vec<String> = [line(1, 9), line(3, 3), line(5, 1), line(5, 2)]
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect();
        assert_eq!(lines_of(&merged.object), expected);
        assert_eq!(merged.duplicates, 1);
        assert!(
            merged.object.key.contains("/0801001_0805005_"),
            "{}",
            merged.object.key
        );
    }

    #[test]
    fn runs_spilled_to_files_merge_to_the_same_object() {
        // Given more lines than one run holds, in reverse order and twice each
        let dir = tempfile::tempdir().unwrap();
        let many: Vec<Vec<u8>> = (0..6_000u32).rev().map(|n| line(n % 1000, n)).collect();
        let hour = Hour::of(Utc::now());
        let mut spilling = Sorter::new(Some(dir.path().to_owned()), 64 << 10);
        let mut in_memory = Sorter::new(None, 64 << 10);
        for l in many.iter().chain(&many) {
            spilling.add(l.clone()).unwrap();
            in_memory.add(l.clone()).unwrap();
        }
        assert!(
            spilling.spilled.len() >= 2,
            "{} runs",
            spilling.spilled.len()
        );
        // When both are merged
        let a = spilling
            .finish(&settings(Some(dir.path().to_owned())), hour)
            .unwrap();
        let b = in_memory.finish(&settings(None), hour).unwrap();
        // Then the objects are the same, byte for byte, with each line once
        assert_eq!(a.object.key, b.object.key);
        assert_eq!(
            a.object.body.to_vec().unwrap(),
            b.object.body.to_vec().unwrap()
        );
        assert_eq!((a.object.records, a.duplicates), (6_000, 6_000));
    }
}

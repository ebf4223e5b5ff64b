//! The one pipeline every entry point drives: records in, objects encoded, objects written once.

use std::io::Read;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::batch::{Batch, BatchOutput, BatchSettings, BatchStats, ObjectKind};
use crate::keyring::KeyRing;
use crate::local_store::{LocalStore, LocalStoreError, PutOutcome};
use crate::response::{self, ResponseError};

/// Where objects are written.
#[derive(Debug, Clone)]
pub enum Store {
    /// A local folder standing in for the bucket.
    Local(LocalStore),
}

/// Why writing an object failed (after retries, where the store retries).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Local(#[from] LocalStoreError),
}

impl Store {
    /// Creates the object unless its key exists.
    pub async fn put_once(
        &self,
        object: &crate::batch::EncodedObject,
    ) -> Result<PutOutcome, StoreError> {
        match self {
            Store::Local(store) => Ok(store.put_once(object)?),
        }
    }
}

/// What a pass or a `process` run did; logged as one line and returned by the Lambda.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Source records fetched (or read from the file).
    pub records_in: u64,
    /// Records now in data objects, whether this run wrote the object or found it present.
    pub records_written: u64,
    pub records_quarantined: u64,
    pub duplicates_dropped: u64,
    /// Objects created by this run (data and quarantine).
    pub objects_written: u64,
    /// Objects whose key already existed: a retried or overlapping run of the same batch.
    pub objects_already_present: u64,
    /// Bytes of the source records as received.
    pub bytes_in: u64,
    pub bytes_uncompressed: u64,
    /// Compressed bytes of all objects of the batch.
    pub bytes_out: u64,
    /// Hours (UTC, `YYYY-MM-DDTHH`) that received records.
    pub hours: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_ms: Option<u64>,
    pub duration_ms: u64,
}

impl RunSummary {
    fn from_stats(stats: &BatchStats) -> Self {
        Self {
            records_in: stats.records_in,
            records_written: stats.records_landed,
            records_quarantined: stats.records_quarantined,
            duplicates_dropped: stats.duplicates_dropped,
            bytes_in: stats.bytes_in,
            bytes_uncompressed: stats.bytes_uncompressed,
            bytes_out: stats.bytes_out,
            ..Self::default()
        }
    }
}

/// Encodes a saved response (a JSON array of any size, read as a stream).
pub fn encode_saved_response(
    reader: impl Read,
    keys: &KeyRing,
    settings: &BatchSettings,
    run_time: DateTime<Utc>,
) -> Result<BatchOutput, ResponseError> {
    let mut batch = Batch::new(keys, settings);
    response::for_each_record(reader, |raw| batch.push(raw))?;
    batch.finish(run_time).map_err(ResponseError::Sink)
}

/// Writes every object of a batch once (data objects first, quarantine last) and tallies the
/// outcome. Stops at the first failure: what was written stays, and a rerun of the same batch
/// finds it present instead of writing it twice.
pub async fn land(
    output: &BatchOutput,
    store: &Store,
    started: Instant,
) -> Result<RunSummary, StoreError> {
    let mut summary = RunSummary::from_stats(&output.stats);
    for object in &output.objects {
        match store.put_once(object).await? {
            PutOutcome::Written => summary.objects_written += 1,
            PutOutcome::AlreadyPresent => summary.objects_already_present += 1,
        }
        if let ObjectKind::Data { hour } = object.kind {
            let hour = hour.to_string();
            if summary.hours.last() != Some(&hour) && !summary.hours.contains(&hour) {
                summary.hours.push(hour);
            }
        }
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

//! The backfill of saved responses: JSON arrays as the source serves them (`.gz` or not) under a
//! prefix, each landed through the pipeline like `process`, each record once however much the
//! responses overlap; what a Distributed Map item or batch names, or every one under a prefix.

use std::time::Instant;

use chrono::Utc;

use crate::pipeline::{Pipeline, RunError, RunSummary};
use crate::store::Store;

/// Bytes of a downloaded saved response kept in memory before it moves to a spill file.
const SAVED_RESPONSE_MEMORY: usize = 8 << 20;

/// One saved response as a Distributed Map's S3 listing reader gives it: `Key` (with `Size`,
/// `ETag`, `LastModified`, not needed), and the `Bucket` an `ItemSelector` adds.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SavedResponse {
    pub key: String,
    #[serde(default)]
    pub bucket: Option<String>,
}

/// What the batch's `BatchInput` may carry: the bucket of every item.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchInput {
    #[serde(default)]
    bucket: Option<String>,
}

/// A backfill event: one item, or (with `ItemBatcher`) `{"Items": [...], "BatchInput": {...}}`.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum BackfillEvent {
    Batch {
        #[serde(rename = "Items")]
        items: Vec<SavedResponse>,
        #[serde(rename = "BatchInput", default)]
        batch_input: Option<BatchInput>,
    },
    One(SavedResponse),
}

/// Why a backfill stopped. What it landed stays; a rerun of the same items lands the rest, once.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(
        "the event names no saved response (expected {{\"Key\": ...}} or {{\"Items\": [...]}})"
    )]
    Event(#[source] serde_json::Error),
    #[error("saved response {key} is in bucket {bucket}, not in the function's bucket")]
    OtherBucket { bucket: String, key: String },
    #[error("listing the saved responses under {prefix} failed")]
    List {
        prefix: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("reading saved response {location} failed")]
    Open {
        location: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("the run's spill folder could not be made")]
    SpillFolder(#[source] std::io::Error),
    #[error("landing saved response {location} failed")]
    Process {
        location: String,
        #[source]
        source: RunError,
    },
}

impl BackfillError {
    /// The type of the error that failed the backfill, as a Lambda error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            BackfillError::Event(_) | BackfillError::OtherBucket { .. } => "BackfillEventError",
            BackfillError::List { .. } | BackfillError::Open { .. } => "StoreError",
            BackfillError::SpillFolder(_) => "EncodeError",
            BackfillError::Process { source, .. } => source.error_type(),
        }
    }
}

/// What a backfill did over its saved responses; returned to the state machine, whose
/// compaction step reads `hours`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillSummary {
    /// Saved responses landed.
    pub responses: u64,
    /// Records read from them.
    pub records_in: u64,
    pub records_landed: u64,
    pub records_already_present: u64,
    pub duplicates_dropped: u64,
    pub records_quarantined: u64,
    pub quarantined_already_present: u64,
    pub objects_written: u64,
    pub bytes_out: u64,
    /// The hours (UTC, `YYYY-MM-DDTHH`) the saved responses had records for, each once, in order.
    pub hours: Vec<String>,
    pub duration_ms: u64,
    /// Records the responses refused, by reason, for the command line's summary; not in the
    /// JSON the state machine and scripts read.
    #[serde(skip)]
    pub refused_by_reason: std::collections::BTreeMap<&'static str, u64>,
}

impl BackfillSummary {
    fn add(&mut self, run: &RunSummary) {
        let w = &run.written;
        self.responses += 1;
        self.records_in += run.records_in;
        self.records_landed += w.records_landed;
        self.records_already_present += w.records_already_present;
        self.duplicates_dropped += w.duplicates_dropped;
        self.records_quarantined += w.records_quarantined;
        self.quarantined_already_present += w.quarantined_already_present;
        self.objects_written += w.objects_written;
        self.bytes_out += w.bytes_out;
        self.hours.extend(w.hours.iter().cloned());
        self.hours.sort_unstable();
        self.hours.dedup();
        for (label, n) in &run.refused_by_reason {
            *self.refused_by_reason.entry(label).or_default() += n;
        }
    }
}

/// Lands the saved responses `keys` of `store` one after the other through
/// [`Pipeline::process`] (a key ending `.gz` through a gzip decoder), each record once: a
/// record an earlier response landed is found, not written again. A download waits in a spill
/// file beyond [`SAVED_RESPONSE_MEMORY`], so a response of any size takes bounded memory.
pub async fn backfill_responses(
    pipeline: &Pipeline,
    store: &Store,
    keys: &[String],
    run_time: chrono::DateTime<Utc>,
) -> Result<BackfillSummary, BackfillError> {
    let started = Instant::now();
    let parent = store.spill_parent();
    std::fs::create_dir_all(&parent).map_err(BackfillError::SpillFolder)?;
    let spill = crate::batch::spool::spill_dir(&parent).map_err(BackfillError::SpillFolder)?;
    let spool = crate::batch::spool::SpoolPolicy::spill_to(
        spill.path().to_path_buf(),
        SAVED_RESPONSE_MEMORY,
    );
    let mut summary = BackfillSummary::default();
    for key in keys {
        let location = store.locate(key);
        let body = store
            .open(key, &spool)
            .await
            .map_err(|source| BackfillError::Open {
                location: location.clone(),
                source,
            })?;
        let reader: Box<dyn std::io::Read + Send> = if key.ends_with(".gz") {
            Box::new(flate2::read::MultiGzDecoder::new(body))
        } else {
            body
        };
        let run = pipeline
            .process(reader, run_time)
            .await
            .map_err(|source| BackfillError::Process { location, source })?;
        summary.add(&run);
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// The saved responses an event names: one Distributed Map item, or a batch of them. An item
/// naming another bucket than the function's is refused (the role could not read it anyway).
pub fn saved_responses(
    payload: serde_json::Value,
    bucket: Option<&str>,
) -> Result<Vec<String>, BackfillError> {
    let (items, batch_bucket) =
        match serde_json::from_value(payload).map_err(BackfillError::Event)? {
            BackfillEvent::One(item) => (vec![item], None),
            BackfillEvent::Batch { items, batch_input } => {
                (items, batch_input.and_then(|input| input.bucket))
            }
        };
    items
        .into_iter()
        .map(|item| match item.bucket.or_else(|| batch_bucket.clone()) {
            Some(named) if Some(named.as_str()) != bucket => Err(BackfillError::OtherBucket {
                bucket: named,
                key: item.key,
            }),
            _ => Ok(item.key),
        })
        .collect()
}

/// Lands every saved response under `prefix` of `store` ([`backfill_responses`]), in key order.
pub async fn backfill_prefix(
    pipeline: &Pipeline,
    store: &Store,
    prefix: &str,
    run_time: chrono::DateTime<Utc>,
) -> Result<BackfillSummary, BackfillError> {
    let keys = store
        .list(prefix)
        .await
        .map_err(|source| BackfillError::List {
            prefix: store.locate(prefix),
            source,
        })?;
    let keys: Vec<String> = keys.into_iter().filter(|key| !key.ends_with('/')).collect();
    backfill_responses(pipeline, store, &keys, run_time).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_distributed_map_item_names_one_saved_response() {
        // Given the item an S3 listing reader sends, with the bucket an ItemSelector adds
        let item = json!({"Bucket": "logs", "Key": "saved/a.json.gz", "Size": 12,
            "ETag": "\"0f\"", "LastModified": "2024-05-01T00:00:00.000Z"});
        // When it is read as a backfill event of the function of bucket "logs"
        let keys = saved_responses(item, Some("logs")).unwrap();
        // Then it names its key
        assert_eq!(keys, ["saved/a.json.gz"]);
    }

    #[test]
    fn a_batch_of_items_names_every_saved_response_in_order() {
        // Given what ItemBatcher sends: the items, and the bucket in BatchInput
        let batch = json!({"Items": [{"Key": "saved/a.json", "Size": 1}, {"Key": "saved/b.json"}],
            "BatchInput": {"Bucket": "logs"}});
        // When it is read
        let keys = saved_responses(batch, Some("logs")).unwrap();
        // Then both keys come out, in order
        assert_eq!(keys, ["saved/a.json", "saved/b.json"]);
    }

    #[test]
    fn an_item_of_another_bucket_or_without_a_key_is_refused() {
        // Given an item of another bucket, and an event naming no saved response
        let other = json!({"Bucket": "elsewhere", "Key": "saved/a.json"});
        let empty = json!({});
        // When they are read, Then both are refused as a bad event
        let err = saved_responses(other, Some("logs")).unwrap_err();
        assert!(matches!(err, BackfillError::OtherBucket { .. }), "{err}");
        let err = saved_responses(empty, Some("logs")).unwrap_err();
        assert_eq!(err.error_type(), "BackfillEventError");
    }
}

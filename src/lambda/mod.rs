//! The Lambda handlers: any event in (the schedule's, Scheduler's default, an EventBridge rule's,
//! `{}` from a manual invoke), one pass (or, for the compaction function, one compaction of the
//! closed hours; for the replay function, one replay of quarantine), a typed summary out, logged
//! as one line and emitted as metrics ([`metrics`]).

pub mod metrics;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent};

use crate::batch::ObjectSettings;
use crate::compact::{self, CompactError, CompactOptions, CompactSummary};
use crate::config::CompactionSettings;
use crate::logging::error_chain;
use crate::pipeline::{Pipeline, RunError, RunSummary};
use crate::record::hour::Hour;
use crate::replay::{self, ReplaySummary};
use crate::store::Store;

/// Time a pass may take when the runtime gives no deadline (tests, local invokes).
const DEFAULT_BUDGET: Duration = Duration::from_secs(60);
/// Kept back from the invocation's deadline so the summary and metrics still get out.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// Where metrics go: the namespace, and the function name used as their dimension.
#[derive(Debug, Clone)]
pub struct MetricsTarget {
    pub namespace: String,
    pub function_name: String,
}

impl MetricsTarget {
    /// Prints a run's summary line on stdout, where CloudWatch Logs reads it: its metrics as an
    /// EMF document, with every figure of the `summary` beside them.
    fn emit(
        &self,
        metrics: &[metrics::Metric],
        summary: &impl serde::Serialize,
        run_time: chrono::DateTime<Utc>,
    ) {
        let line = metrics::emf_line(
            &self.namespace,
            &self.function_name,
            metrics,
            summary,
            run_time.timestamp_millis(),
        );
        println!("{line}");
    }
}

/// Runs one pass for any event: the event only triggers it. An event's `time` (EventBridge's
/// and the template's Scheduler input carry one) is logged as the scheduled time.
pub async fn handle(
    pipeline: &Pipeline,
    metrics_target: &MetricsTarget,
    event: LambdaEvent<serde_json::Value>,
) -> Result<RunSummary, RunError> {
    let deadline = Instant::now() + time_left(event.context.deadline);
    let scheduled = event
        .payload
        .get("time")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let now = Utc::now();
    let result = pipeline.run_pass(now, deadline).await;
    let job = Job {
        name: "pass",
        request_id: &event.context.request_id,
        scheduled: &scheduled,
    };
    job.finish(result, metrics::of_pass, metrics_target, now)
}

/// The compaction function's set-up, built once: the bucket, the settings, the hours it looks at.
#[derive(Debug)]
pub struct Compaction {
    pub store: Store,
    pub objects: ObjectSettings,
    pub settings: CompactionSettings,
}

/// Why a compaction invocation failed: its event named hours badly, or the compaction stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompactionRunError {
    #[error("the event's \"hours\" is not an hour, FROM..TO or a list of hours: {0}")]
    Hours(String),
    #[error(transparent)]
    Compact(#[from] CompactError),
}

impl CompactionRunError {
    /// The type of the error, as a Lambda error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            CompactionRunError::Hours(_) => "CompactionEventError",
            CompactionRunError::Compact(err) => err.error_type(),
        }
    }
}

/// The hour ranges (both ends included) an event's `"hours"` names: `"YYYY-MM-DDTHH"`,
/// `"FROM..TO"`, or a list of those; `None` when the event names none.
pub fn event_hours(payload: &serde_json::Value) -> Result<Option<Vec<(Hour, Hour)>>, String> {
    fn range(text: &str) -> Result<(Hour, Hour), String> {
        let (from, to) = text.split_once("..").unwrap_or((text, text));
        let (from, to): (Hour, Hour) = (from.trim().parse()?, to.trim().parse()?);
        if from > to {
            return Err(format!("{text:?} ends before it starts"));
        }
        Ok((from, to))
    }
    match payload.get("hours") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(vec![range(text)?])),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| format!("{item} is not a string"))
            })
            .map(|text| text.and_then(range))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!("{other} is neither a string nor a list")),
    }
}

/// Compacts the closed hours among the last `COMPACT_LOOKBACK_HOURS` for any event, or the
/// closed hours an event's `"hours"` names ([`event_hours`]: what the backfill state machine
/// sends). No hour is started in the last quarter of the time left, so the run ends inside its
/// timeout; hours left over are counted (`HoursLeft`) and taken by the next run.
pub async fn handle_compaction(
    compaction: &Compaction,
    metrics_target: &MetricsTarget,
    event: LambdaEvent<serde_json::Value>,
) -> Result<CompactSummary, CompactionRunError> {
    let left = time_left(event.context.deadline);
    let now = Utc::now();
    let settings = compaction.settings;
    let lookback = chrono::Duration::hours(settings.lookback_hours.into());
    let ranges = event_hours(&event.payload)
        .map_err(CompactionRunError::Hours)?
        .unwrap_or_else(|| vec![(Hour::of(now - lookback), Hour::of(now))]);
    let deadline = Instant::now() + left * 3 / 4;
    let mut result = Ok(CompactSummary::default());
    for hours in ranges {
        let options = CompactOptions {
            now,
            closed_after: settings.after,
            hours: Some(hours),
            deadline: Some(deadline),
        };
        result = match result {
            Ok(total) => compact::run(&compaction.store, &compaction.objects, &options)
                .await
                .map(|one| add_compactions(total, one)),
            err => err,
        };
    }
    let result = result;
    let job = Job {
        name: "compaction",
        request_id: &event.context.request_id,
        scheduled: "",
    };
    job.finish(result, metrics::of_compaction, metrics_target, now)
        .map_err(Into::into)
}

/// The replay function's set-up, built once: the pipeline (its key, bucket and settings) and
/// the hours an event that names none replays.
#[derive(Debug)]
pub struct Replay {
    pub pipeline: Pipeline,
    pub lookback_hours: u32,
}

/// Why a replay event was not run: the event, or the run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the event's \"hours\" is not usable: {0}")]
    Event(String),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl ReplayError {
    /// The type of the error, as a Lambda error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            ReplayError::Event(_) => "EventError",
            ReplayError::Run(err) => err.error_type(),
        }
    }
}

/// Replays the quarantine of the run hours the event names (`{"hours": "FROM..TO"}`, each
/// `YYYY-MM-DDTHH`), else of the last `COMPACT_LOOKBACK_HOURS`: what passes now lands once,
/// what is still refused stays. Any other event starts the default replay.
pub async fn handle_replay(
    replay: &Replay,
    metrics_target: &MetricsTarget,
    event: LambdaEvent<serde_json::Value>,
) -> Result<ReplaySummary, ReplayError> {
    let deadline = Instant::now() + time_left(event.context.deadline);
    let now = Utc::now();
    let hours = match event.payload.get("hours") {
        Some(serde_json::Value::String(text)) => {
            replay::parse_hour_range(text).map_err(ReplayError::Event)?
        }
        Some(other) => return Err(ReplayError::Event(format!("{other} is not a string"))),
        None => {
            let lookback = chrono::Duration::hours(replay.lookback_hours.into());
            (Hour::of(now - lookback), Hour::of(now))
        }
    };
    let result = replay
        .pipeline
        .replay(Some(hours), now, Some(deadline))
        .await;
    let job = Job {
        name: "replay",
        request_id: &event.context.request_id,
        scheduled: "",
    };
    job.finish(result, metrics::of_replay, metrics_target, now)
        .map_err(Into::into)
}

/// The figures of two compaction runs over different hours, summed. Every field is named, so a
/// figure added to [`CompactSummary`] cannot be left out here.
fn add_compactions(mut total: CompactSummary, one: CompactSummary) -> CompactSummary {
    let CompactSummary {
        hours_compacted,
        hours_left,
        objects_read,
        bytes_in,
        objects_written,
        objects_already_present,
        objects_deleted,
        records,
        duplicates_dropped,
        bytes_out,
        hours,
        duration_ms,
        hours_unreadable,
        unreadable_objects,
    } = one;
    total.hours_compacted += hours_compacted;
    total.hours_left += hours_left;
    total.objects_read += objects_read;
    total.bytes_in += bytes_in;
    total.objects_written += objects_written;
    total.objects_already_present += objects_already_present;
    total.objects_deleted += objects_deleted;
    total.records += records;
    total.duplicates_dropped += duplicates_dropped;
    total.bytes_out += bytes_out;
    total.hours.extend(hours);
    total.duration_ms += duration_ms;
    total.hours_unreadable += hours_unreadable;
    total.unreadable_objects.extend(unreadable_objects);
    total
}

/// A job's error: its type is the Lambda error type, so CloudWatch can group failures.
pub trait JobError: std::error::Error {
    fn error_type(&self) -> &'static str;
}

macro_rules! job_errors {
    ($($error:ty),*) => {$(
        impl JobError for $error {
            fn error_type(&self) -> &'static str {
                <$error>::error_type(self)
            }
        }

        impl From<$error> for Diagnostic {
            fn from(err: $error) -> Self {
                Diagnostic {
                    error_type: JobError::error_type(&err).to_owned(),
                    error_message: error_chain(&err),
                }
            }
        }
    )*};
}

job_errors!(
    RunError,
    CompactError,
    CompactionRunError,
    ReplayError,
    BackfillError
);

/// One invocation of a job, as its log lines name it.
struct Job<'a> {
    /// `pass`, `compaction`, `replay` or `backfill`.
    name: &'static str,
    request_id: &'a str,
    /// The event's scheduled time, when it carries one.
    scheduled: &'a str,
}

impl Job<'_> {
    /// Ends the invocation: on success, its one summary line (the metrics `of` the summary, with
    /// every figure beside them) after a short log line; on failure, one error log line.
    fn finish<S: serde::Serialize, E: JobError>(
        &self,
        result: Result<S, E>,
        of: impl FnOnce(&S) -> Vec<metrics::Metric>,
        target: &MetricsTarget,
        now: chrono::DateTime<Utc>,
    ) -> Result<S, E> {
        match &result {
            Ok(summary) => {
                tracing::info!(request_id = %self.request_id, scheduled = %self.scheduled, "{} complete", self.name);
                target.emit(&of(summary), summary, now);
            }
            Err(err) => tracing::error!(
                request_id = %self.request_id,
                scheduled = %self.scheduled,
                error_type = err.error_type(),
                error = %error_chain(err),
                "{} failed",
                self.name
            ),
        }
        result
    }
}

/// Time until the invocation's deadline (epoch milliseconds), less a margin.
fn time_left(deadline_ms: u64) -> Duration {
    if deadline_ms == 0 {
        return DEFAULT_BUDGET;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(DEADLINE_MARGIN)
}

/// Bytes of a downloaded saved response kept in memory before it moves to a spill file.
const SAVED_RESPONSE_MEMORY: usize = 8 << 20;

/// The backfill function's set-up, built once: the pipeline, the bucket it reads saved responses
/// from and lands them in (the same one), and that bucket's name, to refuse items of another.
#[derive(Debug)]
pub struct Backfill {
    pub pipeline: Pipeline,
    pub store: Store,
    pub bucket: Option<String>,
}

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

/// Lands the saved responses a Distributed Map item (or batch of items) names.
pub async fn handle_backfill(
    backfill: &Backfill,
    metrics_target: &MetricsTarget,
    event: LambdaEvent<serde_json::Value>,
) -> Result<BackfillSummary, BackfillError> {
    let now = Utc::now();
    let result = match saved_responses(event.payload, backfill.bucket.as_deref()) {
        Ok(keys) => backfill_responses(&backfill.pipeline, &backfill.store, &keys, now).await,
        Err(err) => Err(err),
    };
    let result = result;
    let job = Job {
        name: "backfill",
        request_id: &event.context.request_id,
        scheduled: "",
    };
    job.finish(result, metrics::of_backfill, metrics_target, now)
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

    #[test]
    fn a_compaction_event_names_hours_as_one_a_range_or_a_list() {
        // Given the three spellings, and an event without hours
        let hour = |text: &str| text.parse::<Hour>().unwrap();
        let one = json!({"hours": "2024-05-01T03"});
        let range = json!({"hours": "2024-05-01T03..2024-05-01T05"});
        let list = json!({"hours": ["2024-05-01T03", "2024-05-02T00..2024-05-02T01"]});
        // When they are read, Then each names its ranges, both ends included
        let h3 = hour("2024-05-01T03");
        assert_eq!(event_hours(&one).unwrap(), Some(vec![(h3, h3)]));
        assert_eq!(
            event_hours(&range).unwrap(),
            Some(vec![(h3, hour("2024-05-01T05"))])
        );
        assert_eq!(
            event_hours(&list).unwrap(),
            Some(vec![
                (h3, h3),
                (hour("2024-05-02T00"), hour("2024-05-02T01"))
            ])
        );
        assert_eq!(event_hours(&json!({"time": "x"})).unwrap(), None);
        // And a backwards range or a number is refused
        assert!(event_hours(&json!({"hours": "2024-05-01T05..2024-05-01T03"})).is_err());
        assert!(event_hours(&json!({"hours": 3})).is_err());
    }
}

//! The Lambda handlers: any event in (the schedule's, Scheduler's default, an EventBridge rule's,
//! `{}` from a manual invoke), one pass (or, for the compaction function, one compaction of the
//! closed hours; for the replay function, one replay of quarantine), a typed summary out, logged
//! as one line and emitted as metrics ([`metrics`]).

pub mod metrics;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent};

use crate::backfill::{self, BackfillError, BackfillSummary};
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

/// The backfill function's set-up, built once: the pipeline, the bucket it reads saved responses
/// from and lands them in (the same one), and that bucket's name, to refuse items of another.
#[derive(Debug)]
pub struct Backfill {
    pub pipeline: Pipeline,
    pub store: Store,
    pub bucket: Option<String>,
}

/// Lands the saved responses a Distributed Map item (or batch of items) names.
pub async fn handle_backfill(
    backfill: &Backfill,
    metrics_target: &MetricsTarget,
    event: LambdaEvent<serde_json::Value>,
) -> Result<BackfillSummary, BackfillError> {
    let now = Utc::now();
    let result = match backfill::saved_responses(event.payload, backfill.bucket.as_deref()) {
        Ok(keys) => {
            backfill::backfill_responses(&backfill.pipeline, &backfill.store, &keys, now).await
        }
        Err(err) => Err(err),
    };
    let job = Job {
        name: "backfill",
        request_id: &event.context.request_id,
        scheduled: "",
    };
    job.finish(result, metrics::of_backfill, metrics_target, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

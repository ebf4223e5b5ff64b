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

impl From<RunError> for Diagnostic {
    fn from(err: RunError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: error_chain(&err),
        }
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
    match pipeline.run_pass(now, deadline).await {
        Ok(summary) => {
            // The figures are in the run's one summary line, the metrics document below.
            tracing::info!(request_id = %event.context.request_id, scheduled = %scheduled, "pass complete");
            metrics_target.emit(&metrics::of_pass(&summary), &summary, now);
            Ok(summary)
        }
        Err(err) => {
            tracing::error!(
                request_id = %event.context.request_id,
                scheduled = %scheduled,
                error_type = err.error_type(),
                error = %error_chain(&err),
                "pass failed"
            );
            Err(err)
        }
    }
}

/// The compaction function's set-up, built once: the bucket, the settings, the hours it looks at.
#[derive(Debug)]
pub struct Compaction {
    pub store: Store,
    pub objects: ObjectSettings,
    pub settings: CompactionSettings,
}

impl From<CompactError> for Diagnostic {
    fn from(err: CompactError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: error_chain(&err),
        }
    }
}

/// Compacts the closed hours among the last `COMPACT_LOOKBACK_HOURS` for any event. No hour is
/// started in the last quarter of the time left, so the run ends inside its timeout; hours left
/// over are counted (`HoursLeft`) and taken by the next run.
pub async fn handle_compaction(
    compaction: &Compaction,
    metrics_target: &MetricsTarget,
    event: LambdaEvent<serde_json::Value>,
) -> Result<CompactSummary, CompactError> {
    let left = time_left(event.context.deadline);
    let now = Utc::now();
    let settings = compaction.settings;
    let lookback = chrono::Duration::hours(settings.lookback_hours.into());
    let options = CompactOptions {
        now,
        closed_after: settings.after,
        hours: Some((Hour::of(now - lookback), Hour::of(now))),
        deadline: Some(Instant::now() + left * 3 / 4),
    };
    match compact::run(&compaction.store, &compaction.objects, &options).await {
        Ok(summary) => {
            // The figures are in the run's one summary line, the metrics document below.
            tracing::info!(request_id = %event.context.request_id, "compaction complete");
            metrics_target.emit(&metrics::of_compaction(&summary), &summary, now);
            Ok(summary)
        }
        Err(err) => {
            tracing::error!(
                request_id = %event.context.request_id,
                error_type = err.error_type(),
                error = %error_chain(&err),
                "compaction failed"
            );
            Err(err)
        }
    }
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

impl From<ReplayError> for Diagnostic {
    fn from(err: ReplayError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: error_chain(&err),
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
    match replay
        .pipeline
        .replay(Some(hours), now, Some(deadline))
        .await
    {
        Ok(summary) => {
            // The figures are in the run's one summary line, the metrics document below.
            tracing::info!(request_id = %event.context.request_id, "replay complete");
            metrics_target.emit(&metrics::of_replay(&summary), &summary, now);
            Ok(summary)
        }
        Err(err) => {
            tracing::error!(
                request_id = %event.context.request_id,
                error_type = err.error_type(),
                error = %error_chain(&err),
                "replay failed"
            );
            Err(err.into())
        }
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

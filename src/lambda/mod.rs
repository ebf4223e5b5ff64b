//! The Lambda handlers: any event in (the schedule's, Scheduler's default, an EventBridge rule's,
//! `{}` from a manual invoke), one pass (or, for the compaction function, one compaction of the
//! closed hours), a typed summary out, logged as one line and emitted as metrics ([`metrics`]).

pub mod metrics;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent};

use crate::compact::{self, CompactError, CompactOptions, CompactSummary};
use crate::config::Config;
use crate::pipeline::{Pipeline, RunError, RunSummary};
use crate::record::hour::HourKey;
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
    /// Prints a run's figures as one EMF document on stdout, where CloudWatch Logs reads them.
    fn emit(&self, figures: &[metrics::Metric], run_time: chrono::DateTime<Utc>) {
        let line = metrics::emf_line(
            &self.namespace,
            &self.function_name,
            figures,
            run_time.timestamp_millis(),
        );
        println!("{line}");
    }
}

impl From<RunError> for Diagnostic {
    fn from(err: RunError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: err.chain(),
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
            tracing::info!(
                request_id = %event.context.request_id,
                scheduled = %scheduled,
                records_in = summary.records_in,
                records_landed = summary.written.records_landed,
                records_already_present = summary.written.records_already_present,
                records_quarantined = summary.written.records_quarantined,
                duplicates_dropped = summary.written.duplicates_dropped,
                objects_written = summary.written.objects_written,
                objects_already_present = summary.written.objects_already_present,
                bytes_in = summary.bytes_in,
                bytes_out = summary.written.bytes_out,
                objects_read = summary.written.objects_read,
                fetch_ms = summary.fetch_ms.unwrap_or(0),
                existing_read_ms = summary.written.existing_read_ms,
                duration_ms = summary.duration_ms,
                "pass complete"
            );
            metrics_target.emit(&metrics::of_pass(&summary), now);
            Ok(summary)
        }
        Err(err) => {
            tracing::error!(
                request_id = %event.context.request_id,
                scheduled = %scheduled,
                error_type = err.error_type(),
                error = %err.chain(),
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
    pub config: Config,
}

impl From<CompactError> for Diagnostic {
    fn from(err: CompactError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: crate::logging::error_chain(&err),
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
    let settings = compaction.config.compaction;
    let lookback = chrono::Duration::hours(settings.lookback_hours.into());
    let options = CompactOptions {
        now,
        closed_after: settings.after,
        hours: Some((HourKey::of(now - lookback), HourKey::of(now))),
        deadline: Some(Instant::now() + left * 3 / 4),
    };
    let spill_parent = std::env::temp_dir();
    match compact::run(
        &compaction.store,
        &compaction.config,
        &options,
        &spill_parent,
    )
    .await
    {
        Ok(summary) => {
            tracing::info!(
                request_id = %event.context.request_id,
                hours_compacted = summary.hours_compacted,
                hours_left = summary.hours_left,
                objects_read = summary.objects_read,
                objects_written = summary.objects_written,
                objects_deleted = summary.objects_deleted,
                records = summary.records,
                duplicates_dropped = summary.duplicates_dropped,
                duration_ms = summary.duration_ms,
                "compaction complete"
            );
            metrics_target.emit(&metrics::of_compaction(&summary), now);
            Ok(summary)
        }
        Err(err) => {
            tracing::error!(
                request_id = %event.context.request_id,
                error_type = err.error_type(),
                error = %crate::logging::error_chain(&err),
                "compaction failed"
            );
            Err(err)
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

//! A run's figures as a CloudWatch Embedded Metric Format line: printed to stdout, turned into
//! metrics by CloudWatch Logs with no API call. The template's alarms use these names.

use serde_json::{Value, json};

use crate::backfill::BackfillSummary;
use crate::compact::CompactSummary;
use crate::pipeline::RunSummary;
use crate::replay::ReplaySummary;

/// Dimension naming the function, so several deployments do not mix their figures.
pub const DIMENSION: &str = "FunctionName";

/// One figure of a run: its metric name, CloudWatch unit and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub value: u64,
}

const fn count(name: &'static str, value: u64) -> Metric {
    Metric {
        name,
        unit: "Count",
        value,
    }
}

/// A pass's figures: the one list of metric names, units and values, in the order written.
pub fn of_pass(summary: &RunSummary) -> Vec<Metric> {
    vec![
        count("RecordsFetched", summary.records_in),
        count("RecordsLanded", summary.written.records_landed),
        count(
            "RecordsAlreadyPresent",
            summary.written.records_already_present,
        ),
        count("RecordsQuarantined", summary.written.records_quarantined),
        count("RecordsUndecryptable", summary.records_undecryptable),
        count("NoRecordVerified", u64::from(summary.no_record_verified)),
        count("DuplicatesDropped", summary.written.duplicates_dropped),
        count("ObjectsWritten", summary.written.objects_written),
        count(
            "ObjectsAlreadyPresent",
            summary.written.objects_already_present,
        ),
        Metric {
            name: "BytesIn",
            unit: "Bytes",
            value: summary.bytes_in,
        },
        Metric {
            name: "BytesOut",
            unit: "Bytes",
            value: summary.written.bytes_out,
        },
        Metric {
            name: "FetchDuration",
            unit: "Milliseconds",
            value: summary.fetch_ms.unwrap_or(0),
        },
        count("ObjectsUnreadable", summary.written.objects_unreadable),
        Metric {
            name: "ExistingReadDuration",
            unit: "Milliseconds",
            value: summary.written.existing_read_ms,
        },
        Metric {
            name: "Duration",
            unit: "Milliseconds",
            value: summary.duration_ms,
        },
    ]
}

/// A compaction run's figures: the one list of its metric names, units and values.
pub fn of_compaction(summary: &CompactSummary) -> Vec<Metric> {
    vec![
        count("HoursCompacted", summary.hours_compacted),
        count("HoursLeft", summary.hours_left),
        count("ObjectsCompacted", summary.objects_read),
        count("MergedObjectsWritten", summary.objects_written),
        count("ObjectsDeleted", summary.objects_deleted),
        count("RecordsCompacted", summary.records),
        count("CompactionDuplicatesDropped", summary.duplicates_dropped),
        count("HoursUnreadable", summary.hours_unreadable),
        Metric {
            name: "CompactionDuration",
            unit: "Milliseconds",
            value: summary.duration_ms,
        },
    ]
}

/// A replay's figures: the one list of its metric names, units and values.
pub fn of_replay(summary: &ReplaySummary) -> Vec<Metric> {
    vec![
        count("ReplayRecordsReplayed", summary.records_replayed),
        count("ReplayRecordsLanded", summary.records_landed),
        count(
            "ReplayRecordsAlreadyPresent",
            summary.records_already_present,
        ),
        count("ReplayRecordsStillRefused", summary.records_still_refused),
        count("ReplayReasonsUpdated", summary.reasons_updated),
        count("ReplayObjectsUnreadable", summary.objects_unreadable),
        Metric {
            name: "ReplayDuration",
            unit: "Milliseconds",
            value: summary.duration_ms,
        },
    ]
}

/// A backfill's figures: the one list of its metric names, units and values (named apart from
/// a pass's, so the ingest alarms never count a backfill).
pub fn of_backfill(summary: &BackfillSummary) -> Vec<Metric> {
    vec![
        count("SavedResponsesLanded", summary.responses),
        count("BackfillRecordsRead", summary.records_in),
        count("BackfillRecordsLanded", summary.records_landed),
        count(
            "BackfillRecordsAlreadyPresent",
            summary.records_already_present,
        ),
        count("BackfillRecordsQuarantined", summary.records_quarantined),
        count("BackfillHoursTouched", summary.hours.len() as u64),
        Metric {
            name: "BackfillDuration",
            unit: "Milliseconds",
            value: summary.duration_ms,
        },
    ]
}

/// The name of every metric a replay emits.
pub fn replay_metric_names() -> Vec<&'static str> {
    names(of_replay(&ReplaySummary::default()))
}

/// The name of every metric a backfill emits.
pub fn backfill_metric_names() -> Vec<&'static str> {
    names(of_backfill(&BackfillSummary::default()))
}

/// The name of every metric a compaction run emits.
pub fn compaction_metric_names() -> Vec<&'static str> {
    names(of_compaction(&CompactSummary::default()))
}

/// The name of every metric a pass emits (the template's alarms and dashboard use these).
pub fn pass_metric_names() -> Vec<&'static str> {
    names(of_pass(&RunSummary::default()))
}

/// The names of `metrics`, in order.
fn names(metrics: Vec<Metric>) -> Vec<&'static str> {
    metrics.into_iter().map(|m| m.name).collect()
}

/// The EMF document for one run: its `metrics`, and every figure of its `summary` (a JSON
/// object) beside them as properties, so the run's figures are all in this one line.
/// `timestamp_ms` is the run's time (epoch milliseconds).
pub fn emf_line(
    namespace: &str,
    function_name: &str,
    metrics: &[Metric],
    summary: &impl serde::Serialize,
    timestamp_ms: i64,
) -> String {
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[DIMENSION]],
                "Metrics": metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect::<Vec<_>>(),
            }],
        },
        DIMENSION: function_name,
    });
    let map = doc.as_object_mut().expect("built as an object");
    if let Ok(Value::Object(figures)) = serde_json::to_value(summary) {
        map.extend(figures);
    }
    for metric in metrics {
        map.insert(metric.name.to_owned(), Value::from(metric.value));
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_names_its_figures_apart_from_the_other_jobs() {
        // Given the metric names of a pass and of a compaction
        let others = [pass_metric_names(), compaction_metric_names()].concat();
        // When a backfill's names are listed
        let backfill = backfill_metric_names();
        // Then none is another job's
        assert!(backfill.iter().all(|name| !others.contains(name)));
    }

    #[test]
    fn the_two_jobs_name_their_figures_apart() {
        let pass = pass_metric_names();
        let compaction = compaction_metric_names();
        assert!(compaction.iter().all(|name| !pass.contains(name)));
        assert_eq!(
            of_compaction(&CompactSummary::default()).len(),
            compaction.len()
        );
    }

    #[test]
    fn the_replay_names_its_figures_apart_from_the_other_jobs() {
        let replay = replay_metric_names();
        let others = [pass_metric_names(), compaction_metric_names()].concat();
        assert!(
            replay.iter().all(|name| !others.contains(name)),
            "{replay:?}"
        );
        let summary = ReplaySummary {
            records_landed: 7,
            ..ReplaySummary::default()
        };
        let doc: Value =
            serde_json::from_str(&emf_line("LogEtl", "f", &of_replay(&summary), &summary, 0))
                .unwrap();
        assert_eq!(doc["ReplayRecordsLanded"], 7);
        assert_eq!(doc["records_landed"], 7);
    }

    #[test]
    fn every_metric_is_declared_and_valued() {
        // Given a run's summary
        let summary = RunSummary {
            records_in: 100,
            written: crate::exactly_once::WriteReport {
                records_landed: 97,
                records_quarantined: 3,
                objects_written: 2,
                ..Default::default()
            },
            fetch_ms: Some(40),
            duration_ms: 120,
            ..RunSummary::default()
        };
        // When it becomes an EMF line
        let doc: Value = serde_json::from_str(&emf_line(
            "LogEtl",
            "log-etl-fn",
            &of_pass(&summary),
            &summary,
            1_700_000_000_000,
        ))
        .unwrap();
        // Then the directive declares each metric with its unit, under the function's dimension
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "LogEtl");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        let names = pass_metric_names();
        assert_eq!(directive["Metrics"].as_array().unwrap().len(), names.len());
        assert_eq!(doc["FunctionName"], "log-etl-fn");
        // and each value sits at the top level
        assert_eq!(doc["RecordsFetched"], 100);
        assert_eq!(doc["RecordsQuarantined"], 3);
        assert_eq!(doc["FetchDuration"], 40);
        assert_eq!(doc["RecordsLanded"], 97);
        for name in names {
            assert!(doc[name].is_u64(), "{name}");
        }
        // and every figure of the summary is in the same line, listings included
        assert_eq!(doc["records_landed"], 97);
        assert_eq!(doc["lists"], 0);
        assert_eq!(doc["hours"], json!([]));
    }
}

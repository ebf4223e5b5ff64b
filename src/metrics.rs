//! A run's figures as a CloudWatch Embedded Metric Format line: printed to stdout, turned into
//! metrics by CloudWatch Logs with no API call. The template's alarms use these names.

use serde_json::{Value, json};

use crate::pipeline::RunSummary;

/// Dimension naming the function, so several deployments do not mix their figures.
pub const DIMENSION: &str = "FunctionName";

/// Metric names and units, in the order they are written.
pub const METRICS: [(&str, &str); 10] = [
    ("RecordsFetched", "Count"),
    ("RecordsWritten", "Count"),
    ("RecordsQuarantined", "Count"),
    ("DuplicatesDropped", "Count"),
    ("ObjectsWritten", "Count"),
    ("ObjectsAlreadyPresent", "Count"),
    ("BytesIn", "Bytes"),
    ("BytesOut", "Bytes"),
    ("FetchDuration", "Milliseconds"),
    ("Duration", "Milliseconds"),
];

/// The EMF document for one run. `timestamp_ms` is the run's time (epoch milliseconds).
pub fn emf_line(
    namespace: &str,
    function_name: &str,
    summary: &RunSummary,
    timestamp_ms: i64,
) -> String {
    let values = [
        summary.records_in,
        summary.records_written,
        summary.records_quarantined,
        summary.duplicates_dropped,
        summary.objects_written,
        summary.objects_already_present,
        summary.bytes_in,
        summary.bytes_out,
        summary.fetch_ms.unwrap_or(0),
        summary.duration_ms,
    ];
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[DIMENSION]],
                "Metrics": METRICS.iter().map(|(name, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        },
        DIMENSION: function_name,
    });
    let map = doc.as_object_mut().expect("built as an object");
    for ((name, _), value) in METRICS.iter().zip(values) {
        map.insert((*name).to_owned(), Value::from(value));
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_declared_and_valued() {
        // Given a run's summary
        let summary = RunSummary {
            records_in: 100,
            records_written: 97,
            records_quarantined: 3,
            objects_written: 2,
            fetch_ms: Some(40),
            duration_ms: 120,
            ..RunSummary::default()
        };
        // When it becomes an EMF line
        let doc: Value = serde_json::from_str(&emf_line(
            "LogEtl",
            "log-etl-fn",
            &summary,
            1_700_000_000_000,
        ))
        .unwrap();
        // Then the directive declares each metric with its unit, under the function's dimension
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "LogEtl");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directive["Metrics"].as_array().unwrap().len(),
            METRICS.len()
        );
        assert_eq!(doc["FunctionName"], "log-etl-fn");
        // and each value sits at the top level
        assert_eq!(doc["RecordsFetched"], 100);
        assert_eq!(doc["RecordsQuarantined"], 3);
        assert_eq!(doc["FetchDuration"], 40);
        for (name, _) in METRICS {
            assert!(doc[name].is_u64(), "{name}");
        }
    }
}

//! Alarms: on the function's own metrics, errors and dead letters.

use super::*;

#[test]
fn quarantined_records_raise_an_alarm_on_the_functions_own_metric() {
    // Given the alarms and the namespace the function emits its metrics in
    let t = template();
    let namespace = &function_environment(&t)[var::METRICS_NAMESPACE.name];
    let alarms = resources_of_type(&t, "AWS::CloudWatch::Alarm");
    // When the alarm on RecordsQuarantined is found
    let (_, alarm) = alarms
        .iter()
        .find(|(_, a)| a["Properties"]["MetricName"].as_str() == Some("RecordsQuarantined"))
        .expect("an alarm on RecordsQuarantined");
    let props = &alarm["Properties"];
    // Then it watches that namespace, for this function, and fires on any quarantined record
    assert_eq!(&props["Namespace"], namespace);
    let dimensions = props["Dimensions"].as_sequence().expect("dimensions");
    assert_eq!(dimensions.len(), 1);
    assert_eq!(text(&dimensions[0], &["Name"]), "FunctionName");
    assert_eq!(ref_name(&dimensions[0]["Value"]), FUNCTION);
    assert_eq!(text(props, &["ComparisonOperator"]), "GreaterThanThreshold");
    assert_eq!(number(props, &["Threshold"]), 0);
    assert_eq!(default_of(&t, ref_name(namespace)).as_str(), Some("LogEtl"));
}

#[test]
fn custom_metric_alarms_use_the_names_the_function_emits() {
    // Given the alarms on the function's own namespace
    let t = template();
    let namespace = &function_environment(&t)[var::METRICS_NAMESPACE.name];
    let alarms: Vec<&Value> = resources_of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| &a["Properties"])
        .filter(|p| &p["Namespace"] == namespace)
        .collect();
    assert!(!alarms.is_empty());
    // When their metric names and dimensions are read
    let emitted = pass_metric_names();
    for props in alarms {
        let metric = text(props, &["MetricName"]);
        let dimension = text(props, &["Dimensions", "0", "Name"]);
        // Then each is a metric the code writes, under the code's dimension
        assert!(emitted.contains(&metric), "{metric} is not emitted");
        assert_eq!(dimension, DIMENSION, "{metric}");
    }
}

#[test]
fn errors_and_dead_letters_raise_alarms() {
    // Given the alarms
    let t = template();
    let alarms = resources_of_type(&t, "AWS::CloudWatch::Alarm");
    // When the AWS metrics they watch are listed
    let watched: BTreeMap<&str, &str> = alarms
        .iter()
        .map(|(_, a)| &a["Properties"])
        .filter(|p| tagged(&p["Namespace"]).is_none())
        .map(|p| (text(p, &["MetricName"]), text(p, &["Namespace"])))
        .collect();
    // Then the function's errors and the dead-letter queue's backlog are among them
    assert_eq!(watched.get("Errors"), Some(&"AWS/Lambda"));
    assert_eq!(
        watched.get("ApproximateNumberOfMessagesVisible"),
        Some(&"AWS/SQS")
    );
}

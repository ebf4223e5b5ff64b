//! The dashboard: the function's figures under the names and dimension the code emits, its
//! failures, the dead-letter queue and the alarms; and its name in the outputs.

use super::*;

/// One line of a metric widget: namespace, metric name and its dimensions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Plotted {
    namespace: String,
    metric: String,
    dimensions: Vec<(String, String)>,
}

/// The dashboard's body as CloudFormation renders it, with a marker for each value that is only
/// known at deploy time.
fn dashboard_body(t: &Value) -> serde_json::Value {
    let (id, _) = resources_of_type(t, "AWS::CloudWatch::Dashboard")
        .pop()
        .expect("a dashboard");
    let body = sub_text(at(properties(t, id), &["DashboardBody"]));
    let rendered = render_sub(
        body,
        &[
            ("AWS::StackName", "<stack>"),
            ("AWS::Region", "<region>"),
            ("MetricsNamespace", "<namespace>"),
            ("LogEtlFunction", "<function>"),
            ("DeadLetterQueue.QueueName", "<queue>"),
            ("QuarantinePrefix", "quarantine"),
            ("FunctionErrorsAlarm.Arn", "<alarm:FunctionErrorsAlarm>"),
            ("DeadLetterAlarm.Arn", "<alarm:DeadLetterAlarm>"),
            ("QuarantineAlarm.Arn", "<alarm:QuarantineAlarm>"),
            ("SourceSilentAlarm.Arn", "<alarm:SourceSilentAlarm>"),
        ],
    );
    serde_json::from_str(&rendered).expect("the dashboard body is JSON")
}

fn widgets<'a>(body: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    body["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .filter(|w| w["type"] == kind)
        .collect()
}

/// Every line of every metric widget, in full form (no "." shorthand, so each reads alone).
fn plotted(body: &serde_json::Value) -> Vec<Plotted> {
    let mut found = Vec::new();
    for widget in widgets(body, "metric") {
        for line in widget["properties"]["metrics"].as_array().expect("metrics") {
            let parts: Vec<&str> = line
                .as_array()
                .expect("a metric line is a list")
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect();
            assert!(
                parts.len() >= 2 && parts.len().is_multiple_of(2) && !parts.contains(&"."),
                "{line}"
            );
            found.push(Plotted {
                namespace: parts[0].to_owned(),
                metric: parts[1].to_owned(),
                dimensions: parts[2..]
                    .chunks(2)
                    .map(|d| (d[0].to_owned(), d[1].to_owned()))
                    .collect(),
            });
        }
    }
    found
}

#[test]
fn dashboard_shows_every_metric_the_function_emits_and_no_other() {
    // Given the dashboard's metric lines, and the namespace the function is told to emit in
    let t = template();
    let body = dashboard_body(&t);
    let lines = plotted(&body);
    assert_eq!(
        ref_name(&function_environment(&t)[var::METRICS_NAMESPACE.name]),
        "MetricsNamespace"
    );
    // When the lines in the function's own namespace are picked
    let own: Vec<&Plotted> = lines
        .iter()
        .filter(|p| p.namespace == "<namespace>")
        .collect();
    // Then each is a metric the code emits, under the code's dimension naming this function
    let emitted: BTreeSet<&str> = pass_metric_names().into_iter().collect();
    for line in &own {
        assert!(
            emitted.contains(line.metric.as_str()),
            "{} is not emitted",
            line.metric
        );
        assert_eq!(
            line.dimensions,
            vec![(DIMENSION.to_owned(), "<function>".to_owned())],
            "{}",
            line.metric
        );
    }
    // and every metric the code emits is shown
    let shown: BTreeSet<&str> = own.iter().map(|p| p.metric.as_str()).collect();
    assert_eq!(shown, emitted);
}

#[test]
fn dashboard_shows_failed_runs_run_time_and_dead_letters() {
    // Given the dashboard's metric lines
    let t = template();
    let lines = plotted(&dashboard_body(&t));
    let function = vec![("FunctionName".to_owned(), "<function>".to_owned())];
    let queue = vec![("QueueName".to_owned(), "<queue>".to_owned())];
    // Then Lambda's errors and duration of this function, and this dead-letter queue's backlog,
    // are among them
    for (namespace, metric, dimensions) in [
        ("AWS/Lambda", "Errors", &function),
        ("AWS/Lambda", "Duration", &function),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", &queue),
    ] {
        let wanted = Plotted {
            namespace: namespace.to_owned(),
            metric: metric.to_owned(),
            dimensions: dimensions.clone(),
        };
        assert!(lines.contains(&wanted), "{wanted:?} is not shown");
    }
    // And the markers stand for the stack's own function and queue
    assert_eq!(
        text(resource(&t, FUNCTION), &["Type"]),
        "AWS::Serverless::Function"
    );
    assert_eq!(
        text(resource(&t, "DeadLetterQueue"), &["Type"]),
        "AWS::SQS::Queue"
    );
}

#[test]
fn dashboard_shows_every_alarm() {
    // Given the dashboard's alarm widgets and the template's alarms
    let t = template();
    let body = dashboard_body(&t);
    let shown: BTreeSet<String> = widgets(&body, "alarm")
        .iter()
        .flat_map(|w| w["properties"]["alarms"].as_array().expect("alarms"))
        .map(|a| a.as_str().expect("an ARN").to_owned())
        .collect();
    let alarms: BTreeSet<String> = resources_of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(id, _)| format!("<alarm:{id}>"))
        .collect();
    // Then each alarm is on the dashboard
    assert_eq!(shown, alarms);
}

#[test]
fn dashboard_name_is_a_stack_output() {
    // Given the stack's outputs
    let t = template();
    let (id, _) = resources_of_type(&t, "AWS::CloudWatch::Dashboard")
        .pop()
        .expect("a dashboard");
    // Then one names the dashboard
    assert_eq!(ref_name(at(&t, &["Outputs", "DashboardName", "Value"])), id);
}

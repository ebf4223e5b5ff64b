//! The dashboard: both functions' figures under the names and dimension the code emits, their
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
    let (id, _) = resource_of_type(t, "AWS::CloudWatch::Dashboard", "a dashboard");
    let body = sub_text(at(properties(t, id), &["DashboardBody"]));
    let alarms: Vec<(String, String)> = resources_of_type(t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(id, _)| (format!("{id}.Arn"), format!("<alarm:{id}>")))
        .collect();
    let mut vars = vec![
        ("AWS::StackName", "<stack>"),
        ("AWS::Region", "<region>"),
        ("MetricsNamespace", "<namespace>"),
        (FUNCTION, "<function>"),
        (COMPACT_FUNCTION, "<compact-function>"),
        ("DeadLetterQueue.QueueName", "<queue>"),
        ("QuarantinePrefix", "quarantine"),
    ];
    vars.extend(alarms.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let rendered = render_sub(body, &vars);
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
fn dashboard_shows_every_metric_each_function_emits_and_no_other() {
    // Given the dashboard's metric lines, and the namespace both functions are told to emit in
    let t = template();
    let body = dashboard_body(&t);
    let lines = plotted(&body);
    for function in [FUNCTION, COMPACT_FUNCTION] {
        assert_eq!(
            ref_name(&environment_of(&t, function)[var::METRICS_NAMESPACE.name]),
            "MetricsNamespace",
            "{function}"
        );
    }
    // When the lines in the functions' own namespace are picked
    let own: Vec<&Plotted> = lines
        .iter()
        .filter(|p| p.namespace == "<namespace>")
        .collect();
    // Then each is under the code's dimension, naming one of the two functions
    let emitted_by = |marker: &str| -> BTreeSet<&str> {
        match marker {
            "<function>" => pass_metric_names().into_iter().collect(),
            "<compact-function>" => compaction_metric_names().into_iter().collect(),
            other => panic!("{other} is not one of the functions"),
        }
    };
    for line in &own {
        assert_eq!(line.dimensions.len(), 1, "{line:?}");
        let (dimension, function) = &line.dimensions[0];
        assert_eq!(dimension, DIMENSION, "{}", line.metric);
        // and is a metric that function emits
        assert!(
            emitted_by(function).contains(line.metric.as_str()),
            "{function} does not emit {}",
            line.metric
        );
    }
    // and every metric each function emits is shown, with that function's name
    for marker in ["<function>", "<compact-function>"] {
        let shown: BTreeSet<&str> = own
            .iter()
            .filter(|p| p.dimensions[0].1 == marker)
            .map(|p| p.metric.as_str())
            .collect();
        assert_eq!(shown, emitted_by(marker), "{marker}");
    }
}

#[test]
fn dashboard_shows_failed_runs_run_time_and_dead_letters() {
    // Given the dashboard's metric lines
    let t = template();
    let lines = plotted(&dashboard_body(&t));
    let function = vec![("FunctionName".to_owned(), "<function>".to_owned())];
    let compaction = vec![("FunctionName".to_owned(), "<compact-function>".to_owned())];
    let queue = vec![("QueueName".to_owned(), "<queue>".to_owned())];
    // Then Lambda's errors and duration of both functions, and this dead-letter queue's backlog,
    // are among them
    for (namespace, metric, dimensions) in [
        ("AWS/Lambda", "Errors", &function),
        ("AWS/Lambda", "Duration", &function),
        ("AWS/Lambda", "Errors", &compaction),
        ("AWS/Lambda", "Duration", &compaction),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", &queue),
    ] {
        let wanted = Plotted {
            namespace: namespace.to_owned(),
            metric: metric.to_owned(),
            dimensions: dimensions.clone(),
        };
        assert!(lines.contains(&wanted), "{wanted:?} is not shown");
    }
    // And the markers stand for the stack's own functions and queue
    for function in [FUNCTION, COMPACT_FUNCTION] {
        assert_eq!(
            text(resource(&t, function), &["Type"]),
            "AWS::Serverless::Function"
        );
    }
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
    let (id, _) = resource_of_type(&t, "AWS::CloudWatch::Dashboard", "a dashboard");
    // Then one names the dashboard
    assert_eq!(ref_name(at(&t, &["Outputs", "DashboardName", "Value"])), id);
}

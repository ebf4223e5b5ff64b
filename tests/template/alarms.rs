//! Alarms: on the functions' own metrics, errors and dead letters.

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
    // Given the alarms on the functions' own namespace (the same for both functions)
    let t = template();
    let namespace = &function_environment(&t)[var::METRICS_NAMESPACE.name];
    assert_eq!(
        &environment_of(&t, COMPACT_FUNCTION)[var::METRICS_NAMESPACE.name],
        namespace
    );
    let alarms: Vec<&Value> = resources_of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| &a["Properties"])
        .filter(|p| &p["Namespace"] == namespace)
        .collect();
    assert!(!alarms.is_empty());
    // When their metric names and dimensions are read
    for props in alarms {
        let metric = text(props, &["MetricName"]);
        let dimension = text(props, &["Dimensions", "0", "Name"]);
        let function = ref_name(at(props, &["Dimensions", "0", "Value"]));
        // Then each is a metric the function its dimension names writes, under the code's
        // dimension
        let emitted = FUNCTIONS
            .iter()
            .find(|f| f.id == function)
            .map(|f| (f.metrics)())
            .unwrap_or_else(|| panic!("{metric}: {function} is not one of the functions"));
        assert!(
            emitted.contains(&metric),
            "{function} does not emit {metric}"
        );
        assert_eq!(dimension, DIMENSION, "{metric}");
    }
}

#[test]
fn each_functions_failed_runs_raise_an_alarm() {
    // Given the alarms on Lambda's errors, by the function their dimension names
    let t = template();
    let watched: BTreeMap<&str, &Value> = resources_of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| &a["Properties"])
        .filter(|p| p["Namespace"].as_str() == Some("AWS/Lambda"))
        .filter(|p| p["MetricName"].as_str() == Some("Errors"))
        .map(|p| (ref_name(at(p, &["Dimensions", "0", "Value"])), p))
        .collect();
    // Then one fires on any failed run of each function (every alarm notifies the topic: below)
    assert_eq!(watched.len(), FUNCTIONS.len());
    for f in &FUNCTIONS {
        let props = watched
            .get(f.id)
            .unwrap_or_else(|| panic!("no alarm on the errors of {}", f.id));
        assert_eq!(text(props, &["Dimensions", "0", "Name"]), "FunctionName");
        assert_eq!(text(props, &["ComparisonOperator"]), "GreaterThanThreshold");
        assert_eq!(number(props, &["Threshold"]), 0);
    }
}

#[test]
fn dead_letters_raise_an_alarm() {
    // Given the alarm on the dead-letter queue's backlog
    let t = template();
    let props = resources_of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| &a["Properties"])
        .find(|p| p["Namespace"].as_str() == Some("AWS/SQS"))
        .expect("an alarm on the queue");
    // Then it fires as soon as one message waits in the stack's queue
    assert_eq!(
        text(props, &["MetricName"]),
        "ApproximateNumberOfMessagesVisible"
    );
    assert_eq!(text(props, &["Dimensions", "0", "Name"]), "QueueName");
    assert_eq!(
        get_att_resource(at(props, &["Dimensions", "0", "Value"])),
        "DeadLetterQueue"
    );
    assert_eq!(text(props, &["ComparisonOperator"]), "GreaterThanThreshold");
    assert_eq!(number(props, &["Threshold"]), 0);
}

#[test]
fn alarm_notifications_reach_the_email_through_a_topic_cloudwatch_may_publish_to() {
    // Given the alarm topic
    let t = template();
    let (topic, definition) = resource_of_type(&t, "AWS::SNS::Topic", "an alarm topic");
    let props = at(definition, &["Properties"]);
    // Then it is encrypted with no AWS-managed key (alias/aws/sns cannot grant CloudWatch, so an
    // alarm could not publish), or with a key of the stack that lets CloudWatch use it
    match props.get("KmsMasterKeyId") {
        None => {}
        Some(key) => {
            let key = get_att_resource(key);
            let policy = statements_in(at(properties(&t, key), &["KeyPolicy"]));
            let grants_cloudwatch = policy.iter().any(|s| {
                let actions = strings_in(&s["Action"]);
                s["Effect"].as_str() == Some("Allow")
                    && strings_in(&s["Principal"]).contains(&"cloudwatch.amazonaws.com")
                    && actions.contains(&"kms:Decrypt")
                    && actions.contains(&"kms:GenerateDataKey*")
            });
            assert!(
                grants_cloudwatch,
                "{key}'s policy does not let CloudWatch use it"
            );
        }
    }
    // and its policy lets this account's CloudWatch alarms publish to it
    let (_, policy) = resource_of_type(&t, "AWS::SNS::TopicPolicy", "a topic policy");
    let topics = at(policy, &["Properties", "Topics"])
        .as_sequence()
        .expect("a list");
    assert_eq!(topics.iter().map(ref_name).collect::<Vec<_>>(), [topic]);
    let publish = statements_in(policy)
        .into_iter()
        .find(|s| strings_in(&s["Action"]) == ["sns:Publish"])
        .expect("a statement allowing sns:Publish");
    assert_eq!(text(publish, &["Effect"]), "Allow");
    assert_eq!(
        text(publish, &["Principal", "Service"]),
        "cloudwatch.amazonaws.com"
    );
    assert_eq!(ref_name(&publish["Resource"]), topic);
    // and it mails the address given
    let subscription = at(props, &["Subscription", "0"]);
    assert_eq!(text(subscription, &["Protocol"]), "email");
    assert_eq!(ref_name(&subscription["Endpoint"]), "AlarmEmail");
    // And every alarm notifies that topic when an address is given
    for (id, alarm) in resources_of_type(&t, "AWS::CloudWatch::Alarm") {
        let (condition, notify, otherwise) =
            if_branches(at(alarm, &["Properties", "AlarmActions"]));
        assert_eq!(condition, "HasAlarmEmail", "{id}");
        let targets: Vec<&str> = notify
            .as_sequence()
            .expect("a list")
            .iter()
            .map(ref_name)
            .collect();
        assert_eq!(targets, [topic], "{id}");
        assert_eq!(ref_name(otherwise), "AWS::NoValue", "{id}");
    }
}

#[test]
fn a_pass_in_which_no_record_verifies_under_the_key_raises_an_alarm() {
    // Given the alarms on the function's own metrics
    let t = template();
    let alarms = resources_of_type(&t, "AWS::CloudWatch::Alarm");
    // When the alarm on NoRecordVerified is found
    let (_, alarm) = alarms
        .iter()
        .find(|(_, a)| a["Properties"]["MetricName"].as_str() == Some("NoRecordVerified"))
        .expect("an alarm on NoRecordVerified");
    let props = &alarm["Properties"];
    // Then it watches the pass function and fires on the first such pass
    assert!(pass_metric_names().contains(&"NoRecordVerified"));
    assert_eq!(ref_name(at(props, &["Dimensions", "0", "Value"])), FUNCTION);
    assert_eq!(text(props, &["ComparisonOperator"]), "GreaterThanThreshold");
    assert_eq!(number(props, &["Threshold"]), 0);
    assert_eq!(number(props, &["EvaluationPeriods"]), 1);
    // and its description names the likely cause
    let description = format!("{:?}", props["AlarmDescription"]);
    assert!(
        description.contains("wrong or rotated key"),
        "{description}"
    );
}

/// The metrics a metric-math alarm reads, by id: (namespace, metric name, function, period).
fn math_inputs(props: &Value) -> BTreeMap<&str, (&Value, &str, &str, u64)> {
    props["Metrics"]
        .as_sequence()
        .expect("a metric-math alarm lists its metrics")
        .iter()
        .filter(|m| m.get("MetricStat").is_some())
        .map(|m| {
            let stat = &m["MetricStat"];
            (
                text(m, &["Id"]),
                (
                    at(stat, &["Metric", "Namespace"]),
                    text(stat, &["Metric", "MetricName"]),
                    ref_name(at(stat, &["Metric", "Dimensions", "0", "Value"])),
                    number(stat, &["Period"]),
                ),
            )
        })
        .collect()
}

#[test]
fn a_source_serving_only_records_already_landed_raises_an_alarm_after_30_minutes() {
    // Given the metric-math alarm on what the pass function fetched and landed
    let t = template();
    let namespace = &function_environment(&t)[var::METRICS_NAMESPACE.name];
    let props = properties(&t, "SourceStalledAlarm");
    let inputs = math_inputs(props);
    // Then it reads RecordsFetched and RecordsLanded of that function, in its namespace
    let names: BTreeSet<&str> = inputs.values().map(|(_, name, _, _)| *name).collect();
    assert_eq!(names, BTreeSet::from(["RecordsFetched", "RecordsLanded"]));
    for (namespace_of, name, function, _) in inputs.values() {
        assert_eq!(*namespace_of, namespace, "{name}");
        assert_eq!(*function, FUNCTION, "{name}");
        assert!(pass_metric_names().contains(name), "{name}");
    }
    // and its one expression is "fetched some, landed none", on the ids of those two
    let returned: Vec<&Value> = props["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|m| m["ReturnData"].as_bool() == Some(true))
        .collect();
    assert_eq!(returned.len(), 1);
    let expression = text(returned[0], &["Expression"]);
    let id_of = |metric: &str| {
        inputs
            .iter()
            .find(|(_, (_, name, _, _))| *name == metric)
            .map(|(id, _)| *id)
            .unwrap()
    };
    assert_eq!(
        expression,
        format!(
            "IF({} > 0 AND {} == 0, 1, 0)",
            id_of("RecordsFetched"),
            id_of("RecordsLanded")
        )
    );
    // and it fires when every period of 30 minutes is such a period
    let period = inputs.values().map(|(_, _, _, p)| *p).max().unwrap();
    let periods = number(props, &["EvaluationPeriods"]);
    assert_eq!(period * periods, 30 * 60);
    assert_eq!(number(props, &["DatapointsToAlarm"]), periods);
    assert_eq!(text(props, &["ComparisonOperator"]), "GreaterThanThreshold");
    assert_eq!(number(props, &["Threshold"]), 0);
    // and a source sending nothing at all is the silent-source alarm's
    let silent = properties(&t, "SourceSilentAlarm");
    assert_eq!(text(silent, &["MetricName"]), "RecordsFetched");
    assert_eq!(text(silent, &["TreatMissingData"]), "breaching");
}

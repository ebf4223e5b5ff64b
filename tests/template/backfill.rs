//! The backfill: its function (the same binary, `LOG_ETL_JOB=backfill`), the roles of the
//! function and of the state machine, the state machine's parameters and its two forms, the
//! functions its definition calls, and the alarm on failed executions.

use std::collections::BTreeMap;

use log_etl::config::{Config, Job};
use log_etl::lambda::metrics::backfill_metric_names;
use serde_json::Value as Json;

use super::*;

const BACKFILL_FUNCTION: &str = "LogEtlBackfillFunction";
const STATE_MACHINE: &str = "BackfillStateMachine";
const BATCHED_STATE_MACHINE: &str = "BackfillBatchedStateMachine";
const STATE_MACHINE_ROLE: &str = "BackfillStateMachineRole";
/// The parameters each substitution of the definition comes from.
const SUBSTITUTED: [(&str, &str); 4] = [
    ("MaxConcurrency", "BackfillMaxConcurrency"),
    (
        "ToleratedFailurePercentage",
        "BackfillToleratedFailurePercentage",
    ),
    ("MaxAttempts", "BackfillMaxAttempts"),
    ("BatchSize", "BackfillBatchSize"),
];

/// The definition of the state machine a stack with `overrides` deploys (the batched one when
/// `BackfillBatchSize` is not 0), its `DefinitionSubstitutions` applied as Step Functions
/// applies them: a resource's attribute is `<Id.Attribute>`.
pub(crate) fn deployed_definition(overrides: &[(&str, &str)]) -> Json {
    let t = template();
    let stack = Stack::new(&t, overrides);
    let id = if stack.condition("BatchSavedResponses") {
        BATCHED_STATE_MACHINE
    } else {
        STATE_MACHINE
    };
    let props = properties(&t, id);
    let mut text = serde_json::to_string(&stack.eval(at(props, &["Definition"]))).unwrap();
    let substitutions = stack
        .eval(at(props, &["DefinitionSubstitutions"]))
        .expect("substitutions");
    for (name, value) in substitutions.as_object().expect("a mapping") {
        let value = match value {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        text = text.replace(&format!("${{{name}}}"), &value);
    }
    assert!(!text.contains("${"), "a substitution is left: {text}");
    serde_json::from_str(&text).expect("the definition is JSON")
}

/// Every `FunctionName` of a task in `definition`, with the path of states to it.
fn called_functions(definition: &Json, path: &str, out: &mut Vec<(String, String)>) {
    let Some(states) = definition["States"].as_object() else {
        return;
    };
    for (name, state) in states {
        let here = format!("{path}/{name}");
        if let Some(function) = state["Parameters"]["FunctionName"].as_str() {
            out.push((here.clone(), function.to_owned()));
        }
        called_functions(&state["ItemProcessor"], &here, out);
    }
}

#[test]
fn the_definitions_call_the_templates_backfill_and_compaction_functions() {
    // Given the definitions of both forms, deployed
    for overrides in [&[][..], &[("BackfillBatchSize", "50")][..]] {
        let definition = deployed_definition(overrides);
        // When the functions their tasks call are collected
        let mut calls = Vec::new();
        called_functions(&definition, "", &mut calls);
        calls.sort();
        // Then the distributed map's items call the backfill function, and the compaction map
        // calls the compaction function: the template's own, nothing else
        assert_eq!(
            calls,
            [
                (
                    "/CompactHours/Compact".to_owned(),
                    format!("<{COMPACT_FUNCTION}.Arn>")
                ),
                (
                    "/LandSavedResponses/Land".to_owned(),
                    format!("<{BACKFILL_FUNCTION}.Arn>")
                ),
            ],
            "{overrides:?}"
        );
        let map = &definition["States"]["LandSavedResponses"];
        assert_eq!(
            map["ItemProcessor"]["ProcessorConfig"]["Mode"],
            "DISTRIBUTED"
        );
        assert_eq!(
            map["ItemReader"]["Resource"],
            "arn:aws:states:::s3:listObjectsV2"
        );
    }
}

#[test]
fn item_batcher_is_only_in_the_batched_form_which_otherwise_is_the_same() {
    // Given both forms, deployed
    let mut single = deployed_definition(&[]);
    let mut batched = deployed_definition(&[("BackfillBatchSize", "50")]);
    // Then only the batched one has an ItemBatcher, batching BackfillBatchSize items with the
    // bucket in BatchInput
    let map = |d: &mut Json| {
        d["States"]["LandSavedResponses"]
            .as_object_mut()
            .unwrap()
            .clone()
    };
    assert!(map(&mut single).get("ItemBatcher").is_none());
    let batcher = map(&mut batched)["ItemBatcher"].clone();
    assert_eq!(batcher["MaxItemsPerBatchPath"], "$.batchSize");
    assert_eq!(batcher["BatchInput"]["Bucket.$"], "$.bucket");
    assert_eq!(
        batched["States"]["Settings"]["Parameters"]["batchSize.$"],
        "States.StringToJson('50')"
    );
    // And without them, the two are the same definition
    batched["States"]["LandSavedResponses"]
        .as_object_mut()
        .unwrap()
        .remove("ItemBatcher");
    batched["States"]["Settings"]["Parameters"]
        .as_object_mut()
        .unwrap()
        .remove("batchSize.$");
    assert_eq!(single, batched);
    // And exactly one of the two state machines is deployed
    let t = template();
    for batch in ["0", "50"] {
        let stack = Stack::new(&t, &[("BackfillBatchSize", batch)]);
        assert_ne!(
            stack.condition("BatchSavedResponses"),
            stack.condition("OneSavedResponsePerCall")
        );
    }
}

#[test]
fn concurrency_tolerated_failures_attempts_and_batch_size_are_bounded_parameters() {
    // Given the template
    let t = template();
    // Then each substitution of both definitions is its parameter, a bounded number
    for (substitution, parameter) in SUBSTITUTED {
        let p = at(&t, &["Parameters", parameter]);
        assert_eq!(text(p, &["Type"]), "Number", "{parameter}");
        assert!(
            number(p, &["MinValue"]) <= number(p, &["Default"]),
            "{parameter}"
        );
        assert!(
            number(p, &["Default"]) <= number(p, &["MaxValue"]),
            "{parameter}"
        );
        let ids: &[&str] = if substitution == "BatchSize" {
            &[BATCHED_STATE_MACHINE]
        } else {
            &[STATE_MACHINE, BATCHED_STATE_MACHINE]
        };
        for id in ids {
            let value = at(
                properties(&t, id),
                &["DefinitionSubstitutions", substitution],
            );
            assert_eq!(ref_name(value), parameter, "{id}.{substitution}");
        }
    }
    // And a deployed definition takes their values: 7 at once, 5 % tolerated, 4 attempts
    let definition = deployed_definition(&[
        ("BackfillMaxConcurrency", "7"),
        ("BackfillToleratedFailurePercentage", "5"),
        ("BackfillMaxAttempts", "4"),
    ]);
    let settings = &definition["States"]["Settings"]["Parameters"];
    assert_eq!(settings["maxConcurrency.$"], "States.StringToJson('7')");
    assert_eq!(
        settings["toleratedFailurePercentage.$"],
        "States.StringToJson('5')"
    );
    let first = &definition["States"]["LandSavedResponses"]["ItemProcessor"]["States"]["FirstAttempt"]
        ["Parameters"];
    assert_eq!(first["maxAttempts.$"], "States.StringToJson('4')");
    // And the function may run as many at once as the map sends
    let reserved = at(
        properties(&t, BACKFILL_FUNCTION),
        &["ReservedConcurrentExecutions"],
    );
    assert_eq!(ref_name(reserved), "BackfillMaxConcurrency");
}

#[test]
fn the_backfill_function_runs_the_backfill_job_of_the_same_build() {
    // Given the backfill function's environment in a stack writing to the existing bucket
    let t = template();
    let env: BTreeMap<String, String> = existing_bucket_stack(&t)
        .eval(at(
            properties(&t, BACKFILL_FUNCTION),
            &["Environment", "Variables"],
        ))
        .expect("variables")
        .as_object()
        .expect("a mapping")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("text").to_owned()))
        .collect();
    // When the code reads it, as the binary does at cold start
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("a valid config");
    // Then it runs the backfill, on the stack's bucket, with the key from the secret
    assert_eq!(config.job, Job::Backfill);
    assert_eq!(config.require_bucket(), Ok("bucket"));
    assert!(env.contains_key(var::FERNET_SECRET_ID.name));
    // And it is built as the other functions are (one build for all)
    assert_eq!(
        at(
            resource(&t, BACKFILL_FUNCTION),
            &["Metadata", "BuildProperties"]
        ),
        at(resource(&t, FUNCTION), &["Metadata", "BuildProperties"])
    );
    assert_eq!(
        at(properties(&t, BACKFILL_FUNCTION), &["CodeUri"]),
        at(properties(&t, FUNCTION), &["CodeUri"])
    );
    // And its metrics are named apart from the other jobs'
    let others = [pass_metric_names(), compaction_metric_names()].concat();
    assert!(backfill_metric_names().iter().all(|m| !others.contains(m)));
}

#[test]
fn the_backfill_role_reads_saved_responses_and_creates_only_under_data_and_quarantine() {
    // Given the backfill function's role
    let t = template();
    let (_, statements) = role_statements(&t, BACKFILL_FUNCTION);
    // Then it reads the saved responses, and nothing else outside data and quarantine
    let read = by_sid(&statements, "ReadSavedResponses");
    assert_eq!(s3_actions(read), BTreeSet::from(["s3:GetObject"]));
    assert_eq!(
        rendered_s3(&t, &read["Resource"]),
        set(&["arn:aws:s3:::bucket/saved/*"])
    );
    // And it lists, reads and creates under data and quarantine only, a create being required
    let own = set(&[
        "arn:aws:s3:::bucket/data/*",
        "arn:aws:s3:::bucket/quarantine/*",
    ]);
    for sid in [
        "ReadDataAndQuarantineObjects",
        "PutDataAndQuarantineObjects",
    ] {
        assert_eq!(
            rendered_s3(&t, &by_sid(&statements, sid)["Resource"]),
            own,
            "{sid}"
        );
    }
    let deny = by_sid(&statements, "DenyPutWithoutIfNoneMatch");
    assert_eq!(text(deny, &["Effect"]), "Deny");
    assert_eq!(rendered_s3(&t, &deny["Resource"]), own);
    let list = by_sid(&statements, "ListDataAndQuarantineFolders");
    assert_eq!(
        rendered_s3(&t, &list["Condition"]["StringLike"]["s3:prefix"]),
        set(&["data/*", "quarantine/*"])
    );
    // And it never deletes, and its S3 statements are these
    let s3: BTreeSet<&str> = statements.iter().flat_map(|s| s3_actions(s)).collect();
    assert_eq!(
        s3,
        BTreeSet::from(["s3:GetObject", "s3:ListBucket", "s3:PutObject"])
    );
    let all = sids(&statements);
    assert!(ROLE_SIDS.iter().all(|sid| all.contains(sid)), "{all:?}");
}

#[test]
fn the_state_machine_role_lists_saved_responses_runs_itself_and_calls_the_two_functions() {
    // Given the state machine's role, and both forms' role
    let t = template();
    for id in [STATE_MACHINE, BATCHED_STATE_MACHINE] {
        assert_eq!(
            get_att_resource(at(properties(&t, id), &["Role"])),
            STATE_MACHINE_ROLE
        );
        assert_eq!(text(properties(&t, id), &["Type"]), "STANDARD");
    }
    let statements = statements_in(at(properties(&t, STATE_MACHINE_ROLE), &["Policies"]));
    assert_eq!(
        sids(&statements),
        BTreeSet::from([
            "InvokeBackfillAndCompaction",
            "ListSavedResponses",
            "RunChildExecutions",
            "WatchChildExecutions"
        ])
    );
    // Then it lists the saved responses only, and reads no object
    let list = by_sid(&statements, "ListSavedResponses");
    assert_eq!(s3_actions(list), BTreeSet::from(["s3:ListBucket"]));
    assert_eq!(
        rendered_s3(&t, &list["Condition"]["StringLike"]["s3:prefix"]),
        set(&["saved/*"])
    );
    // And it invokes exactly the backfill and the compaction functions
    let stack = existing_bucket_stack(&t);
    let invoke = by_sid(&statements, "InvokeBackfillAndCompaction");
    assert_eq!(
        stack.eval(&invoke["Resource"]),
        Some(serde_json::json!([
            format!("<{BACKFILL_FUNCTION}.Arn>"),
            format!("<{COMPACT_FUNCTION}.Arn>")
        ]))
    );
    // And it starts executions of its own state machine only (the map's children)
    let own = "arn:aws:states:us-east-1:123456789012:stateMachine:log-etl-backfill";
    assert_eq!(
        stack.text(&by_sid(&statements, "RunChildExecutions")["Resource"]),
        own
    );
    assert_eq!(
        stack.text(at(properties(&t, STATE_MACHINE), &["Name"])),
        "log-etl-backfill"
    );
}

#[test]
fn a_failed_backfill_execution_raises_an_alarm() {
    // Given the alarm on the state machine
    let t = template();
    let alarm = properties(&t, "BackfillFailedAlarm");
    // Then it counts failed executions of whichever form is deployed, and notifies
    assert_eq!(text(alarm, &["Namespace"]), "AWS/States");
    assert_eq!(text(alarm, &["MetricName"]), "ExecutionsFailed");
    assert_eq!(text(alarm, &["ComparisonOperator"]), "GreaterThanThreshold");
    assert_eq!(number(alarm, &["Threshold"]), 0);
    let dimension = &at(alarm, &["Dimensions"])[0];
    assert_eq!(text(dimension, &["Name"]), "StateMachineArn");
    for (batch, id) in [("0", STATE_MACHINE), ("50", BATCHED_STATE_MACHINE)] {
        let stack = Stack::new(&t, &[("BackfillBatchSize", batch)]);
        assert_eq!(stack.text(&dimension["Value"]), format!("<{id}>"));
    }
    let email = Stack::new(&t, &[("AlarmEmail", "ops@example.com")]);
    assert_eq!(
        email.eval(at(alarm, &["AlarmActions"])),
        Some(serde_json::json!(["<AlarmTopic>"]))
    );
}

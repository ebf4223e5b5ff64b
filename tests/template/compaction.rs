//! The compaction function: the same binary as the ingest function, run as the compaction of
//! closed hours; its settings, schedule, failure handling, role, resources and alarms.

use std::time::Duration;

use chrono::DateTime;
use log_etl::compact::RUN_BYTES;
use log_etl::config::{Config, Job};

use super::athena::number_setting;
use super::schedule::{cron_fields, expand_cron_field, firing_minutes_of_day};
use super::*;

const ONE_HOUR_IN_SECONDS: u64 = 3600;
/// Lambda's longest timeout.
const LAMBDA_MAX_TIMEOUT_SECONDS: u64 = 900;
const MIB: u64 = 1 << 20;

/// The function's environment as a deployed stack with the template's defaults gives it: a
/// parameter is its default, the bucket is `bucket`, and a variable given only when a parameter
/// is set (the emulator's endpoint) is absent.
fn deployed_environment(t: &Value, id: &str) -> BTreeMap<String, String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a scalar: {other:?}"),
    };
    let mut env = BTreeMap::new();
    for (name, value) in environment_of(t, id) {
        let name = name.as_str().expect("names are text");
        let resolved = match tagged(value) {
            None => Some(scalar(value)),
            Some((tag, _)) if tag == "Ref" => Some(scalar(default_of(t, ref_name(value)))),
            Some((tag, _)) if tag == "If" => match if_branches(value).0 {
                "CreateBucket" => Some("bucket".to_owned()),
                "HasEndpointUrl" => None,
                other => panic!("{name}: unexpected condition {other}"),
            },
            Some((tag, _)) => panic!("{name}: unexpected intrinsic {tag}"),
        };
        if let Some(resolved) = resolved {
            env.insert(name.to_owned(), resolved);
        }
    }
    env
}

fn compact_settings(t: &Value) -> Config {
    let env = deployed_environment(t, COMPACT_FUNCTION);
    Config::from_lookup(|name| env.get(name).cloned())
        .expect("the code accepts the compaction function's environment")
}

#[test]
fn compaction_function_is_the_same_build_as_the_ingest_function() {
    // Given both functions
    let t = template();
    let (ingest, compact) = (resource(&t, FUNCTION), resource(&t, COMPACT_FUNCTION));
    // Then the compaction function is the same code, built the same way into the same binary,
    // on the same runtime and architecture; and its whole Metadata is the same, since `sam build`
    // builds once for both only then (the scan's skips included)
    assert_eq!(text(compact, &["Type"]), "AWS::Serverless::Function");
    for path in [
        &["Metadata"][..],
        &["Properties", "CodeUri"],
        &["Properties", "Handler"],
        &["Properties", "Runtime"],
        &["Properties", "Architectures"],
    ] {
        assert_eq!(at(compact, path), at(ingest, path), "{}", path.join("."));
    }
    assert_eq!(
        text(compact, &["Metadata", "BuildProperties", "Binary"]),
        "log-etl-lambda"
    );
}

#[test]
fn compaction_function_runs_the_compact_job_with_the_codes_defaults() {
    // Given the compaction function's environment as a stack with default parameters sets it
    let t = template();
    let env = deployed_environment(&t, COMPACT_FUNCTION);
    assert_eq!(env[var::LOG_ETL_JOB.name], "compact");
    // When the code reads it, as the binary does at cold start
    let config = compact_settings(&t);
    // Then the binary runs the compaction, on the stack's bucket, prefix and folder style,
    // with hours closed an hour after they end and the last 48 hours looked at
    assert_eq!(config.job, Job::Compact);
    assert_eq!(config.require_bucket(), Ok("bucket"));
    assert_eq!(config.objects.layout.data_prefix(), "data");
    assert_eq!(config.objects.layout.style(), PartitionStyle::Flat);
    assert_eq!(
        config.compaction.after,
        Duration::from_secs(ONE_HOUR_IN_SECONDS)
    );
    assert_eq!(config.compaction.lookback_hours, 48);
    assert_eq!(config.metrics_namespace, "LogEtl");
    // and it is given neither a key nor the source: it never decrypts or fetches
    assert_eq!(config.key_source, None);
    assert!(config.api_url.is_none());
}

#[test]
fn compaction_function_reads_only_variables_the_code_knows_and_the_ingest_functions_values() {
    // Given the variables set on both functions
    let t = template();
    let names = variable_names(&t, COMPACT_FUNCTION);
    let known: BTreeSet<&str> = var::ALL.iter().map(|s| s.name).collect();
    // Then each is a variable the code reads, and those it needs are set
    for name in &names {
        assert!(
            known.contains(name),
            "{name} is not a variable the code reads"
        );
    }
    for required in [
        var::LOG_ETL_JOB,
        var::BUCKET_NAME,
        var::KEY_PREFIX,
        var::PARTITION_STYLE,
        var::COMPACT_AFTER,
        var::COMPACT_LOOKBACK_HOURS,
        var::METRICS_NAMESPACE,
    ] {
        assert!(
            names.contains(required.name),
            "{} is not set",
            required.name
        );
    }
    // and nothing of the source or the key is: no URL (it may carry a credential), no secret
    for absent in [var::LOG_API_URL, var::FERNET_SECRET_ID, var::FERNET_KEY] {
        assert!(!names.contains(absent.name), "{} is set", absent.name);
    }
    // And every other variable is the ingest function's, with the same value: the merged
    // object goes where the ingest writes, in the same folders, and the figures go to the same
    // namespace
    let (ingest, compact) = (
        function_environment(&t),
        environment_of(&t, COMPACT_FUNCTION),
    );
    let own = [
        var::LOG_ETL_JOB.name,
        var::COMPACT_AFTER.name,
        var::COMPACT_LOOKBACK_HOURS.name,
    ];
    for shared in names.iter().filter(|n| !own.contains(n)) {
        assert_eq!(
            compact.get(*shared),
            ingest.get(*shared),
            "{shared} differs between the two functions"
        );
    }
    // and the ingest function runs its default job
    assert!(!variable_names(&t, FUNCTION).contains(var::LOG_ETL_JOB.name));
    assert_eq!(var::LOG_ETL_JOB.default_text().as_deref(), Some("ingest"));
}

#[test]
fn compaction_parameters_default_to_the_codes_defaults_and_ranges() {
    // Given the parameters passed as COMPACT_AFTER and COMPACT_LOOKBACK_HOURS
    let t = template();
    let env = environment_of(&t, COMPACT_FUNCTION);
    let after = ref_name(&env[var::COMPACT_AFTER.name]);
    let lookback = ref_name(&env[var::COMPACT_LOOKBACK_HOURS.name]);
    assert_eq!((after, lookback), ("CompactAfter", "CompactLookbackHours"));
    // Then their defaults are the code's, so a stack with defaults behaves as the code documents
    assert_eq!(
        default_of(&t, after).as_str().map(str::to_owned),
        var::COMPACT_AFTER.default_text()
    );
    let (default, min, max) = number_setting(var::COMPACT_LOOKBACK_HOURS);
    assert_eq!(default_of(&t, lookback).as_u64(), Some(default));
    // and the template refuses at deploy what the code would refuse at cold start
    let parameter = at(&t, &["Parameters", lookback]);
    assert_eq!(number(parameter, &["MinValue"]), min);
    assert_eq!(number(parameter, &["MaxValue"]), max);
}

#[test]
fn compaction_runs_hourly_at_minute_fifteen() {
    // Given the compaction schedule's expression parameter
    let t = template();
    let event = schedule_event_of(&t, COMPACT_FUNCTION);
    let parameter = ref_name(at(event, &["Properties", "ScheduleExpression"]));
    assert_eq!(parameter, "CompactionScheduleExpression");
    let expression = default_of(&t, parameter).as_str().expect("text");
    assert_eq!(expression, "cron(15 * * * ? *)");
    // When it is expanded
    let fields = cron_fields(expression);
    assert_eq!(expand_cron_field(fields[2], 1, 31).len(), 31, "every day");
    assert_eq!(expand_cron_field(fields[3], 1, 12).len(), 12, "every month");
    assert_eq!((fields[4], fields[5]), ("?", "*"));
    // Then it fires 24 times a day, at minute 15 of every hour
    assert_eq!(
        firing_minutes_of_day(expression),
        (0..24).map(|h| h * 60 + 15).collect::<Vec<_>>()
    );
}

#[test]
fn every_closed_hour_meets_many_runs_before_it_leaves_the_lookback() {
    // Given the schedule's runs over four days, and the hours each run compacts as the function
    // chooses them (src/lambda/mod.rs: the closed hours from the hour of `now - lookback` to
    // the hour of `now`), with the stack's default settings
    let t = template();
    let config = compact_settings(&t);
    let after = chrono::Duration::from_std(config.compaction.after).expect("a duration");
    let lookback = chrono::Duration::hours(config.compaction.lookback_hours.into());
    let expression = default_of(&t, "CompactionScheduleExpression")
        .as_str()
        .expect("text");
    let day = DateTime::parse_from_rfc3339("2023-03-18T00:00:00Z")
        .expect("a time")
        .with_timezone(&Utc);
    let runs: Vec<DateTime<Utc>> = (0..4)
        .flat_map(|d| {
            firing_minutes_of_day(expression)
                .into_iter()
                .map(move |m| day + chrono::Duration::days(d) + chrono::Duration::minutes(m.into()))
        })
        .collect();
    // When the runs that would compact one hour of the first day are picked
    let hour = Hour::of(day + chrono::Duration::hours(10));
    let closes = hour.start() + chrono::Duration::hours(1) + after;
    let compacting: Vec<&DateTime<Utc>> = runs
        .iter()
        .filter(|now| Hour::of(**now - lookback) <= hour && **now >= closes)
        .collect();
    // Then the first comes within the hour after it closes (a quarter of an hour after)
    let first = **compacting.first().expect("a run compacts the hour");
    assert_eq!(first - closes, chrono::Duration::minutes(15));
    // and a day of failed runs still leaves many more before it leaves the window
    assert!(compacting.len() >= 24 + 12, "{} runs", compacting.len());
}

#[test]
fn compaction_failures_are_retried_and_kept_and_a_late_run_ends_before_the_next() {
    // Given the compaction schedule's delivery retries and the function's asynchronous config
    let t = template();
    let schedule = at(schedule_event_of(&t, COMPACT_FUNCTION), &["Properties"]);
    let config = at(properties(&t, COMPACT_FUNCTION), &["EventInvokeConfig"]);
    let timeout = number(properties(&t, COMPACT_FUNCTION), &["Timeout"]);
    // Then delivery is retried and what cannot be delivered goes to the stack's queue
    assert!(number(schedule, &["RetryPolicy", "MaximumRetryAttempts"]) >= 1);
    let delivery_age = number(schedule, &["RetryPolicy", "MaximumEventAgeInSeconds"]);
    assert_eq!(
        get_att_resource(at(schedule, &["DeadLetterConfig", "Arn"])),
        "DeadLetterQueue"
    );
    assert_eq!(
        schedule.get("OmitName").and_then(Value::as_bool),
        Some(true)
    );
    // and a failed run is retried (a run is idempotent) and then lands in the same queue
    assert!(number(config, &["MaximumRetryAttempts"]) >= 1);
    let destination = at(config, &["DestinationConfig", "OnFailure"]);
    assert_eq!(text(destination, &["Type"]), "SQS");
    assert_eq!(
        get_att_resource(at(destination, &["Destination"])),
        "DeadLetterQueue"
    );
    // and a run that starts as late as it may still ends before the next hourly run
    let run_age = number(config, &["MaximumEventAgeInSeconds"]);
    for age in [delivery_age, run_age] {
        assert!(
            age + timeout <= ONE_HOUR_IN_SECONDS,
            "{age} s + {timeout} s"
        );
    }
    // And its input is the ingest schedule's (the function ignores it; a dead letter keeps the
    // scheduled time)
    assert_eq!(
        at(schedule, &["Input"]),
        at(schedule_event(&t), &["Properties", "Input"])
    );
}

#[test]
fn compaction_has_the_time_memory_and_disk_an_hour_needs_one_run_at_a_time() {
    // Given the compaction function's resources
    let t = template();
    let props = properties(&t, COMPACT_FUNCTION);
    // Then it has Lambda's longest timeout (it stops starting hours at three quarters of it)
    assert_eq!(number(props, &["Timeout"]), LAMBDA_MAX_TIMEOUT_SECONDS);
    // and memory for a sort run with its per-line overhead and buffers, several times over:
    // memory does not grow with the hour
    let memory_mib = number(props, &["MemorySize"]);
    assert!(
        memory_mib * MIB >= 8 * RUN_BYTES as u64,
        "{memory_mib} MiB for runs of {RUN_BYTES} bytes"
    );
    // and disk (/tmp) for the sorted runs of a large hour: four times Lambda's default
    let storage_mib = number(props, &["EphemeralStorage", "Size"]);
    assert!((2048..=10240).contains(&storage_mib), "{storage_mib} MiB");
    // and one run at a time, in its own log group
    assert_eq!(number(props, &["ReservedConcurrentExecutions"]), 1);
    let group = ref_name(at(props, &["LoggingConfig", "LogGroup"]));
    assert_ne!(
        group,
        ref_name(at(properties(&t, FUNCTION), &["LoggingConfig", "LogGroup"]))
    );
    assert_eq!(text(resource(&t, group), &["Type"]), "AWS::Logs::LogGroup");
    let name = sub_text(at(properties(&t, group), &["LogGroupName"]));
    assert!(name.starts_with("/aws/lambda/"), "{name}");
}

#[test]
fn compaction_role_may_list_read_write_and_delete_only_under_the_data_prefix() {
    // Given the compaction function's role
    let t = template();
    let (role, statements) = role_statements(&t, COMPACT_FUNCTION);
    assert_ne!(role, role_statements(&t, FUNCTION).0, "a role of its own");
    assert_eq!(
        sids(&statements),
        BTreeSet::from([
            "WriteOwnLogs",
            "ListDataFolders",
            "CompactDataObjects",
            "SendFailedInvocations",
        ])
    );
    // Then it lists the bucket only under the data prefix
    let list = by_sid(&statements, "ListDataFolders");
    assert_eq!(strings_in(&list["Action"]), ["s3:ListBucket"]);
    assert_eq!(
        rendered_s3(&list["Resource"]),
        set(&["arn:aws:s3:::bucket"])
    );
    assert_eq!(
        at(list, &["Condition"]).as_mapping().map(|c| c.len()),
        Some(1)
    );
    assert_eq!(
        rendered_s3(at(list, &["Condition", "StringLike", "s3:prefix"])),
        set(&["data/*"])
    );
    // and reads, creates and deletes objects only under it
    let objects = by_sid(&statements, "CompactDataObjects");
    assert_eq!(
        s3_actions(objects),
        BTreeSet::from(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])
    );
    assert_eq!(
        rendered_s3(&objects["Resource"]),
        set(&["arn:aws:s3:::bucket/data/*"])
    );
    // and has no other S3 permission, nothing on quarantine, no key
    let all_s3: Vec<&str> = statements.iter().flat_map(|s| s3_actions(s)).collect();
    assert_eq!(all_s3.len(), 4, "{all_s3:?}");
    let role_text = strings_in(resource(&t, role));
    assert!(
        role_text.iter().all(|s| !s.contains("QuarantinePrefix")),
        "the role names the quarantine prefix"
    );
    for statement in &statements {
        for action in strings_in(&statement["Action"]) {
            assert!(
                ["logs:", "s3:", "sqs:"]
                    .iter()
                    .any(|p| action.starts_with(p)),
                "{action}"
            );
        }
        assert_eq!(text(statement, &["Effect"]), "Allow");
    }
    // And its logs go only to its own group, its failures only to the stack's queue
    let logs = by_sid(&statements, "WriteOwnLogs");
    let group = ref_name(at(
        properties(&t, COMPACT_FUNCTION),
        &["LoggingConfig", "LogGroup"],
    ));
    assert_eq!(get_att_resource(&logs["Resource"]), group);
    let queue = by_sid(&statements, "SendFailedInvocations");
    assert_eq!(strings_in(&queue["Action"]), ["sqs:SendMessage"]);
    assert_eq!(get_att_resource(&queue["Resource"]), "DeadLetterQueue");
}

#[test]
fn only_the_compaction_role_may_delete_objects() {
    // Given every role of the stack
    let t = template();
    let (compaction_role, _) = role_statements(&t, COMPACT_FUNCTION);
    // When the S3 actions that remove something are picked
    let mut deleting = BTreeSet::new();
    for (id, role) in resources_of_type(&t, "AWS::IAM::Role") {
        for statement in statements_in(role) {
            if s3_actions(statement).iter().any(|a| a.contains("Delete")) {
                deleting.insert(id);
            }
        }
    }
    // Then only the compaction function's role has one (the ingest function's never deletes)
    assert_eq!(deleting, BTreeSet::from([compaction_role]));
}

#[test]
fn compaction_failures_raise_an_alarm() {
    // Given the alarms on Lambda's errors
    let t = template();
    let watched: Vec<&str> = resources_of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| &a["Properties"])
        .filter(|p| p["Namespace"].as_str() == Some("AWS/Lambda"))
        .filter(|p| p["MetricName"].as_str() == Some("Errors"))
        .inspect(|p| {
            assert_eq!(text(p, &["ComparisonOperator"]), "GreaterThanThreshold");
            assert_eq!(number(p, &["Threshold"]), 0);
            assert_eq!(text(p, &["Dimensions", "0", "Name"]), "FunctionName");
        })
        .map(|p| ref_name(at(p, &["Dimensions", "0", "Value"])))
        .collect();
    // Then one fires on any failed run of each function (every alarm notifies the topic:
    // alarms.rs)
    assert_eq!(
        watched.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([FUNCTION, COMPACT_FUNCTION])
    );
}

#[test]
fn compaction_function_name_is_a_stack_output() {
    // Given the stack's outputs
    let t = template();
    // Then one names the compaction function (the FunctionName dimension of its metrics)
    assert_eq!(
        ref_name(at(&t, &["Outputs", "CompactFunctionName", "Value"])),
        COMPACT_FUNCTION
    );
}

#[test]
fn compacted_inputs_kept_as_old_versions_expire_and_current_data_never_does() {
    // Given the created bucket's lifecycle rules
    let t = template();
    let (_, bucket) = resources_of_type(&t, "AWS::S3::Bucket")
        .pop()
        .expect("the stack can create a bucket");
    let (_, lifecycle, _) = if_branches(at(bucket, &["Properties", "LifecycleConfiguration"]));
    let rules: Vec<&Value> = at(lifecycle, &["Rules"])
        .as_sequence()
        .expect("a list")
        .iter()
        .map(|rule| if_branches(rule).1)
        .collect();
    // When the rule on the data prefix is found
    let data = rules
        .iter()
        .find(|r| sub_text(&r["Prefix"]) == "${KeyPrefix}/")
        .expect("a rule on the data prefix");
    // Then it removes only old versions (the inputs the compaction deleted) and their delete
    // markers, never a current object
    assert!(data.get("ExpirationInDays").is_none(), "{data:?}");
    assert!(data.get("ExpirationDate").is_none(), "{data:?}");
    assert_eq!(
        ref_name(at(data, &["NoncurrentVersionExpiration", "NoncurrentDays"])),
        "CompactedInputRetentionDays"
    );
    assert_eq!(
        at(data, &["ExpiredObjectDeleteMarker"]).as_bool(),
        Some(true)
    );
    assert_eq!(
        default_of(&t, "CompactedInputRetentionDays").as_u64(),
        Some(30)
    );
}

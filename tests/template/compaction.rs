//! The compaction function: the same binary as the ingest function, run as the compaction of
//! closed hours; its settings, schedule, failure handling, role, resources and alarms.

use std::time::Duration;

use chrono::DateTime;
use log_etl::compact::RUN_BYTES;
use log_etl::config::{Config, Job};

use super::athena::number_setting;
use super::schedule::firing_minutes_of_day;
use super::*;

const ONE_HOUR_IN_SECONDS: u64 = 3600;
/// Lambda's longest timeout.
const LAMBDA_MAX_TIMEOUT_SECONDS: u64 = 900;
const MIB: u64 = 1 << 20;

/// The function's environment as a deployed stack with the template's defaults gives it, writing
/// to the existing bucket `bucket`: a variable given only when a parameter is set (the
/// emulator's endpoint) is absent.
fn deployed_environment(t: &Value, id: &str) -> BTreeMap<String, String> {
    let variables = existing_bucket_stack(t)
        .eval(at(properties(t, id), &["Environment", "Variables"]))
        .expect("variables");
    variables
        .as_object()
        .expect("a mapping")
        .iter()
        .map(|(name, value)| {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("{name} is not text"));
            (name.clone(), value.to_owned())
        })
        .collect()
}

fn compact_settings(t: &Value) -> Config {
    let env = deployed_environment(t, COMPACT_FUNCTION);
    Config::from_lookup(|name| env.get(name).cloned())
        .expect("the code accepts the compaction function's environment")
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
fn a_compaction_run_started_as_late_as_it_may_still_ends_before_the_next() {
    // Given the compaction schedule's delivery age, the function's event age and its timeout
    // (retries and the dead-letter queue: schedule.rs, for both functions)
    let t = template();
    let schedule = at(schedule_event_of(&t, COMPACT_FUNCTION), &["Properties"]);
    let config = at(properties(&t, COMPACT_FUNCTION), &["EventInvokeConfig"]);
    let timeout = number(properties(&t, COMPACT_FUNCTION), &["Timeout"]);
    let delivery_age = number(schedule, &["RetryPolicy", "MaximumEventAgeInSeconds"]);
    let run_age = number(config, &["MaximumEventAgeInSeconds"]);
    // Then a run delivered, or started, as late as they allow still ends before the next
    // hourly run
    for age in [delivery_age, run_age] {
        assert!(
            age + timeout <= ONE_HOUR_IN_SECONDS,
            "{age} s + {timeout} s"
        );
    }
}

#[test]
fn compaction_has_the_time_memory_and_disk_an_hour_needs() {
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
    let (_, bucket) = resource_of_type(&t, "AWS::S3::Bucket", "the stack can create a bucket");
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

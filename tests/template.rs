//! Checks `template.yaml` (the SAM template) against the product contract and against the code:
//! runtime and build, the schedule and its retries, least privilege, bucket safety, alarms, and
//! the Athena table's partition layout against `object_key`. Also parses the sample event.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{TimeZone, Utc};
use log_etl::compact::METHOD_CODES;
use log_etl::config::var;
use log_etl::hour::HourKey;
use log_etl::metrics::{DIMENSION, METRICS};
use log_etl::object_key::{KeyLayout, PartitionStyle};
use serde_norway::Value;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
const SCHEDULED_EVENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/events/scheduled-event.json");
const FUNCTION: &str = "LogEtlFunction";
const THREE_MINUTES_IN_SECONDS: u64 = 180;

// ---------------------------------------------------------------------------------------------
// Reading the template
// ---------------------------------------------------------------------------------------------

fn template() -> Value {
    let text = std::fs::read_to_string(TEMPLATE).expect("template.yaml is readable");
    serde_norway::from_str(&text).expect("template.yaml is valid YAML")
}

/// The value at `path` (mapping keys, or sequence indexes written as numbers).
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| {
        let next = match key.parse::<usize>() {
            Ok(i) if v.as_sequence().is_some() => v.get(i),
            _ => v.get(*key),
        };
        next.unwrap_or_else(|| panic!("template has no {}", path.join(".")))
    })
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let v = at(value, path);
    assert!(
        tagged(v).is_none(),
        "{} is an intrinsic, not text: {v:?}",
        path.join(".")
    );
    v.as_str()
        .unwrap_or_else(|| panic!("{} is not text: {v:?}", path.join(".")))
}

fn number(value: &Value, path: &[&str]) -> u64 {
    let v = at(value, path);
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{} is not a whole number: {v:?}", path.join(".")))
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    at(t, &["Resources", id])
}

fn properties<'a>(t: &'a Value, id: &str) -> &'a Value {
    at(resource(t, id), &["Properties"])
}

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    at(t, &["Resources"])
        .as_mapping()
        .expect("Resources is a mapping")
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
        .map(|(id, r)| (id.as_str().expect("logical ids are text"), r))
        .collect()
}

/// `(tag without '!', operand)` of a short-form intrinsic such as `!Ref X` or `!If [...]`.
fn tagged(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_owned(),
            &t.value,
        )),
        _ => None,
    }
}

/// The name in `!Ref name`.
fn ref_name(value: &Value) -> &str {
    match tagged(value) {
        Some((tag, operand)) if tag == "Ref" => operand.as_str().expect("!Ref takes a name"),
        _ => panic!("expected a !Ref, found {value:?}"),
    }
}

/// `(condition, when true, when false)` of `!If [condition, a, b]`.
fn if_branches(value: &Value) -> (&str, &Value, &Value) {
    match tagged(value) {
        Some((tag, Value::Sequence(args))) if tag == "If" && args.len() == 3 => (
            args[0].as_str().expect("!If names a condition"),
            &args[1],
            &args[2],
        ),
        _ => panic!("expected an !If, found {value:?}"),
    }
}

/// The logical id in `!GetAtt Id.Attribute`.
fn get_att_resource(value: &Value) -> &str {
    match tagged(value) {
        Some((tag, Value::String(target))) if tag == "GetAtt" => {
            target.split_once('.').expect("Id.Attribute").0
        }
        _ => panic!("expected a !GetAtt, found {value:?}"),
    }
}

/// The template string of `!Sub text` or `!Sub [text, {vars}]`.
fn sub_text(value: &Value) -> &str {
    match tagged(value) {
        Some((tag, Value::String(s))) if tag == "Sub" => s,
        Some((tag, Value::Sequence(args))) if tag == "Sub" => {
            args[0].as_str().expect("!Sub's first argument is its text")
        }
        _ => panic!("expected a !Sub, found {value:?}"),
    }
}

/// Renders a `!Sub` template string the way CloudFormation does: `${name}` is replaced from
/// `vars`, `${!text}` is the literal `${text}`.
fn render_sub(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').expect("every ${ is closed");
        let name = &after[..end];
        if let Some(literal) = name.strip_prefix('!') {
            out.push_str("${");
            out.push_str(literal);
            out.push('}');
        } else {
            let value = vars
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no value given for ${{{name}}}"))
                .1;
            out.push_str(value);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A parameter's default.
fn default_of<'a>(t: &'a Value, parameter: &str) -> &'a Value {
    at(t, &["Parameters", parameter, "Default"])
}

/// Every string anywhere under `value`, intrinsics included (`!Sub` texts, `!If` branches, ...).
fn strings_in(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(items) => items.iter().flat_map(strings_in).collect(),
        Value::Mapping(map) => map.values().flat_map(strings_in).collect(),
        Value::Tagged(t) => strings_in(&t.value),
        _ => Vec::new(),
    }
}

/// Every policy statement under `value`: each mapping found in a `Statement` list, with the
/// branches of a conditional statement (`!If`) counted as statements and `AWS::NoValue` skipped.
fn statements_in(value: &Value) -> Vec<&Value> {
    fn flatten<'a>(item: &'a Value, out: &mut Vec<&'a Value>) {
        match tagged(item) {
            Some((tag, Value::Sequence(args))) if tag == "If" => {
                args[1..].iter().for_each(|branch| flatten(branch, out));
            }
            Some((tag, _)) if tag == "Ref" => {} // AWS::NoValue
            Some(_) => panic!("unexpected intrinsic as a statement: {item:?}"),
            None => out.push(item),
        }
    }
    let mut found = Vec::new();
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                if key.as_str() == Some("Statement") {
                    match child {
                        Value::Sequence(items) => items.iter().for_each(|s| flatten(s, &mut found)),
                        single => flatten(single, &mut found),
                    }
                } else {
                    found.extend(statements_in(child));
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| found.extend(statements_in(v))),
        Value::Tagged(t) => found.extend(statements_in(&t.value)),
        _ => {}
    }
    found
}

fn function_environment(t: &Value) -> &serde_norway::Mapping {
    at(properties(t, FUNCTION), &["Environment", "Variables"])
        .as_mapping()
        .expect("Environment.Variables is a mapping")
}

fn schedule_event(t: &Value) -> &Value {
    let events = at(properties(t, FUNCTION), &["Events"])
        .as_mapping()
        .expect("Events");
    let schedules: Vec<&Value> = events
        .values()
        .filter(|e| e.get("Type").and_then(Value::as_str) == Some("ScheduleV2"))
        .collect();
    assert_eq!(
        schedules.len(),
        1,
        "exactly one ScheduleV2 event on the function"
    );
    schedules[0]
}

// ---------------------------------------------------------------------------------------------
// EventBridge cron: minutes, hours, day-of-month, month, day-of-week, year (no seconds field)
// ---------------------------------------------------------------------------------------------

/// Values of one cron field over `min..=max`; handles what the schedule uses: `*`, `?`, `n`,
/// `a/step`, `a-b` and comma lists.
fn expand_cron_field(field: &str, min: u32, max: u32) -> BTreeSet<u32> {
    field
        .split(',')
        .flat_map(|part| {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, step.parse::<usize>().expect("numeric step")),
                None => (part, 1),
            };
            let (from, to) = match range {
                "*" | "?" => (min, max),
                _ => match range.split_once('-') {
                    Some((a, b)) => (a.parse().expect("number"), b.parse().expect("number")),
                    // `a/step` runs from a to the end of the field; a plain `a` is just a.
                    None if part.contains('/') => (range.parse().expect("number"), max),
                    None => {
                        let n = range.parse().expect("number");
                        (n, n)
                    }
                },
            };
            assert!(
                min <= from && from <= to && to <= max,
                "{part} is outside {min}..={max}"
            );
            (from..=to).step_by(step).collect::<Vec<_>>()
        })
        .collect()
}

/// The six fields of `cron(...)`.
fn cron_fields(expression: &str) -> Vec<&str> {
    let inner = expression
        .strip_prefix("cron(")
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{expression} is not a cron() expression"));
    inner.split_whitespace().collect()
}

/// Minutes of the day (0..1440) at which a daily-uniform cron expression fires.
fn firing_minutes_of_day(expression: &str) -> Vec<u32> {
    let fields = cron_fields(expression);
    assert_eq!(
        fields.len(),
        6,
        "EventBridge cron has six fields: {expression}"
    );
    let minutes = expand_cron_field(fields[0], 0, 59);
    let hours = expand_cron_field(fields[1], 0, 23);
    hours
        .iter()
        .flat_map(|h| minutes.iter().map(move |m| h * 60 + m))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Athena partition projection: Java DateTimeFormatter patterns
// ---------------------------------------------------------------------------------------------

/// Formats an hour with a Java `DateTimeFormatter` pattern, as Athena's partition projection
/// does; supports `yyyy`, `MM`, `dd`, `HH` and quoted literals.
fn java_format(pattern: &str, hour: HourKey) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // `''` is a quote; otherwise everything up to the next quote is literal.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            let end = chars[i + 1..]
                .iter()
                .position(|&q| q == '\'')
                .expect("quoted literal is closed");
            out.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
        } else if c.is_ascii_alphabetic() {
            let run = chars[i..].iter().take_while(|&&d| d == c).count();
            let letters: String = chars[i..i + run].iter().collect();
            out.push_str(&match letters.as_str() {
                "yyyy" => format!("{:04}", hour.year()),
                "MM" => format!("{:02}", hour.month()),
                "dd" => format!("{:02}", hour.day()),
                "HH" => format!("{:02}", hour.hour()),
                other => panic!("pattern letters {other:?} are not supported here"),
            });
            i += run;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn hour(y: i32, mo: u32, d: u32, h: u32) -> HourKey {
    HourKey::of(Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap())
}

/// The table's projection format and range for a partition style, picked as CloudFormation
/// would from `!If [IsHive, hive, flat]`.
fn projection_for(t: &Value, style: PartitionStyle) -> (&str, &str) {
    let parameters = at(
        properties(t, "LogRecordsTable"),
        &["TableInput", "Parameters"],
    );
    let pick = |key: &str| {
        let (condition, hive, flat) = if_branches(at(parameters, &[key]));
        assert_eq!(condition, "IsHive");
        let chosen = match style {
            PartitionStyle::Flat => flat,
            PartitionStyle::Hive => hive,
        };
        chosen.as_str().expect("a projection setting is text")
    };
    (
        pick("projection.datehour.format"),
        pick("projection.datehour.range"),
    )
}

// ---------------------------------------------------------------------------------------------
// The function
// ---------------------------------------------------------------------------------------------

#[test]
fn function_is_the_rust_binary_on_arm64_al2023() {
    // Given the template
    let t = template();
    // When the function's definition is read
    let function = resource(&t, FUNCTION);
    let props = at(function, &["Properties"]);
    // Then it is the cargo-lambda build of the Lambda binary on provided.al2023, arm64
    assert_eq!(text(function, &["Type"]), "AWS::Serverless::Function");
    assert_eq!(text(props, &["Runtime"]), "provided.al2023");
    let architectures = at(props, &["Architectures"]).as_sequence().expect("a list");
    assert_eq!(architectures, &vec![Value::from("arm64")]);
    assert_eq!(text(props, &["Handler"]), "bootstrap");
    assert_eq!(text(props, &["CodeUri"]), ".");
    assert_eq!(
        text(function, &["Metadata", "BuildMethod"]),
        "rust-cargolambda"
    );
    assert_eq!(
        text(function, &["Metadata", "BuildProperties", "Binary"]),
        "log-etl-lambda"
    );
}

#[test]
fn one_run_at_a_time_and_each_ends_before_the_next_is_due() {
    // Given the template
    let t = template();
    let props = properties(&t, FUNCTION);
    // When its concurrency and timeout are read
    let reserved = number(props, &["ReservedConcurrentExecutions"]);
    let timeout = number(props, &["Timeout"]);
    // Then runs never overlap, and a run times out well before the next 3-minute tick
    assert_eq!(reserved, 1);
    assert!(
        timeout > 0 && timeout < THREE_MINUTES_IN_SECONDS,
        "timeout {timeout} s"
    );
}

#[test]
fn function_reads_its_settings_under_the_codes_variable_names() {
    // Given the template's environment for the function
    let t = template();
    let env = function_environment(&t);
    let names: BTreeSet<&str> = env
        .keys()
        .map(|k| k.as_str().expect("names are text"))
        .collect();
    // When compared with the variables the code reads
    let known = [
        var::LOG_API_URL,
        var::BUCKET_NAME,
        var::KEY_PREFIX,
        var::QUARANTINE_PREFIX,
        var::PARTITION_STYLE,
        var::FERNET_SECRET_ID,
        var::FERNET_KEY,
        var::KEY_CACHE_TTL_SECONDS,
        var::GZIP_LEVEL,
        var::START_DELAY_MS,
        var::FETCH_TIMEOUT_MS,
        var::FETCH_MAX_ATTEMPTS,
        var::PUT_MAX_ATTEMPTS,
        var::MAX_RESPONSE_BYTES,
        var::MAX_RECORD_BYTES,
        var::MAX_NESTING_DEPTH,
        var::METRICS_NAMESPACE,
        var::AWS_ENDPOINT_URL,
    ];
    // Then the required ones are set and none is misspelt
    for required in [
        var::LOG_API_URL,
        var::BUCKET_NAME,
        var::FERNET_SECRET_ID,
        var::KEY_PREFIX,
        var::QUARANTINE_PREFIX,
        var::PARTITION_STYLE,
    ] {
        assert!(
            names.contains(required),
            "{required} is not set on the function"
        );
    }
    for name in &names {
        assert!(
            known.contains(name),
            "{name} is not a variable the code reads"
        );
    }
    // And a key is never put in the environment: it comes from the secret
    assert!(!names.contains(var::FERNET_KEY));
    // And the start delay defaults to the original script's second 5
    assert_eq!(ref_name(&env[var::START_DELAY_MS]), "StartDelayMs");
    assert_eq!(default_of(&t, "StartDelayMs").as_u64(), Some(5000));
}

// ---------------------------------------------------------------------------------------------
// The schedule and its failure handling
// ---------------------------------------------------------------------------------------------

#[test]
fn default_schedule_fires_every_three_minutes_on_the_minute() {
    // Given the schedule expression parameter the event uses
    let t = template();
    let event = schedule_event(&t);
    let parameter = ref_name(at(event, &["Properties", "ScheduleExpression"]));
    let expression = default_of(&t, parameter).as_str().expect("text");
    assert_eq!(expression, "cron(0/3 * * * ? *)");
    // When its six fields are expanded
    let fields = cron_fields(expression);
    assert_eq!(
        expand_cron_field(fields[0], 0, 59),
        (0..60).step_by(3).collect::<BTreeSet<_>>(),
        "minutes 0, 3, ..., 57"
    );
    assert_eq!(expand_cron_field(fields[1], 0, 23).len(), 24, "every hour");
    assert_eq!(
        expand_cron_field(fields[2], 1, 31).len(),
        31,
        "every day of the month"
    );
    assert_eq!(expand_cron_field(fields[3], 1, 12).len(), 12, "every month");
    assert_eq!(
        fields[4], "?",
        "day-of-week is left open, as EventBridge requires with a day-of-month"
    );
    assert_eq!(fields[5], "*", "every year");
    // Then it fires 480 times a day, exactly 3 minutes apart (across hours and midnight too),
    // at second 0: EventBridge cron has no seconds field
    let fires = firing_minutes_of_day(expression);
    assert_eq!(fires.len(), 480);
    let gaps: BTreeSet<u32> = fires
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain([fires[0] + 24 * 60 - fires[fires.len() - 1]])
        .collect();
    assert_eq!(gaps, BTreeSet::from([3]));
}

#[test]
fn the_seconds_looking_expression_would_fire_every_third_hour() {
    // Given the expression a reader of the original script might write for "second 5"
    let wrong = "cron(5 0/3 * * ? *)";
    // When it is expanded
    let fires = firing_minutes_of_day(wrong);
    // Then it fires at minute 5 of every third hour: 8 times a day, not 480
    assert_eq!(
        fires,
        (0..24).step_by(3).map(|h| h * 60 + 5).collect::<Vec<_>>()
    );
}

#[test]
fn schedule_retries_delivery_and_keeps_what_it_cannot_deliver() {
    // Given the function's schedule
    let t = template();
    let props = at(schedule_event(&t), &["Properties"]);
    // When its failure handling is read
    let retries = number(props, &["RetryPolicy", "MaximumRetryAttempts"]);
    let max_age = number(props, &["RetryPolicy", "MaximumEventAgeInSeconds"]);
    let dead_letters = at(props, &["DeadLetterConfig", "Arn"]);
    // Then it retries within the 3-minute batch window and sends the rest to the stack's queue
    assert!(retries >= 1);
    assert!(
        (60..=THREE_MINUTES_IN_SECONDS).contains(&max_age),
        "{max_age} s"
    );
    let queue = get_att_resource(dead_letters);
    assert_eq!(text(resource(&t, queue), &["Type"]), "AWS::SQS::Queue");
    assert_eq!(props.get("OmitName").and_then(Value::as_bool), Some(true));
}

#[test]
fn schedule_sends_a_scheduled_event_shaped_payload() {
    // Given the schedule's Input (Scheduler sends only this, no envelope of its own)
    let t = template();
    let input = sub_text(at(schedule_event(&t), &["Properties", "Input"]));
    // When CloudFormation renders it for an account and region, and Scheduler fills in its
    // context attributes for one invocation
    let rendered = render_sub(
        input,
        &[
            ("AWS::AccountId", "123456789012"),
            ("AWS::Region", "us-east-1"),
        ],
    );
    let payload: serde_json::Value = serde_json::from_str(&rendered).expect("Input is JSON");
    assert_eq!(payload["time"], "<aws.scheduler.scheduled-time>");
    let delivered = rendered
        .replace("<aws.scheduler.scheduled-time>", "2023-03-18T15:09:00Z")
        .replace("<aws.scheduler.execution-id>", "d32c5kddcf5bb8c3")
        .replace(
            "<aws.scheduler.schedule-arn>",
            "arn:aws:scheduler:us-east-1:123456789012:schedule/default/log-etl-schedule",
        );
    // Then it has the EventBridge "Scheduled Event" fields, and the handler's event type reads
    // it with the scheduled time
    assert_eq!(payload["detail-type"], "Scheduled Event");
    assert_eq!(payload["account"], "123456789012");
    assert_eq!(payload["region"], "us-east-1");
    assert!(payload["detail"].is_object());
    let event: EventBridgeEvent =
        serde_json::from_str(&delivered).expect("the handler's event type reads the payload");
    assert_eq!(event.detail_type, "Scheduled Event");
    assert_eq!(
        event.time,
        Some(Utc.with_ymd_and_hms(2023, 3, 18, 15, 9, 0).unwrap())
    );
}

#[test]
fn failed_invocations_go_to_an_on_failure_destination() {
    // Given the function's asynchronous invocation config (Scheduler invokes asynchronously)
    let t = template();
    let config = at(properties(&t, FUNCTION), &["EventInvokeConfig"]);
    // When its retries and destination are read
    let retries = number(config, &["MaximumRetryAttempts"]);
    let destination = at(config, &["DestinationConfig", "OnFailure"]);
    // Then retries are set deliberately (0 or 1) and failures land in a queue of the stack
    assert!(retries <= 1, "{retries} retries");
    assert_eq!(text(destination, &["Type"]), "SQS");
    let queue = get_att_resource(at(destination, &["Destination"]));
    assert_eq!(text(resource(&t, queue), &["Type"]), "AWS::SQS::Queue");
}

// ---------------------------------------------------------------------------------------------
// Storage and permissions
// ---------------------------------------------------------------------------------------------

#[test]
fn bucket_is_encrypted_and_never_public() {
    // Given the bucket the stack creates
    let t = template();
    let (id, bucket) = resources_of_type(&t, "AWS::S3::Bucket")
        .pop()
        .expect("the stack can create a bucket");
    let props = at(bucket, &["Properties"]);
    // When its encryption and public access settings are read
    let rule = at(
        props,
        &["BucketEncryption", "ServerSideEncryptionConfiguration", "0"],
    );
    let algorithm = text(rule, &["ServerSideEncryptionByDefault", "SSEAlgorithm"]);
    let block = at(props, &["PublicAccessBlockConfiguration"]);
    // Then objects are encrypted at rest and all four public-access blocks are on
    assert!(
        ["AES256", "aws:kms", "aws:kms:dsse"].contains(&algorithm),
        "{id}: {algorithm}"
    );
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(at(block, &[flag]).as_bool(), Some(true), "{flag}");
    }
    let ownership = text(
        props,
        &["OwnershipControls", "Rules", "0", "ObjectOwnership"],
    );
    assert_eq!(ownership, "BucketOwnerEnforced");
}

#[test]
fn bucket_policy_refuses_requests_without_tls() {
    // Given the policy on the bucket the stack creates
    let t = template();
    let (_, policy) = resources_of_type(&t, "AWS::S3::BucketPolicy")
        .pop()
        .expect("a bucket policy");
    // When its statements are read
    let statements = statements_in(policy);
    // Then one denies every request that is not over TLS
    let denies_plain_http = statements.iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Deny")
            && s.get("Condition")
                .and_then(|c| c.get("Bool"))
                .and_then(|b| b.get("aws:SecureTransport"))
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or(v.as_bool().map(|b| b.to_string()))
                })
                .as_deref()
                == Some("false")
    });
    assert!(denies_plain_http, "no Deny on aws:SecureTransport = false");
}

#[test]
fn no_policy_grants_a_wildcard_action_or_resource() {
    // Given every IAM statement in the template (the function's Policies and all AWS::IAM::*
    // resources), and every Allow statement anywhere else
    let t = template();
    let mut checked: Vec<&Value> = Vec::new();
    for (id, r) in at(&t, &["Resources"])
        .as_mapping()
        .expect("Resources")
        .iter()
    {
        let kind = text(r, &["Type"]);
        let statements = statements_in(r);
        if kind.starts_with("AWS::IAM::") {
            checked.extend(statements);
        } else if kind == "AWS::Serverless::Function" {
            if let Some(policies) = r.get("Properties").and_then(|p| p.get("Policies")) {
                // Managed policies and SAM policy templates hide their statements from this
                // check, so only inline documents are accepted.
                let inline = |p: &Value| p.get("Statement").is_some();
                let all_inline = match policies {
                    Value::Sequence(list) => list.iter().all(inline),
                    single => inline(single),
                };
                assert!(
                    all_inline,
                    "{id:?}: Policies must be inline policy documents"
                );
                checked.extend(statements_in(policies));
            }
        } else {
            checked.extend(
                statements
                    .into_iter()
                    .filter(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow")),
            );
        }
    }
    assert!(
        checked.len() >= 5,
        "found only {} statements",
        checked.len()
    );
    // When their actions and resources are read (inside !Sub, !If, ... too)
    for statement in checked {
        let allow = statement.get("Effect").and_then(Value::as_str) == Some("Allow");
        // Then no action has a wildcard and no resource is a bare "*"
        assert!(
            statement.get("NotAction").is_none() || !allow,
            "{statement:?}"
        );
        assert!(
            statement.get("NotResource").is_none() || !allow,
            "{statement:?}"
        );
        let actions = strings_in(
            statement
                .get("Action")
                .expect("every statement names actions"),
        );
        assert!(!actions.is_empty());
        for action in actions {
            assert!(!action.contains('*'), "wildcard action {action:?}");
        }
        // and a resource's only wildcard is an object prefix's trailing "/*" (no "arn:...:*:*")
        if let Some(resources) = statement.get("Resource") {
            for resource in strings_in(resources) {
                let stars = resource.matches('*').count();
                assert!(
                    stars == 0 || (stars == 1 && resource.ends_with("/*") && resource.len() > 2),
                    "wildcard resource {resource:?} in {statement:?}"
                );
            }
        }
    }
}

#[test]
fn function_may_put_objects_only_under_its_two_prefixes() {
    // Given the function's role
    let t = template();
    let role = get_att_resource(at(properties(&t, FUNCTION), &["Role"]));
    let statements = statements_in(resource(&t, role));
    // When its S3 statements are read
    let s3: Vec<&Value> = statements
        .into_iter()
        .filter(|s| {
            strings_in(&s["Action"])
                .iter()
                .any(|a| a.starts_with("s3:"))
        })
        .collect();
    // Then the only S3 permission is PutObject on the data and quarantine prefixes
    assert_eq!(s3.len(), 1, "{s3:?}");
    assert_eq!(strings_in(&s3[0]["Action"]), vec!["s3:PutObject"]);
    let resources = s3[0]["Resource"].as_sequence().expect("a list of ARNs");
    let rendered: BTreeSet<String> = resources
        .iter()
        .map(|r| {
            render_sub(
                sub_text(r),
                &[
                    ("AWS::Partition", "aws"),
                    ("Bucket", "bucket"),
                    ("KeyPrefix", "data"),
                    ("QuarantinePrefix", "quarantine"),
                ],
            )
        })
        .collect();
    assert_eq!(
        rendered,
        BTreeSet::from([
            "arn:aws:s3:::bucket/data/*".to_owned(),
            "arn:aws:s3:::bucket/quarantine/*".to_owned()
        ])
    );
}

#[test]
fn every_other_permission_names_the_one_resource_it_needs() {
    // Given the statements of the function role's policies, by Sid
    let t = template();
    let role = get_att_resource(at(properties(&t, FUNCTION), &["Role"]));
    let role_policies = at(properties(&t, role), &["Policies"]);
    let statements = statements_in(role_policies);
    let by_sid = |sid: &str| -> &Value {
        statements
            .iter()
            .find(|s| s.get("Sid").and_then(Value::as_str) == Some(sid))
            .unwrap_or_else(|| panic!("no statement {sid}"))
    };
    let sids: BTreeSet<&str> = statements
        .iter()
        .map(|s| {
            s.get("Sid")
                .and_then(Value::as_str)
                .expect("every statement has a Sid")
        })
        .collect();
    assert_eq!(
        sids,
        BTreeSet::from([
            "WriteOwnLogs",
            "PutDataAndQuarantineObjects",
            "ReadFernetKey",
            "SendFailedInvocations",
            "DecryptFernetKey",
        ])
    );
    // Then logs go only to its own log group and failures only to its own queue
    let logs = by_sid("WriteOwnLogs");
    assert_eq!(get_att_resource(&logs["Resource"]), "LogEtlLogGroup");
    assert_eq!(
        strings_in(&logs["Action"]),
        vec!["logs:CreateLogStream", "logs:PutLogEvents"]
    );
    let queue = by_sid("SendFailedInvocations");
    assert_eq!(get_att_resource(&queue["Resource"]), "DeadLetterQueue");
    assert_eq!(strings_in(&queue["Action"]), vec!["sqs:SendMessage"]);
    // and the key is read from the one secret: the stack's, or the one named by parameter
    let secret = by_sid("ReadFernetKey");
    assert_eq!(
        strings_in(&secret["Action"]),
        vec!["secretsmanager:GetSecretValue"]
    );
    let (condition, created, existing) = if_branches(&secret["Resource"]);
    assert_eq!(
        (condition, ref_name(created), ref_name(existing)),
        ("CreateSecret", "FernetSecret", "ExistingSecretArn")
    );
    assert_eq!(
        resource(&t, "FernetSecret")["Type"].as_str(),
        Some("AWS::SecretsManager::Secret")
    );
    // and KMS decrypt exists only when a customer key is named, for that key, via Secrets Manager
    let listed = strings_in(role_policies);
    assert!(
        listed.contains(&"HasSecretKmsKey"),
        "KMS statement is not conditional"
    );
    let kms = by_sid("DecryptFernetKey");
    assert_eq!(strings_in(&kms["Action"]), vec!["kms:Decrypt"]);
    assert_eq!(ref_name(&kms["Resource"]), "SecretKmsKeyArn");
    assert!(
        sub_text(&kms["Condition"]["StringEquals"]["kms:ViaService"])
            .starts_with("secretsmanager."),
        "{kms:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Alarms
// ---------------------------------------------------------------------------------------------

#[test]
fn quarantined_records_raise_an_alarm_on_the_functions_own_metric() {
    // Given the alarms and the namespace the function emits its metrics in
    let t = template();
    let namespace = &function_environment(&t)[var::METRICS_NAMESPACE];
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
    let namespace = &function_environment(&t)[var::METRICS_NAMESPACE];
    let alarms: Vec<&Value> = resources_of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| &a["Properties"])
        .filter(|p| &p["Namespace"] == namespace)
        .collect();
    assert!(!alarms.is_empty());
    // When their metric names and dimensions are read
    let emitted: Vec<&str> = METRICS.iter().map(|(name, _)| *name).collect();
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

// ---------------------------------------------------------------------------------------------
// Athena: the table must read exactly the folders the code writes
// ---------------------------------------------------------------------------------------------

#[test]
fn projection_format_is_the_codes_for_each_style() {
    // Given the table's projection settings
    let t = template();
    for style in [PartitionStyle::Flat, PartitionStyle::Hive] {
        // When the format for a style is picked
        let (format, _) = projection_for(&t, style);
        // Then it is the one the code declares for that style
        assert_eq!(format, style.projection_format(), "{style}");
    }
    // And the IsHive condition is the PARTITION_STYLE parameter being "hive"
    let condition = at(&t, &["Conditions", "IsHive"]);
    let (tag, args) = tagged(condition).expect("!Equals");
    assert_eq!(tag, "Equals");
    assert_eq!(ref_name(&args[0]), "PartitionStyle");
    assert_eq!(
        args[1].as_str(),
        Some(PartitionStyle::Hive.to_string().as_str())
    );
    let env = function_environment(&t);
    assert_eq!(ref_name(&env[var::PARTITION_STYLE]), "PartitionStyle");
}

#[test]
fn projected_folder_is_the_folder_the_code_writes() {
    // Given an hour, and each style's projection format as the template declares it
    let t = template();
    let when = hour(2023, 3, 8, 5);
    for style in [PartitionStyle::Flat, PartitionStyle::Hive] {
        let (format, range) = projection_for(&t, style);
        // When Athena's projection formats the hour, and the code names the hour's folder
        let projected = java_format(format, when);
        let layout = KeyLayout::new("data", "quarantine", style).unwrap();
        let written = layout.data_hour_path(when);
        // Then they are the same folder under the data prefix
        assert_eq!(
            Some(projected.as_str()),
            written.strip_prefix("data/"),
            "{style}"
        );
        // And the range's start is written in that same format
        let (start, end) = range.split_once(',').expect("range is start,end");
        assert_eq!(start, java_format(format, hour(2023, 1, 1, 0)), "{style}");
        assert_eq!(end, "NOW");
    }
}

#[test]
fn location_template_is_the_data_prefix_then_the_hour() {
    // Given the table's storage location and location template
    let t = template();
    let table = at(properties(&t, "LogRecordsTable"), &["TableInput"]);
    let template_text = sub_text(at(table, &["Parameters", "storage.location.template"]));
    let location_text = sub_text(at(table, &["StorageDescriptor", "Location"]));
    let prefix = default_of(&t, "KeyPrefix").as_str().expect("text");
    // When both are rendered with the default prefix
    let vars = [("Bucket", "bucket"), ("KeyPrefix", prefix)];
    let template = render_sub(template_text, &vars);
    let location = render_sub(location_text, &vars);
    // Then the template is the data prefix followed by the projected hour folder
    assert_eq!(prefix, "data");
    assert!(template.ends_with("/data/${datehour}"), "{template}");
    assert_eq!(template, format!("{location}${{datehour}}"));
    assert_eq!(location, "s3://bucket/data/");
    // And projection is on, by the hour, over a single string partition key
    let parameters = at(table, &["Parameters"]);
    assert_eq!(text(parameters, &["projection.enabled"]), "true");
    assert_eq!(text(parameters, &["projection.datehour.type"]), "date");
    assert_eq!(text(parameters, &["projection.datehour.interval"]), "1");
    assert_eq!(
        text(parameters, &["projection.datehour.interval.unit"]),
        "HOURS"
    );
    let keys = at(table, &["PartitionKeys"]).as_sequence().expect("a list");
    assert_eq!(keys.len(), 1);
    assert_eq!(text(&keys[0], &["Name"]), "datehour");
    assert_eq!(text(&keys[0], &["Type"]), "string");
}

#[test]
fn restore_view_knows_every_method_code() {
    // Given the named query that creates the restore view
    let t = template();
    let query = sub_text(at(properties(&t, "RestoreViewQuery"), &["QueryString"]));
    // When compared with the code's method table
    // Then every code is mapped back to its name
    for (name, code) in METHOD_CODES {
        let arm = format!("WHEN '{code}' THEN '{name}'");
        assert!(query.contains(&arm), "the view lacks {arm}");
    }
}

// ---------------------------------------------------------------------------------------------
// The sample event
// ---------------------------------------------------------------------------------------------

#[test]
fn sample_event_is_an_eventbridge_scheduled_event() {
    // Given the checked-in sample event
    let text = std::fs::read_to_string(SCHEDULED_EVENT).expect("events/scheduled-event.json");
    // When it is parsed
    let event: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    // Then it is what EventBridge sends for a schedule
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["version"], "0");
    assert_eq!(event["account"], "123456789012");
    assert!(event["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(event["resources"].as_array().map(Vec::len), Some(1));
    assert_eq!(event["detail"], serde_json::json!({}));
}

//! Checks `template.yaml` (the SAM template) against the product contract and against the code,
//! a module per part: the function and its settings, the schedule and its failure handling (and
//! the sample event), storage and permissions, alarms, the dashboard, the Athena table, and the
//! compaction function. Here: reading the template (with `Globals` applied) and its intrinsics,
//! and the two functions with what differs between them.

mod alarms;
mod athena;
pub(crate) mod backfill;
mod compaction;
mod dashboard;
mod function;
mod iam;
mod schedule;
mod security;
pub(crate) mod stack;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{TimeZone, Utc};
use log_etl::batch::layout::{ObjectLayout, PartitionStyle};
use log_etl::config::var;
use log_etl::lambda::metrics::{DIMENSION, compaction_metric_names, pass_metric_names};
use log_etl::record::fields::METHOD_CODES;
use log_etl::record::hour::Hour;
use serde_norway::Value;
use stack::Stack;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
const SCHEDULED_EVENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/events/scheduled-event.json");
const ENV_JSON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/events/env.json");
/// The ingest function (scheduled passes).
const FUNCTION: &str = "LogEtlFunction";
/// The compaction function (closed hours), the same binary with `LOG_ETL_JOB=compact`.
const COMPACT_FUNCTION: &str = "LogEtlCompactFunction";

/// One of the two functions, and what differs between them, for the checks that hold for both.
struct Function {
    id: &'static str,
    /// Its schedule's expression parameter and that parameter's default.
    schedule: (&'static str, &'static str),
    /// When the default schedule fires: the first minute of the day, and the minutes between
    /// two runs (its period).
    fires: (u32, u32),
    /// Lambda's retries of a failed run.
    retries: u64,
    log_group: &'static str,
    /// The `Sid`s of its role's own statements (besides [`ROLE_SIDS`]).
    sids: &'static [&'static str],
    /// The prefixes it may list (`s3:prefix`), and the S3 actions it may take on objects, each
    /// with the object prefixes it may take them on.
    lists: &'static [&'static str],
    objects: &'static [(&'static str, &'static [&'static str])],
    /// The metric names it emits.
    metrics: fn() -> Vec<&'static str>,
}

impl Function {
    fn period_seconds(&self) -> u64 {
        u64::from(self.fires.1) * 60
    }
}

/// The statements both roles have: their own log group, the put that is not a create refused,
/// failures to the queue.
const ROLE_SIDS: [&str; 3] = [
    "WriteOwnLogs",
    "DenyPutWithoutIfNoneMatch",
    "SendFailedInvocations",
];

/// The ingest function and the compaction function.
const FUNCTIONS: [Function; 2] = [
    Function {
        id: FUNCTION,
        schedule: ("ScheduleExpression", "cron(0/3 * * * ? *)"),
        fires: (0, 3),
        retries: 1,
        log_group: "LogEtlLogGroup",
        sids: &[
            "ListDataAndQuarantineFolders",
            "ReadDataAndQuarantineObjects",
            "PutDataAndQuarantineObjects",
            "ReadFernetKey",
            "DecryptFernetKey",
        ],
        lists: &["data", "quarantine"],
        objects: &[
            ("s3:GetObject", &["data", "quarantine"]),
            ("s3:PutObject", &["data", "quarantine"]),
        ],
        metrics: pass_metric_names,
    },
    Function {
        id: COMPACT_FUNCTION,
        schedule: ("CompactionScheduleExpression", "cron(15 * * * ? *)"),
        fires: (15, 60),
        retries: 2,
        log_group: "LogEtlCompactLogGroup",
        sids: &["ListDataFolders", "CompactDataObjects"],
        lists: &["data"],
        objects: &[
            ("s3:GetObject", &["data"]),
            ("s3:PutObject", &["data"]),
            ("s3:DeleteObject", &["data"]),
        ],
        metrics: compaction_metric_names,
    },
];

/// The template as SAM hands it on: `Globals` merged into each serverless function (the
/// functions' effective properties) and removed.
fn template() -> Value {
    read(Path::new(TEMPLATE))
}

/// The template at `path`, with `Globals` applied (see [`template`]).
pub(crate) fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} is readable: {e}", path.display()));
    let written: Value = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is valid YAML: {e}", path.display()));
    with_globals_applied(written)
}

/// `template` with `Globals.Function` merged into the properties of every
/// `AWS::Serverless::Function`, by SAM's rules (samtranslator's `plugins/globals`): maps merge
/// key by key, the function's scalar (or intrinsic) wins, lists are the global items then the
/// function's, except `Architectures`, which the function's replaces.
fn with_globals_applied(mut template: Value) -> Value {
    fn merge(global: &Value, local: &Value, path: &str) -> Value {
        match (global, local) {
            (Value::Mapping(g), Value::Mapping(l)) => {
                let mut merged = g.clone();
                for (key, value) in l {
                    let child = format!("{path}.{}", key.as_str().unwrap_or_default());
                    let value = match g.get(key) {
                        Some(global) => merge(global, value, &child),
                        None => value.clone(),
                    };
                    merged.insert(key.clone(), value);
                }
                Value::Mapping(merged)
            }
            (Value::Sequence(_), Value::Sequence(_)) if path == ".Architectures" => local.clone(),
            (Value::Sequence(g), Value::Sequence(l)) => {
                Value::Sequence(g.iter().chain(l).cloned().collect())
            }
            _ => local.clone(),
        }
    }
    let globals = template
        .as_mapping_mut()
        .expect("the template is a mapping")
        .remove("Globals");
    let Some(global) = globals.as_ref().and_then(|g| g.get("Function")) else {
        return template;
    };
    let resources = template
        .get_mut("Resources")
        .and_then(Value::as_mapping_mut)
        .expect("Resources is a mapping");
    for (_, resource) in resources.iter_mut() {
        if resource.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function") {
            let local = resource
                .get("Properties")
                .cloned()
                .unwrap_or_else(|| Value::Mapping(serde_norway::Mapping::new()));
            resource["Properties"] = merge(global, &local, "");
        }
    }
    template
}

/// The value at `path` (mapping keys, or sequence indexes written as numbers).
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
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

pub(crate) fn properties<'a>(t: &'a Value, id: &str) -> &'a Value {
    at(resource(t, id), &["Properties"])
}

pub(crate) fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    at(t, &["Resources"])
        .as_mapping()
        .expect("Resources is a mapping")
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
        .map(|(id, r)| (id.as_str().expect("logical ids are text"), r))
        .collect()
}

/// `(logical id, definition)` of the template's one resource of type `kind`; fails naming
/// `what` unless there is exactly one.
pub(crate) fn resource_of_type<'a>(t: &'a Value, kind: &str, what: &str) -> (&'a str, &'a Value) {
    let mut found = resources_of_type(t, kind);
    assert_eq!(found.len(), 1, "{what}: {found:?}");
    found.remove(0)
}

/// `(tag without '!', operand)` of a short-form intrinsic such as `!Ref X` or `!If [...]`.
pub(crate) fn tagged(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_owned(),
            &t.value,
        )),
        _ => None,
    }
}

/// The name in `!Ref name`.
pub(crate) fn ref_name(value: &Value) -> &str {
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

/// Renders a `!Sub` template string the way CloudFormation does, with the values in `vars`.
fn render_sub(template: &str, vars: &[(&str, &str)]) -> String {
    stack::substitute(template, |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no value given for ${{{name}}}"))
            .1
            .to_owned()
    })
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

/// The environment of the ingest function.
fn function_environment(t: &Value) -> &serde_norway::Mapping {
    environment_of(t, FUNCTION)
}

/// The environment variables of the function `id`.
fn environment_of<'a>(t: &'a Value, id: &str) -> &'a serde_norway::Mapping {
    at(properties(t, id), &["Environment", "Variables"])
        .as_mapping()
        .expect("Environment.Variables is a mapping")
}

/// The variable names set on the function `id`.
fn variable_names<'a>(t: &'a Value, id: &str) -> BTreeSet<&'a str> {
    environment_of(t, id)
        .keys()
        .map(|k| k.as_str().expect("names are text"))
        .collect()
}

/// The one EventBridge Scheduler event of the function `id`.
fn schedule_event_of<'a>(t: &'a Value, id: &str) -> &'a Value {
    let events = at(properties(t, id), &["Events"])
        .as_mapping()
        .expect("Events");
    let schedules: Vec<&Value> = events
        .values()
        .filter(|e| e.get("Type").and_then(Value::as_str) == Some("ScheduleV2"))
        .collect();
    assert_eq!(schedules.len(), 1, "exactly one ScheduleV2 event on {id}");
    schedules[0]
}

/// The statements of the policies of the role of the function `id` (what it may do, not who
/// may assume it), with the role's logical id.
fn role_statements<'a>(t: &'a Value, id: &str) -> (&'a str, Vec<&'a Value>) {
    let role = get_att_resource(at(properties(t, id), &["Role"]));
    assert_eq!(text(resource(t, role), &["Type"]), "AWS::IAM::Role");
    (role, statements_in(at(properties(t, role), &["Policies"])))
}

/// The statement with this `Sid`.
fn by_sid<'a>(statements: &[&'a Value], sid: &str) -> &'a Value {
    statements
        .iter()
        .find(|s| s.get("Sid").and_then(Value::as_str) == Some(sid))
        .unwrap_or_else(|| panic!("no statement {sid}"))
}

/// The `Sid`s of `statements` (each must have one).
fn sids<'a>(statements: &[&'a Value]) -> BTreeSet<&'a str> {
    statements
        .iter()
        .map(|s| {
            s.get("Sid")
                .and_then(Value::as_str)
                .expect("every statement has a Sid")
        })
        .collect()
}

/// The S3 actions a statement allows.
fn s3_actions(statement: &Value) -> BTreeSet<&str> {
    strings_in(&statement["Action"])
        .into_iter()
        .filter(|a| a.starts_with("s3:"))
        .collect()
}

/// The strings `value` evaluates to (one, or a list) in a stack writing to the existing bucket
/// `bucket`, with the default prefixes `data` and `quarantine`. A stack that creates its bucket
/// must name it in the same places: every bucket named is the stack's.
fn rendered_s3(t: &Value, value: &Value) -> BTreeSet<String> {
    let strings = |stack: &Stack| -> BTreeSet<String> {
        match stack.eval(value) {
            Some(serde_json::Value::String(s)) => BTreeSet::from([s]),
            Some(serde_json::Value::Array(items)) => items
                .into_iter()
                .map(|i| i.as_str().expect("text").to_owned())
                .collect(),
            other => panic!("{value:?} evaluates to {other:?}"),
        }
    };
    let given = strings(&existing_bucket_stack(t));
    let created: BTreeSet<String> = strings(&Stack::new(t, &[]))
        .into_iter()
        .map(|s| s.replace(CREATED_BUCKET, "bucket"))
        .collect();
    assert_eq!(created, given, "{value:?}");
    given
}

/// How a stack names the bucket it creates (`!Ref DataBucket`).
const CREATED_BUCKET: &str = "<DataBucket>";

/// A stack with the template's defaults that writes to the existing bucket `bucket`.
fn existing_bucket_stack(t: &Value) -> Stack<'_> {
    Stack::new(t, &[("ExistingBucketName", "bucket")])
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

//! The backfill end to end: the state machine of template.yaml run by moto's Step Functions
//! interpreter (its control flow: moto runs no Lambda without Docker), the backfill function's
//! binary answering the exact events a Distributed Map sends, and overlapping saved responses
//! landed by `log-etl backfill` and by the function, each record once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use log_etl::batch::layout::{ObjectLayout, PartitionStyle};
use serde_json::{Map, Value, json};

use crate::common::runtime_api::RuntimeApi;
use crate::common::world::{restore_data, sorted_json};
use crate::common::{self, Moto, log_etl};
use crate::template::backfill::deployed_definition;

const BUCKET: &str = "backfill-bucket";
/// Saved responses sharing their first records: the same seed and start, different counts.
const COUNTS: [u32; 3] = [40, 70, 100];
const START: &str = "2024-05-01T22:59:50Z";

/// Keys of the overlapping saved responses (one gzip'd, as a saved response may be).
fn saved_keys() -> Vec<String> {
    vec![
        "saved/2024-05-01/a.json".to_owned(),
        "saved/2024-05-01/b.json.gz".to_owned(),
        "saved/2024-05-01/c.json".to_owned(),
    ]
}

/// A key, three saved responses of [`COUNTS`] records (bytes as stored under [`saved_keys`]),
/// and the ground truth: the records of the largest, which holds the others'.
struct Saved {
    _dir: tempfile::TempDir,
    key: String,
    bodies: Vec<Vec<u8>>,
    truth: Vec<Map<String, Value>>,
}

fn saved_responses() -> Saved {
    let dir = tempfile::tempdir().unwrap();
    let out = log_etl(&["keygen"], &[]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut bodies = Vec::new();
    let mut truth = Vec::new();
    for (i, count) in COUNTS.iter().enumerate() {
        let (response, truth_path) = (dir.path().join(format!("{i}.json")), dir.path().join("t"));
        let args = [
            "generate",
            "--records",
            &count.to_string(),
            "--start",
            START,
            "--out",
            response.to_str().unwrap(),
            "--truth",
            truth_path.to_str().unwrap(),
        ];
        let out = log_etl(&args, &[("FERNET_KEY", &key)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body = fs::read(&response).unwrap();
        bodies.push(if saved_keys()[i].ends_with(".gz") {
            gzip(&body)
        } else {
            body
        });
        truth = fs::read_to_string(&truth_path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    }
    Saved {
        _dir: dir,
        key,
        bodies,
        truth,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Every file under `root` as (key relative to root, bytes), in key order.
fn folder_objects(root: &Path) -> Vec<(String, Vec<u8>)> {
    crate::common::folder::files_under(root)
        .into_iter()
        .map(|key| {
            let bytes = fs::read(root.join(&key)).unwrap();
            (key, bytes)
        })
        .collect()
}

fn parse_summary(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)))
}

#[test]
fn log_etl_backfill_lands_overlapping_saved_responses_in_a_folder_each_record_once() {
    // Given three overlapping saved responses (one gzip'd) under saved/ of a folder
    let saved = saved_responses();
    let root = tempfile::tempdir().unwrap();
    for (key, body) in saved_keys().iter().zip(&saved.bodies) {
        let path: PathBuf = root.path().join(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
    // When `log-etl backfill` lands the prefix, and again (a rerun)
    let args = [
        "backfill",
        "--dir",
        root.path().to_str().unwrap(),
        "--prefix",
        "saved/",
    ];
    let env = [("FERNET_KEY", saved.key.as_str())];
    let first = log_etl(&args, &env);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = log_etl(&args, &env);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Then the data holds the ground truth, every record once
    let landed = restore_data(&folder_objects(root.path()));
    assert_eq!(sorted_json(&landed), sorted_json(&saved.truth));
    // And the first run's summary counts them: every record read, the largest response's
    // landed, the overlap found present, the two hours touched named
    let summary = parse_summary(&first.stdout);
    let read: u32 = COUNTS.iter().sum();
    assert_eq!(summary["responses"], 3);
    assert_eq!(summary["records_in"], read);
    assert_eq!(summary["records_landed"], COUNTS[2]);
    assert_eq!(summary["records_already_present"], read - COUNTS[2]);
    assert_eq!(summary["records_quarantined"], 0);
    assert_eq!(summary["hours"], json!(["2024-05-01T22", "2024-05-01T23"]));
    // And the rerun lands nothing
    let summary = parse_summary(&again.stdout);
    assert_eq!(summary["records_landed"], 0);
    assert_eq!(summary["records_already_present"], read);
}

#[test]
fn log_etl_backfill_refuses_an_empty_prefix() {
    // Given a folder, When a backfill names no prefix
    let root = tempfile::tempdir().unwrap();
    let out = log_etl(
        &[
            "backfill",
            "--dir",
            root.path().to_str().unwrap(),
            "--prefix",
            "",
        ],
        &[("FERNET_KEY", "unused")],
    );
    // Then it is a usage error, naming the option
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prefix"));
}

/// The bucket in moto with the saved responses under saved/.
async fn bucket_with(moto: &Moto, saved: &Saved) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&common::sdk_config(&moto.endpoint()).await)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    for (key, body) in saved_keys().iter().zip(&saved.bodies) {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
    }
    s3
}

/// Every object of the bucket: key and bytes, in key order.
async fn bucket_objects(s3: &aws_sdk_s3::Client) -> Vec<(String, Vec<u8>)> {
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    let mut out = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let got = s3
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap();
        out.push((key, got.body.collect().await.unwrap().into_bytes().to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn log_etl_backfill_lands_overlapping_saved_responses_in_a_bucket_each_record_once() {
    // Given the three saved responses under saved/ of a bucket
    let saved = saved_responses();
    let moto = Moto::start();
    let s3 = bucket_with(&moto, &saved).await;
    // When `log-etl backfill --bucket` lands the prefix
    let mut env: Vec<(&str, String)> = common::aws_env(&moto.endpoint());
    env.push(("FERNET_KEY", saved.key.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = common::log_etl_async(
        &["backfill", "--bucket", BUCKET, "--prefix", "saved/"],
        &env,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Then the bucket's data holds the ground truth, every record once
    let landed = restore_data(&bucket_objects(&s3).await);
    assert_eq!(sorted_json(&landed), sorted_json(&saved.truth));
    assert_eq!(parse_summary(&out.stdout)["records_landed"], COUNTS[2]);
}

/// The backfill function's binary serving one event against moto.
struct Function {
    child: Child,
}

impl Function {
    fn start(runtime: std::net::SocketAddr, moto: &Moto, key: &str, job: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_log-etl-lambda"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "log-etl-backfill-test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("LOG_ETL_JOB", job)
            .env("BUCKET_NAME", BUCKET)
            .env("FERNET_KEY", key)
            .envs(common::aws_env(&moto.endpoint()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("log-etl-lambda starts");
        Self { child }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the backfill function answers to `event` (bounded: 60 s): `"response"` or `"error"`,
/// and the body.
async fn invoke(moto: &Moto, key: &str, event: &Value) -> (String, Value) {
    invoke_job(moto, key, "backfill", event).await
}

/// What the function of `job` answers to `event` (bounded: 60 s).
async fn invoke_job(moto: &Moto, key: &str, job: &str, event: &Value) -> (String, Value) {
    let runtime = RuntimeApi::start(&event.to_string(), Duration::from_secs(120)).await;
    let _function = Function::start(runtime.addr, moto, key, job);
    let answer = runtime
        .first_answer(Duration::from_secs(60))
        .await
        .expect("the function answers within 60 s");
    (answer.kind, answer.body)
}

/// The item a Distributed Map's S3 listing reader sends for `key`, with the bucket the
/// definition's ItemSelector adds.
fn item(key: &str, size: usize) -> Value {
    json!({"Bucket": BUCKET, "Key": key, "Size": size, "ETag": "\"5d41402abc4b2a76b9719d911017c592\"",
        "LastModified": "2024-05-02T08:15:00.000Z"})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backfill_function_lands_distributed_map_items_and_batches_each_record_once() {
    // Given the three saved responses in a bucket
    let saved = saved_responses();
    let moto = Moto::start();
    let s3 = bucket_with(&moto, &saved).await;
    let keys = saved_keys();
    let sizes: Vec<usize> = saved.bodies.iter().map(Vec::len).collect();
    // When the function gets the item of the middle (gzip'd) response, as sent without ItemBatcher
    let (kind, one) = invoke(&moto, &saved.key, &item(&keys[1], sizes[1])).await;
    // Then it lands that response and names the hours it touched
    assert_eq!(kind, "response", "{one}");
    assert_eq!(one["responses"], 1);
    assert_eq!(one["records_landed"], COUNTS[1]);
    assert_eq!(one["hours"], json!(["2024-05-01T22", "2024-05-01T23"]));
    // When it gets the other two as one batch, as ItemBatcher sends them
    let batch = json!({
        "Items": [item(&keys[0], sizes[0]), item(&keys[2], sizes[2])],
        "BatchInput": {"Bucket": BUCKET},
    });
    let (kind, both) = invoke(&moto, &saved.key, &batch).await;
    // Then only the records not landed yet are written
    assert_eq!(kind, "response", "{both}");
    assert_eq!(both["responses"], 2);
    assert_eq!(both["records_landed"], COUNTS[2] - COUNTS[1]);
    assert_eq!(both["records_already_present"], COUNTS[0] + COUNTS[1]);
    // And the bucket's data is the ground truth, every record once
    let landed = restore_data(&bucket_objects(&s3).await);
    assert_eq!(sorted_json(&landed), sorted_json(&saved.truth));
    // When the compaction function gets the hours touched (some of them in several objects), as
    // the state machine sends them
    let touched: Vec<String> = serde_json::from_value(one["hours"].clone()).unwrap();
    let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
    let folder_of = |hour: &String| format!("{}/", layout.data_hour_path(hour.parse().unwrap()));
    let objects_in = |objects: &[(String, Vec<u8>)], hour: &String| {
        let folder = folder_of(hour);
        objects
            .iter()
            .filter(|(k, _)| k.starts_with(&folder))
            .count()
    };
    let before = bucket_objects(&s3).await;
    assert!(touched.iter().any(|h| objects_in(&before, h) > 1));
    for hour in &touched {
        let (kind, compacted) =
            invoke_job(&moto, &saved.key, "compact", &json!({ "hours": hour })).await;
        assert_eq!(kind, "response", "{compacted}");
        // Then it looks at that hour only
        let hours: Vec<String> = serde_json::from_value(compacted["hours"].clone()).unwrap();
        assert!(hours.iter().all(|h| h == hour), "{compacted}");
    }
    // And every hour touched is one object, with every record once
    let objects = bucket_objects(&s3).await;
    for hour in &touched {
        assert_eq!(objects_in(&objects, hour), 1, "{}", folder_of(hour));
    }
    assert_eq!(
        sorted_json(&restore_data(&objects)),
        sorted_json(&saved.truth)
    );
    // When an item names another bucket
    let other = json!({"Bucket": "elsewhere", "Key": keys[0]});
    let (kind, error) = invoke(&moto, &saved.key, &other).await;
    // Then the function refuses it, typed
    assert_eq!(kind, "error");
    assert_eq!(error["errorType"], "BackfillEventError", "{error}");
}

/// What moto's interpreter reports for the deployed definition of a stack with `overrides`
/// run over two saved responses, the Lambda ARNs made ARNs moto can parse.
fn run_in_moto(overrides: &[(&str, &str)]) -> Value {
    let mut definition = deployed_definition(overrides).to_string();
    for (id, name) in [
        ("LogEtlBackfillFunction", "log-etl-backfill"),
        ("LogEtlCompactFunction", "log-etl-compact"),
    ] {
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
        definition = definition.replace(&format!("<{id}.Arn>"), &arn);
    }
    let moto = Moto::start();
    let input = json!({
        "definition": serde_json::from_str::<Value>(&definition).unwrap(),
        "bucket": BUCKET,
        "prefix": "saved/",
        "keys": ["saved/a.json", "saved/b.json.gz"],
        "timeout_s": 60,
    });
    let out = common::run_python(
        "backfill_state_machine.py",
        &[&moto.endpoint()],
        input.to_string().as_bytes(),
    );
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

#[test]
fn moto_runs_the_templates_state_machine_through_its_distributed_map_over_the_listing() {
    // Given the template's state machine (one saved response per call, the form moto's
    // interpreter accepts), one attempt per item, no failure tolerated
    let report = run_in_moto(&[("BackfillMaxAttempts", "1")]);
    // When moto runs it over the two saved responses it lists under saved/
    // Then the execution reads the settings, enters the distributed map and runs a map run
    // over the listing to its end
    let strings = |name: &str| -> Vec<String> {
        report[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} in {report}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        strings("entered"),
        ["Settings", "LandSavedResponses"],
        "{report}"
    );
    let types = strings("types");
    let run = ["MapStateStarted", "MapRunStarted", "MapRunSucceeded"];
    let at = types
        .iter()
        .position(|t| t == run[0])
        .expect("the map starts");
    assert_eq!(&types[at..at + 3], run, "{report}");
    // And, each item's output being null (moto runs no Lambda without Docker, so no item
    // returns its hours), the map's selection of the hours touched fails the execution
    // before any compaction: moto reports a States.Runtime failure of the map state
    assert_eq!(report["status"], "FAILED", "{report}");
    assert_eq!(report["error"], "States.Runtime", "{report}");
    let cause = report["cause"].as_str().unwrap();
    assert!(
        cause.contains("'LandSavedResponses'") && cause.contains("$[*].hours[*]"),
        "{cause}"
    );
    assert!(
        cause.contains("'[null, null]'"),
        "two items were run: {cause}"
    );
    assert_eq!(types.last().map(String::as_str), Some("ExecutionFailed"));
}

//! The unit of failure is the element: a response made by Python as a misbehaving source serves
//! it (NaN and Infinity from `json.dumps`, a raw control character, invalid UTF-8 in `data` and in
//! another field) lands every good record, and quarantines each broken element once, as
//! received, through `process`, `run` and the Lambda binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::common::folder::{files_under, process_args};
use crate::common::raw_http::{self, RecordingServer};
use crate::common::runtime_api::{RuntimeApi, function_env};
use crate::common::world::bucket_objects;
use crate::common::{self, Moto};
use log_etl::record::fernet::generate_key;

/// A response made by `tests/py/hostile_response.py`: its bytes, the good records' payloads,
/// and the bytes of each broken element.
struct Hostile {
    key: String,
    body: Vec<u8>,
    truth: Vec<String>,
    broken: Vec<Vec<u8>>,
    dir: tempfile::TempDir,
}

fn hostile() -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let key = generate_key();
    let (out, truth) = (dir.path().join("response.json"), dir.path().join("truth"));
    let printed = common::run_python(
        "hostile_response.py",
        &[&key, out.to_str().unwrap(), truth.to_str().unwrap()],
        b"",
    );
    let broken: Vec<String> = serde_json::from_slice(&printed).unwrap();
    let truth = std::fs::read_to_string(&truth).unwrap();
    Hostile {
        key,
        body: std::fs::read(&out).unwrap(),
        truth: sorted(truth.lines().map(|l| serde_json::from_str(l).unwrap())),
        broken: broken
            .iter()
            .map(|s| s.chars().map(|c| c as u8).collect())
            .collect(),
        dir,
    }
}

/// A source serving the response, every time it is asked.
async fn serve(hostile: &Hostile) -> RecordingServer {
    let body = hostile.body.clone();
    RecordingServer::start(move |_| raw_http::json(&body)).await
}

fn sorted(records: impl Iterator<Item = Map<String, Value>>) -> Vec<String> {
    let mut lines: Vec<String> = records
        .map(|r| serde_json::to_string(&r).unwrap())
        .collect();
    lines.sort();
    lines
}

/// The bytes a quarantine line of an element that is not JSON holds, as received.
fn element_bytes(line: &Map<String, Value>) -> Option<Vec<u8>> {
    let element = line.get("element")?;
    match (element.get("text"), element.get("base64")) {
        (Some(Value::String(text)), None) => Some(text.as_bytes().to_vec()),
        (None, Some(Value::String(b64))) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        ),
        other => panic!("an element is text or base64: {other:?}"),
    }
}

/// Checks what landed from `objects` (key, gzip'd body): every good record once, and each
/// broken element once in quarantine, as received, refused at the shape stage.
fn assert_landed(hostile: &Hostile, objects: &[(String, Vec<u8>)]) {
    let mut records = Vec::new();
    let mut quarantined: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for (key, body) in objects {
        for line in common::gunzip_lines(body) {
            if key.starts_with("quarantine/") {
                let bytes = element_bytes(&line).expect("only broken elements are quarantined");
                assert_eq!(line["stage"], "shape");
                let reason = line["reason"].as_str().unwrap();
                assert!(
                    reason.starts_with("element is not valid JSON ("),
                    "{reason}"
                );
                *quarantined.entry(bytes).or_default() += 1;
            } else {
                let mut record = line;
                log_etl::record::fields::restore(&mut record);
                records.push(record);
            }
        }
    }
    assert_eq!(sorted(records.into_iter()), hostile.truth);
    let expected: BTreeMap<Vec<u8>, u32> = hostile.broken.iter().map(|b| (b.clone(), 1)).collect();
    assert_eq!(quarantined, expected);
}

/// The objects in the folder `root` (key and bytes), as the folder store lists them: the files
/// under its data and quarantine prefixes, hidden ones left out.
fn folder_objects(root: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(root)
        .into_iter()
        .filter(|key| key.starts_with("data/") || key.starts_with("quarantine/"))
        .filter(|key| !key.split('/').any(|part| part.starts_with('.')))
        .map(|key| {
            let bytes = std::fs::read(root.join(&key)).unwrap();
            (key, bytes)
        })
        .collect()
}

fn summary(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(stdout));
    })
}

#[test]
fn a_saved_response_with_broken_elements_lands_the_rest_and_quarantines_them_once() {
    // Given a response Python made with five broken elements among twenty good ones
    let hostile = hostile();
    let (input, out) = (
        hostile.dir.path().join("response.json"),
        hostile.dir.path().join("out"),
    );
    let args = process_args(&input, &out);
    // When it is processed, twice
    let first = common::log_etl(&args, &[("FERNET_KEY", &hostile.key)]);
    let second = common::log_etl(&args, &[("FERNET_KEY", &hostile.key)]);
    // Then both runs succeed; the first lands the twenty and quarantines the five, the second
    // finds all of them already there
    for run in [&first, &second] {
        common::assert_success(run);
    }
    let (first, second) = (summary(&first.stdout), summary(&second.stdout));
    assert_eq!(
        (
            first["records_landed"].as_u64(),
            first["records_quarantined"].as_u64()
        ),
        (Some(20), Some(5))
    );
    assert_eq!(second["records_landed"], 0);
    assert_eq!(second["quarantined_already_present"], 5);
    assert_landed(&hostile, &folder_objects(&out));
}

#[tokio::test]
async fn a_scheduled_pass_over_broken_elements_lands_the_rest_and_quarantines_them_once() {
    // Given a source serving that response
    let hostile = hostile();
    let source = serve(&hostile).await;
    let out = hostile.dir.path().join("out");
    let url = format!("{}/api/data/log", source.origin());
    // When two passes run into a folder
    for pass in 0..2 {
        let run = common::log_etl_async(
            &["run", "--out-dir", out.to_str().unwrap()],
            &[("LOG_API_URL", &url), ("FERNET_KEY", &hostile.key)],
        )
        .await;
        assert!(
            run.status.success(),
            "pass {pass}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    // Then every good record landed once and each broken element is in quarantine once
    assert_landed(&hostile, &folder_objects(&out));
}

#[tokio::test]
async fn the_lambda_binary_lands_the_rest_of_a_batch_with_broken_elements() {
    // Given a source serving that response, and a bucket
    let hostile = hostile();
    let source = serve(&hostile).await;
    let moto = Moto::start();
    let sdk = common::sdk_config(&moto.endpoint()).await;
    let s3 = log_etl::store::s3::client(&sdk);
    s3.create_bucket().bucket("logs").send().await.unwrap();
    // When the function takes one scheduled event
    let runtime = RuntimeApi::start("{}", Duration::from_secs(60)).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut function = Command::new(env!("CARGO_BIN_EXE_log-etl-lambda"))
        .env_clear()
        .envs(function_env(runtime.addr))
        .env("LOG_API_URL", format!("{}/api/data/log", source.origin()))
        .env("BUCKET_NAME", "logs")
        .env("FERNET_KEY", &hostile.key)
        .envs(common::aws_env(&moto.endpoint()))
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("log-etl-lambda starts");
    let answer = runtime.first_answer(Duration::from_secs(60)).await;
    let _ = function.kill();
    let _ = function.wait();
    // Then the pass succeeds, and the bucket holds the good records and the broken elements
    let logged = std::fs::read_to_string(log.path()).unwrap();
    let answer = answer.unwrap_or_else(|| panic!("no answer from the function:\n{logged}"));
    assert_eq!(answer.kind, "response", "{:?}", answer.body);
    assert_eq!(answer.body["records_landed"], 20);
    assert_eq!(answer.body["records_quarantined"], 5);
    let objects = bucket_objects(&s3, "logs").await;
    assert_landed(&hostile, &objects);
}

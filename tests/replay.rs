//! Replay of quarantine: a pass with a wrong key (every record quarantined) replayed with the
//! right one, and records dated before the window replayed once it is widened, through the
//! library on moto, the command on a folder and the Lambda binary's replay job. Each ends with
//! the store holding every record once, and a second replay landing nothing.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::runtime_api::RuntimeApi;
use common::world::{self, BUCKET, World, restore_data, sorted_json, world, world_with};
use common::{log_etl, restore_path};
use log_etl::local::simulator::SimulatorOptions;
use log_etl::local::synth::SynthOptions;
use log_etl::record::fernet::generate_key;
use log_etl::record::hour::Hour;
use serde_json::{Map, Value};

/// The quarantine objects of the bucket: key and number of lines.
async fn quarantine_of(world: &World) -> Vec<(String, usize)> {
    world
        .objects(BUCKET)
        .await
        .into_iter()
        .filter(|(key, _)| key.starts_with("quarantine/"))
        .map(|(key, body)| (key, common::gunzip_lines(&body).len()))
        .collect()
}

/// Every record served is in the bucket exactly once.
async fn assert_bucket_holds_each_once(world: &World, served: &[Map<String, Value>]) {
    let restored = restore_data(&world.objects(BUCKET).await);
    assert_eq!(restored.len(), served.len(), "records in the bucket");
    assert_eq!(sorted_json(&restored), sorted_json(served));
}

#[tokio::test]
async fn a_pass_with_a_wrong_key_replayed_with_the_right_one_lands_every_record_once() {
    // Given two batches (some records undecryptable under any key) passed with a wrong key
    let world = world(SynthOptions {
        bad_per_mille: 50,
        ..SynthOptions::default()
    })
    .await;
    let wrong = world.pipeline(&[("FERNET_KEY", &generate_key())]).await;
    for step in 0..2 {
        if step > 0 {
            world.sim.next_batch();
        }
        let pass = wrong
            .run_pass(Utc::now(), Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(pass.written.records_landed, 0, "{pass:?}");
        assert_eq!(pass.written.records_quarantined, 100, "{pass:?}");
    }
    let quarantined = quarantine_of(&world).await;
    // When the quarantine is replayed with the right key (the secret's)
    let right = world.pipeline(&[]).await;
    let first = right.replay(None, Utc::now(), None).await.unwrap();
    // Then every decryptable record lands once, and the bucket is the ground truth
    let truth = world.sim.ground_truth();
    let good = truth.records.len() as u64;
    assert!(truth.undecryptable > 0);
    assert_eq!(first.records_replayed, 200, "{first:?}");
    assert_eq!(first.records_landed, good, "{first:?}");
    assert_bucket_holds_each_once(&world, &truth.records).await;
    // and the undecryptable ones stay where they are, refused for the reason they had
    assert_eq!(first.records_still_refused, truth.undecryptable);
    assert_eq!(
        first.still_refused_reasons.values().sum::<u64>(),
        truth.undecryptable
    );
    assert_eq!(first.reasons_updated + first.reasons_already_present, 0);
    assert_eq!(quarantine_of(&world).await, quarantined);
    // When it is replayed again
    let second = right.replay(None, Utc::now(), None).await.unwrap();
    // Then nothing new lands: what landed is already present
    assert_eq!(second.records_landed, 0, "{second:?}");
    assert_eq!(second.records_already_present, good);
    assert_eq!(second.objects_written, 0);
    assert_bucket_holds_each_once(&world, &truth.records).await;
    assert_eq!(quarantine_of(&world).await, quarantined);
}

/// `log-etl replay --dir` with `env`; its JSON summary.
fn replay_folder(dir: &Path, key_file: &Path, env: &[(&str, &str)]) -> Value {
    let out = log_etl(
        &[
            "replay",
            "--dir",
            dir.to_str().unwrap(),
            "--key-file",
            key_file.to_str().unwrap(),
        ],
        env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn records_dated_before_the_window_land_from_a_folder_once_the_window_is_widened() {
    // Given 20 records from 1999 processed into a folder with a wrong key (all quarantined)
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (key, wrong) = (path("key"), path("wrong"));
    fs::write(&key, generate_key()).unwrap();
    fs::write(&wrong, generate_key()).unwrap();
    let out = path("out");
    let key_arg = key.to_str().unwrap().to_owned();
    let (response, truth) = common::generate_response(
        |args: &[&str]| log_etl(args, &[]),
        dir.path(),
        "response",
        20,
        "1999-06-01T10:00:00.000Z",
        &["--key-file", &key_arg],
    );
    let truth: Vec<Map<String, Value>> = truth
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut args = common::folder::process_args(&response, &out).to_vec();
    args.extend(["--key-file", wrong.to_str().unwrap()]);
    let process = log_etl(&args, &[]);
    // (no record verifies under the wrong key: the command says so with its own exit status,
    // after printing its summary)
    assert_eq!(process.status.code(), Some(3));
    let processed: Value = serde_json::from_slice(&process.stdout).unwrap();
    assert_eq!(processed["records_quarantined"], 20, "{processed}");
    // When it is replayed with the right key, the window as it was
    let keyed = replay_folder(&out, &key, &[]);
    // Then each is still refused, now for its date; its new reason goes to this run's
    // quarantine unless the record is already there (a replay in the hour of the pass)
    assert_eq!(keyed["records_replayed"], 20, "{keyed}");
    assert_eq!(keyed["records_still_refused"], 20, "{keyed}");
    assert_eq!(keyed["records_landed"], 0);
    let reasons = keyed["still_refused_reasons"].as_object().unwrap();
    assert_eq!(reasons.len(), 1, "{keyed}");
    assert!(reasons.keys().all(|r| r.starts_with("place: ")), "{keyed}");
    let updated = &keyed["reasons_updated"].as_u64().unwrap();
    assert_eq!(
        updated + keyed["reasons_already_present"].as_u64().unwrap(),
        20
    );
    // and again: nothing new is written
    let again = replay_folder(&out, &key, &[]);
    assert_eq!(again["records_still_refused"], 20, "{again}");
    assert_eq!(again["objects_written"], 0, "{again}");
    // When the window is widened to 1990 and the quarantine replayed
    let widened = replay_folder(&out, &key, &[("EARLIEST_YEAR", "1990")]);
    // Then every record lands, once, under its 1999 hour
    assert_eq!(widened["records_landed"], 20, "{widened}");
    assert_eq!(widened["records_still_refused"], 0, "{widened}");
    assert_eq!(sorted_json(&restore_path(&out)), sorted_json(&truth));
    assert!(out.join("data/1999/06/01/10").is_dir());
    // and a second replay lands nothing, the records already present
    let last = replay_folder(&out, &key, &[("EARLIEST_YEAR", "1990")]);
    assert_eq!(last["records_landed"], 0, "{last}");
    assert_eq!(last["records_already_present"], 20, "{last}");
    assert_eq!(last["objects_written"], 0, "{last}");
    assert_eq!(restore_path(&out).len(), 20);
}

#[tokio::test]
async fn the_replay_job_of_the_lambda_binary_lands_records_once_the_window_is_widened() {
    // Given a batch from 1999 passed into the bucket (every record quarantined for its date)
    let world = world_with(SimulatorOptions {
        record_start: Utc.with_ymd_and_hms(1999, 6, 1, 10, 0, 0).unwrap(),
        ..world::source(SynthOptions::default())
    })
    .await;
    let pass = world
        .pipeline(&[])
        .await
        .run_pass(Utc::now(), Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(pass.written.records_quarantined, 100, "{pass:?}");
    // When the function, its job replay and its window widened, takes an event naming the
    // hours of the pass
    let now = Hour::of(Utc::now());
    let event = serde_json::json!({ "hours": format!("{}..{now}", now.previous()) });
    let runtime = RuntimeApi::start(&event.to_string(), Duration::from_secs(60)).await;
    let (stdout, stderr) = (
        tempfile::NamedTempFile::new().unwrap(),
        tempfile::NamedTempFile::new().unwrap(),
    );
    let function = Command::new(env!("CARGO_BIN_EXE_log-etl-lambda"))
        .env_clear()
        .envs(common::runtime_api::function_env(runtime.addr))
        .env("LOG_ETL_JOB", "replay")
        .env("EARLIEST_YEAR", "1990")
        .env("BUCKET_NAME", BUCKET)
        .env("FERNET_SECRET_ID", &world.secret_arn)
        .envs(common::aws_env(&world.moto.endpoint()))
        .stdout(stdout.reopen().unwrap())
        .stderr(stderr.reopen().unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("log-etl-lambda starts");
    let answer = answer_then_stop(&runtime, function, Duration::from_secs(60), stderr.path()).await;
    // Then it answers with the replay's summary: every record landed
    assert_eq!(answer.kind, "response", "{:?}", answer.body);
    assert_eq!(answer.body["records_landed"], 100, "{:?}", answer.body);
    assert_eq!(answer.body["records_still_refused"], 0);
    assert_eq!(answer.body["from"], now.previous().to_string());
    // and the bucket holds each record once, the quarantine as it was
    let truth = world.sim.ground_truth();
    assert_bucket_holds_each_once(&world, &truth.records).await;
    assert_eq!(quarantine_of(&world).await.len(), 1);
    // and its metrics line names the replay's figures
    let printed = fs::read_to_string(stdout.path()).unwrap();
    let emf: Value = printed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l.get("_aws").is_some())
        .unwrap_or_else(|| panic!("no metrics line in:\n{printed}"));
    assert_eq!(emf["ReplayRecordsLanded"], 100);
}

#[tokio::test]
async fn a_replay_event_naming_hours_that_are_not_a_range_fails_typed() {
    // Given the replay function (nothing remote is called before the event is read)
    let runtime = RuntimeApi::start(
        r#"{"hours": "2024-01-02T00..2024-01-01T00"}"#,
        Duration::from_secs(30),
    )
    .await;
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let function = Command::new(env!("CARGO_BIN_EXE_log-etl-lambda"))
        .env_clear()
        .envs(common::runtime_api::function_env(runtime.addr))
        .env("LOG_ETL_JOB", "replay")
        .env("BUCKET_NAME", BUCKET)
        .env("FERNET_KEY", generate_key())
        .envs(common::aws_env(&format!(
            "http://127.0.0.1:{}",
            common::free_port()
        )))
        .stdout(Stdio::null())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .expect("log-etl-lambda starts");
    // When it takes an event whose hours run backwards
    let answer = answer_then_stop(&runtime, function, Duration::from_secs(30), stderr.path()).await;
    // Then it answers an error naming the event, not the store
    assert_eq!(answer.kind, "error", "{:?}", answer.body);
    assert_eq!(answer.body["errorType"], "EventError", "{:?}", answer.body);
    let message = answer.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("is after"), "{message}");
}

/// The function's first answer (within `limit`), once the function is stopped; a test without
/// one fails with the function's log.
async fn answer_then_stop(
    runtime: &RuntimeApi,
    mut function: std::process::Child,
    limit: Duration,
    log: &Path,
) -> common::runtime_api::Answer {
    let answer = runtime.first_answer(limit).await;
    let _ = function.kill();
    let _ = function.wait();
    let logged = fs::read_to_string(log).unwrap();
    answer.unwrap_or_else(|| panic!("no answer from the function:\n{logged}"))
}

//! The command line against S3 (moto): `log-etl run` into a bucket, `restore s3://`, and
//! `process --bucket` (a backfill).

use serde_json::Value;

use crate::common::{
    self,
    world::{BUCKET, restore_data, sorted_json, world},
};
use log_etl::local::synth::SynthOptions;

#[tokio::test]
async fn the_command_line_runs_a_pass_and_restores_from_the_bucket() {
    // Given the same peers, configured through the environment
    let world = world(SynthOptions::default()).await;
    let mut env = common::aws_env(&world.moto.endpoint());
    env.extend([
        ("LOG_API_URL", world.sim.url()),
        ("BUCKET_NAME", BUCKET.to_owned()),
        ("FERNET_SECRET_ID", world.secret_arn.clone()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // When `log-etl run` does one pass
    let out = common::log_etl_async(&["run"], &env).await;
    common::assert_success(&out);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["records_landed"], 100);
    // Then `log-etl restore s3://bucket` prints exactly the records served
    let out = common::log_etl_async(&["restore", &format!("s3://{BUCKET}")], &env).await;
    common::assert_success(&out);
    let restored: Vec<serde_json::Map<String, Value>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        sorted_json(&restored),
        sorted_json(&world.sim.ground_truth().records)
    );
}

#[tokio::test]
async fn a_saved_response_is_backfilled_into_the_bucket() {
    let world = world(SynthOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (response, truth) = (dir.path().join("r.json"), dir.path().join("t.ndjson"));
    let key_env = [("FERNET_KEY", world.key.as_str())];
    let out = common::log_etl(
        &[
            "generate",
            "--records",
            "250",
            "--out",
            response.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
        ],
        &key_env,
    );
    assert!(out.status.success());
    let mut env = common::aws_env(&world.moto.endpoint());
    env.push(("FERNET_KEY", world.key.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = common::log_etl_async(
        &[
            "process",
            "--input",
            response.to_str().unwrap(),
            "--bucket",
            BUCKET,
        ],
        &env,
    )
    .await;
    common::assert_success(&out);
    let objects = world.objects(BUCKET).await;
    let expected: Vec<serde_json::Map<String, Value>> = std::fs::read_to_string(truth)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sorted_json(&restore_data(&objects)), sorted_json(&expected));
}

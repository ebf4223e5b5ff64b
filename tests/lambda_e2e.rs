//! The Lambda handler end to end against real peers: a moto server (S3 and Secrets Manager over
//! their HTTP APIs), the log-API simulator, and the checked-in scheduled event.

use crate::common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::world::{BUCKET, bad_tokens, world};
use common::{assert_run_error, gunzip_lines};
use lambda_runtime::{Context, LambdaEvent};
use log_etl::lambda::{self, MetricsTarget};
use log_etl::local::simulator::Fault;
use log_etl::local::synth::SynthOptions;
use log_etl::logging::error_chain;
use log_etl::pipeline::{Pipeline, RunError, RunSummary};

/// Invokes the real handler with the checked-in scheduled event.
async fn invoke(pipeline: &Pipeline) -> Result<RunSummary, RunError> {
    let metrics = MetricsTarget {
        namespace: "LogEtl".into(),
        function_name: "log-etl-test".into(),
    };
    let event = LambdaEvent::new(common::scheduled_event(), Context::default());
    lambda::handle(pipeline, &metrics, event).await
}

#[tokio::test]
async fn every_served_record_lands_under_its_hour_and_restores_exactly() {
    // Given moto, a secret with the key, and a simulator serving batches that cross 16:00
    let world = world(SynthOptions {
        unusual_per_mille: 100,
        ..SynthOptions::default()
    })
    .await;
    let pipeline = world.pipeline(&[]).await;
    // When the handler runs for two batches
    let first = invoke(&pipeline).await.unwrap();
    world.sim.next_batch();
    let second = invoke(&pipeline).await.unwrap();
    // Then every served record is in S3 under its own hour, restorable to exactly what was served
    assert_eq!(first.records_in + second.records_in, 200);
    assert_eq!(first.written.hours, ["2023-03-18T15", "2023-03-18T16"]);
    let objects = world.objects(BUCKET).await;
    assert!(objects.iter().all(|(k, _)| k.ends_with(".json.gz")));
    assert_eq!(world.sim.ground_truth().records.len(), 200);
    world.assert_holds_what_was_served(BUCKET).await;
    assert_eq!(
        objects.len() as u64,
        first.written.objects_written + second.written.objects_written
    );
}

#[tokio::test]
async fn invoking_twice_over_the_same_batch_writes_nothing_new() {
    let world = world(SynthOptions::default()).await;
    let pipeline = world.pipeline(&[]).await;
    // Given a batch already landed
    let first = invoke(&pipeline).await.unwrap();
    let before = world.objects(BUCKET).await;
    // When the same batch is read again (a retry, an overlapping schedule)
    let again = invoke(&pipeline).await.unwrap();
    // Then nothing new is written, the records are reported present, and none is doubled
    assert_eq!(again.written.objects_written, 0);
    assert_eq!(again.written.records_landed, 0);
    assert_eq!(
        again.written.records_already_present,
        first.written.records_landed
    );
    assert_eq!(world.objects(BUCKET).await, before);
    assert_eq!(world.sim.ground_truth().records.len(), 100);
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn undecryptable_tokens_are_quarantined_with_their_reason_and_the_rest_land() {
    // Given a batch where about one record in six has a tampered, truncated or foreign token
    let world = world(bad_tokens(150)).await;
    let pipeline = world.pipeline(&[]).await;
    let run_hours = [Utc::now(), Utc::now() + chrono::Duration::minutes(1)]
        .map(|t| format!("quarantine/{}/", t.format("%Y/%m/%d/%H")));
    let summary = invoke(&pipeline).await.unwrap();
    let truth = world.sim.ground_truth();
    assert!(truth.undecryptable > 0);
    // Then the quarantine object, under the run's hour, holds each with a reason
    let objects = world.objects(BUCKET).await;
    let quarantine: Vec<_> = objects
        .iter()
        .filter(|(k, _)| k.starts_with("quarantine/"))
        .collect();
    assert_eq!(quarantine.len(), 1);
    assert!(
        run_hours.iter().any(|h| quarantine[0].0.starts_with(h)),
        "{}",
        quarantine[0].0
    );
    let lines = gunzip_lines(&quarantine[0].1);
    assert_eq!(lines.len() as u64, truth.undecryptable);
    assert_eq!(summary.written.records_quarantined, truth.undecryptable);
    for line in &lines {
        assert_eq!(line["stage"], "decrypt");
        assert!(!line["reason"].as_str().unwrap().is_empty());
        assert!(
            line["record"]["data"].is_string(),
            "the record is kept as received"
        );
    }
    // and every good record still lands
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn a_missing_secret_is_a_typed_error_and_nothing_is_written() {
    let world = world(SynthOptions::default()).await;
    let pipeline = world
        .pipeline(&[("FERNET_SECRET_ID", "log-etl/no-such-secret")])
        .await;
    let err = invoke(&pipeline).await.unwrap_err();
    assert_run_error(&err, "SecretError", "log-etl/no-such-secret");
    assert!(world.objects(BUCKET).await.is_empty());
}

#[tokio::test]
async fn a_secret_that_is_not_a_key_is_a_typed_error_that_does_not_echo_it() {
    let world = world(SynthOptions::default()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&world.sdk);
    secrets
        .create_secret()
        .name("log-etl/not-a-key")
        .secret_string("hunter2-is-not-a-fernet-key")
        .send()
        .await
        .unwrap();
    let pipeline = world
        .pipeline(&[("FERNET_SECRET_ID", "log-etl/not-a-key")])
        .await;
    let err = invoke(&pipeline).await.unwrap_err();
    assert_run_error(&err, "SecretError", "does not hold a Fernet key");
    assert!(!error_chain(&err).contains("hunter2"));
    assert!(world.objects(BUCKET).await.is_empty());
}

#[tokio::test]
async fn an_api_answering_500_then_200_is_retried() {
    let world = world(SynthOptions::default()).await;
    world.sim.push_fault(Fault::Status(500));
    let pipeline = world.pipeline(&[]).await;
    let summary = invoke(&pipeline).await.unwrap();
    assert_eq!(summary.fetch_attempts, Some(2));
    assert_eq!(world.sim.requests(), 2);
    assert_eq!(summary.written.records_landed, 100);
}

#[tokio::test]
async fn an_api_that_is_down_is_a_typed_error_nothing_is_written_and_a_rerun_lands_once() {
    let world = world(SynthOptions::default()).await;
    let url = format!("http://127.0.0.1:{}/api/data/log", common::free_port());
    let pipeline = world
        .pipeline(&[("LOG_API_URL", &url), ("FETCH_MAX_ATTEMPTS", "3")])
        .await;
    let started = Instant::now();
    let err = invoke(&pipeline).await.unwrap_err();
    assert_run_error(&err, "FetchError", "after 3 attempt(s)");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(world.objects(BUCKET).await.is_empty());
    // and once it is back, the next invocation lands the batch exactly once
    invoke(&world.pipeline(&[]).await).await.unwrap();
    assert_eq!(world.sim.ground_truth().records.len(), 100);
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn a_rejected_write_is_a_typed_error_and_a_rerun_completes_without_duplicates() {
    // Given S3 that refuses the writes (the bucket does not exist yet)
    let world = world(bad_tokens(50)).await;
    let pipeline = world.pipeline(&[("BUCKET_NAME", "late-bucket")]).await;
    let err = invoke(&pipeline).await.unwrap_err();
    assert_run_error(&err, "StoreError", "s3://late-bucket/");
    // When the fault clears and the schedule runs again, twice
    world
        .s3
        .create_bucket()
        .bucket("late-bucket")
        .send()
        .await
        .unwrap();
    let rerun = invoke(&pipeline).await.unwrap();
    let again = invoke(&pipeline).await.unwrap();
    // Then every record is there once
    assert_eq!(again.written.objects_written, 0);
    assert_eq!(
        again.written.records_already_present,
        rerun.written.records_landed
    );
    world.assert_holds_what_was_served("late-bucket").await;
}

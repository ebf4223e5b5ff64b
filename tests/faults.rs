//! Proof under faults: the source misbehaving, keys wrong, rotated or deleted, S3 down, going
//! away mid-run or throttling, two runs at once, and hostile sizes. Each run fails or succeeds
//! as the design says, and once the fault clears a rerun leaves every record in the bucket
//! exactly once: the bucket is restored and compared with what the simulator served.

use crate::common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::faulty_s3::{FaultyS3, Plan};
use common::world::{BUCKET, World, bad_tokens, world};
use common::{assert_mentions, assert_run_error, gunzip_lines};
use log_etl::local::simulator::Fault;
use log_etl::local::synth::SynthOptions;
use log_etl::logging::error_chain;
use log_etl::pipeline::{Pipeline, RunError, RunSummary};
use log_etl::record::fernet::generate_key;

const DEADLINE: Duration = Duration::from_secs(60);

async fn pass(pipeline: &Pipeline) -> Result<RunSummary, RunError> {
    pipeline
        .run_pass(Utc::now(), Instant::now() + DEADLINE)
        .await
}

async fn assert_bucket_empty(world: &World) {
    assert_eq!(
        world.objects(BUCKET).await.len(),
        0,
        "something was written"
    );
}

// --- The source ------------------------------------------------------------------------

#[tokio::test]
async fn a_timed_out_request_is_retried() {
    let world = world(SynthOptions::default()).await;
    world.sim.push_fault(Fault::Delay(Duration::from_secs(3)));
    let pipeline = world.pipeline(&[("FETCH_TIMEOUT_MS", "500")]).await;
    let summary = pass(&pipeline).await.unwrap();
    assert_eq!(summary.fetch_attempts, Some(2));
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn the_start_delay_waits_but_never_past_a_quarter_of_the_time_left() {
    // Given a start delay of a minute and a pass with two seconds left
    let world = world(SynthOptions::default()).await;
    let pipeline = world.pipeline(&[("START_DELAY_MS", "60000")]).await;
    let started = Instant::now();
    let summary = pipeline
        .run_pass(Utc::now(), started + Duration::from_secs(2))
        .await
        .unwrap();
    // Then it waited half a second, not a minute, and the batch landed
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(summary.written.records_landed, 100);
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn a_slow_source_near_the_deadline_fails_typed_and_a_rerun_lands_once() {
    // Given a source slower than the time the run has left
    let world = world(SynthOptions::default()).await;
    world.sim.push_fault(Fault::Delay(Duration::from_secs(4)));
    world.sim.push_fault(Fault::Delay(Duration::from_secs(4)));
    let pipeline = world.pipeline(&[]).await;
    // When a run has 3 s left
    let started = Instant::now();
    let err = pipeline
        .run_pass(Utc::now(), Instant::now() + Duration::from_secs(3))
        .await
        .unwrap_err();
    // Then it gives up inside its deadline, typed, having written nothing
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.error_type(), "FetchError");
    assert_bucket_empty(&world).await;
    // and once the source is quick again, a rerun lands the batch once
    pass(&pipeline).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_success() {
    let world = world(SynthOptions::default()).await;
    for status in [429, 500, 503] {
        world.sim.push_fault(Fault::Status(status));
    }
    let pipeline = world.pipeline(&[]).await;
    let summary = pass(&pipeline).await.unwrap();
    assert_eq!(summary.fetch_attempts, Some(4));
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let world = world(SynthOptions::default()).await;
    world.sim.push_fault(Fault::Status(403));
    let pipeline = world.pipeline(&[]).await;
    let err = pass(&pipeline).await.unwrap_err();
    assert_mentions(&err, "answered 403");
    assert_eq!(world.sim.requests(), 1);
    assert_bucket_empty(&world).await;
    pass(&pipeline).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn html_truncated_or_non_array_responses_fail_typed_and_a_rerun_lands_once() {
    let world = world(SynthOptions::default()).await;
    let pipeline = world.pipeline(&[]).await;
    for (fault, message) in [
        (Fault::Html, "not valid JSON"),
        (Fault::Truncated, "ends before the array is closed"),
        (Fault::NotAnArray, "not a JSON array"),
    ] {
        world.sim.push_fault(fault.clone());
        let err = pass(&pipeline).await.unwrap_err();
        assert_eq!(err.error_type(), "ResponseError", "{fault:?}");
        assert!(
            error_chain(&err).contains(message),
            "{fault:?}: {}",
            error_chain(&err)
        );
        assert_bucket_empty(&world).await;
    }
    pass(&pipeline).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn an_empty_batch_is_a_quiet_success() {
    let world = world(SynthOptions::default()).await;
    world.sim.push_fault(Fault::EmptyArray);
    let pipeline = world.pipeline(&[]).await;
    let summary = pass(&pipeline).await.unwrap();
    assert_eq!(
        (summary.records_in, summary.written.objects_written),
        (0, 0)
    );
    assert_bucket_empty(&world).await;
    pass(&pipeline).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn a_response_of_more_records_than_the_limit_fails_typed_and_writes_nothing() {
    // Given a response of 16 MiB of zeros: 8 million elements
    let world = world(SynthOptions::default()).await;
    world.sim.push_fault(Fault::TinyElements(16 << 20));
    let pipeline = world.pipeline(&[]).await;
    // When a pass reads it, it stops at the limit, typed, before writing anything
    let err = pass(&pipeline).await.unwrap_err();
    assert_run_error(&err, "ResponseError", "more than 100000 records");
    assert_bucket_empty(&world).await;
    // and a batch over a lower limit fails alike
    let strict = world.pipeline(&[("MAX_RECORDS_PER_RESPONSE", "50")]).await;
    assert_eq!(
        pass(&strict).await.unwrap_err().error_type(),
        "ResponseError"
    );
    assert_bucket_empty(&world).await;
    // and once the source is sane again, a rerun lands the batch once
    pass(&pipeline).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn a_50_mb_response_lands_unless_over_the_limit() {
    // Given a 50 MB response (the batch, then padding)
    let world = world(SynthOptions::default()).await;
    let size = 50 << 20;
    // When the limit is lower, the run fails typed and writes nothing
    world.sim.push_fault(Fault::Oversized(size));
    let strict = world.pipeline(&[("MAX_RESPONSE_BYTES", "10485760")]).await;
    let err = pass(&strict).await.unwrap_err();
    assert_run_error(&err, "FetchError", "larger than 10485760 bytes");
    assert_bucket_empty(&world).await;
    // and under the default limit (64 MiB) it lands
    world.sim.push_fault(Fault::Oversized(size));
    let summary = pass(&world.pipeline(&[]).await).await.unwrap();
    assert!(summary.bytes_in < size as u64);
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn records_duplicated_in_one_batch_land_once() {
    let world = world(SynthOptions::default()).await;
    world.sim.push_fault(Fault::Duplicates);
    let pipeline = world.pipeline(&[]).await;
    let summary = pass(&pipeline).await.unwrap();
    assert_eq!(summary.records_in, 200);
    assert_eq!(summary.written.duplicates_dropped, 100);
    world.assert_holds_what_was_served(BUCKET).await;
}

// --- Keys --------------------------------------------------------------------------------

async fn put_secret(world: &World, value: &str) {
    aws_sdk_secretsmanager::Client::new(&world.sdk)
        .put_secret_value()
        .secret_id(&world.secret_arn)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_key_quarantines_every_record_and_the_right_one_lands_them_once() {
    // Given a secret holding some other key
    let world = world(SynthOptions::default()).await;
    put_secret(&world, &generate_key()).await;
    let pipeline = world.pipeline(&[("KEY_CACHE_TTL_SECONDS", "0")]).await;
    // When a run reads the batch, every record goes to quarantine, kept as received
    let summary = pass(&pipeline).await.unwrap();
    assert_eq!(
        (
            summary.written.records_landed,
            summary.written.records_quarantined
        ),
        (0, 100)
    );
    let objects = world.objects(BUCKET).await;
    assert_eq!(objects.len(), 1);
    let lines = gunzip_lines(&objects[0].1);
    assert!(
        lines
            .iter()
            .all(|l| l["stage"] == "decrypt" && l["record"]["data"].is_string())
    );
    // When the right key is put in, the next run lands every record once
    put_secret(&world, &world.key).await;
    pass(&pipeline).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn during_rotation_both_keys_decrypt() {
    // Given the secret in rotation: a new key first, the source's (old) key second
    let world = world(SynthOptions::default()).await;
    put_secret(
        &world,
        &format!("[\"{}\", \"{}\"]", generate_key(), world.key),
    )
    .await;
    let pipeline = world.pipeline(&[]).await;
    let summary = pass(&pipeline).await.unwrap();
    assert_eq!(summary.written.records_quarantined, 0);
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn a_secret_deleted_from_a_warm_container_fails_after_its_ttl() {
    // Given two warm containers, one re-reading the secret on every run, one caching it
    let world = world(SynthOptions::default()).await;
    let eager = world.pipeline(&[("KEY_CACHE_TTL_SECONDS", "0")]).await;
    let cached = world.pipeline(&[("KEY_CACHE_TTL_SECONDS", "300")]).await;
    pass(&eager).await.unwrap();
    cached.warm_up().await.unwrap();
    // When the secret is deleted
    aws_sdk_secretsmanager::Client::new(&world.sdk)
        .delete_secret()
        .secret_id(&world.secret_arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    world.sim.next_batch();
    // Then the one past its TTL fails typed; the other runs on its key until the TTL ends
    let err = pass(&eager).await.unwrap_err();
    assert_eq!(err.error_type(), "SecretError");
    pass(&cached).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

// --- S3 ----------------------------------------------------------------------------------

/// A world whose batch makes three objects (two hours and a quarantine), and a pipeline whose
/// S3 requests follow `plan`, with `put_attempts` attempts per request.
async fn world_with_faulty_s3(plan: Plan, put_attempts: &str) -> (World, FaultyS3, Pipeline) {
    let world = world(bad_tokens(50)).await;
    let s3 = FaultyS3::new();
    s3.set(plan);
    let pipeline = world
        .pipeline_via(&[("PUT_MAX_ATTEMPTS", put_attempts)], s3.clone())
        .await;
    (world, s3, pipeline)
}

#[tokio::test]
async fn s3_down_before_a_run_fails_typed_and_a_rerun_lands_once() {
    let down = Plan {
        down: true,
        ..Plan::default()
    };
    let (world, s3, pipeline) = world_with_faulty_s3(down, "2").await;
    let err = pass(&pipeline).await.unwrap_err();
    assert_eq!(err.error_type(), "StoreError");
    assert_bucket_empty(&world).await;
    s3.set(Plan::default());
    pass(&pipeline).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn s3_going_away_mid_run_leaves_no_duplicate_after_the_rerun() {
    // Given S3 that goes away after the first of the batch's three objects (the quarantine,
    // which is written first)
    let after_one = Plan {
        down_after_puts: Some(1),
        ..Plan::default()
    };
    let (world, s3, pipeline) = world_with_faulty_s3(after_one, "2").await;
    // When a run writes the batch, it fails typed with one object written
    let err = pass(&pipeline).await.unwrap_err();
    assert_eq!(err.error_type(), "StoreError");
    assert_eq!(world.objects(BUCKET).await.len(), 1);
    // Then, once S3 is back, a rerun finds the quarantined records and writes the rest
    s3.set(Plan::default());
    let rerun = pass(&pipeline).await.unwrap();
    let truth = world.sim.ground_truth();
    assert_eq!(rerun.written.objects_written, 2);
    assert_eq!(
        rerun.written.quarantined_already_present,
        truth.undecryptable
    );
    assert_eq!(rerun.written.records_landed, truth.records.len() as u64);
    world.assert_holds_what_was_served(BUCKET).await;
    let objects = world.objects(BUCKET).await;
    let (_, quarantine) = objects
        .iter()
        .find(|(k, _)| k.starts_with("quarantine/"))
        .unwrap();
    assert_eq!(
        gunzip_lines(quarantine).len() as u64,
        world.sim.ground_truth().undecryptable
    );
}

/// A pass through S3 that answers its first two writes as `plan` says, with four attempts a
/// request: it succeeds, the two faulty answers given (as `answered` counts them), with the
/// batch's three objects written once.
async fn assert_two_faulty_writes_are_retried(plan: Plan, answered: fn(&Plan) -> u32) {
    let (world, s3, pipeline) = world_with_faulty_s3(plan, "4").await;
    let summary = pass(&pipeline).await.unwrap();
    assert_eq!(answered(&s3.plan()), 2);
    assert_eq!(summary.written.objects_written, 3);
    world.assert_holds_what_was_served(BUCKET).await;
}

#[tokio::test]
async fn s3_throttling_is_retried_by_the_sdk() {
    let throttled = Plan {
        throttle_puts: 2,
        ..Plan::default()
    };
    assert_two_faulty_writes_are_retried(throttled, |p| p.throttled).await;
}

#[tokio::test]
async fn a_conflicting_conditional_write_is_retried() {
    // Given S3 answering 409 to the first two writes, as when another write to the key races ours
    let conflicts = Plan {
        conflict_puts: 2,
        ..Plan::default()
    };
    assert_two_faulty_writes_are_retried(conflicts, |p| p.conflicted).await;
}

#[tokio::test]
async fn a_conflict_that_outlasts_the_attempts_fails_typed_and_a_rerun_lands_once() {
    let conflicts = Plan {
        conflict_puts: 2,
        ..Plan::default()
    };
    let (world, s3, pipeline) = world_with_faulty_s3(conflicts, "2").await;
    let err = pass(&pipeline).await.unwrap_err();
    assert_run_error(&err, "StoreError", "409");
    assert_eq!(s3.plan().conflicted, 2);
    pass(&pipeline).await.unwrap();
    world.assert_holds_what_was_served(BUCKET).await;
}

// --- Runs at once ---------------------------------------------------------------------------

#[tokio::test]
async fn two_passes_at_once_over_the_same_batch_leave_one_copy() {
    let world = world(bad_tokens(30)).await;
    let (a, b) = (world.pipeline(&[]).await, world.pipeline(&[]).await);
    let (ra, rb) = tokio::join!(pass(&a), pass(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    // Then the bucket holds every record once, whichever wrote it. (The emulator does not
    // serialise two conditional writes of one key, so both passes may report writing the same
    // object; S3 answers the second 412. Either way the key, hence the content, is one.)
    let objects = world.objects(BUCKET).await;
    assert!(ra.written.objects_written + rb.written.objects_written >= objects.len() as u64);
    let truth = world.sim.ground_truth();
    assert!(ra.written.records_landed + rb.written.records_landed >= truth.records.len() as u64);
    // and each pass accounts for every record it read: landed, or found present
    for s in [&ra, &rb] {
        let w = &s.written;
        assert_eq!(
            w.records_landed + w.records_already_present,
            truth.records.len() as u64
        );
    }
    world.assert_holds_what_was_served(BUCKET).await;
}

// --- Hostile sizes ---------------------------------------------------------------------------

#[tokio::test]
async fn records_over_the_limits_are_quarantined_with_the_reason() {
    let world = world(SynthOptions::default()).await;
    for (setting, value, reason) in [
        ("MAX_RECORD_BYTES", "300", "over the limit of 300"),
        ("MAX_NESTING_DEPTH", "1", "deeper than 1 levels"),
        ("MAX_STRING_BYTES", "20", "longer than 20 bytes"),
    ] {
        let pipeline = world
            .pipeline(&[
                (setting, value),
                ("QUARANTINE_PREFIX", &format!("quarantine-{setting}")),
            ])
            .await;
        let summary = pass(&pipeline).await.unwrap();
        assert_eq!(summary.written.records_quarantined, 100, "{setting}");
        let objects = world.objects(BUCKET).await;
        let (_, body) = objects
            .iter()
            .find(|(k, _)| k.starts_with(&format!("quarantine-{setting}/")))
            .unwrap();
        for line in gunzip_lines(body) {
            let text = line["reason"].as_str().unwrap();
            assert!(text.contains(reason), "{setting}: {text}");
        }
    }
}

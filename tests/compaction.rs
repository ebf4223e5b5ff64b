//! Compaction of closed hours against moto and a folder: scheduled passes over three hours leave
//! several objects an hour; compaction leaves one per closed hour with every record once (the
//! bucket restored and compared with what was served); a second run changes nothing; a late
//! object is merged by the next run; and a run failing at each step, or killed at random
//! moments, loses nothing and the next run converges.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use common::faulty_s3::{FaultyS3, Plan};
use common::world::{self, BUCKET, World, restore_data, sorted_json, world_with};
use log_etl::batch::ObjectSettings;
use log_etl::batch::layout::{ObjectLayout, PartitionStyle};
use log_etl::compact::{self, CompactError, CompactOptions, CompactSummary};
use log_etl::local::simulator::SimulatorOptions;
use log_etl::local::synth::SynthOptions;
use log_etl::store::{FolderStore, Store};
use serde_json::{Map, Value};

/// Well after the simulated hours (15:00 to 17:59 on 2023-03-18) have closed.
fn later() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 3, 18, 20, 0, 0).unwrap()
}

fn settings() -> ObjectSettings {
    ObjectSettings::new(ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap())
}

fn options(now: DateTime<Utc>) -> CompactOptions {
    CompactOptions {
        now,
        closed_after: Duration::from_secs(3600),
        hours: None,
        deadline: None,
    }
}

async fn compact_at(store: &Store, now: DateTime<Utc>) -> Result<CompactSummary, CompactError> {
    compact::run(store, &settings(), &options(now)).await
}

/// A source whose batches are 20 minutes apart from 15:20, so eight steps cover three hours with
/// several objects each, and whose windows overlap (the last 150 records, 100 new a step).
async fn three_hours() -> World {
    let world = world_with(SimulatorOptions {
        window: 150,
        step: 100,
        record_start: Utc.with_ymd_and_hms(2023, 3, 18, 15, 20, 0).unwrap(),
        record_step: Duration::from_secs(20 * 60),
        ..world::source(SynthOptions {
            unusual_per_mille: 100,
            bad_per_mille: 20,
            ..SynthOptions::default()
        })
    })
    .await;
    passes(&world, 8).await;
    world
}

/// Scheduled passes over `steps` steps of the source, each window read twice.
async fn passes(world: &World, steps: usize) {
    let pipeline = world.pipeline(&[]).await;
    for step in 0..steps {
        if step > 0 {
            world.sim.next_batch();
        }
        for _ in 0..2 {
            pipeline
                .run_pass(Utc::now(), Instant::now() + Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
}

fn bucket(world: &World) -> Store {
    Store::bucket(&world.sdk, &world.config(&[("PUT_MAX_ATTEMPTS", "3")])).unwrap()
}

/// Data objects per hour folder.
async fn objects_per_hour(world: &World) -> BTreeMap<String, usize> {
    let mut per_hour = BTreeMap::new();
    for (key, _) in world.objects(BUCKET).await {
        if let Some(folder) = key.strip_prefix("data/").and_then(|k| k.rsplit_once('/')) {
            *per_hour.entry(folder.0.to_owned()).or_default() += 1;
        }
    }
    per_hour
}

/// Every record served is in the bucket, each exactly once.
async fn assert_each_once(world: &World, served: &[Map<String, Value>]) {
    let restored = restore_data(&world.objects(BUCKET).await);
    assert_eq!(restored.len(), served.len(), "records in the bucket");
    assert_eq!(sorted_json(&restored), sorted_json(served));
}

/// Every record served is in the bucket (some maybe twice, as after a killed compaction).
async fn assert_none_lost(world: &World, served: &[Map<String, Value>]) {
    let restored = sorted_json(&restore_data(&world.objects(BUCKET).await));
    for record in sorted_json(served) {
        assert!(restored.binary_search(&record).is_ok(), "lost: {record}");
    }
}

#[tokio::test]
async fn passes_over_three_hours_compact_to_one_object_an_hour_with_every_record_once() {
    // Given scheduled passes over three hours, several objects in each
    let world = three_hours().await;
    let served = world.sim.ground_truth().records;
    let before = objects_per_hour(&world).await;
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.values().all(|&n| n > 1), "{before:?}");
    // When the closed hours are compacted
    let store = bucket(&world);
    let summary = compact_at(&store, later()).await.unwrap();
    // Then each hour holds one object with every record once, ordered by inDate
    assert_eq!(summary.hours_compacted, 3);
    assert_eq!(summary.objects_read, before.values().sum::<usize>() as u64);
    assert_eq!(summary.objects_deleted, summary.objects_read);
    assert_eq!(summary.records, served.len() as u64);
    assert!(objects_per_hour(&world).await.values().all(|&n| n == 1));
    assert_each_once(&world, &served).await;
    let quarantine = |objects: &[(String, Vec<u8>)]| {
        objects
            .iter()
            .filter(|(k, _)| k.starts_with("quarantine/"))
            .count()
    };
    for (key, body) in world.objects(BUCKET).await {
        if key.starts_with("data/") {
            let instants: Vec<_> = common::gunzip_lines(&body)
                .iter()
                .map(|r| log_etl::record::line_instant(&serde_json::to_vec(r).unwrap()))
                .collect();
            assert!(
                instants.windows(2).all(|w| w[0] <= w[1]),
                "{key} is not in order"
            );
        }
    }
    // and quarantine is left alone
    assert!(quarantine(&world.objects(BUCKET).await) > 0);
    // and a second run changes nothing
    let objects = world.objects(BUCKET).await;
    let again = compact_at(&store, later()).await.unwrap();
    assert_eq!(
        again,
        CompactSummary {
            duration_ms: again.duration_ms,
            ..CompactSummary::default()
        }
    );
    assert_eq!(world.objects(BUCKET).await, objects);
}

#[tokio::test]
async fn open_hours_are_left_alone_and_a_late_object_is_merged_by_the_next_run() {
    // Given three hours of passes, compacted as the hours close one after the other
    let world = three_hours().await;
    let store = bucket(&world);
    let at_1700 = Utc.with_ymd_and_hms(2023, 3, 18, 17, 0, 0).unwrap();
    let first = compact_at(&store, at_1700).await.unwrap();
    assert_eq!(
        first.hours,
        ["2023-03-18T15"],
        "15:00 closes at 17:00, 16:00 at 18:00"
    );
    let at_1830 = Utc.with_ymd_and_hms(2023, 3, 18, 18, 30, 0).unwrap();
    let second = compact_at(&store, at_1830).await.unwrap();
    assert_eq!(second.hours, ["2023-03-18T16"]);
    assert!(objects_per_hour(&world).await["2023/03/18/17"] > 1);
    // When a late record lands in a compacted hour (a backfill), and the schedule moves on
    world.sim.next_batch();
    let pipeline = world.pipeline(&[]).await;
    let late = pipeline
        .run_pass(Utc::now(), Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(late.written.records_landed > 0);
    let served = world.sim.ground_truth().records;
    // Then the next run merges it, and every hour ends with one object, every record once
    let third = compact_at(&store, later()).await.unwrap();
    assert!(third.hours_compacted >= 1);
    assert!(objects_per_hour(&world).await.values().all(|&n| n == 1));
    assert_each_once(&world, &served).await;
}

#[tokio::test]
async fn a_run_failing_at_each_step_loses_nothing_and_the_next_run_converges() {
    // Given three hours of passes, and compaction through an S3 that fails at each step in turn
    let plans = [
        (
            "listing",
            Plan {
                down: true,
                ..Plan::default()
            },
        ),
        (
            "reading an input",
            Plan {
                down_after_gets: Some(1),
                ..Plan::default()
            },
        ),
        (
            "writing the merged object",
            Plan {
                down_after_puts: Some(0),
                ..Plan::default()
            },
        ),
        (
            "between deletes",
            Plan {
                down_after_deletes: Some(1),
                ..Plan::default()
            },
        ),
        (
            "after the first hour's deletes",
            Plan {
                down_after_deletes: Some(2),
                ..Plan::default()
            },
        ),
    ];
    for (step, plan) in plans {
        let world = three_hours().await;
        let served = world.sim.ground_truth().records;
        let faulty = FaultyS3::new();
        faulty.set(plan);
        let sdk = common::sdk_config_via(&world.moto.endpoint(), Some(faulty.clone())).await;
        let store = Store::bucket(&sdk, &world.config(&[("PUT_MAX_ATTEMPTS", "1")])).unwrap();
        // When a run fails at that step
        let err = compact_at(&store, later()).await;
        assert!(err.is_err(), "{step}: the run did not fail");
        // Then no record is lost
        assert_none_lost(&world, &served).await;
        faulty.set(Plan::default());
        // and a clean run converges to one object an hour, every record once
        compact_at(&bucket(&world), later()).await.unwrap();
        assert!(
            objects_per_hour(&world).await.values().all(|&n| n == 1),
            "{step}"
        );
        assert_each_once(&world, &served).await;
    }
}

#[tokio::test]
async fn runs_killed_at_random_moments_lose_nothing_and_a_clean_run_converges() {
    // Given the compaction command against moto, killed at random moments of its run
    let world = three_hours().await;
    compact_at(&bucket(&world), later()).await.unwrap();
    let mut env = common::aws_env(&world.moto.endpoint());
    env.push(("COMPACT_AFTER", "1h".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut rng = fastrand::Rng::with_seed(12);
    for round in 0..6 {
        world.sim.next_batch();
        passes(&world, 2).await;
        let served = world.sim.ground_truth().records;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_log-etl"))
            .args(["compact", "--bucket", BUCKET])
            .env_clear()
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(0..400))).await;
        let _ = child.kill();
        let _ = child.wait();
        // Then nothing is lost, whatever the moment
        assert_none_lost(&world, &served).await;
        // and a clean run leaves one object an hour, every record once
        let out = common::log_etl_async(&["compact", "--bucket", BUCKET], &env).await;
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            objects_per_hour(&world).await.values().all(|&n| n == 1),
            "round {round}"
        );
        assert_each_once(&world, &served).await;
    }
}

#[test]
fn a_folder_is_compacted_by_the_command_and_reads_back_the_same() {
    // Given a saved response processed three times in parts into a folder (three objects an
    // hour), one record landed twice by two racing writers (simulated by a copy)
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    assert!(
        common::log_etl(&["keygen", "--out", key_file.to_str().unwrap()], &[])
            .status
            .success()
    );
    let key = std::fs::read_to_string(&key_file).unwrap();
    let out_dir = dir.path().join("out");
    for (n, start) in [
        (3000, "2023-03-18T15:00:00.000Z"),
        (2500, "2023-03-18T15:04:00.000Z"),
        (4000, "2023-03-18T15:30:00.000Z"),
    ] {
        let input = dir.path().join(format!("{n}.json"));
        let made = common::log_etl(
            &[
                "generate",
                "--records",
                &n.to_string(),
                "--start",
                start,
                "--out",
                input.to_str().unwrap(),
                "--seed",
                &n.to_string(),
            ],
            &[("FERNET_KEY", key.trim())],
        );
        assert!(made.status.success());
        let processed = common::log_etl(
            &[
                "process",
                "--input",
                input.to_str().unwrap(),
                "--out-dir",
                out_dir.to_str().unwrap(),
                "--key-file",
                key_file.to_str().unwrap(),
            ],
            &[],
        );
        assert!(
            processed.status.success(),
            "{}",
            String::from_utf8_lossy(&processed.stderr)
        );
    }
    let restore = |dir: &std::path::Path| {
        let out = common::log_etl(&["restore", dir.to_str().unwrap()], &[]);
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let before = restore(&out_dir);
    let store = FolderStore::new(&out_dir);
    let hour_keys = store.list("data/2023/03/18/15/").unwrap();
    assert!(hour_keys.len() >= 3, "{hour_keys:?}");
    let copy = hour_keys[0].replace(".json.gz", "-copy.json.gz");
    std::fs::copy(out_dir.join(&hour_keys[0]), out_dir.join(&copy)).unwrap();
    // When the folder is compacted by the command
    let out = common::log_etl(
        &[
            "compact",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--hours",
            "2023-03-18T00..2023-03-18T23",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Then the hour is one object, the copy's records dropped as duplicates, and restore reads
    // back the same records as before the copy
    assert_eq!(store.list("data/2023/03/18/15/").unwrap().len(), 1);
    assert_eq!(summary["hours_compacted"], 1);
    assert!(summary["duplicates_dropped"].as_u64().unwrap() > 0);
    assert_eq!(summary["records"], before.len());
    assert_eq!(restore(&out_dir), before);
}

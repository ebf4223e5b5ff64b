//! Exactly once per record, whatever batches it arrives in: scheduled passes over a rolling,
//! re-ordering source, the same batch read again in another order or with more records,
//! repeated `process` runs into one folder and one bucket, a backfill over what the schedule
//! landed, an hour that comes back after it was closed, an hour written as many objects by one
//! run, and quarantine read again after the hour turned. Each is restored and compared with what
//! was served, record for record.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::world::{self, BUCKET, World, restore_data, sorted_json, world, world_with};
use log_etl::local::simulator::SimulatorOptions;
use log_etl::local::synth::{ResponseWriter, SourceItem, Synth, SynthOptions};
use log_etl::pipeline::{Pipeline, RunSummary};
use log_etl::record::fernet::KeyRing;
use log_etl::record::pyrepr;
use serde_json::{Map, Value};

async fn pass_at(pipeline: &Pipeline, now: chrono::DateTime<Utc>) -> RunSummary {
    pipeline
        .run_pass(now, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap()
}

async fn pass(pipeline: &Pipeline) -> RunSummary {
    pass_at(pipeline, Utc::now()).await
}

/// Every record served is in the bucket exactly once.
async fn assert_bucket_holds_each_once(world: &World, served: &[Map<String, Value>]) {
    let restored = restore_data(&world.objects(BUCKET).await);
    assert_eq!(restored.len(), served.len(), "records in the bucket");
    assert_eq!(sorted_json(&restored), sorted_json(served));
}

#[tokio::test]
async fn scheduled_passes_over_a_rolling_reordering_source_land_each_record_once() {
    // Given a source serving its last 150 records, 100 new ones a step, each read re-ordered
    let world = world_with(SimulatorOptions {
        window: 150,
        step: 100,
        shuffle: true,
        ..world::source(SynthOptions {
            bad_per_mille: 20,
            unusual_per_mille: 100,
            ..SynthOptions::default()
        })
    })
    .await;
    let pipeline = world.pipeline(&[]).await;
    // When passes read every window twice, across two hours
    let (mut landed, mut present, mut read) = (0, 0, 0);
    for step in 0..4 {
        if step > 0 {
            world.sim.next_batch();
        }
        for _ in 0..2 {
            let s = pass(&pipeline).await;
            // every record read is accounted for: landed, already there, or quarantined
            let quarantined = s.written.records_quarantined + s.written.quarantined_already_present;
            assert_eq!(
                s.records_in,
                s.written.records_landed
                    + s.written.records_already_present
                    + s.written.duplicates_dropped
                    + quarantined,
                "{s:?}"
            );
            landed += s.written.records_landed;
            present += s.written.records_already_present;
            read += s.records_in;
        }
    }
    // Then each record served is in the bucket once, under its hour
    let truth = world.sim.ground_truth();
    assert_eq!(truth.records.len() + truth.undecryptable as usize, 400);
    assert_bucket_holds_each_once(&world, &truth.records).await;
    assert_eq!(landed, truth.records.len() as u64);
    // and the re-reads (every window twice, windows overlapping by 50) found the rest there
    assert_eq!(read, 2 * (100 + 3 * 150));
    assert!(present > landed, "{present} present, {landed} landed");
    // and each undecryptable record is quarantined once
    let quarantined: usize = world
        .objects(BUCKET)
        .await
        .iter()
        .filter(|(key, _)| key.starts_with("quarantine/"))
        .map(|(_, body)| common::gunzip_lines(body).len())
        .sum();
    assert_eq!(quarantined as u64, truth.undecryptable);
}

#[tokio::test]
async fn a_batch_read_again_after_the_hour_turned_is_quarantined_once() {
    // Given a batch with undecryptable records, read at 15:59 and again at 16:01
    let world = world(SynthOptions {
        bad_per_mille: 100,
        ..SynthOptions::default()
    })
    .await;
    let pipeline = world.pipeline(&[]).await;
    let first = pass_at(
        &pipeline,
        Utc.with_ymd_and_hms(2023, 3, 18, 15, 59, 50).unwrap(),
    )
    .await;
    let second = pass_at(
        &pipeline,
        Utc.with_ymd_and_hms(2023, 3, 18, 16, 1, 0).unwrap(),
    )
    .await;
    // Then the second pass, filed under the next hour, adds no copy and counts none
    let bad = world.sim.ground_truth().undecryptable;
    assert!(bad > 0);
    assert_eq!(first.written.records_quarantined, bad);
    assert_eq!(second.written.records_quarantined, 0);
    assert_eq!(second.written.quarantined_already_present, bad);
    let quarantine: Vec<_> = world
        .objects(BUCKET)
        .await
        .into_iter()
        .filter(|(key, _)| key.starts_with("quarantine/"))
        .collect();
    assert_eq!(quarantine.len(), 1, "{quarantine:?}");
    assert!(quarantine[0].0.starts_with("quarantine/2023/03/18/15/"));
    assert_eq!(common::gunzip_lines(&quarantine[0].1).len() as u64, bad);
}

/// A saved response of `items`, written with the project's own response writer.
fn save(path: &Path, items: &[SourceItem]) {
    let mut writer = ResponseWriter::new(fs::File::create(path).unwrap());
    for item in items {
        writer.item(item).unwrap();
    }
    writer.finish().unwrap();
}

/// The source item of `record`, encrypted anew: the same record, another token.
fn item_of(ring: &KeyRing, record: &Map<String, Value>) -> SourceItem {
    let token = ring.encrypt(pyrepr::to_repr(&Value::Object(record.clone())).as_bytes());
    SourceItem {
        source: serde_json::json!({ "data": token }).to_string(),
        truth: Some(record.clone()),
    }
}

/// `process` of `input` into `destination` (`--out-dir DIR` or `--bucket B`) with the key in
/// the environment; its summary.
async fn process(input: &Path, destination: [&str; 2], env: &[(&str, &str)]) -> Value {
    let args = [
        "process",
        "--input",
        input.to_str().unwrap(),
        destination[0],
        destination[1],
    ];
    let out = common::log_etl_async(&args, env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn repeated_process_runs_into_a_folder_and_a_bucket_land_each_record_once() {
    // Given a batch of 20, the same batch reversed, and the batch with one record more
    let world = world(SynthOptions::default()).await;
    let ring = KeyRing::parse(&world.key).unwrap();
    let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 59, 57).unwrap();
    let mut items = Synth::new(SynthOptions::default()).batch(&ring, start, 21);
    let extra = items.pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.json");
    let reversed = dir.path().join("reversed.json");
    let more = dir.path().join("more.json");
    save(&batch, &items);
    save(&reversed, &items.iter().rev().cloned().collect::<Vec<_>>());
    save(&more, &[items.clone(), vec![extra.clone()]].concat());
    let served: Vec<Map<String, Value>> = items
        .iter()
        .chain([&extra])
        .map(|i| i.truth.clone().unwrap())
        .collect();
    // When the three are processed into one folder, and into one bucket
    let out_dir = dir.path().join("out");
    let mut env = common::aws_env(&world.moto.endpoint());
    env.push(("FERNET_KEY", world.key.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut summaries = Vec::new();
    for input in [&batch, &reversed, &more] {
        summaries.push(process(input, ["--out-dir", out_dir.to_str().unwrap()], &env).await);
        summaries.push(process(input, ["--bucket", BUCKET], &env).await);
    }
    // Then each holds the 21 records once
    let restored = common::restore_path(&out_dir);
    assert_eq!(sorted_json(&restored), sorted_json(&served));
    assert_bucket_holds_each_once(&world, &served).await;
    // and the summaries say so: 20 landed, then 20 present, then 20 present and 1 landed
    let figures: Vec<(u64, u64)> = summaries
        .iter()
        .map(|s| {
            let n = |f: &str| s[f].as_u64().unwrap();
            (n("records_landed"), n("records_already_present"))
        })
        .collect();
    assert_eq!(
        figures,
        [(20, 0), (20, 0), (0, 20), (0, 20), (1, 20), (1, 20)]
    );
}

#[tokio::test]
async fn a_backfill_over_what_the_schedule_landed_adds_only_the_new_records() {
    // Given two scheduled passes over two batches
    let world = world(SynthOptions::default()).await;
    let pipeline = world.pipeline(&[]).await;
    pass(&pipeline).await;
    world.sim.next_batch();
    pass(&pipeline).await;
    let landed = world.sim.ground_truth().records;
    // When a saved response of the same records (encrypted anew, in another order) and five
    // more is processed into the bucket
    let ring = KeyRing::parse(&world.key).unwrap();
    let start = Utc.with_ymd_and_hms(2023, 3, 18, 17, 0, 0).unwrap();
    let new = Synth::new(SynthOptions {
        seed: 99,
        first_record_id: 10_000,
        ..SynthOptions::default()
    })
    .batch(&ring, start, 5);
    let mut items: Vec<SourceItem> = landed.iter().rev().map(|r| item_of(&ring, r)).collect();
    items.extend(new.iter().cloned());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("backfill.json");
    save(&input, &items);
    let mut env = common::aws_env(&world.moto.endpoint());
    env.push(("FERNET_KEY", world.key.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let summary = process(&input, ["--bucket", BUCKET], &env).await;
    // Then only the five new records land, and the bucket holds every record once
    assert_eq!(summary["records_landed"], 5);
    assert_eq!(summary["records_already_present"], landed.len() as u64);
    let mut all = landed.clone();
    all.extend(new.iter().map(|i| i.truth.clone().unwrap()));
    assert_bucket_holds_each_once(&world, &all).await;
}

#[test]
fn an_hour_that_comes_back_after_it_was_closed_is_not_written_twice() {
    // Given a saved response of one record in each of 17 hours (one more than are kept open),
    // then records of the second hour for as long as an open hour may stay idle, a record of an
    // 18th hour (for which the idle first hour is closed), and then the first hour's record
    // again and a new record in that hour
    let key = log_etl::record::fernet::generate_key();
    let ring = KeyRing::parse(&key).unwrap();
    let mut synth = Synth::new(SynthOptions::default());
    let first = Utc.with_ymd_and_hms(2023, 3, 18, 0, 10, 0).unwrap();
    let mut items: Vec<SourceItem> = (0..17)
        .map(|h| synth.item(&ring, first + chrono::Duration::hours(h)))
        .collect();
    let idle = log_etl::batch::DEFAULT_IDLE_AFTER_RECORDS;
    let second_hour = first + chrono::Duration::hours(1);
    items.extend(
        (0..idle as i64)
            .map(|i| synth.item(&ring, second_hour + chrono::Duration::milliseconds(i))),
    );
    items.push(synth.item(&ring, first + chrono::Duration::hours(17)));
    let again = items.len();
    items.push(item_of(&ring, items[0].truth.as_ref().unwrap()));
    items.push(synth.item(&ring, first + chrono::Duration::minutes(30)));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hours.json");
    save(&input, &items);
    // When it is processed into a folder
    let out_dir = dir.path().join("out");
    let out = common::log_etl(
        &[
            "process",
            "--input",
            input.to_str().unwrap(),
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        &[("FERNET_KEY", &key)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Then the first hour got a second object, and the record given again is found in the
    // first: every record lands once
    assert_eq!(summary["records_landed"], items.len() as u64 - 1);
    assert_eq!(summary["records_already_present"], 1);
    let first_hour = out_dir.join("data/2023/03/18/00");
    assert_eq!(fs::read_dir(&first_hour).unwrap().count(), 2);
    let restored = common::restore_path(&out_dir);
    let mut served: Vec<Map<String, Value>> =
        items.iter().map(|i| i.truth.clone().unwrap()).collect();
    served.remove(again);
    assert_eq!(sorted_json(&restored), sorted_json(&served));
}

/// One hour's batch of `items` in objects of at most `per_object` records, written into the
/// folder store at `root`; what the writing did.
async fn write_in_objects_of(
    root: &Path,
    ring: &KeyRing,
    items: &[SourceItem],
    per_object: u64,
) -> log_etl::exactly_once::WriteReport {
    use log_etl::batch::layout::{ObjectLayout, PartitionStyle};
    use log_etl::batch::{BatchSettings, ObjectSettings, encode_batch};
    let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
    let mut settings = BatchSettings::new(
        ObjectSettings::new(layout),
        log_etl::record::RecordLimits::default(),
    );
    settings.max_records_per_object = per_object;
    let records: Vec<Box<serde_json::value::RawValue>> = (items.iter())
        .map(|i| serde_json::value::RawValue::from_string(i.source.clone()).unwrap())
        .collect();
    let output = encode_batch(&records, ring, &settings, Utc::now()).unwrap();
    let store = log_etl::store::Store::Folder(log_etl::store::FolderStore::new(root));
    log_etl::exactly_once::write_new_records(&output, &store, &settings.objects)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_hour_written_as_many_objects_reads_only_the_objects_it_held_before() {
    // Given an hour holding one object of 2 records from an earlier run
    let ring = KeyRing::parse(&log_etl::record::fernet::generate_key()).unwrap();
    let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 0, 0).unwrap();
    let items = Synth::new(SynthOptions::default()).batch(&ring, start, 12);
    let dir = tempfile::tempdir().unwrap();
    let earlier = write_in_objects_of(dir.path(), &ring, &items[..2], 100).await;
    assert_eq!((earlier.objects_written, earlier.objects_read), (1, 0));
    // When a batch of the 12 records (the 2 among them, encrypted anew) is written in objects
    // of 3 records
    let again: Vec<SourceItem> = (items.iter())
        .map(|i| item_of(&ring, i.truth.as_ref().unwrap()))
        .collect();
    let report = write_in_objects_of(dir.path(), &ring, &again, 3).await;
    // Then each of its 4 objects was compared with the object the hour held before only, not
    // with the ones this run wrote, and the 2 records were still found there
    assert_eq!(report.objects_read, 4);
    assert_eq!(report.records_landed, 10);
    assert_eq!(report.records_already_present, 2);
    // and the hour holds every record once
    let restored = common::restore_path(dir.path());
    let served: Vec<Map<String, Value>> = items.iter().map(|i| i.truth.clone().unwrap()).collect();
    assert_eq!(sorted_json(&restored), sorted_json(&served));
}

#[tokio::test]
async fn a_record_given_twice_in_two_objects_of_one_hour_lands_once() {
    // Given an empty hour and a batch of 7 records whose last is the first again (encrypted
    // anew), in objects of 3 records: the first and the last object share a record
    let ring = KeyRing::parse(&log_etl::record::fernet::generate_key()).unwrap();
    let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 0, 0).unwrap();
    let mut items = Synth::new(SynthOptions::default()).batch(&ring, start, 6);
    items.push(item_of(&ring, items[0].truth.as_ref().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    // When it is written
    let report = write_in_objects_of(dir.path(), &ring, &items, 3).await;
    // Then the record lands once: the second of the two objects that share it read the first
    // (the one object this run read), the third was written unread
    assert_eq!(report.records_landed, 6);
    assert_eq!(report.records_already_present, 1);
    assert_eq!(report.objects_read, 1);
    let restored = common::restore_path(dir.path());
    let served: Vec<Map<String, Value>> = items[..6]
        .iter()
        .map(|i| i.truth.clone().unwrap())
        .collect();
    assert_eq!(sorted_json(&restored), sorted_json(&served));
}

//! zstd as the encoding (`COMPRESSION=zstd`), end to end: a folder processed as zstd by the
//! `log-etl` command restores to its input; a folder (the command) and a moto bucket (scheduled
//! passes) switched from gzip to zstd midway land each record once, compact each hour's gzip and
//! zstd objects into one, and restore every record once.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use crate::cli::Fixture;
use common::folder::files_under;
use common::{log_etl, restore_path};
use log_etl::record::fields;
use serde_json::{Map, Value};

impl Fixture {
    /// A saved response named `name` of `records` records from `start` (one in fifty cannot be
    /// decrypted), and its ground truth.
    fn generate_named(
        &self,
        name: &str,
        records: u32,
        start: &str,
        seed: &str,
    ) -> (PathBuf, Vec<Map<String, Value>>) {
        let extra = [
            "--seed",
            seed,
            "--unusual-per-mille",
            "150",
            "--bad-per-mille",
            "20",
        ];
        let run = |args: &[&str]| log_etl(args, &[("FERNET_KEY", &self.key)]);
        let (response, truth) =
            common::generate_response(run, self.dir.path(), name, records, start, &extra);
        let truth = truth
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (response, truth)
    }

    /// `log-etl process` of `input` into `out_dir` with `COMPRESSION=compression`: its summary.
    fn process_as(&self, input: &Path, out_dir: &Path, compression: &str) -> Value {
        let args = [
            "process",
            "--input",
            input.to_str().unwrap(),
            "--dir",
            out_dir.to_str().unwrap(),
        ];
        let env = [
            ("FERNET_KEY", self.key.as_str()),
            ("COMPRESSION", compression),
        ];
        let out = log_etl(&args, &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// The records of a zstd'd NDJSON object, decoded by the zstd library itself.
fn unzstd_lines(path: &Path) -> Vec<Map<String, Value>> {
    let text = zstd::stream::decode_all(&fs::read(path).unwrap()[..]).unwrap();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Records as sorted JSON text, to compare sets that arrived in any order.
fn sorted(records: &[Map<String, Value>]) -> Vec<String> {
    let mut text: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    text.sort();
    text
}

#[test]
fn processing_into_a_folder_as_zstd_writes_zst_objects_that_restore_to_the_input() {
    // Given a response over two hours with unusual and undecryptable records
    let fx = Fixture::new();
    let (input, truth) = fx.generate_named("response", 2000, "2023-03-18T14:50:00.000Z", "1");
    // When it is processed with COMPRESSION=zstd
    let out_dir = fx.path("out");
    let summary = fx.process_as(&input, &out_dir, "zstd");
    // Then every object, data and quarantine, is a .json.zst that zstd decodes
    let files = files_under(&out_dir);
    assert!(
        files.iter().any(|f| f.starts_with("quarantine/")),
        "{files:?}"
    );
    assert!(files.iter().all(|f| f.ends_with(".json.zst")), "{files:?}");
    // and the data objects, decoded by zstd and restored, are the good records in order
    let mut decoded = Vec::new();
    for file in files.iter().filter(|f| f.starts_with("data/")) {
        for mut record in unzstd_lines(&out_dir.join(file)) {
            fields::restore(&mut record);
            decoded.push(record);
        }
    }
    assert_eq!(decoded, truth);
    assert_eq!(summary["records_landed"], truth.len());
    // and `log-etl restore` prints the same records
    assert_eq!(restore_path(&out_dir), truth);
}

#[test]
fn a_folder_switched_from_gzip_to_zstd_midway_lands_each_record_once_and_compacts_to_one_object() {
    // Given an hour that received one response as gzip and another as zstd
    let fx = Fixture::new();
    let (first, first_truth) = fx.generate_named("first", 600, "2023-03-18T15:01:00.000Z", "1");
    let (second, second_truth) = fx.generate_named("second", 600, "2023-03-18T15:30:00.000Z", "2");
    let out_dir = fx.path("out");
    fx.process_as(&first, &out_dir, "gzip");
    fx.process_as(&second, &out_dir, "zstd");
    let hour = "data/2023/03/18/15/";
    let landed = files_under(&out_dir);
    let data: Vec<&String> = landed.iter().filter(|f| f.starts_with(hour)).collect();
    assert_eq!(data.len(), 2, "{landed:?}");
    assert!(data[0].ends_with(".json.gz") ^ data[1].ends_with(".json.gz"));
    assert!(data.iter().any(|f| f.ends_with(".json.zst")));
    // When both responses are processed again, each in the other encoding
    for (input, truth, compression) in [
        (&first, &first_truth, "zstd"),
        (&second, &second_truth, "gzip"),
    ] {
        let again = fx.process_as(input, &out_dir, compression);
        // Then nothing new lands: every record, good or quarantined, is found in the other
        // encoding's object
        assert_eq!(again["records_landed"], 0, "{again}");
        assert_eq!(again["objects_written"], 0, "{again}");
        assert_eq!(again["records_already_present"], truth.len(), "{again}");
    }
    assert_eq!(files_under(&out_dir), landed);
    // When the closed hour is compacted with COMPRESSION=zstd
    let out = log_etl(
        &["compact", "--dir", out_dir.to_str().unwrap()],
        &[("COMPRESSION", "zstd")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&summary["hours_compacted"], &summary["objects_read"]),
        (&Value::from(1), &Value::from(2)),
        "{summary}"
    );
    // Then the hour holds one zstd object, and restoring gives every record once
    let compacted = files_under(&out_dir);
    let data: Vec<&String> = compacted.iter().filter(|f| f.starts_with(hour)).collect();
    assert_eq!(data.len(), 1, "{compacted:?}");
    assert!(data[0].ends_with(".json.zst"), "{}", data[0]);
    let everything: Vec<Map<String, Value>> =
        first_truth.iter().chain(&second_truth).cloned().collect();
    let restored = restore_path(&out_dir);
    assert_eq!(restored.len(), everything.len());
    assert_eq!(sorted(&restored), sorted(&everything));
}

/// The records of a data object in either encoding (told by its magic bytes), restored.
fn restore_object(body: &[u8]) -> Vec<Map<String, Value>> {
    let mut records = if body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let text = zstd::stream::decode_all(body).unwrap();
        String::from_utf8(text)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        common::gunzip_lines(body)
    };
    records.iter_mut().for_each(fields::restore);
    records
}

#[tokio::test]
async fn a_bucket_switched_from_gzip_to_zstd_midway_lands_each_record_once_and_compacts_to_one_object()
 {
    use chrono::{TimeZone, Utc};
    use common::world::{self, BUCKET, world_with};
    use log_etl::compact::{self, CompactOptions};
    use log_etl::local::simulator::SimulatorOptions;
    use log_etl::local::synth::SynthOptions;
    use log_etl::store::Store;
    use std::time::{Duration, Instant};

    // Given a source whose windows overlap (the last 150 records, 100 new a step), all in one
    // hour, and a pass of it as gzip, then one of the next window as zstd
    let world = world_with(SimulatorOptions {
        window: 150,
        step: 100,
        record_start: Utc.with_ymd_and_hms(2023, 3, 18, 15, 5, 0).unwrap(),
        record_step: Duration::from_secs(60),
        ..world::source(SynthOptions::default())
    })
    .await;
    let deadline = || Instant::now() + Duration::from_secs(60);
    let (gzip, zstd) = (
        world.pipeline(&[]).await,
        world.pipeline(&[("COMPRESSION", "zstd")]).await,
    );
    gzip.run_pass(Utc::now(), deadline()).await.unwrap();
    world.sim.next_batch();
    let switched = zstd.run_pass(Utc::now(), deadline()).await.unwrap();
    // Then the zstd pass lands only the records the gzip object does not hold
    assert_eq!(switched.written.records_already_present, 50, "{switched:?}");
    assert_eq!(switched.written.records_landed, 100, "{switched:?}");
    // and the same window read again, in either encoding, lands nothing
    for pipeline in [&zstd, &gzip] {
        let again = pipeline.run_pass(Utc::now(), deadline()).await.unwrap();
        assert_eq!(again.written.records_landed, 0, "{again:?}");
        assert_eq!(again.written.objects_written, 0, "{again:?}");
    }
    let data = |objects: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        objects
            .into_iter()
            .filter(|(key, _)| key.starts_with("data/"))
            .collect()
    };
    let landed = data(world.objects(BUCKET).await);
    let keys: Vec<&str> = landed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".json.gz")), "{keys:?}");
    let zst = keys.iter().find(|k| k.ends_with(".json.zst")).unwrap();
    // and the zstd object says so in its Content-Encoding
    let head = world
        .s3
        .head_object()
        .bucket(BUCKET)
        .key(*zst)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_encoding(), Some("zstd"));
    assert_eq!(head.content_type(), Some("application/x-ndjson"));
    // When the closed hour is compacted with COMPRESSION=zstd
    let config = world.config(&[("COMPRESSION", "zstd")]);
    let store = Store::bucket(&world.sdk, &config).unwrap();
    let options = CompactOptions {
        now: Utc.with_ymd_and_hms(2023, 3, 18, 20, 0, 0).unwrap(),
        closed_after: Duration::from_secs(3600),
        hours: None,
        deadline: None,
    };
    let summary = compact::run(&store, &config.objects, &options)
        .await
        .unwrap();
    assert_eq!((summary.hours_compacted, summary.objects_read), (1, 2));
    // Then the hour holds one zstd object with every record served once
    let compacted = data(world.objects(BUCKET).await);
    assert_eq!(compacted.len(), 1);
    assert!(compacted[0].0.ends_with(".json.zst"), "{}", compacted[0].0);
    let restored = restore_object(&compacted[0].1);
    let served = world.sim.ground_truth().records;
    assert_eq!(served.len(), 200);
    assert_eq!(sorted(&restored), sorted(&served));
}

//! A world for end-to-end tests: moto with a bucket and a secret holding the key, and the
//! log-API simulator serving with that key; plus reading the bucket back.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use log_etl::batch::layout::{ObjectLayout, PartitionStyle};
use log_etl::config::Config;
use log_etl::local::simulator::{Simulator, SimulatorOptions};
use log_etl::local::synth::SynthOptions;
use log_etl::pipeline::Pipeline;
use log_etl::record::fernet::{KeyRing, generate_key};
use log_etl::record::fields;
use log_etl::record::hour::{self, Hour};
use log_etl::store::Store;
use serde_json::{Map, Value};

use super::{Moto, gunzip_lines};

pub const BUCKET: &str = "log-etl-test";

pub struct World {
    pub moto: Moto,
    pub sdk: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub secret_arn: String,
    pub key: String,
    pub sim: Simulator,
}

/// The simulator as the real server behaves: batches of 100 replacing each other, on demand.
/// Its first batch starts 20 seconds before 16:00, so it spans two hours.
pub fn source(synth: SynthOptions) -> SimulatorOptions {
    SimulatorOptions {
        window: 100,
        step: 100,
        shuffle: false,
        period: None,
        synth,
        record_start: Utc.with_ymd_and_hms(2023, 3, 18, 15, 59, 40).unwrap(),
        record_step: Duration::from_secs(180),
        truth_file: None,
    }
}

/// Synthetic records of which `per_mille` in a thousand carry a token that does not decrypt (so
/// a batch makes a quarantine object beside its data).
pub fn bad_tokens(per_mille: u32) -> SynthOptions {
    SynthOptions {
        bad_per_mille: per_mille,
        ..SynthOptions::default()
    }
}

/// Moto with a bucket and a secret holding the key, and a simulator using that key, serving
/// as [`source`] says.
pub async fn world(synth: SynthOptions) -> World {
    world_with(source(synth)).await
}

/// As [`world`], with the simulator serving as `options` say.
pub async fn world_with(options: SimulatorOptions) -> World {
    let moto = Moto::start();
    let sdk = super::sdk_config(&moto.endpoint()).await;
    let s3 = log_etl::store::s3::client(&sdk);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let key = generate_key();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret_arn = secrets
        .create_secret()
        .name("log-etl/fernet-key")
        .secret_string(&key)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let sim = Simulator::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        KeyRing::parse(&key).unwrap(),
        options,
    )
    .await
    .unwrap();
    World {
        moto,
        sdk,
        s3,
        secret_arn,
        key,
        sim,
    }
}

impl World {
    pub fn config(&self, overrides: &[(&str, &str)]) -> Config {
        let url = self.sim.url();
        let endpoint = self.moto.endpoint();
        let base = [
            ("LOG_API_URL", url.as_str()),
            ("BUCKET_NAME", BUCKET),
            ("FERNET_SECRET_ID", self.secret_arn.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("FETCH_TIMEOUT_MS", "3000"),
        ];
        Config::from_lookup(|name| {
            overrides
                .iter()
                .chain(base.iter())
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    pub async fn pipeline(&self, overrides: &[(&str, &str)]) -> Pipeline {
        self.pipeline_with(overrides, &self.sdk)
    }

    /// A pipeline into the bucket through `sdk`, configured like [`World::pipeline`].
    fn pipeline_with(&self, overrides: &[(&str, &str)], sdk: &aws_config::SdkConfig) -> Pipeline {
        let config = self.config(overrides);
        let store = Store::bucket(sdk, &config).unwrap();
        Pipeline::new(&config, store, Some(sdk)).unwrap()
    }

    /// A pipeline whose AWS requests go through `http` (to inject S3 faults).
    pub async fn pipeline_via(
        &self,
        overrides: &[(&str, &str)],
        http: super::faulty_s3::FaultyS3,
    ) -> Pipeline {
        let sdk = super::sdk_config_via(&self.moto.endpoint(), Some(http)).await;
        self.pipeline_with(overrides, &sdk)
    }

    /// Fails unless `bucket` holds every record the simulator served exactly once (nothing
    /// lost, nothing doubled), each under its own hour.
    pub async fn assert_holds_what_was_served(&self, bucket: &str) {
        let restored = restore_data(&self.objects(bucket).await);
        let truth = self.sim.ground_truth();
        assert!(!truth.records.is_empty(), "nothing was served");
        assert_eq!(restored.len(), truth.records.len(), "record count");
        assert_eq!(sorted_json(&restored), sorted_json(&truth.records));
    }

    /// Every object in the bucket: key and bytes, in key order.
    pub async fn objects(&self, bucket: &str) -> Vec<(String, Vec<u8>)> {
        bucket_objects(&self.s3, bucket).await
    }
}

/// Every object in `bucket` (one listing page: the tests' buckets hold fewer than 1,000): key
/// and bytes, in key order.
pub async fn bucket_objects(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, Vec<u8>)> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut out = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        out.push((
            key,
            body.body.collect().await.unwrap().into_bytes().to_vec(),
        ));
    }
    out
}

/// Restores every data object, checking each record sits under its own hour's folder.
pub fn restore_data(objects: &[(String, Vec<u8>)]) -> Vec<Map<String, Value>> {
    let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
    let mut restored = Vec::new();
    for (key, bytes) in objects.iter().filter(|(k, _)| k.starts_with("data/")) {
        for mut record in gunzip_lines(bytes) {
            fields::restore(&mut record);
            let hour: Hour = hour::place(record.get("inDate")).unwrap().hour;
            assert!(
                key.starts_with(&format!("{}/", layout.data_hour_path(hour))),
                "{key} holds a record of {hour}"
            );
            restored.push(record);
        }
    }
    restored
}

pub fn sorted_json(records: &[Map<String, Value>]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    lines.sort();
    lines
}

//! The one pipeline every entry point drives: records in, objects encoded, objects written
//! once. The Lambda, `log-etl run`, `process` and the demo all come through here.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::batch::{self, BatchOutput, BatchSettings, BatchStats, EncodedObject, ObjectKind};
use crate::config::{Config, ConfigError, KeySource};
use crate::fetch::{FetchError, Fetcher};
use crate::keyring::{KeyError, KeyRing};
use crate::local_store::{LocalStore, LocalStoreError, PutOutcome};
use crate::response::{self, ResponseError};
use crate::s3_store::{S3Error, S3Store};
use crate::secrets::{SecretError, SecretKeys};
use crate::spool::SpoolPolicy;
use crate::{aws, s3_store, secrets, stream};

/// Where objects are written.
#[derive(Debug, Clone)]
pub enum Store {
    /// A local folder standing in for the bucket.
    Local(LocalStore),
    /// The bucket.
    S3(S3Store),
}

/// Why writing an object failed (after retries).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Local(#[from] LocalStoreError),
    #[error(transparent)]
    S3(#[from] S3Error),
}

impl Store {
    /// Creates the object unless its key exists.
    pub async fn put_once(&self, object: &EncodedObject) -> Result<PutOutcome, StoreError> {
        match self {
            Store::Local(store) => Ok(store.put_once(object)?),
            Store::S3(store) => Ok(store.put_once(object).await?),
        }
    }
}

/// Where the Fernet keys come from at run time.
#[derive(Debug)]
pub enum Keys {
    /// Given directly (`FERNET_KEY`), parsed once.
    Fixed(Arc<KeyRing>),
    /// Read from Secrets Manager and cached.
    Secret(SecretKeys),
}

impl Keys {
    pub async fn current(&self) -> Result<Arc<KeyRing>, RunError> {
        match self {
            Keys::Fixed(keys) => Ok(keys.clone()),
            Keys::Secret(secret) => secret.current().await.map_err(RunError::Secret),
        }
    }
}

/// Why a run failed as a whole. Each variant names the stage, which becomes the Lambda error
/// type so CloudWatch can group failures. Messages never contain a key, token or payload.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration is invalid")]
    Config(#[from] ConfigError),
    #[error("FERNET_KEY is unusable")]
    Key(#[source] KeyError),
    #[error("the Fernet key could not be read")]
    Secret(#[source] SecretError),
    #[error("fetching the batch failed")]
    Fetch(#[from] FetchError),
    #[error("the response is not a batch of records")]
    Response(#[from] ResponseError),
    #[error("encoding the batch failed")]
    Encode(#[source] io::Error),
    #[error("writing objects failed")]
    Store(#[from] StoreError),
}

impl RunError {
    /// The failed stage, as a Lambda error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            RunError::Config(_) => "ConfigError",
            RunError::Key(_) => "KeyError",
            RunError::Secret(_) => "SecretError",
            RunError::Fetch(_) => "FetchError",
            RunError::Response(_) => "ResponseError",
            RunError::Encode(_) => "EncodeError",
            RunError::Store(_) => "StoreError",
        }
    }

    /// The message with every cause, on one line.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Where a scheduled pass writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `BUCKET_NAME`.
    Bucket,
    /// A local folder standing in for the bucket.
    Folder(PathBuf),
}

/// Batch settings from the configuration: layout, gzip level and limits. Bodies stay in memory:
/// a scheduled batch is bounded by `MAX_RESPONSE_BYTES`.
pub fn batch_settings(config: &Config) -> BatchSettings {
    let mut settings = BatchSettings::new(config.layout.clone());
    settings.gzip_level = config.gzip_level;
    settings.limits = config.limits;
    settings.spool = SpoolPolicy::in_memory();
    settings
}

/// Everything a scheduled pass needs, built once (at cold start) and reused.
#[derive(Debug)]
pub struct Pipeline {
    fetcher: Fetcher,
    keys: Keys,
    store: Store,
    settings: BatchSettings,
    start_delay: Duration,
}

impl Pipeline {
    /// Builds the HTTP client, the SDK clients (only those the configuration needs) and the key
    /// source. Reads nothing remote yet.
    pub async fn from_config(config: &Config, target: Target) -> Result<Self, RunError> {
        Self::with_sdk_config(config, target, None).await
    }

    /// As [`Pipeline::from_config`], with the AWS SDK configuration given rather than loaded
    /// from the environment.
    pub async fn with_sdk_config(
        config: &Config,
        target: Target,
        sdk: Option<aws_config::SdkConfig>,
    ) -> Result<Self, RunError> {
        let fetcher = Fetcher::new(config.require_api_url()?, config.fetch.clone())?;
        let key_source = config.require_key_source()?;
        let needs_sdk =
            target == Target::Bucket || matches!(key_source, KeySource::SecretsManager { .. });
        let sdk = match (needs_sdk, sdk) {
            (false, _) => None,
            (true, Some(sdk)) => Some(sdk),
            (true, None) => Some(aws::sdk_config(config).await),
        };
        let keys = match key_source {
            KeySource::Direct(material) => Keys::Fixed(Arc::new(
                KeyRing::parse(material.expose()).map_err(RunError::Key)?,
            )),
            KeySource::SecretsManager { secret_id, ttl } => Keys::Secret(SecretKeys::new(
                secrets::client(sdk.as_ref().expect("built when a secret is used")),
                secret_id.clone(),
                *ttl,
            )),
        };
        let store = match target {
            Target::Bucket => Store::S3(S3Store::new(
                s3_store::client(sdk.as_ref().expect("built for a bucket")),
                config.require_bucket()?.to_owned(),
                config.put_max_attempts,
            )),
            Target::Folder(dir) => Store::Local(LocalStore::new(dir)),
        };
        Ok(Self {
            fetcher,
            keys,
            store,
            settings: batch_settings(config),
            start_delay: config.fetch.start_delay,
        })
    }

    /// Reads the key ahead of the first run (at cold start), so the first run does not pay for
    /// it. A failure here is reported by the run that needs the key.
    pub async fn warm_up(&self) -> Result<(), RunError> {
        self.keys.current().await.map(|_| ())
    }

    /// One scheduled pass: wait the start delay, read the key, fetch the batch, encode it, write
    /// each object once. `now` names the quarantine hour; `deadline` bounds the whole pass: the
    /// fetch, retries included, may use two thirds of the time left, the writes the rest.
    pub async fn run_pass(
        &self,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        tokio::time::sleep(self.start_delay.min(left / 4)).await;
        let keys = self.keys.current().await?;
        let fetch_deadline = started + left * 2 / 3;
        let fetch_started = Instant::now();
        let fetched = self.fetcher.fetch(fetch_deadline).await?;
        let fetch_ms = fetch_started.elapsed().as_millis() as u64;
        let records = response::parse_response(&fetched.body)?;
        let output =
            batch::encode_batch(&records, &keys, &self.settings, now).map_err(RunError::Encode)?;
        let mut summary = land(&output, &self.store, started).await?;
        summary.fetch_ms = Some(fetch_ms);
        summary.fetch_attempts = Some(fetched.attempts);
        Ok(summary)
    }
}

/// What a pass or a `process` run did; logged as one line and returned by the Lambda.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Source records fetched (or read from the file).
    pub records_in: u64,
    /// Records now in data objects, whether this run wrote the object or found it present.
    pub records_written: u64,
    pub records_quarantined: u64,
    pub duplicates_dropped: u64,
    /// Objects created by this run (data and quarantine).
    pub objects_written: u64,
    /// Objects whose key already existed: a retried or overlapping run of the same batch.
    pub objects_already_present: u64,
    /// Bytes of the source records as received.
    pub bytes_in: u64,
    pub bytes_uncompressed: u64,
    /// Compressed bytes of all objects of the batch.
    pub bytes_out: u64,
    /// Hours (UTC, `YYYY-MM-DDTHH`) that received records.
    pub hours: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_attempts: Option<u32>,
    pub duration_ms: u64,
}

impl RunSummary {
    fn from_stats(stats: &BatchStats) -> Self {
        Self {
            records_in: stats.records_in,
            records_written: stats.records_landed,
            records_quarantined: stats.records_quarantined,
            duplicates_dropped: stats.duplicates_dropped,
            bytes_in: stats.bytes_in,
            bytes_uncompressed: stats.bytes_uncompressed,
            bytes_out: stats.bytes_out,
            ..Self::default()
        }
    }
}

/// Encodes a saved response (a JSON array of any size, read as a stream), using every core.
pub fn encode_saved_response(
    reader: impl Read,
    keys: &KeyRing,
    settings: &BatchSettings,
    run_time: DateTime<Utc>,
) -> Result<BatchOutput, ResponseError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    stream::encode_stream(reader, keys, settings, run_time, workers)
}

/// Writes every object of a batch once (data objects first, quarantine last) and tallies the
/// outcome. Stops at the first failure: what was written stays, and a rerun of the same batch
/// finds it present instead of writing it twice.
pub async fn land(
    output: &BatchOutput,
    store: &Store,
    started: Instant,
) -> Result<RunSummary, StoreError> {
    let mut summary = RunSummary::from_stats(&output.stats);
    for object in &output.objects {
        match store.put_once(object).await? {
            PutOutcome::Written => summary.objects_written += 1,
            PutOutcome::AlreadyPresent => summary.objects_already_present += 1,
        }
        if let ObjectKind::Data { hour } = object.kind {
            let hour = hour.to_string();
            if summary.hours.last() != Some(&hour) && !summary.hours.contains(&hour) {
                summary.hours.push(hour);
            }
        }
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

//! The one pipeline every entry point drives: records in, objects encoded, objects written
//! once. The Lambda, `log-etl run`, `process` and the demo all come through here.

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::secrets::{self, SecretError, SecretKeys};
use crate::batch::response::{self, ResponseError};
use crate::batch::spool::SpoolPolicy;
use crate::batch::{self, BatchOutput, BatchSettings, BatchStats, ObjectKind, parallel};
use crate::config::{Config, ConfigError, KeySource};
use crate::record::fernet::{KeyError, KeyRing};
use crate::source::{FetchError, Fetcher};
use crate::store::{PutOutcome, Store, StoreError};

/// Where the Fernet keys come from at run time.
#[derive(Debug)]
pub enum Keys {
    /// Given directly (`FERNET_KEY`), parsed once.
    Direct(Arc<KeyRing>),
    /// Read from Secrets Manager and cached.
    Secret(SecretKeys),
}

impl Keys {
    pub async fn current(&self) -> Result<Arc<KeyRing>, RunError> {
        match self {
            Keys::Direct(ring) => Ok(ring.clone()),
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
    #[error("the temporary folder for object bodies could not be made")]
    Spill(#[source] io::Error),
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
            RunError::Encode(_) | RunError::Spill(_) => "EncodeError",
            RunError::Store(_) => "StoreError",
        }
    }

    /// The message with every cause, on one line.
    pub fn chain(&self) -> String {
        crate::logging::error_chain(self)
    }
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
    /// Builds the HTTP client, the Secrets Manager client (when the key is a secret) and the key
    /// source. Reads nothing remote yet.
    pub async fn from_config(config: &Config, store: Store) -> Result<Self, RunError> {
        let sdk = match config.require_key_source()? {
            KeySource::SecretsManager { .. } => Some(crate::aws::sdk_config(config).await),
            KeySource::Direct(_) => None,
        };
        Self::with_sdk_config(config, store, sdk.as_ref())
    }

    /// A pipeline writing to `BUCKET_NAME`, with one SDK configuration for S3 and the secret.
    pub async fn for_bucket(config: &Config) -> Result<Self, RunError> {
        let sdk = crate::aws::sdk_config(config).await;
        let bucket = config.require_bucket()?.to_owned();
        let store = Store::bucket(&sdk, bucket, config.put_max_attempts);
        Self::with_sdk_config(config, store, Some(&sdk))
    }

    /// As [`Pipeline::from_config`], with the AWS SDK configuration given rather than loaded
    /// from the environment (needed only when the key is a secret).
    pub fn with_sdk_config(
        config: &Config,
        store: Store,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, RunError> {
        let fetcher = Fetcher::new(config.require_api_url()?, config.fetch.clone())?;
        let keys = match config.require_key_source()? {
            KeySource::Direct(material) => Keys::Direct(Arc::new(
                KeyRing::parse(material.expose()).map_err(RunError::Key)?,
            )),
            KeySource::SecretsManager { secret_id, ttl } => Keys::Secret(SecretKeys::new(
                secrets::client(sdk.expect("an SDK configuration is given when a secret is used")),
                secret_id.clone(),
                *ttl,
            )),
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
        let ring = self.keys.current().await?;
        let fetch_deadline = started + left * 2 / 3;
        let fetch_started = Instant::now();
        let fetched = self.fetcher.fetch(fetch_deadline).await?;
        let fetch_ms = fetch_started.elapsed().as_millis() as u64;
        let records = response::parse_response(&fetched.body)?;
        let output =
            batch::encode_batch(&records, &ring, &self.settings, now).map_err(RunError::Encode)?;
        let mut summary = write_objects(&output, &self.store, started).await?;
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
    pub records_landed: u64,
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
            records_landed: stats.records_landed,
            records_quarantined: stats.records_quarantined,
            duplicates_dropped: stats.duplicates_dropped,
            bytes_in: stats.bytes_in,
            bytes_uncompressed: stats.bytes_uncompressed,
            bytes_out: stats.bytes_out,
            ..Self::default()
        }
    }
}

/// Processes a saved response (a JSON array of any size, read as a stream) into `store`, using
/// every core: the objects a scheduled pass would write, written once each. Bodies that outgrow
/// memory wait in a private temporary folder made under `spill_parent` (beside a folder store's
/// objects, so they are linked into place), removed whatever happens.
pub async fn process_saved_response(
    input: impl Read + Send,
    ring: &KeyRing,
    config: &Config,
    store: &Store,
    spill_parent: &Path,
    run_time: DateTime<Utc>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let spill = tempfile::Builder::new()
        .prefix(".log-etl-tmp-")
        .tempdir_in(spill_parent)
        .map_err(RunError::Spill)?;
    let mut settings = batch_settings(config);
    settings.spool = SpoolPolicy::spill_to(spill.path().to_owned(), 256 << 10);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let output = parallel::encode_parallel(input, ring, &settings, run_time, workers)?;
    let summary = write_objects(&output, store, started).await?;
    drop(output);
    drop(spill);
    Ok(summary)
}

/// Writes every object of a batch once (data objects first, quarantine last) and tallies the
/// outcome. Stops at the first failure: what was written stays, and a rerun of the same batch
/// finds it present instead of writing it twice.
pub async fn write_objects(
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

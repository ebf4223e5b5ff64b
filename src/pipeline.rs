//! The one pipeline every entry point drives: records in, objects encoded, objects written
//! once. The Lambda, `log-etl run`, `process` and the demo all come through here.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{SecretError, SecretKeys, secrets_client};
use crate::batch::response::{self, ResponseError, ResponseLimits};
use crate::batch::spool::{self, SpoolPolicy};
use crate::batch::{Batch, BatchOutput, BatchSettings, parallel};
use crate::config::{Config, ConfigError, KeySource};
use crate::record::fernet::{KeyError, KeyRing};
use crate::source::{FetchError, Fetcher};
use crate::store::Store;
use crate::store::exactly_once::{self, WriteError, WriteReport, WriteSettings};

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
    Store(#[from] WriteError),
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
            RunError::Store(WriteError::Store(_) | WriteError::Unsettled { .. }) => "StoreError",
            RunError::Store(WriteError::Body { .. }) => "EncodeError",
        }
    }

    /// The message with every cause, on one line.
    pub fn chain(&self) -> String {
        crate::logging::error_chain(self)
    }
}

/// Batch settings from the configuration: layout, gzip level and limits. Bodies stay in memory
/// until a run gives them a spill folder.
pub fn batch_settings(config: &Config) -> BatchSettings {
    let mut settings = BatchSettings::new(config.layout.clone());
    settings.gzip_level = config.gzip_level;
    settings.limits = config.limits;
    settings.spool = SpoolPolicy::in_memory();
    settings
}

/// Bytes a body keeps in memory before it moves to its run's spill folder.
const SPILL_AFTER_BYTES: usize = 256 << 10;

/// Everything a scheduled pass needs, built once (at cold start) and reused.
#[derive(Debug)]
pub struct Pipeline {
    fetcher: Fetcher,
    keys: Keys,
    store: Store,
    settings: BatchSettings,
    start_delay: Duration,
    max_records: u64,
    /// Where each pass makes its spill folder (the system's temporary folder: `/tmp` on Lambda).
    spill_parent: PathBuf,
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
                secrets_client(sdk.expect("an SDK configuration is given when a secret is used")),
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
            max_records: config.fetch.max_records,
            spill_parent: std::env::temp_dir(),
        })
    }

    /// Reads the key ahead of the first run (at cold start), so the first run does not pay for
    /// it. A failure here is reported by the run that needs the key.
    pub async fn warm_up(&self) -> Result<(), RunError> {
        self.keys.current().await.map(|_| ())
    }

    /// One scheduled pass: wait the start delay, read the key, fetch the batch, encode it, write
    /// the records its hours do not hold yet. `now` bounds the hours records may land in and
    /// names the quarantine hour; `deadline` bounds the whole pass: the fetch, retries included,
    /// may use two thirds of the time left, the writes the rest.
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
        let spill = spool::spill_dir(&self.spill_parent).map_err(RunError::Spill)?;
        let mut settings = self.settings.clone();
        settings.spool = SpoolPolicy::spill_to(spill.path().to_owned(), SPILL_AFTER_BYTES);
        let output = encode_response(&fetched.body, &ring, &settings, self.max_records, now)?;
        let mut summary = write(&output, &self.store, &settings, started).await?;
        summary.fetch_ms = Some(fetch_ms);
        summary.fetch_attempts = Some(fetched.attempts);
        Ok(summary)
    }
}

/// Encodes a fetched response one record at a time (no list of its records is built, so a body
/// of tiny elements costs no more than its bytes). More than `max_records` records fail the run
/// before anything is written.
fn encode_response(
    body: &[u8],
    ring: &KeyRing,
    settings: &BatchSettings,
    max_records: u64,
    now: DateTime<Utc>,
) -> Result<BatchOutput, RunError> {
    let mut batch = Batch::new(ring, settings, now);
    let limits = ResponseLimits {
        max_element: usize::MAX,
        max_records,
    };
    response::for_each_record(body, limits, |raw| batch.push(raw))?;
    batch.finish().map_err(RunError::Encode)
}

/// What a pass or a `process` run did; logged as one line and returned by the Lambda.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Source records fetched (or read from the file).
    pub records_in: u64,
    /// Bytes of the source records as received.
    pub bytes_in: u64,
    /// What was written, and what the hours already held.
    #[serde(flatten)]
    pub written: WriteReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_attempts: Option<u32>,
    pub duration_ms: u64,
}

/// Processes a saved response (a JSON array of any size, read as a stream) into `store`, using
/// every core: the objects a scheduled pass would write, each record written once. Bodies that
/// outgrow memory wait in a private temporary folder made under `spill_parent` (beside a folder
/// store's objects, so they are linked into place), removed whatever happens.
pub async fn process_saved_response(
    input: impl Read + Send,
    ring: &KeyRing,
    config: &Config,
    store: &Store,
    spill_parent: &Path,
    run_time: DateTime<Utc>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let spill = spool::spill_dir(spill_parent).map_err(RunError::Spill)?;
    let mut settings = batch_settings(config);
    settings.spool = SpoolPolicy::spill_to(spill.path().to_owned(), SPILL_AFTER_BYTES);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let output = parallel::encode_parallel(input, ring, &settings, run_time, workers)?;
    let summary = write(&output, store, &settings, started).await?;
    drop(output);
    drop(spill);
    Ok(summary)
}

/// Writes the records of a batch that their hours do not hold yet (quarantine first) and sums
/// up the run. Stops at the first failure: what was written stays, and a rerun of the same batch
/// finds it instead of writing it twice.
async fn write(
    output: &BatchOutput,
    store: &Store,
    settings: &BatchSettings,
    started: Instant,
) -> Result<RunSummary, RunError> {
    let written =
        exactly_once::write_new_records(output, store, &WriteSettings::of(settings)).await?;
    Ok(RunSummary {
        records_in: output.stats.records_in,
        bytes_in: output.stats.bytes_in,
        written,
        duration_ms: started.elapsed().as_millis() as u64,
        ..RunSummary::default()
    })
}

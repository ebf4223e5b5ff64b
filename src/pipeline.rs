//! The one pipeline every entry point drives: records in, objects encoded, objects written
//! once. The Lambda, `log-etl run`, `process` and the demo all build a [`Pipeline`] with
//! [`Pipeline::new`] and run a scheduled pass ([`Pipeline::run_pass`]) or a saved response
//! ([`Pipeline::process`]) through it, or the quarantine of some hours again
//! ([`Pipeline::replay`]).

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{FernetKeys, SecretError};
use crate::batch::parallel::{self, ParallelError};
use crate::batch::response::{self, ResponseError, ResponseLimits, Stop};
use crate::batch::{Batch, BatchOutput, BatchSettings, EncodeError, encode, spool};
use crate::config::{Config, ConfigError, var};
use crate::exactly_once::{self, WriteError, WriteReport};
use crate::progress::Progress;
use crate::record::fernet::KeyError;
use crate::record::hour::Hour;
use crate::replay::{self, ReplaySummary, Replayer};
use crate::source::{FetchError, Fetcher};
use crate::store::{Store, StoreError};

/// Why a run failed as a whole. Each variant names the stage, and its error type is the Lambda
/// error type, so CloudWatch can group failures. Messages never contain a key, token or payload.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration is invalid")]
    Config(#[from] ConfigError),
    #[error("the Fernet key given is unusable")]
    Key(#[from] KeyError),
    #[error("the Fernet key could not be read")]
    Secret(#[from] SecretError),
    #[error("fetching the batch failed")]
    Fetch(#[from] FetchError),
    #[error("the response is not a batch of records")]
    Response(#[from] ResponseError),
    #[error("encoding the objects failed")]
    Encode(#[from] EncodeError),
    #[error("writing objects failed")]
    Store(#[from] StoreError),
}

impl From<Stop<EncodeError>> for RunError {
    fn from(stop: Stop<EncodeError>) -> Self {
        match stop {
            Stop::Response(e) => RunError::Response(e),
            Stop::Handler(e) => RunError::Encode(e),
        }
    }
}

impl From<ParallelError> for RunError {
    fn from(err: ParallelError) -> Self {
        match err {
            ParallelError::Response(e) => RunError::Response(e),
            ParallelError::Encode(e) => RunError::Encode(e),
        }
    }
}

impl From<WriteError> for RunError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Store(e) => RunError::Store(e),
            WriteError::Encode(e) => RunError::Encode(e),
        }
    }
}

impl RunError {
    /// The type of the error that failed the run, as a Lambda error type.
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
}

/// Everything a pass needs, built once (at cold start) from the configuration and reused.
#[derive(Debug)]
pub struct Pipeline {
    /// The log API; `None` when no `LOG_API_URL` is set (saved responses only).
    source: Option<Fetcher>,
    keys: FernetKeys,
    store: Store,
    settings: BatchSettings,
    start_delay: Duration,
    /// What a fetched response may hold (its bytes are bounded by the fetch).
    pass_limits: ResponseLimits,
    /// What a saved response may hold (no overall bound: it is read as a stream).
    saved_limits: ResponseLimits,
    /// Where each run makes its spill folder.
    spill_parent: PathBuf,
    /// How far a `process` run has got (counted into nothing unless set).
    progress: Progress,
}

impl Pipeline {
    /// The pipeline of `config` writing into `store`: the HTTP client (when `LOG_API_URL` is
    /// set) and the Fernet keys (read from the secret through `sdk` when they are in one). Reads
    /// nothing remote yet.
    pub fn new(
        config: &Config,
        store: Store,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, RunError> {
        let source = match &config.api_url {
            Some(url) => Some(Fetcher::new(url.expose(), config.fetch.clone())?),
            None => None,
        };
        let keys = FernetKeys::new(config.require_key_source()?, sdk)?;
        Ok(Self {
            source,
            keys,
            spill_parent: store.spill_parent(),
            store,
            settings: BatchSettings::new(config.objects.clone(), config.limits),
            start_delay: config.fetch.start_delay,
            pass_limits: ResponseLimits {
                max_element: usize::MAX,
                max_records: config.fetch.max_records,
            },
            saved_limits: ResponseLimits {
                max_element: response::element_limit(config.limits.max_record_bytes),
                max_records: u64::MAX,
            },
            progress: Progress::default(),
        })
    }

    /// Reads the key ahead of the first run (at cold start), so the first run does not pay for
    /// it. A failure here is reported by the run that needs the key.
    pub async fn warm_up(&self) -> Result<(), RunError> {
        self.keys
            .current()
            .await
            .map(|_| ())
            .map_err(RunError::from)
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
        let source = self
            .source
            .as_ref()
            .ok_or(ConfigError::Missing(var::LOG_API_URL.name))?;
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        tokio::time::sleep(self.start_delay.min(left / 4)).await;
        let ring = self.keys.current().await?;
        let fetch_deadline = started + left * 2 / 3;
        let fetch_started = Instant::now();
        let fetched = source.fetch(fetch_deadline).await?;
        let fetch_ms = fetch_started.elapsed().as_millis() as u64;
        let spill = self.spill_dir()?;
        let settings = self.spilling_into(spill.path());
        // One record at a time: no list of the response's records is built, so a body of tiny
        // elements costs no more than its bytes.
        let mut batch = Batch::new(&ring, &settings, now);
        response::for_each_element(&fetched.body[..], self.pass_limits, |element| {
            batch.push(element)
        })?;
        let output = batch.finish()?;
        // The invocation ends at its deadline whatever is in flight: end the writes first, so
        // the run fails typed and the schedule's retry lands the rest.
        let mut summary =
            tokio::time::timeout_at(deadline.into(), self.write(&output, &settings, started))
                .await
                .map_err(|_| StoreError::OutOfTime)??;
        summary.fetch_ms = Some(fetch_ms);
        summary.fetch_attempts = Some(fetched.attempts);
        Ok(summary)
    }

    /// Processes a saved response (a JSON array of any size, read as a stream) on every core:
    /// the objects a scheduled pass would write, each record written once. Bodies that outgrow
    /// memory wait in a private temporary folder, removed whatever happens.
    pub async fn process(
        &self,
        input: impl Read + Send,
        run_time: DateTime<Utc>,
    ) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let ring = self.keys.current().await?;
        let spill = self.spill_dir()?;
        let mut settings = self.spilling_into(spill.path());
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        // With more than one core, compression leaves the thread that keeps records in order.
        if workers > 1 {
            settings.objects = settings.objects.compressing_apart();
        }
        // Read through a buffer of its own, so the count costs one add per 256 KiB.
        let input = std::io::BufReader::with_capacity(256 * 1024, self.progress.reading(input));
        let output = parallel::encode_parallel(
            input,
            &ring,
            &settings,
            self.saved_limits,
            run_time,
            workers,
        )?;
        self.progress.add_records(output.stats.records_in);
        self.write(&output, &settings, started).await
    }

    /// Counts the bytes a [`Pipeline::process`] reads into `progress` as it reads them, and its
    /// records once they are encoded.
    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = progress;
    }

    /// Replays the quarantine of the run hours `hours` (both ends included; every hour when
    /// `None`) at `now`, which bounds the hours records may land in and names this run's
    /// quarantine hour: the records that pass now land once, those refused again stay where they
    /// are (a new line in this run's quarantine when their reason changed). Nothing is deleted;
    /// a second replay lands nothing. `deadline`, when given, bounds the whole run.
    pub async fn replay(
        &self,
        hours: Option<(Hour, Hour)>,
        now: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> Result<ReplaySummary, RunError> {
        let work = self.replay_hours(hours, now);
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), work)
                .await
                .map_err(|_| StoreError::OutOfTime)?,
            None => work.await,
        }
    }

    async fn replay_hours(
        &self,
        hours: Option<(Hour, Hour)>,
        now: DateTime<Utc>,
    ) -> Result<ReplaySummary, RunError> {
        let started = Instant::now();
        let ring = self.keys.current().await?;
        let spill = self.spill_dir()?;
        let settings = self.spilling_into(spill.path());
        let objects = &settings.objects;
        let keys = replay::quarantine_keys(&self.store, &objects.layout, hours).await?;
        let batch = Batch::new(&ring, &settings, now);
        let mut replayer = Replayer::new(batch, &ring, settings.limits, now);
        for key in &keys {
            let reader = self.store.open(key, &objects.spool).await?;
            replayer.summary.objects_read += 1;
            for line in encode::read_lines(reader, objects.read) {
                match line {
                    Ok(line) => replayer.line(&line)?,
                    Err(reason) => {
                        // The lines before the fault were replayed; the object stays as it is.
                        tracing::warn!(key = %key, reason = %reason, "unreadable quarantine object: left in place");
                        replayer.summary.objects_unreadable += 1;
                        replayer.summary.unreadable_objects.push(key.clone());
                        break;
                    }
                }
            }
        }
        let (output, mut summary) = replayer.finish()?;
        let written = exactly_once::write_new_records(&output, &self.store, objects).await?;
        summary.add_written(&written);
        summary.from = hours.map(|(from, _)| from.to_string());
        summary.to = hours.map(|(_, to)| to.to_string());
        summary.duration_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }

    /// A private folder for this run's spilled bodies (in a folder store not made yet, the
    /// folder is made first).
    fn spill_dir(&self) -> Result<spool::SpillDir, EncodeError> {
        std::fs::create_dir_all(&self.spill_parent)
            .and_then(|()| spool::spill_dir(&self.spill_parent))
            .map_err(EncodeError::SpillFolder)
    }

    /// The batch settings with bodies spilling into `dir`.
    fn spilling_into(&self, dir: &std::path::Path) -> BatchSettings {
        BatchSettings {
            objects: self.settings.objects.spilling_into(dir),
            ..self.settings.clone()
        }
    }

    /// Writes the records of a batch that their hours do not hold yet (quarantine first) and
    /// sums up the run. Stops at the first failure: what was written stays, and a rerun of the
    /// same batch finds it instead of writing it twice.
    async fn write(
        &self,
        output: &BatchOutput,
        settings: &BatchSettings,
        started: Instant,
    ) -> Result<RunSummary, RunError> {
        let written =
            exactly_once::write_new_records(output, &self.store, &settings.objects).await?;
        Ok(RunSummary {
            records_in: output.stats.records_in,
            bytes_in: output.stats.bytes_in,
            records_undecryptable: output.stats.records_undecryptable,
            no_record_verified: output.stats.no_record_verified(),
            written,
            duration_ms: started.elapsed().as_millis() as u64,
            refused_by_reason: output.stats.refused_by_reason.clone(),
            ..RunSummary::default()
        })
    }
}

/// What a pass or a `process` run did; printed as one JSON line, returned by the Lambda, and
/// the source of its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Source records fetched (or read from the file).
    pub records_in: u64,
    /// Bytes of the source records as received.
    pub bytes_in: u64,
    /// Records whose token verifies under none of the keys (quarantined).
    pub records_undecryptable: u64,
    /// Records reached the keys and none verified: the key is wrong or was rotated. The
    /// command line exits 3 and the Lambda emits `NoRecordVerified` = 1.
    pub no_record_verified: bool,
    /// What was written, and what the hours already held.
    #[serde(flatten)]
    pub written: WriteReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_attempts: Option<u32>,
    pub duration_ms: u64,
    /// Records the batch refused, by reason (`BatchStats::refused_by_reason`), for the command
    /// line's summary; not in the JSON line, which scripts parse.
    #[serde(skip)]
    pub refused_by_reason: std::collections::BTreeMap<&'static str, u64>,
}

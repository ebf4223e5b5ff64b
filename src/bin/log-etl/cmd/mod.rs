//! One module per command, each with its arguments and a `run`; what they share: the one-line
//! error with its exit code, the Fernet key arguments, the synthetic-record arguments, and the
//! `--hours` range.

pub mod backfill;
pub mod compact;
pub mod demo;
pub mod generate;
pub mod keygen;
pub mod process;
pub mod replay;
pub mod restore;
pub mod run;
pub mod settings;
pub mod simulate;
pub mod status;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aws_config::SdkConfig;
use log_etl::config::{Config, FernetKeySource, Secret, var};
use log_etl::local::synth::SynthOptions;
use log_etl::logging::error_chain;
use log_etl::pipeline::{RunError, RunSummary};
use log_etl::record::fernet::KeyRing;
use log_etl::source::SafeUrl;
use log_etl::store::{FolderStore, Store};

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or input: exit code 2.
    Usage(String),
    /// The run failed: exit code 1.
    Failed(String),
    /// Records came and not one verified under the key(s), so all went to quarantine: exit
    /// code 3 (the key is wrong or was rotated).
    NoRecordVerified(String),
    /// The reader of our output went away (`| head`): their choice, not a failure.
    ReaderClosed,
}

/// Exit codes: 0 everything landed, 1 a run failed, 2 bad usage or input, 3 no record verified
/// under the key(s).
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NO_RECORD_VERIFIED: u8 = 3;

impl CliError {
    pub fn usage(message: &str) -> Self {
        CliError::Usage(message.to_owned())
    }

    pub fn usage_from(context: &str, err: &dyn Error) -> Self {
        tracing::debug!(error = ?err, "{context}");
        CliError::Usage(format!("{context}: {}", error_chain(err)))
    }

    pub fn failed(context: &str, err: &dyn Error) -> Self {
        tracing::debug!(error = ?err, "{context}");
        CliError::Failed(format!("{context}: {}", error_chain(err)))
    }

    /// A failed run, said in words (the Lambda's error type, `RunError::error_type`, is for
    /// CloudWatch, not people); bad settings or keys are usage errors.
    pub fn run(err: RunError) -> Self {
        Self::run_at(err, None)
    }

    /// A failed run of a pass that writes to a bucket: a failure of S3 also names the region
    /// and endpoint asked.
    pub fn run_at(err: RunError, aws: Option<&str>) -> Self {
        tracing::debug!(error = ?err, "the run failed");
        let mut message = error_chain(&err);
        // A secret's error names its endpoint already.
        if let (RunError::Store(_), Some(aws)) = (&err, aws) {
            message.push_str(&format!(" ({aws})"));
        }
        match err {
            RunError::Config(_) | RunError::Key(_) => CliError::Usage(message),
            _ => CliError::Failed(message),
        }
    }
}

/// A pass that fetched records of which not one verified under the key(s) is an error of its
/// own: the records are in quarantine, and the key is what to check. `keys` says where the
/// keys came from.
pub fn check_verified(summary: &RunSummary, keys: &str) -> Result<(), CliError> {
    if !summary.no_record_verified {
        return Ok(());
    }
    Err(CliError::NoRecordVerified(format!(
        "no record verified under the Fernet key(s): {} record(s) went to quarantine; the key is \
         wrong or was rotated: check {keys}",
        summary.records_undecryptable
    )))
}

/// The exit status of a command, its error printed on one line.
pub fn exit_code(result: Result<(), CliError>) -> ExitCode {
    let (code, message) = match result {
        Ok(()) | Err(CliError::ReaderClosed) => return ExitCode::SUCCESS,
        Err(CliError::Usage(message)) => (EXIT_USAGE, message),
        Err(CliError::Failed(message)) => (EXIT_FAILED, message),
        Err(CliError::NoRecordVerified(message)) => (EXIT_NO_RECORD_VERIFIED, message),
    };
    eprintln!("log-etl: error: {message}");
    ExitCode::from(code)
}

/// The settings from the environment.
pub fn config() -> Result<Config, CliError> {
    Config::from_env().map_err(|e| CliError::usage_from("a setting is invalid", &e))
}

/// Prints a summary as one JSON line.
pub fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string(value).expect("serialisable"));
}

/// Where the Fernet key comes from: a file, the command line, or `FERNET_KEY`.
#[derive(clap::Args)]
pub struct KeyArgs {
    /// File holding the Fernet key (or a JSON list of keys, newest first); without it or --key,
    /// the key is FERNET_KEY's.
    #[arg(long, conflicts_with = "key")]
    key_file: Option<PathBuf>,
    /// The Fernet key itself. `ps` shows it to every user: prefer --key-file or FERNET_KEY.
    #[arg(long)]
    key: Option<String>,
}

impl KeyArgs {
    /// The key ring from `--key-file`, else `--key`, else `FERNET_KEY`.
    pub fn ring(&self) -> Result<KeyRing, CliError> {
        KeyRing::parse(&self.material()?)
            .map_err(|e| CliError::usage_from("the Fernet key is unusable", &e))
    }

    /// The keys as the configuration's key source, checked to be usable.
    pub fn source(&self) -> Result<FernetKeySource, CliError> {
        self.ring()?;
        Ok(FernetKeySource::Direct(Secret::new(self.material()?)))
    }

    fn material(&self) -> Result<String, CliError> {
        match (&self.key_file, &self.key) {
            (Some(path), _) => read_key_file(path),
            (None, Some(key)) => Ok(key.clone()),
            (None, None) => std::env::var(var::FERNET_KEY.name).map_err(|_| {
                CliError::usage("no Fernet key: pass --key-file FILE or set FERNET_KEY")
            }),
        }
    }
}

/// Where the objects are: a folder standing in for the bucket, or a bucket (one of the two).
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct StoreArgs {
    /// Folder standing in for the bucket.
    #[arg(long, visible_alias = "out-dir")]
    pub dir: Option<PathBuf>,
    /// Bucket (credentials, region and AWS_ENDPOINT_URL from the environment).
    #[arg(long)]
    pub bucket: Option<String>,
}

/// A store opened for a command, with the AWS SDK configuration when it needs one (a bucket,
/// or a key in Secrets Manager).
pub struct Opened {
    pub store: Store,
    pub sdk: Option<SdkConfig>,
    /// The region and endpoint AWS calls go to, as errors name them.
    pub aws: Option<String>,
}

/// `region R, endpoint E` of an SDK configuration (the endpoint without user info or query).
fn aws_location(sdk: &SdkConfig) -> String {
    let region = sdk
        .region()
        .map_or("(none set)".to_owned(), |r| r.to_string());
    let endpoint = match sdk.endpoint_url() {
        Some(url) => SafeUrl::parse(url).map_or("(unparsable)".to_owned(), |u| u.to_string()),
        None => format!("https://s3.{region}.amazonaws.com"),
    };
    format!("region {region}, endpoint {endpoint}")
}

/// Opens the folder `dir`, else the bucket (`bucket`, else `BUCKET_NAME`).
pub async fn open_store(
    dir: Option<&Path>,
    bucket: Option<String>,
    config: &mut Config,
) -> Result<Opened, CliError> {
    if bucket.is_some() {
        config.bucket = bucket;
    }
    let secret = matches!(
        config.key_source,
        Some(FernetKeySource::SecretsManager { .. })
    );
    let sdk = match (dir, secret) {
        (Some(_), false) => None,
        _ => Some(log_etl::aws::sdk_config(config).await),
    };
    let store = match (dir, &sdk) {
        (Some(dir), _) => Store::Folder(FolderStore::new(dir)),
        (None, Some(sdk)) => Store::bucket(sdk, config)
            .map_err(|e| CliError::usage_from("a setting is invalid", &e))?,
        (None, None) => unreachable!("an SDK configuration is loaded for a bucket"),
    };
    let aws = sdk.as_ref().map(aws_location);
    Ok(Opened { store, sdk, aws })
}

fn read_key_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::usage_from(&format!("cannot read {}", path.display()), &e))
}

/// What generated records are like.
#[derive(clap::Args)]
pub struct SynthArgs {
    /// Seed of the generator: the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Records per thousand with unusual but valid values.
    #[arg(long, default_value_t = 0)]
    unusual_per_mille: u32,
    /// Records per thousand with tokens that cannot be decrypted.
    #[arg(long, default_value_t = 0)]
    bad_per_mille: u32,
    /// Milliseconds between two records (give or take a fifteenth); the server's is 300.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    interval_ms: u32,
}

impl From<SynthArgs> for SynthOptions {
    fn from(args: SynthArgs) -> Self {
        Self {
            seed: args.seed,
            unusual_per_mille: args.unusual_per_mille,
            bad_per_mille: args.bad_per_mille,
            interval_ms: args.interval_ms,
            ..SynthOptions::default()
        }
    }
}

/// `--hours FROM..TO` (each `YYYY-MM-DDTHH`, UTC, both ends included), as `compact` and
/// `replay` take it; the replay function's event is read by the same parser.
pub fn parse_hours(
    text: &str,
) -> Result<(log_etl::record::hour::Hour, log_etl::record::hour::Hour), String> {
    log_etl::replay::parse_hour_range(text)
}

/// How a command shows itself: the global flags, and whether stdout and stderr are terminals.
#[derive(Debug, Clone, Copy, Default)]
pub struct Manners {
    /// `--json`: the one JSON line even on a terminal.
    pub json: bool,
    /// `--quiet`: no progress bar.
    pub quiet: bool,
    pub stdout_is_terminal: bool,
    pub stderr_is_terminal: bool,
}

static MANNERS: std::sync::OnceLock<Manners> = std::sync::OnceLock::new();

impl Manners {
    /// Settles the manners of this process (`main`, once, before any command runs).
    pub fn install(self) {
        let _ = MANNERS.set(self);
    }

    /// The manners of this process.
    pub fn get() -> Manners {
        MANNERS.get().copied().unwrap_or_default()
    }

    /// A summary for people (stdout a terminal, no `--json`), else the one JSON line.
    pub fn human(self) -> bool {
        self.stdout_is_terminal && !self.json
    }

    /// A progress bar on stderr (a terminal, no `--quiet`).
    pub fn progress(self) -> bool {
        self.stderr_is_terminal && !self.quiet
    }
}

/// Prints a command's summary: `human()`'s lines on a terminal, else `value` as one JSON line
/// (the same figures).
pub fn report<T: serde::Serialize>(value: &T, human: impl FnOnce(&T) -> String) {
    if Manners::get().human() {
        println!("{}", human(value));
    } else {
        print_json(value);
    }
}

/// A right-aligned green verb, as cargo's `Finished` (no colour when stdout is not a terminal).
pub fn headline(verb: &str) -> String {
    if Manners::get().stdout_is_terminal {
        format!("\x1b[1;32m{verb:>12}\x1b[0m")
    } else {
        format!("{verb:>12}")
    }
}

/// Bytes for people: `1.4 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// Milliseconds for people: `1.25s`.
pub fn human_ms(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// What a progress bar measures its length in.
#[derive(Debug, Clone, Copy)]
pub enum Measure {
    /// Bytes of input out of a known total (a saved response's size).
    Bytes(u64),
    /// Records out of a known total.
    Records(u64),
    /// Objects out of the total the work lists.
    Objects,
}

/// A progress bar on stderr fed from the work's [`Progress`] by a thread of its own, so the
/// work pays only its atomic adds. Cleared when dropped.
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
    stop: std::sync::mpsc::Sender<()>,
    feeder: Option<std::thread::JoinHandle<()>>,
}

/// How often the bar is redrawn.
const BAR_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

impl ProgressBar {
    /// A bar named `verb` over `progress`, or nothing when the manners say no bar.
    pub fn show(
        verb: &str,
        measure: Measure,
        progress: &log_etl::progress::Progress,
    ) -> Option<Self> {
        if !Manners::get().progress() {
            return None;
        }
        let (length, template) = match measure {
            Measure::Bytes(total) => (
                total,
                "{prefix:>12.cyan.bold} [{wide_bar}] {bytes}/{total_bytes}{msg}, {bytes_per_sec}, ETA {eta}",
            ),
            Measure::Records(total) => (
                total,
                "{prefix:>12.cyan.bold} [{wide_bar}] {human_pos}/{human_len} records, {msg}, {per_sec}, ETA {eta}",
            ),
            Measure::Objects => (
                0,
                "{prefix:>12.cyan.bold} [{wide_bar}] {human_pos}/{human_len} objects, {msg}, ETA {eta}",
            ),
        };
        let style = indicatif::ProgressStyle::with_template(template)
            .expect("the bar's template is valid")
            .progress_chars("=> ");
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(length),
            indicatif::ProgressDrawTarget::stderr_with_hz(10),
        )
        .with_style(style)
        .with_prefix(verb.to_owned());
        feed(&bar, measure, progress);
        bar.tick();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (feeding, progress) = (bar.clone(), progress.clone());
        let feeder = std::thread::spawn(move || {
            // Until the command drops the bar (or goes away): a bounded wait each round.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(BAR_REFRESH)
            {
                feed(&feeding, measure, &progress);
            }
        });
        Some(Self {
            bar,
            stop,
            feeder: Some(feeder),
        })
    }
}

fn feed(bar: &indicatif::ProgressBar, measure: Measure, progress: &log_etl::progress::Progress) {
    match measure {
        Measure::Bytes(_) => {
            // A saved response's records are counted once encoded: until then, bytes only.
            bar.set_position(progress.bytes());
            let records = progress.records();
            if records > 0 {
                bar.set_message(format!(", {records} records"));
            }
        }
        Measure::Records(_) => {
            bar.set_position(progress.records());
            bar.set_message(human_bytes(progress.bytes()));
        }
        Measure::Objects => {
            bar.set_length(progress.objects_total());
            bar.set_position(progress.objects());
            bar.set_message(format!(
                "{} records, {}",
                progress.records(),
                human_bytes(progress.bytes())
            ));
        }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
        self.bar.finish_and_clear();
    }
}

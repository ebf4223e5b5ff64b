//! One module per command, each with its arguments and a `run`; what they share: the one-line
//! error with its exit code, the Fernet key arguments, the synthetic-record arguments, and the
//! `--hours` range.

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

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aws_config::SdkConfig;
use log_etl::config::{Config, FernetKeySource, Secret, var};
use log_etl::local::synth::SynthOptions;
use log_etl::logging::error_chain;
use log_etl::pipeline::RunError;
use log_etl::record::fernet::KeyRing;
use log_etl::store::{FolderStore, Store};

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or input: exit code 2.
    Usage(String),
    /// The run failed: exit code 1.
    Failed(String),
    /// The reader of our output went away (`| head`): their choice, not a failure.
    ReaderClosed,
}

impl CliError {
    pub fn usage(message: &str) -> Self {
        CliError::Usage(message.to_owned())
    }

    pub fn usage_from(context: &str, err: &dyn Error) -> Self {
        CliError::Usage(format!("{context}: {}", error_chain(err)))
    }

    pub fn failed(context: &str, err: &dyn Error) -> Self {
        CliError::Failed(format!("{context}: {}", error_chain(err)))
    }

    /// A failed run, named by its stage; bad settings or keys are usage errors.
    pub fn run(err: RunError) -> Self {
        let message = format!("{}: {}", err.error_type(), error_chain(&err));
        match err {
            RunError::Config(_) | RunError::Key(_) => CliError::Usage(message),
            _ => CliError::Failed(message),
        }
    }
}

/// The exit status of a command, its error printed on one line.
pub fn exit_code(result: Result<(), CliError>) -> ExitCode {
    let (code, message) = match result {
        Ok(()) | Err(CliError::ReaderClosed) => return ExitCode::SUCCESS,
        Err(CliError::Usage(message)) => (2, message),
        Err(CliError::Failed(message)) => (1, message),
    };
    eprintln!("log-etl: error: {message}");
    ExitCode::from(code)
}

/// The settings from the environment.
pub fn config() -> Result<Config, CliError> {
    Config::from_env().map_err(|e| CliError::usage_from("configuration", &e))
}

/// Prints a summary as one JSON line.
pub fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string(value).expect("serialisable"));
}

/// Where the Fernet key comes from: a file, the command line, or `FERNET_KEY`.
#[derive(clap::Args)]
pub struct KeyArgs {
    /// File holding the Fernet key (or a JSON list of keys, newest first).
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

/// Where the objects are: a folder standing in for the bucket, or a bucket.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// Folder standing in for the bucket.
    #[arg(
        long,
        visible_alias = "out-dir",
        required_unless_present = "bucket",
        conflicts_with = "bucket"
    )]
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
        (None, Some(sdk)) => {
            Store::bucket(sdk, config).map_err(|e| CliError::usage_from("configuration", &e))?
        }
        (None, None) => unreachable!("an SDK configuration is loaded for a bucket"),
    };
    Ok(Opened { store, sdk })
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

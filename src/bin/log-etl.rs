//! The `log-etl` command: process saved responses, restore landed objects, make keys and test data.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use log_etl::batch::BatchSettings;
use log_etl::config::{Config, var};
use log_etl::keyring::{self, KeyRing};
use log_etl::local_store::LocalStore;
use log_etl::pipeline::{self, Store};
use log_etl::restore;
use log_etl::spool::SpoolPolicy;
use log_etl::synth::{Synth, SynthOptions};

#[derive(Parser)]
#[command(
    name = "log-etl",
    version,
    about = "Fernet-encrypted logs into compact, hourly, gzip'd NDJSON"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process a saved API response (a JSON array) into objects under a folder, as the Lambda
    /// would write them to S3. Settings (prefixes, layout, gzip level) come from the environment.
    Process {
        /// The saved response.
        #[arg(long)]
        input: PathBuf,
        /// Folder standing in for the bucket.
        #[arg(long)]
        out_dir: PathBuf,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Print the original records stored in objects (files, or folders searched recursively),
    /// as NDJSON in the order stored. Quarantine objects under a folder are skipped.
    Restore {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print a new Fernet key.
    Keygen,
    /// Write a saved API response of realistic records (for trying things out and benchmarks).
    Generate {
        /// Number of records.
        #[arg(long, default_value_t = 100)]
        records: u64,
        /// Where to write the response.
        #[arg(long)]
        out: PathBuf,
        /// Also write the plaintext records (NDJSON) here: the ground truth.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// Time of the first record (RFC 3339); records are about 0.3 s apart.
        #[arg(long, default_value = "2023-03-18T15:08:02.284Z")]
        start: DateTime<Utc>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Records per thousand with unusual but valid values.
        #[arg(long, default_value_t = 0)]
        unusual_per_mille: u32,
        /// Records per thousand with tokens that cannot be decrypted.
        #[arg(long, default_value_t = 0)]
        bad_per_mille: u32,
        #[command(flatten)]
        key: KeyArg,
    },
}

#[derive(clap::Args)]
struct KeyArg {
    /// Fernet key (or a JSON list of keys, newest first).
    #[arg(long = "key", env = var::FERNET_KEY, hide_env_values = true)]
    key: Option<String>,
}

impl KeyArg {
    fn ring(&self) -> Result<KeyRing, CliError> {
        let material = self
            .key
            .as_deref()
            .ok_or_else(|| CliError::usage("no Fernet key: pass --key or set FERNET_KEY"))?;
        KeyRing::parse(material).map_err(|e| CliError::usage_from("the Fernet key is unusable", e))
    }
}

/// A failure to report in one line, with its exit code (2: bad usage or input, 1: the run failed).
struct CliError {
    code: u8,
    message: String,
}

impl CliError {
    fn usage(message: &str) -> Self {
        Self {
            code: 2,
            message: message.to_owned(),
        }
    }
    fn usage_from(context: &str, err: impl Error) -> Self {
        Self {
            code: 2,
            message: chain(context, &err),
        }
    }
    fn failed(context: &str, err: impl Error) -> Self {
        Self {
            code: 1,
            message: chain(context, &err),
        }
    }
}

/// `context: error: cause: cause…` on one line.
fn chain(context: &str, err: &dyn Error) -> String {
    let mut text = format!("{context}: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Process {
            input,
            out_dir,
            key,
        } => process(&input, &out_dir, &key),
        Command::Restore { paths } => restore_paths(&paths),
        Command::Keygen => {
            println!("{}", keyring::generate_key());
            Ok(())
        }
        Command::Generate {
            records,
            out,
            truth,
            start,
            seed,
            unusual_per_mille,
            bad_per_mille,
            key,
        } => generate(
            &key,
            records,
            &out,
            truth.as_deref(),
            start,
            SynthOptions {
                seed,
                unusual_per_mille,
                bad_per_mille,
                ..SynthOptions::default()
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("log-etl: error: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

fn config() -> Result<Config, CliError> {
    Config::from_env().map_err(|e| CliError::usage_from("configuration", e))
}

fn process(input: &Path, out_dir: &Path, key: &KeyArg) -> Result<(), CliError> {
    let started = Instant::now();
    let keys = key.ring()?;
    let config = config()?;
    let file = File::open(input)
        .map_err(|e| CliError::usage_from(&format!("cannot read {}", input.display()), e))?;

    let created_out_dir = !out_dir.exists();
    fs::create_dir_all(out_dir)
        .map_err(|e| CliError::failed(&format!("cannot create {}", out_dir.display()), e))?;
    // Spilled bodies live beside their destination so they can be linked into place; the
    // folder is removed whatever happens.
    let spill = tempfile::Builder::new()
        .prefix(".log-etl-tmp-")
        .tempdir_in(out_dir)
        .map_err(|e| CliError::failed("cannot create a temporary folder", e))?;
    let mut settings = BatchSettings::new(config.layout.clone());
    settings.gzip_level = config.gzip_level;
    settings.limits = config.limits;
    settings.spool = SpoolPolicy::spill_to(spill.path().to_owned(), 1 << 20);

    let output = match pipeline::encode_saved_response(file, &keys, &settings, Utc::now()) {
        Ok(output) => output,
        Err(err) => {
            drop(spill);
            if created_out_dir {
                let _ = fs::remove_dir(out_dir);
            }
            return Err(CliError::usage_from(
                &format!("{} is not a usable API response", input.display()),
                err,
            ));
        }
    };
    let store = Store::Local(LocalStore::new(out_dir));
    let summary = runtime()
        .block_on(pipeline::land(&output, &store, started))
        .map_err(|e| CliError::failed("writing objects failed", e))?;
    drop(output);
    drop(spill);
    println!(
        "{}",
        serde_json::to_string(&summary).expect("summary serialises")
    );
    Ok(())
}

fn restore_paths(paths: &[PathBuf]) -> Result<(), CliError> {
    let config = config()?;
    let files = restore::find_object_files(
        paths,
        config_extension(),
        Some(config.layout.quarantine_prefix()),
    )
    .map_err(|e| CliError::usage_from("cannot list the objects", e))?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match restore::restore_files(&files, &mut out)
        .and_then(|_| out.flush().map_err(restore::RestoreError::Output))
    {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(restore::RestoreError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failed("restore failed", e)),
    }
}

fn config_extension() -> &'static str {
    log_etl::encode::ObjectEncoding::GzipNdjson.extension()
}

fn generate(
    key: &KeyArg,
    records: u64,
    out: &Path,
    truth: Option<&Path>,
    start: DateTime<Utc>,
    options: SynthOptions,
) -> Result<(), CliError> {
    let keys = key.ring()?;
    let write_failed = |e: io::Error| CliError::failed("writing the response failed", e);
    let mut body = BufWriter::new(File::create(out).map_err(write_failed)?);
    let mut truth = match truth {
        Some(path) => Some(BufWriter::new(File::create(path).map_err(write_failed)?)),
        None => None,
    };
    let mut synth = Synth::new(options);
    let mut at = start;
    body.write_all(b"[").map_err(write_failed)?;
    for n in 0..records {
        let item = synth.item(&keys, at);
        at += synth.next_gap();
        if n > 0 {
            body.write_all(b",\n").map_err(write_failed)?;
        }
        body.write_all(item.source.as_bytes())
            .map_err(write_failed)?;
        if let (Some(t), Some(record)) = (truth.as_mut(), &item.truth) {
            serde_json::to_writer(&mut *t, record).map_err(|e| write_failed(e.into()))?;
            t.write_all(b"\n").map_err(write_failed)?;
        }
    }
    body.write_all(b"]\n").map_err(write_failed)?;
    body.flush().map_err(write_failed)?;
    if let Some(mut t) = truth {
        t.flush().map_err(write_failed)?;
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime starts")
}

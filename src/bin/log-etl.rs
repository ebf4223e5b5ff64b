//! The `log-etl` command: the demo, scheduled passes and backfills from the command line, the
//! log-API simulator, restoring what landed, and making keys and test data. Every command drives
//! the library's pipeline; nothing here transforms records.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use log_etl::config::{Config, var};
use log_etl::demo::{self, DemoError, DemoOptions};
use log_etl::encode::ObjectEncoding;
use log_etl::keyring::{self, KeyRing};
use log_etl::local_store::LocalStore;
use log_etl::pipeline::{self, Pipeline, RunError, Store, Target};
use log_etl::restore;
use log_etl::s3_store::{self, S3Store};
use log_etl::simulator::{Simulator, SimulatorOptions};
use log_etl::spool::SpoolPolicy;
use log_etl::synth::{Synth, SynthOptions};
use log_etl::{aws, logging};

#[derive(Parser)]
#[command(
    name = "log-etl",
    version,
    about = "Fernet-encrypted logs into compact, hourly, gzip'd NDJSON in S3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Try the whole job locally: the log-API simulator, scheduled passes into a folder, and a
    /// proof that everything served landed exactly once.
    Demo {
        /// Folder standing in for the bucket (cleared if it holds an earlier demo).
        #[arg(long, default_value = "demo-out")]
        out_dir: PathBuf,
        /// Scheduled passes to run, half a second apart.
        #[arg(long, default_value_t = 12)]
        passes: u32,
    },
    /// One scheduled pass, as the Lambda does it, configured by the same environment variables;
    /// prints the run's summary.
    Run {
        /// Write to this folder instead of BUCKET_NAME.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Process a saved API response (a JSON array of any size, read as a stream) into the
    /// objects the Lambda would write: under a folder, or into a bucket (backfills).
    /// Settings (prefixes, layout, gzip level, limits) come from the environment.
    Process {
        /// The saved response.
        #[arg(long)]
        input: PathBuf,
        /// Folder standing in for the bucket.
        #[arg(long, required_unless_present = "bucket", conflicts_with = "bucket")]
        out_dir: Option<PathBuf>,
        /// Bucket to write to (credentials, region and AWS_ENDPOINT_URL from the environment).
        #[arg(long)]
        bucket: Option<String>,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Print the original records stored in objects, as NDJSON in the order stored. PATHs are
    /// files, folders (searched recursively) or s3://bucket/prefix; quarantine is skipped.
    Restore {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Serve a simulated log API (GET /api/data/log).
    Simulate {
        /// Address to listen on (0.0.0.0 lets a container, e.g. `sam local invoke`, reach it).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// Time between batches (e.g. 180s, 3m, 500ms).
        #[arg(long, default_value = "180s")]
        period: humantime::Duration,
        #[command(flatten)]
        records: SynthArgs,
        /// Write every record served (NDJSON) to this file, replaced at start: the ground truth.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// File holding the key; created with a new key if it does not exist. Without it the
        /// key comes from FERNET_KEY.
        #[arg(long)]
        key_file: Option<PathBuf>,
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
        #[command(flatten)]
        synth: SynthArgs,
        #[command(flatten)]
        key: KeyArg,
    },
}

/// What the generated records are like.
#[derive(clap::Args)]
struct SynthArgs {
    /// Seed of the generator: the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Records per thousand with unusual but valid values.
    #[arg(long, default_value_t = 0)]
    unusual_per_mille: u32,
    /// Records per thousand with tokens that cannot be decrypted.
    #[arg(long, default_value_t = 0)]
    bad_per_mille: u32,
}

impl From<SynthArgs> for SynthOptions {
    fn from(args: SynthArgs) -> Self {
        Self {
            seed: args.seed,
            unusual_per_mille: args.unusual_per_mille,
            bad_per_mille: args.bad_per_mille,
            ..SynthOptions::default()
        }
    }
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

/// A failure reported in one line, with its exit code (2: bad usage or input, 1: the run failed).
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
    fn run(err: RunError) -> Self {
        let code = match err {
            RunError::Config(_) | RunError::Key(_) => 2,
            _ => 1,
        };
        Self {
            code,
            message: format!("{}: {}", err.error_type(), err.chain()),
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
    logging::init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime starts");
    let result = match cli.command {
        Command::Demo { out_dir, passes } => runtime.block_on(run_demo(out_dir, passes)),
        Command::Run { out_dir } => runtime.block_on(run_once(out_dir)),
        Command::Process {
            input,
            out_dir,
            bucket,
            key,
        } => runtime.block_on(process(&input, out_dir.as_deref(), bucket, &key)),
        Command::Restore { paths } => runtime.block_on(restore_paths(&paths)),
        Command::Simulate {
            host,
            port,
            batch_size,
            period,
            records,
            truth,
            key_file,
        } => {
            let options = SimulatorOptions {
                batch_size,
                period: Some(period.into()),
                synth: records.into(),
                truth_file: truth,
                ..SimulatorOptions::like_the_server(Utc::now())
            };
            runtime.block_on(simulate(
                SocketAddr::new(host, port),
                options,
                key_file.as_deref(),
            ))
        }
        Command::Keygen => {
            println!("{}", keyring::generate_key());
            Ok(())
        }
        Command::Generate {
            records,
            out,
            truth,
            start,
            synth,
            key,
        } => generate(&key, records, &out, truth.as_deref(), start, synth.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader closed the pipe: nothing to report.
        Err(err) if err.code == 0 => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("log-etl: error: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

fn config() -> Result<Config, CliError> {
    Config::from_env().map_err(|e| CliError::usage_from("configuration", e))
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string(value).expect("serialisable"));
}

async fn run_demo(out_dir: PathBuf, passes: u32) -> Result<(), CliError> {
    let options = DemoOptions {
        out_dir,
        passes,
        ..DemoOptions::default()
    };
    let mut stdout = io::stdout();
    demo::run_demo(&options, &mut stdout)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            DemoError::FolderInUse(_) => CliError::usage_from("demo", e),
            e => CliError::failed("demo", e),
        })
}

async fn run_once(out_dir: Option<PathBuf>) -> Result<(), CliError> {
    let config = config()?;
    let target = out_dir.map_or(Target::Bucket, Target::Folder);
    let pipeline = Pipeline::from_config(&config, target)
        .await
        .map_err(CliError::run)?;
    // The Lambda's deadline is its timeout; on the command line, allow every fetch attempt its
    // full timeout plus time to write.
    let budget = config.fetch.timeout * config.fetch.max_attempts + Duration::from_secs(60);
    let summary = pipeline
        .run_pass(Utc::now(), Instant::now() + budget)
        .await
        .map_err(CliError::run)?;
    print_json(&summary);
    Ok(())
}

async fn s3_store(config: &Config, bucket: String) -> S3Store {
    let sdk = aws::sdk_config(config).await;
    S3Store::new(s3_store::client(&sdk), bucket, config.put_max_attempts)
}

async fn process(
    input: &Path,
    out_dir: Option<&Path>,
    bucket: Option<String>,
    key: &KeyArg,
) -> Result<(), CliError> {
    let started = Instant::now();
    let keys = key.ring()?;
    let config = config()?;
    let file = File::open(input)
        .map_err(|e| CliError::usage_from(&format!("cannot read {}", input.display()), e))?;

    // Spilled bodies go beside their destination (so a folder store links them into place) or to
    // the system's temporary folder; the spill folder is removed whatever happens.
    let created_out_dir = out_dir.is_some_and(|d| !d.exists());
    if let Some(dir) = out_dir {
        fs::create_dir_all(dir)
            .map_err(|e| CliError::failed(&format!("cannot create {}", dir.display()), e))?;
    }
    let spill_parent = out_dir.map_or_else(std::env::temp_dir, Path::to_owned);
    let spill = tempfile::Builder::new()
        .prefix(".log-etl-tmp-")
        .tempdir_in(&spill_parent)
        .map_err(|e| CliError::failed("cannot create a temporary folder", e))?;
    let mut settings = pipeline::batch_settings(&config);
    settings.spool = SpoolPolicy::spill_to(spill.path().to_owned(), 256 << 10);

    let output = match pipeline::encode_saved_response(file, &keys, &settings, Utc::now()) {
        Ok(output) => output,
        Err(err) => {
            drop(spill);
            if let (true, Some(dir)) = (created_out_dir, out_dir) {
                let _ = fs::remove_dir(dir);
            }
            return Err(CliError::usage_from(
                &format!("{} is not a usable API response", input.display()),
                err,
            ));
        }
    };
    let store = match (out_dir, bucket) {
        (Some(dir), _) => Store::Local(LocalStore::new(dir)),
        (None, Some(bucket)) => Store::S3(s3_store(&config, bucket).await),
        (None, None) => unreachable!("clap requires --out-dir or --bucket"),
    };
    let summary = pipeline::land(&output, &store, started)
        .await
        .map_err(|e| CliError::failed("writing objects failed", e))?;
    drop(output);
    drop(spill);
    print_json(&summary);
    Ok(())
}

async fn restore_paths(paths: &[String]) -> Result<(), CliError> {
    let config = config()?;
    let extension = ObjectEncoding::GzipNdjson.extension();
    let quarantine = config.layout.quarantine_prefix();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut result = Ok(0);
    for path in paths {
        result = match path.strip_prefix("s3://") {
            Some(location) => {
                restore_from_s3(&config, location, extension, quarantine, &mut out).await
            }
            None => {
                let files =
                    restore::find_object_files(&[PathBuf::from(path)], extension, Some(quarantine))
                        .map_err(|e| CliError::usage_from(&format!("cannot list {path}"), e))?;
                restore::restore_files(&files, &mut out).map_err(|e| restore_failed(&e))
            }
        };
        if result.is_err() {
            break;
        }
    }
    result.and_then(|_| {
        out.flush()
            .map_err(|e| restore_failed(&restore::RestoreError::Output(e)))
    })
}

fn restore_failed(err: &restore::RestoreError) -> CliError {
    match err {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        restore::RestoreError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => CliError {
            code: 0,
            message: String::new(),
        },
        _ => CliError::failed("restore failed", err),
    }
}

async fn restore_from_s3(
    config: &Config,
    location: &str,
    extension: &str,
    quarantine: &str,
    out: &mut impl Write,
) -> Result<u64, CliError> {
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    let store = s3_store(config, bucket.to_owned()).await;
    let keys = store
        .list_keys(prefix)
        .await
        .map_err(|e| CliError::failed("listing the bucket failed", e))?;
    let mut total = 0;
    for key in keys.iter().filter(|k| {
        k.ends_with(&format!(".{extension}")) && !k.starts_with(&format!("{quarantine}/"))
    }) {
        let bytes = store
            .get(key)
            .await
            .map_err(|e| CliError::failed("reading an object failed", e))?;
        total += restore::restore_object(&format!("s3://{bucket}/{key}"), &bytes[..], out)
            .map_err(|e| restore_failed(&e))?;
    }
    Ok(total)
}

async fn simulate(
    addr: SocketAddr,
    options: SimulatorOptions,
    key_file: Option<&Path>,
) -> Result<(), CliError> {
    let material = match key_file {
        Some(path) if path.exists() => fs::read_to_string(path)
            .map_err(|e| CliError::usage_from(&format!("cannot read {}", path.display()), e))?,
        Some(path) => {
            let key = keyring::generate_key();
            write_private(path, &key)
                .map_err(|e| CliError::failed(&format!("cannot write {}", path.display()), e))?;
            key
        }
        None => std::env::var(var::FERNET_KEY).map_err(|_| {
            CliError::usage("no Fernet key: pass --key-file FILE or set FERNET_KEY")
        })?,
    };
    let keys = KeyRing::parse(&material)
        .map_err(|e| CliError::usage_from("the Fernet key is unusable", e))?;
    let period = options.period;
    let sim = Simulator::start(addr, keys, options)
        .await
        .map_err(|e| CliError::failed(&format!("cannot serve on {addr}"), e))?;
    tracing::info!(url = %sim.url(), period = ?period, key_file = ?key_file, "simulator serving; Ctrl-C stops it");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| CliError::failed("waiting for Ctrl-C failed", e))?;
    let truth = sim.ground_truth();
    sim.stop().await;
    tracing::info!(
        batches = truth.batches,
        records = truth.records.len(),
        undecryptable = truth.undecryptable,
        "simulator stopped"
    );
    Ok(())
}

/// Writes a key file readable by its owner only.
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
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

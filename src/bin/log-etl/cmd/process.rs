//! `log-etl process`: a saved API response into a folder or a bucket (backfills).

use std::fs::{self, File};
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};

use chrono::Utc;
use flate2::read::MultiGzDecoder;
use log_etl::pipeline::{Pipeline, RunError};

use log_etl::progress::Progress;

use super::run::describe_run;
use super::{
    CliError, KeyArgs, Measure, ProgressBar, StoreArgs, check_verified, config, open_store, report,
};

/// Process a saved API response (a JSON array of any size, read as a stream; gzip'd or not)
/// into the objects the Lambda would write: under a folder (--out-dir), or into a bucket
/// (--bucket; backfills). The key comes from --key-file, --key or else FERNET_KEY. Settings
/// (prefixes, layout, gzip level, limits) come from the environment.
#[derive(clap::Args)]
pub struct Args {
    /// The saved response (`-`: standard input); a gzip'd one is read as it is.
    #[arg(long)]
    input: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: KeyArgs,
}

/// The first bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The response as a reader of its JSON: the file or standard input, gunzipped when its first
/// bytes say it is gzip.
fn open_input(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let mut raw: Box<dyn Read + Send> = if path == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path)?)
    };
    // Read up to the magic's length (a pipe may hand over one byte at a time), then put it back.
    let mut head = Vec::with_capacity(GZIP_MAGIC.len());
    raw.by_ref()
        .take(GZIP_MAGIC.len() as u64)
        .read_to_end(&mut head)?;
    let gzip = head == GZIP_MAGIC;
    let whole = Cursor::new(head).chain(raw);
    Ok(if gzip {
        Box::new(MultiGzDecoder::new(whole))
    } else {
        Box::new(whole)
    })
}

/// How the input is named in messages.
fn input_name(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let mut config = config()?;
    config.key_source = Some(args.key.source()?);
    let name = input_name(&args.input);
    let input = open_input(&args.input)
        .map_err(|e| CliError::usage_from(&format!("cannot read {name}"), &e))?;
    let made_dir = match &args.store.dir {
        Some(dir) => {
            let made = !dir.exists();
            fs::create_dir_all(dir)
                .map_err(|e| CliError::failed(&format!("cannot create {}", dir.display()), &e))?;
            made
        }
        None => false,
    };
    let opened = open_store(args.store.dir.as_deref(), args.store.bucket, &mut config).await?;
    let aws = opened.aws.clone();
    let mut pipeline = Pipeline::new(&config, opened.store, opened.sdk.as_ref())
        .map_err(|e| CliError::run_at(e, aws.as_deref()))?;
    let progress = Progress::default();
    pipeline.set_progress(progress.clone());
    // The file's size as the bar's total (unknown for standard input; for a gzip'd response,
    // the bytes read are the uncompressed ones, so the bar may pass its total).
    let size = fs::metadata(&args.input).map_or(0, |meta| meta.len());
    let bar = ProgressBar::show("Processing", Measure::Bytes(size), &progress);
    let processed = pipeline.process(input, Utc::now()).await;
    drop(bar);
    match processed {
        Ok(summary) => {
            report(&summary, |s| describe_run(&format!("process of {name}"), s));
            check_verified(&summary, "--key-file, --key or FERNET_KEY")
        }
        Err(err @ RunError::Response(_)) => {
            // Nothing was written: leave no folder behind either.
            if let (true, Some(dir)) = (made_dir, &args.store.dir) {
                let _ = fs::remove_dir(dir);
            }
            let context = format!("{name} is not a usable API response");
            Err(CliError::usage_from(&context, &err))
        }
        Err(err) => Err(CliError::run_at(err, aws.as_deref())),
    }
}

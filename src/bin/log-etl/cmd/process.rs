//! `log-etl process`: a saved API response into a folder or a bucket (backfills).

use std::fs::{self, File};
use std::path::PathBuf;

use chrono::Utc;
use log_etl::pipeline::{Pipeline, RunError};

use log_etl::progress::Progress;

use super::run::describe_run;
use super::{CliError, KeyArgs, Measure, ProgressBar, StoreArgs, config, open_store, report};

/// Process a saved API response (a JSON array of any size, read as a stream) into the objects the
/// Lambda would write: under a folder, or into a bucket (backfills). Settings (prefixes, layout,
/// gzip level, limits) come from the environment.
#[derive(clap::Args)]
pub struct Args {
    /// The saved response.
    #[arg(long)]
    input: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: KeyArgs,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let mut config = config()?;
    config.key_source = Some(args.key.source()?);
    let input = File::open(&args.input)
        .map_err(|e| CliError::usage_from(&format!("cannot read {}", args.input.display()), &e))?;
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
    let mut pipeline =
        Pipeline::new(&config, opened.store, opened.sdk.as_ref()).map_err(CliError::run)?;
    let progress = Progress::default();
    pipeline.set_progress(progress.clone());
    let size = input.metadata().map_or(0, |meta| meta.len());
    let bar = ProgressBar::show("Processing", Measure::Bytes(size), &progress);
    let processed = pipeline.process(input, Utc::now()).await;
    drop(bar);
    match processed {
        Ok(summary) => {
            report(&summary, |s| {
                describe_run(&format!("process of {}", args.input.display()), s)
            });
            Ok(())
        }
        Err(err @ RunError::Response(_)) => {
            // Nothing was written: leave no folder behind either.
            if let (true, Some(dir)) = (made_dir, &args.store.dir) {
                let _ = fs::remove_dir(dir);
            }
            let context = format!("{} is not a usable API response", args.input.display());
            Err(CliError::usage_from(&context, &err))
        }
        Err(err) => Err(CliError::run(err)),
    }
}

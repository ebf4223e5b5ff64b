//! `log-etl run`: one scheduled pass, as the Lambda makes it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use log_etl::pipeline::Pipeline;
use log_etl::store::{FolderStore, Store};

use super::{CliError, config, print_json};

/// One scheduled pass, as the Lambda does it, configured by the same environment variables;
/// prints the run's summary.
#[derive(clap::Args)]
pub struct Args {
    /// Write to this folder instead of BUCKET_NAME.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let config = config()?;
    let pipeline = match args.out_dir {
        Some(dir) => Pipeline::from_config(&config, Store::Folder(FolderStore::new(dir))).await,
        None => Pipeline::for_bucket(&config).await,
    }
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

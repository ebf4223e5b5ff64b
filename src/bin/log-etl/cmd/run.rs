//! `log-etl run`: one scheduled pass, as the Lambda makes it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use log_etl::pipeline::Pipeline;

use super::{CliError, check_verified, config, open_store, print_json};

/// One scheduled pass, as the Lambda does it, configured by the same environment variables;
/// prints the run's summary.
#[derive(clap::Args)]
pub struct Args {
    /// Write to this folder instead of BUCKET_NAME.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let mut config = config()?;
    config
        .require_api_url()
        .map_err(|e| CliError::run(e.into()))?;
    let opened = open_store(args.out_dir.as_deref(), None, &mut config).await?;
    let aws = opened.aws.clone();
    let failed = |e| CliError::run_at(e, aws.as_deref());
    let pipeline = Pipeline::new(&config, opened.store, opened.sdk.as_ref()).map_err(failed)?;
    // The Lambda's deadline is its timeout; on the command line, allow every fetch attempt its
    // full timeout plus time to write.
    let budget = config.fetch.timeout * config.fetch.max_attempts + Duration::from_secs(60);
    let summary = pipeline
        .run_pass(Utc::now(), Instant::now() + budget)
        .await
        .map_err(failed)?;
    print_json(&summary);
    check_verified(&summary, "FERNET_KEY or the secret FERNET_SECRET_ID names")
}

//! `log-etl run`: one scheduled pass, as the Lambda makes it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use log_etl::local::describe_reasons;
use log_etl::pipeline::{Pipeline, RunSummary};

use super::{
    CliError, check_verified, config, headline, human_bytes, human_ms, open_store, report,
};

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
    report(&summary, |s| describe_run("pass", s));
    check_verified(&summary, "FERNET_KEY or the secret FERNET_SECRET_ID names")
}

/// A run's summary for people, as cargo's `Finished` line and the figures under it.
pub fn describe_run(what: &str, s: &RunSummary) -> String {
    let w = &s.written;
    let mut text = format!(
        "{} {what}: {} record(s) in ({}) in {}\n",
        headline("Finished"),
        s.records_in,
        human_bytes(s.bytes_in),
        human_ms(s.duration_ms)
    );
    text += &format!(
        "{:>12} {} landed in {} hour(s), {} already present, {} duplicate(s) dropped\n",
        "records",
        w.records_landed,
        w.hours.len(),
        w.records_already_present,
        w.duplicates_dropped
    );
    text += &format!(
        "{:>12} {} record(s), {} already in quarantine{}\n",
        "quarantined",
        w.records_quarantined,
        w.quarantined_already_present,
        describe_reasons(&s.refused_by_reason)
    );
    text += &format!(
        "{:>12} {} written ({}), {} already present",
        "objects",
        w.objects_written,
        human_bytes(w.bytes_out),
        w.objects_already_present
    );
    if w.objects_unreadable > 0 {
        text += &format!(", {} unreadable (left as they are)", w.objects_unreadable);
    }
    text
}

//! `log-etl replay`: quarantined records through the pipeline again.

use chrono::Utc;
use log_etl::pipeline::Pipeline;
use log_etl::record::hour::Hour;

use super::{CliError, KeyArgs, StoreArgs, config, open_store, parse_hours, print_json};

/// Run the records quarantined in these run hours through the pipeline again, with the key and
/// settings of now: those that pass land once (a record already landed is counted present),
/// those still refused stay in quarantine, and one whose reason changed gets a new line in this
/// run's quarantine. Nothing is deleted; running it again lands nothing new. Prints a JSON
/// summary.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Only the quarantine of these run hours, both ends included: FROM..TO, each
    /// YYYY-MM-DDTHH (UTC). Default: every hour.
    #[arg(long, value_parser = parse_hours)]
    hours: Option<(Hour, Hour)>,
    #[command(flatten)]
    key: KeyArgs,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let mut config = config()?;
    // A key given here wins; else FERNET_KEY or FERNET_SECRET_ID, as for a pass.
    let key_given = args.key.key_file.is_some() || args.key.key.is_some();
    if key_given || config.key_source.is_none() {
        config.key_source = Some(args.key.source()?);
    }
    if let Some(dir) = args.store.dir.as_deref().filter(|dir| !dir.is_dir()) {
        return Err(CliError::usage(&format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    let opened = open_store(args.store.dir.as_deref(), args.store.bucket, &mut config).await?;
    let pipeline =
        Pipeline::new(&config, opened.store, opened.sdk.as_ref()).map_err(CliError::run)?;
    let summary = pipeline
        .replay(args.hours, Utc::now(), None)
        .await
        .map_err(CliError::run)?;
    print_json(&summary);
    Ok(())
}

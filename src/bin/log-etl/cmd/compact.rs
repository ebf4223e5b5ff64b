//! `log-etl compact`: merge each closed hour's objects into one.

use std::time::Instant;

use chrono::Utc;
use log_etl::compact::{self, CompactOptions};
use log_etl::record::hour::Hour;

use super::{CliError, StoreArgs, config, open_store, parse_hours, print_json};

/// Merge every closed hour that holds more than one object into one object (records ordered by
/// inDate, exact duplicates dropped), then delete the merged objects. An hour is closed
/// COMPACT_AFTER (default 1h) after it ends. Prints a JSON summary.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Only these hours, both ends included: FROM..TO, each YYYY-MM-DDTHH (UTC).
    #[arg(long, value_parser = parse_hours)]
    hours: Option<(Hour, Hour)>,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let mut config = config()?;
    if let Some(dir) = args.store.dir.as_deref().filter(|dir| !dir.is_dir()) {
        return Err(CliError::usage(&format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    let opened = open_store(args.store.dir.as_deref(), args.store.bucket, &mut config).await?;
    let options = CompactOptions {
        now: Utc::now(),
        closed_after: config.compaction.after,
        hours: args.hours,
        deadline: None::<Instant>,
    };
    let summary = compact::run(&opened.store, &config.objects, &options)
        .await
        .map_err(|e| CliError::failed("compaction failed", &e))?;
    print_json(&summary);
    Ok(())
}

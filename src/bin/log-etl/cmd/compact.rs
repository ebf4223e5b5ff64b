//! `log-etl compact`: merge each closed hour's objects into one.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use log_etl::compact::{self, CompactOptions};
use log_etl::record::hour::HourKey;
use log_etl::store::{FolderStore, Store};

use super::{CliError, config, print_json};

/// Merge every closed hour that holds more than one object into one object (records ordered by
/// inDate, exact duplicates dropped), then delete the merged objects. An hour is closed
/// COMPACT_AFTER (default 1h) after it ends. Prints a JSON summary.
#[derive(clap::Args)]
pub struct Args {
    /// Folder standing in for the bucket.
    #[arg(long, required_unless_present = "bucket", conflicts_with = "bucket")]
    out_dir: Option<PathBuf>,
    /// Bucket to compact (credentials, region and AWS_ENDPOINT_URL from the environment).
    #[arg(long)]
    bucket: Option<String>,
    /// Only these hours, both ends included: FROM..TO, each YYYY-MM-DDTHH (UTC).
    #[arg(long, value_parser = parse_hours)]
    hours: Option<(HourKey, HourKey)>,
}

fn parse_hours(text: &str) -> Result<(HourKey, HourKey), String> {
    let (from, to) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not FROM..TO"))?;
    let (from, to): (HourKey, HourKey) = (from.parse()?, to.parse()?);
    if from > to {
        return Err(format!("{from} is after {to}"));
    }
    Ok((from, to))
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let mut config = config()?;
    let (store, spill_parent) = match (&args.out_dir, args.bucket) {
        (Some(dir), _) if !dir.is_dir() => {
            return Err(CliError::usage(&format!(
                "{} is not a folder",
                dir.display()
            )));
        }
        (Some(dir), _) => (Store::Folder(FolderStore::new(dir)), dir.clone()),
        (None, bucket) => {
            config.bucket = bucket;
            let store = Store::bucket_from_config(&config)
                .await
                .map_err(|e| CliError::usage_from("configuration", &e))?;
            (store, std::env::temp_dir())
        }
    };
    let options = CompactOptions {
        now: Utc::now(),
        closed_after: config.compaction.after,
        hours: args.hours,
        deadline: None::<Instant>,
    };
    let summary = compact::run(&store, &config, &options, &spill_parent)
        .await
        .map_err(|e| CliError::failed(e.error_type(), &e))?;
    print_json(&summary);
    Ok(())
}

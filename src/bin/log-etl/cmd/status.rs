//! `log-etl status`: what a folder or a bucket holds, hour by hour.

use chrono::Utc;
use log_etl::batch::layout::ObjectLayout;
use log_etl::local::status::{self, StatusOptions};
use log_etl::record::hour::Hour;

use super::parse_hours;
use super::{CliError, Manners, StoreArgs, config, open_store, print_json};

/// Show what a folder or a bucket holds, hour by hour: objects, bytes and state (open, closed,
/// compacted, or holding an unreadable object), the quarantine of each run hour, and totals.
/// Only listings are made, unless --records asks to read every object to count its records.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// The data prefix to look under (default KEY_PREFIX, else "data").
    #[arg(long)]
    prefix: Option<String>,
    /// Only these hours, both ends included: FROM..TO, each YYYY-MM-DDTHH (UTC).
    #[arg(long, value_parser = parse_hours)]
    hours: Option<(Hour, Hour)>,
    /// Read every object: count records and quarantine lines, and find unreadable objects.
    #[arg(long)]
    records: bool,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let mut config = config()?;
    if let Some(prefix) = &args.prefix {
        let layout = &config.objects.layout;
        config.objects.layout =
            ObjectLayout::new(prefix, layout.quarantine_prefix(), layout.style())
                .map_err(|e| CliError::usage_from("--prefix", &e))?;
    }
    if let Some(dir) = args.store.dir.as_deref().filter(|dir| !dir.is_dir()) {
        return Err(CliError::usage(&format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    let opened = open_store(args.store.dir.as_deref(), args.store.bucket, &mut config).await?;
    let options = StatusOptions {
        now: Utc::now(),
        closed_after: config.compaction.after,
        hours: args.hours,
        records: args.records,
    };
    let status = status::status(&opened.store, &config.objects, &options)
        .await
        .map_err(|e| CliError::failed("status", &e))?;
    if Manners::get().human() {
        let mut out = std::io::stdout().lock();
        status::write_table(&status, &mut out).map_err(|e| CliError::failed("status", &e))?;
    } else {
        print_json(&status);
    }
    Ok(())
}

//! `log-etl compact`: merge each closed hour's objects into one.

use std::time::Instant;

use chrono::Utc;
use log_etl::compact::{self, CompactOptions, CompactSummary};
use log_etl::progress::Progress;
use log_etl::record::hour::Hour;

use super::{
    CliError, Measure, ProgressBar, StoreArgs, config, headline, human_bytes, human_ms, open_store,
    parse_hours, report,
};

/// Merge every closed hour that holds more than one object into one object (records ordered by
/// inDate, exact duplicates dropped), then delete the merged objects. An hour is closed
/// COMPACT_AFTER (default 1h) after it ends. Prints a summary (JSON into a pipe or with --json).
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
    let progress = Progress::default();
    let bar = ProgressBar::show("Compacting", Measure::Objects, &progress);
    let compacted =
        compact::run_with_progress(&opened.store, &config.objects, &options, &progress).await;
    drop(bar);
    let summary = compacted.map_err(|e| CliError::failed("compaction failed", &e))?;
    report(&summary, describe);
    Ok(())
}

/// The compaction's summary for people.
fn describe(s: &CompactSummary) -> String {
    let mut text = format!(
        "{} compact: {} hour(s) merged, {} left for the next run, in {}\n",
        headline("Finished"),
        s.hours_compacted,
        s.hours_left,
        human_ms(s.duration_ms)
    );
    text += &format!(
        "{:>12} {} read ({}), {} written ({}), {} already present, {} deleted\n",
        "objects",
        s.objects_read,
        human_bytes(s.bytes_in),
        s.objects_written,
        human_bytes(s.bytes_out),
        s.objects_already_present,
        s.objects_deleted
    );
    text += &format!(
        "{:>12} {} merged, {} duplicate(s) dropped",
        "records", s.records, s.duplicates_dropped
    );
    if s.hours_unreadable > 0 {
        text += &format!(
            "\n{:>12} {} hour(s) left as they are, holding: {}",
            "unreadable",
            s.hours_unreadable,
            s.unreadable_objects.join(", ")
        );
    }
    text
}

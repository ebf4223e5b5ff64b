//! `log-etl backfill`: every saved response under a prefix of a bucket or folder, landed in it
//! one after the other, each record once; the one-machine form of the backfill state machine.

use chrono::Utc;
use log_etl::backfill::{self, BackfillError, BackfillSummary};
use log_etl::local::describe_reasons;
use log_etl::pipeline::{Pipeline, RunError};

use super::{
    CliError, KeyArgs, StoreArgs, config, headline, human_bytes, human_ms, open_store, report,
};

/// Land every saved response (a JSON array as the source serves it, `.gz` or not) under
/// `--prefix` of the bucket or folder, into the same bucket or folder: the objects the Lambda
/// would write, each record once however much the responses overlap. Prints one summary, with
/// the hours touched (for `log-etl compact`): for people on a terminal, else one JSON line.
#[derive(clap::Args)]
pub struct Args {
    /// Key prefix of the saved responses (e.g. `saved/`).
    #[arg(long)]
    prefix: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: KeyArgs,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    if args.prefix.trim_matches('/').is_empty() {
        return Err(CliError::usage(
            "--prefix is empty: name the prefix the saved responses are under",
        ));
    }
    let mut config = config()?;
    config.key_source = Some(args.key.source()?);
    let opened = open_store(args.store.dir.as_deref(), args.store.bucket, &mut config).await?;
    let pipeline =
        Pipeline::new(&config, opened.store.clone(), opened.sdk.as_ref()).map_err(CliError::run)?;
    match backfill::backfill_prefix(&pipeline, &opened.store, &args.prefix, Utc::now()).await {
        Ok(summary) => {
            report(&summary, describe_backfill);
            Ok(())
        }
        Err(BackfillError::Process {
            location,
            source: err @ RunError::Response(_),
        }) => Err(CliError::usage_from(
            &format!("{location} is not a usable API response"),
            &err,
        )),
        Err(BackfillError::Process { source, .. }) => Err(CliError::run(source)),
        Err(err) => Err(CliError::failed("backfill", &err)),
    }
}

/// A backfill's summary for people, as `run`'s.
fn describe_backfill(s: &BackfillSummary) -> String {
    format!(
        "{} backfill: {} response(s), {} record(s) in {}\n\
         {:>12} {} landed in {} hour(s), {} already present, {} duplicate(s) dropped\n\
         {:>12} {} record(s), {} already in quarantine{}\n\
         {:>12} {} written ({})",
        headline("Finished"),
        s.responses,
        s.records_in,
        human_ms(s.duration_ms),
        "records",
        s.records_landed,
        s.hours.len(),
        s.records_already_present,
        s.duplicates_dropped,
        "quarantined",
        s.records_quarantined,
        s.quarantined_already_present,
        describe_reasons(&s.refused_by_reason),
        "objects",
        s.objects_written,
        human_bytes(s.bytes_out)
    )
}

//! `log-etl generate`: a saved API response of realistic records.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use log_etl::local::synth::{ResponseWriter, Synth};
use log_etl::progress::Progress;

use super::{CliError, KeyArgs, Measure, ProgressBar, SynthArgs};

/// Records written between two additions to the progress counters.
const PROGRESS_EVERY: u64 = 1024;

/// Write a saved API response of realistic records (for trying things out and benchmarks).
#[derive(clap::Args)]
pub struct Args {
    /// Number of records.
    #[arg(long, default_value_t = 100)]
    records: u64,
    /// Where to write the response.
    #[arg(long)]
    out: PathBuf,
    /// Also write the plaintext records (NDJSON) here: the ground truth.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Time of the first record (RFC 3339); records are about 0.3 s apart.
    #[arg(long, default_value = "2023-03-18T15:08:02.284Z")]
    start: DateTime<Utc>,
    #[command(flatten)]
    synth: SynthArgs,
    #[command(flatten)]
    key: KeyArgs,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let ring = args.key.ring()?;
    let write_failed = |e: io::Error| CliError::failed("writing the response failed", &e);
    let mut writer = ResponseWriter::new(BufWriter::new(
        File::create(&args.out).map_err(write_failed)?,
    ));
    if let Some(path) = &args.truth {
        writer = writer.with_truth(Box::new(BufWriter::new(
            File::create(path).map_err(write_failed)?,
        )));
    }
    let progress = Progress::default();
    let bar = ProgressBar::show("Generating", Measure::Records(args.records), &progress);
    // Synth::write_batch's loop, counted a thousand records at a time.
    let mut synth = Synth::new(args.synth.into());
    let mut at = args.start;
    let mut written = 0;
    while written < args.records {
        let chunk = PROGRESS_EVERY.min(args.records - written);
        for _ in 0..chunk {
            let item = synth.item(&ring, at);
            at += synth.next_gap();
            writer.item(&item).map_err(write_failed)?;
        }
        written += chunk;
        progress.add_records(chunk);
    }
    let finished = writer.finish().map_err(write_failed);
    drop(bar);
    finished
}

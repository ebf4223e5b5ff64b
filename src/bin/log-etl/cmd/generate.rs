//! `log-etl generate`: a saved API response of realistic records.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use log_etl::local::synth::{ResponseWriter, Synth, SynthOptions};
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
    /// Write the records in a random order (fixed by the seed) instead of time order, as an
    /// unsorted export would hold them: the same times, shuffled.
    #[arg(long)]
    shuffle: bool,
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
    let options: SynthOptions = args.synth.into();
    let shuffle = args.shuffle.then_some((args.records, options));
    let mut synth = Synth::new(options);
    let mut times = RecordTimes::new(args.start, shuffle);
    let mut written = 0;
    while written < args.records {
        let chunk = PROGRESS_EVERY.min(args.records - written);
        for _ in 0..chunk {
            let at = times.next(&mut synth);
            let item = synth.item(&ring, at);
            writer.item(&item).map_err(write_failed)?;
        }
        written += chunk;
        progress.add_records(chunk);
    }
    let finished = writer.finish().map_err(write_failed);
    drop(bar);
    finished
}

/// The times of the records in the order they are written: time order, each a gap after the
/// one before; or, shuffled, all of them drawn first (12 bytes a record) and put in an order
/// fixed by the seed.
enum RecordTimes {
    InOrder(DateTime<Utc>),
    Shuffled(std::vec::IntoIter<DateTime<Utc>>),
}

impl RecordTimes {
    /// `shuffle`: how many records, and the options (seed, interval) of their times.
    fn new(start: DateTime<Utc>, shuffle: Option<(u64, SynthOptions)>) -> Self {
        let Some((records, options)) = shuffle else {
            return RecordTimes::InOrder(start);
        };
        let seed = options.seed;
        let mut gaps = Synth::new(options);
        let mut at = start;
        let mut times: Vec<DateTime<Utc>> = (0..records)
            .map(|_| {
                let this = at;
                at += gaps.next_gap();
                this
            })
            .collect();
        fastrand::Rng::with_seed(seed).shuffle(&mut times);
        RecordTimes::Shuffled(times.into_iter())
    }

    fn next(&mut self, synth: &mut Synth) -> DateTime<Utc> {
        match self {
            RecordTimes::InOrder(at) => {
                let this = *at;
                *at += synth.next_gap();
                this
            }
            RecordTimes::Shuffled(times) => times.next().unwrap_or_default(),
        }
    }
}

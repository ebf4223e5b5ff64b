//! `log-etl simulate`: a stand-in for the log API, until Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use chrono::Utc;
use log_etl::local::simulator::{Simulator, SimulatorOptions};

use super::{CliError, KeyArgs, SynthArgs};

/// Serve a simulated log API (GET /api/data/log).
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (0.0.0.0 lets a container, e.g. `sam local invoke`, reach it).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Records per batch; each new batch replaces the last (the real server: 100).
    #[arg(long, default_value_t = 100, conflicts_with_all = ["window", "step"])]
    batch_size: usize,
    /// Serve the last N records instead of a batch (a rolling window), ...
    #[arg(long, requires = "step")]
    window: Option<usize>,
    /// ... moving on by M new records each period (windows overlap when M < N).
    #[arg(long, requires = "window")]
    step: Option<usize>,
    /// Serve each read in a new random order.
    #[arg(long)]
    shuffle: bool,
    /// Time between batches (e.g. 180s, 3m, 500ms).
    #[arg(long, default_value = "180s")]
    period: humantime::Duration,
    #[command(flatten)]
    records: SynthArgs,
    /// Write every record served (NDJSON) to this file, replaced at start: the ground truth.
    #[arg(long)]
    truth: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArgs,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let ring = args.key.ring()?;
    let options = SimulatorOptions {
        window: args.window.unwrap_or(args.batch_size),
        step: args.step.unwrap_or(args.batch_size),
        shuffle: args.shuffle,
        period: Some(args.period.into()),
        synth: args.records.into(),
        truth_file: args.truth,
        ..SimulatorOptions::like_the_server(Utc::now())
    };
    if options.window == 0 || options.step == 0 {
        return Err(CliError::usage(
            "--batch-size, --window and --step must be at least 1",
        ));
    }
    let addr = SocketAddr::new(args.host, args.port);
    let period = options.period;
    let sim = Simulator::start(addr, ring, options)
        .await
        .map_err(|e| CliError::failed(&format!("cannot serve on {addr}"), &e))?;
    tracing::info!(url = %sim.url(), period = ?period, "simulator serving; Ctrl-C stops it");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| CliError::failed("waiting for Ctrl-C failed", &e))?;
    let truth = sim.ground_truth();
    sim.stop().await;
    tracing::info!(
        batches = truth.batches,
        records = truth.records.len(),
        undecryptable = truth.undecryptable,
        "simulator stopped"
    );
    Ok(())
}

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
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
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
        batch_size: args.batch_size,
        period: Some(args.period.into()),
        synth: args.records.into(),
        truth_file: args.truth,
        ..SimulatorOptions::like_the_server(Utc::now())
    };
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

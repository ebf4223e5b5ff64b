//! `log-etl demo`: the whole job locally, with its proof.

use std::path::PathBuf;

use log_etl::local::demo::{self, DemoError, DemoOptions};

use super::CliError;

/// Try the whole job locally: the log-API simulator, scheduled passes into a folder, and a proof
/// that everything served landed exactly once.
#[derive(clap::Args)]
pub struct Args {
    /// Folder standing in for the bucket (cleared if it holds an earlier demo).
    #[arg(long, default_value = "demo-out")]
    out_dir: PathBuf,
    /// Scheduled passes to run, half a second apart.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    passes: u32,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let options = DemoOptions {
        out_dir: args.out_dir,
        passes: args.passes,
        ..DemoOptions::default()
    };
    match demo::run_demo(&options, &mut std::io::stdout()).await {
        Ok(_) => Ok(()),
        Err(e @ DemoError::FolderInUse(_)) => Err(CliError::usage_from("demo", &e)),
        Err(e) => Err(CliError::failed("demo", &e)),
    }
}

//! The `log-etl` command: the demo, scheduled passes, saved responses and backfills from the command line, the
//! log-API simulator, restoring what landed, and making keys and test data. `main` parses and
//! dispatches; each command is a module of `cmd`, and the work is the library's.

mod cmd;
// Declared here rather than in `cmd/mod.rs`, which is being reworked beside it; it reads as
// `cmd::backfill` in spirit and moves there once that settles.
#[path = "cmd/backfill.rs"]
mod backfill;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "log-etl",
    version,
    about = "Fernet-encrypted logs into compact, hourly, gzip'd NDJSON in S3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Demo(cmd::demo::Args),
    Run(cmd::run::Args),
    Process(cmd::process::Args),
    Backfill(backfill::Args),
    Restore(cmd::restore::Args),
    Compact(cmd::compact::Args),
    Simulate(cmd::simulate::Args),
    Keygen(cmd::keygen::Args),
    Generate(cmd::generate::Args),
    Settings(cmd::settings::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log_etl::logging::init();
    log_etl::batch::spool::remove_spill_dirs_on_signal().expect("signal handlers install");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime starts");
    let result = match cli.command {
        Command::Demo(args) => runtime.block_on(cmd::demo::run(args)),
        Command::Run(args) => runtime.block_on(cmd::run::run(args)),
        Command::Process(args) => runtime.block_on(cmd::process::run(args)),
        Command::Backfill(args) => runtime.block_on(backfill::run(args)),
        Command::Restore(args) => runtime.block_on(cmd::restore::run(args)),
        Command::Compact(args) => runtime.block_on(cmd::compact::run(args)),
        Command::Simulate(args) => runtime.block_on(cmd::simulate::run(args)),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Settings(args) => cmd::settings::run(args),
    };
    cmd::exit_code(result)
}

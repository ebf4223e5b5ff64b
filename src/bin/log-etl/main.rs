//! The `log-etl` command: the demo, scheduled passes, saved responses and backfills from the
//! command line, the log-API simulator, restoring what landed, what a store holds, replaying
//! quarantine, and making keys and test data. `main` parses and dispatches; each command is a
//! module of `cmd`, and the work is the library's.

mod cmd;
// Declared here rather than in `cmd/mod.rs`, which is being reworked beside it; it reads as
// `cmd::backfill` in spirit and moves there once that settles.

use std::io::IsTerminal;
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
    /// Print the summary as one line of JSON, also on a terminal (into a pipe it always is).
    #[arg(long, global = true)]
    json: bool,
    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log lines on stderr: -v info, -vv debug, -vvv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    Demo(cmd::demo::Args),
    Run(cmd::run::Args),
    Process(cmd::process::Args),
    Backfill(cmd::backfill::Args),
    Restore(cmd::restore::Args),
    Compact(cmd::compact::Args),
    Replay(cmd::replay::Args),
    Simulate(cmd::simulate::Args),
    Keygen(cmd::keygen::Args),
    Generate(cmd::generate::Args),
    Settings(cmd::settings::Args),
    Status(cmd::status::Args),
}

fn main() -> ExitCode {
    // Before any thread starts: freed memory goes back to the system (see the module).
    log_etl::allocator::return_freed_memory();
    let cli = Cli::parse();
    let manners = cmd::Manners {
        json: cli.json,
        quiet: cli.quiet,
        stdout_is_terminal: std::io::stdout().is_terminal(),
        stderr_is_terminal: std::io::stderr().is_terminal(),
    };
    manners.install();
    log_etl::logging::init_cli(cli.verbose, manners.stderr_is_terminal);
    log_etl::batch::spool::remove_spill_dirs_on_signal().expect("signal handlers install");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime starts");
    let result = match cli.command {
        Command::Demo(args) => runtime.block_on(cmd::demo::run(args)),
        Command::Run(args) => runtime.block_on(cmd::run::run(args)),
        Command::Process(args) => runtime.block_on(cmd::process::run(args)),
        Command::Backfill(args) => runtime.block_on(cmd::backfill::run(args)),
        Command::Restore(args) => runtime.block_on(cmd::restore::run(args)),
        Command::Compact(args) => runtime.block_on(cmd::compact::run(args)),
        Command::Replay(args) => runtime.block_on(cmd::replay::run(args)),
        Command::Simulate(args) => runtime.block_on(cmd::simulate::run(args)),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Settings(args) => cmd::settings::run(args),
        Command::Status(args) => runtime.block_on(cmd::status::run(args)),
    };
    cmd::exit_code(result)
}

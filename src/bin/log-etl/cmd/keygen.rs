//! `log-etl keygen`: a new Fernet key.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use log_etl::record::fernet;

use super::CliError;

/// Print a new Fernet key, or write it to a new file readable by its owner only.
#[derive(clap::Args)]
pub struct Args {
    /// Write the key to this file (created, mode 0600; an existing file is left alone).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let key = fernet::generate_key();
    let Some(path) = args.out else {
        println!("{key}");
        return Ok(());
    };
    let failed =
        |e: std::io::Error| CliError::failed(&format!("cannot write {}", path.display()), &e);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| match e.kind() {
            // Bad input, not a failure: a key file is never overwritten.
            ErrorKind::AlreadyExists => CliError::usage(&format!(
                "{} exists and is left alone: pass a new file to --out",
                path.display()
            )),
            _ => failed(e),
        })?;
    writeln!(file, "{key}").map_err(failed)
}

//! `log-etl restore`: the original records of landed objects.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use log_etl::progress::Progress;
use log_etl::restore::{self, RestoreError};

use super::{CliError, Measure, ProgressBar, config, open_store};

/// Print the original records stored in objects, as NDJSON in the order stored. PATHs are files,
/// folders (searched recursively) or s3://bucket/prefix; quarantine is skipped.
#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    paths: Vec<String>,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let mut config = config()?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let progress = Progress::default();
    let bar = ProgressBar::show("Restoring", Measure::Objects, &progress);
    for path in &args.paths {
        let restored = match path.strip_prefix("s3://") {
            Some(location) => {
                let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
                let opened = open_store(None, Some(bucket.to_owned()), &mut config).await?;
                restore::restore_store_with_progress(
                    &opened.store,
                    prefix,
                    &config.objects,
                    &mut out,
                    &progress,
                )
                .await
            }
            None if Path::new(path).is_dir() => {
                let opened = open_store(Some(Path::new(path)), None, &mut config).await?;
                restore::restore_store_with_progress(
                    &opened.store,
                    "",
                    &config.objects,
                    &mut out,
                    &progress,
                )
                .await
            }
            None if Path::new(path).exists() => {
                restore::restore_file(Path::new(path), config.objects.read, &mut out)
            }
            None => {
                return Err(CliError::usage(&format!(
                    "cannot read {path}: no such file"
                )));
            }
        };
        restored.map_err(failed)?;
    }
    drop(bar);
    out.flush().map_err(|e| failed(RestoreError::Output(e)))
}

fn failed(err: RestoreError) -> CliError {
    match err {
        RestoreError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => CliError::ReaderClosed,
        err => CliError::failed("restore failed", &err),
    }
}

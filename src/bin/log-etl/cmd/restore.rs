//! `log-etl restore`: the original records of landed objects.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use log_etl::logging::error_chain;
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
                .map_err(|e| failed(e, opened.aws.as_deref()))
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
                .map_err(|e| failed(e, None))
            }
            None if Path::new(path).exists() => {
                restore::restore_file(Path::new(path), config.objects.read, &mut out)
                    .map_err(|e| bad_file(e, path))
            }
            None => {
                return Err(CliError::usage(&format!(
                    "cannot read {path}: no such file"
                )));
            }
        }?;
        if restored == 0 {
            // Every object holds at least one record: none were found.
            return Err(CliError::usage(&format!(
                "nothing to restore: {path} holds no records (quarantine is skipped); check the \
                 path, or KEY_PREFIX and PARTITION_STYLE"
            )));
        }
    }
    drop(bar);
    out.flush()
        .map_err(|e| failed(RestoreError::Output(e), None))
}

fn failed(err: RestoreError, aws: Option<&str>) -> CliError {
    match err {
        RestoreError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => CliError::ReaderClosed,
        err => match (&err, aws) {
            (RestoreError::Store(_), Some(aws)) => {
                tracing::debug!(error = ?err, "restore failed");
                CliError::Failed(format!("restore failed: {} ({aws})", error_chain(&err)))
            }
            _ => CliError::failed("restore failed", &err),
        },
    }
}

/// A file given that is not an object of records is bad input (exit 2), not a failed run.
fn bad_file(err: RestoreError, path: &str) -> CliError {
    match err {
        RestoreError::Unreadable { .. } | RestoreError::Line { .. } | RestoreError::Io { .. } => {
            CliError::usage_from(&format!("cannot restore {path}"), &err)
        }
        err => failed(err, None),
    }
}

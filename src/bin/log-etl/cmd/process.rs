//! `log-etl process`: a saved API response into a folder or a bucket (backfills).

use std::fs::{self, File};
use std::path::PathBuf;

use chrono::Utc;
use log_etl::pipeline::{self, RunError};
use log_etl::store::{FolderStore, Store};

use super::{CliError, KeyArgs, config, print_json};

/// Process a saved API response (a JSON array of any size, read as a stream) into the objects the
/// Lambda would write: under a folder, or into a bucket (backfills). Settings (prefixes, layout,
/// gzip level, limits) come from the environment.
#[derive(clap::Args)]
pub struct Args {
    /// The saved response.
    #[arg(long)]
    input: PathBuf,
    /// Folder standing in for the bucket.
    #[arg(long, required_unless_present = "bucket", conflicts_with = "bucket")]
    out_dir: Option<PathBuf>,
    /// Bucket to write to (credentials, region and AWS_ENDPOINT_URL from the environment).
    #[arg(long)]
    bucket: Option<String>,
    #[command(flatten)]
    key: KeyArgs,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let ring = args.key.ring()?;
    let mut config = config()?;
    let input = File::open(&args.input)
        .map_err(|e| CliError::usage_from(&format!("cannot read {}", args.input.display()), &e))?;
    let (store, made_dir) = match (&args.out_dir, args.bucket) {
        (Some(dir), _) => {
            let made = !dir.exists();
            fs::create_dir_all(dir)
                .map_err(|e| CliError::failed(&format!("cannot create {}", dir.display()), &e))?;
            (Store::Folder(FolderStore::new(dir)), made)
        }
        (None, bucket) => {
            config.bucket = bucket;
            let store = Store::bucket_from_config(&config)
                .await
                .map_err(|e| CliError::usage_from("configuration", &e))?;
            (store, false)
        }
    };
    // Spilled bodies go beside a folder store's objects, so they are linked into place.
    let spill_parent = args.out_dir.clone().unwrap_or_else(std::env::temp_dir);
    let result =
        pipeline::process_saved_response(input, &ring, &config, &store, &spill_parent, Utc::now())
            .await;
    match result {
        Ok(summary) => {
            print_json(&summary);
            Ok(())
        }
        Err(err @ RunError::Response(_)) => {
            // Nothing was written: leave no folder behind either.
            if let (true, Some(dir)) = (made_dir, &args.out_dir) {
                let _ = fs::remove_dir(dir);
            }
            let context = format!("{} is not a usable API response", args.input.display());
            Err(CliError::usage_from(&context, &err))
        }
        Err(err) => Err(CliError::run(err)),
    }
}

//! The integration tests, built as one binary (so the AWS SDK is linked once): a module per
//! area, with the shared peers and helpers in `common`.

mod common;

mod athena_sql;
mod backfill;
mod cli;
mod cli_errors;
mod cli_s3;
mod compaction;
mod elements;
mod exactly_once;
mod faults;
mod fernet_vectors;
mod hostile;
mod lambda_binary;
mod lambda_e2e;
mod lossless;
mod private_files;
mod python_interop;
mod readme;
mod replay;
mod status;
mod template;
mod terminal;
mod transcode;
mod unreadable;
mod zstd;

//! log-etl: Fernet-encrypted logs from an HTTP API into S3 as compact, hourly, gzip'd NDJSON.
//!
//! The pure core (no clock, no environment, no I/O beyond spool files) turns source records
//! into the objects to write; the shell modules fetch, read secrets and store.

pub mod aws;
pub mod backoff;
pub mod batch;
pub mod compact;
pub mod config;
pub mod demo;
pub mod encode;
pub mod fetch;
pub mod hour;
pub mod keyring;
pub mod lambda;
pub mod local_store;
pub mod logging;
pub mod metrics;
pub mod object_key;
pub mod payload;
pub mod pipeline;
pub mod pyrepr;
pub mod record;
pub mod response;
pub mod restore;
pub mod s3_store;
pub mod secrets;
pub mod simulator;
pub mod spool;
pub mod stream;
pub mod synth;

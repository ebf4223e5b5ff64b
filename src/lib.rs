//! log-etl: Fernet-encrypted logs from an HTTP API into S3 as compact, hourly, gzip'd NDJSON.
//!
//! The map, from the pure core out to the entry points (each folder may use the ones above it):
//!
//! | module | what lives there |
//! |---|---|
//! | [`record`] | one record through the pure stages: Fernet, Python literal, fields, hour |
//! | [`batch`] | records into objects: grouping, object layout, gzip encoding, spooling, responses |
//! | [`store`] | where objects go: one [`store::Store`] over a local folder or an S3 bucket |
//! | [`source`] | the log API over HTTP, with the retry policy |
//! | [`aws`] | the AWS SDK set-up and the Fernet key from Secrets Manager |
//! | [`config`] | every setting, read once from the environment |
//! | [`pipeline`] | the one pass every entry point drives, and saved responses |
//! | [`compact`] | merging a closed hour's objects into one |
//! | [`restore`] | reading landed objects back as the original records |
//! | [`lambda`] | the Lambda handler and its metrics |
//! | [`local`] | tools the Lambda never uses: simulator, synthetic records, demo |
//! | [`logging`] | log set-up and one-line error chains |

pub mod aws;
pub mod batch;
pub mod compact;
pub mod config;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod pipeline;
pub mod record;
pub mod restore;
pub mod source;
pub mod store;

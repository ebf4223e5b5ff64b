//! log-etl: Fernet-encrypted logs from an HTTP API into S3 as compact, hourly, gzip'd NDJSON.
//!
//! The map, from the pure core out to the entry points (each folder may use the ones above it):
//!
//! | module | what lives there |
//! |---|---|
//! | [`record`] | one record through the pure stages: Fernet, Python literal, field rules, hour |
//! | [`batch`] | records into objects: the one object builder and its settings, grouping by hour, the quarantine line, object layout, gzip encoding, spooling, the response array |
//! | [`store`] | where objects go, pure I/O: one [`store::Store`] over a local folder or an S3 bucket |
//! | [`retry`] | the one retry policy (the source's GETs, S3's conflicting writes) |
//! | [`source`] | the log API over HTTP |
//! | [`aws`] | the AWS SDK set-up and the Fernet keys (given, or from Secrets Manager) |
//! | [`config`] | every setting, read once from the environment, in the parts each stage takes |
//! | [`exactly_once`] | writing only the records an hour does not hold yet |
//! | [`compact`] | compaction: merging a closed hour's objects into one |
//! | [`replay`] | replay of quarantine: what a key set right or a window widened now lets land |
//! | [`pipeline`] | the one pipeline every entry point drives: a scheduled pass, a saved response |
//! | [`backfill`] | saved responses under a prefix (or those a Distributed Map names) landed, each record once |
//! | [`restore`] | reading landed objects back as the original records |
//! | [`lambda`] | the Lambda handlers and their metrics |
//! | [`local`] | tools the Lambda never uses: simulator, synthetic records, what a store holds (status), demo |
//! | [`allocator`] | the memory allocator's set-up: freed memory goes back to the system |
//! | [`logging`] | log set-up and one-line error chains |
//! | [`progress`] | counters of how far long work has got, for a progress display |

pub mod allocator;
pub mod aws;
pub mod backfill;
pub mod batch;
pub mod compact;
pub mod config;
pub mod exactly_once;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod pipeline;
pub mod progress;
pub mod record;
pub mod replay;
pub mod restore;
pub mod retry;
pub mod source;
pub mod store;

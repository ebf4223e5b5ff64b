//! The log API, the one source of records: a GET with bounded retries ([`fetch`]) under the one
//! retry policy of the crate ([`backoff`], also used by S3's conflict retries).

pub(crate) mod backoff;
pub mod fetch;

pub use fetch::{FetchError, Fetcher};

//! The log API, the one source of records: a GET with bounded retries ([`fetch`]) under the one
//! retry policy of the crate ([`backoff`], also used by S3's conflict retries).

pub(crate) mod backoff;
mod fetch;

pub(crate) use fetch::Fetcher;
pub use fetch::{AttemptError, FetchError, MAX_REDIRECTS, RedirectRefusal, SafeUrl};

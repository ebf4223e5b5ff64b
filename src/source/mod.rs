//! The log API, the one source of records: a GET with bounded retries ([`fetch`]) under the
//! crate's one retry policy ([`crate::retry`]).

mod fetch;

pub(crate) use fetch::Fetcher;
pub use fetch::{AttemptError, FetchError, MAX_REDIRECTS, RedirectRefusal, SafeUrl};

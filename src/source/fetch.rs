//! The source API over HTTP: a GET per attempt, bounded retries with backoff and jitter, all
//! inside the time the run has left. The only module that speaks HTTP.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use std::time::Instant;

use crate::config::FetchSettings;
use crate::retry::retry_delay;

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("could not connect")]
    Connect(#[source] reqwest::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("reading the body failed")]
    Body(#[source] reqwest::Error),
    #[error("request failed")]
    Request(#[source] reqwest::Error),
}

/// Why the batch could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the HTTP client could not be built")]
    Client(#[source] reqwest::Error),
    #[error("the source URL is not a valid URL")]
    BadUrl(#[source] url::ParseError),
    #[error("GET {url} failed after {attempts} attempt(s)")]
    GaveUp {
        url: SafeUrl,
        attempts: u32,
        #[source]
        last: AttemptError,
    },
    #[error("GET {url} answered {status}, which is not retried")]
    Rejected { url: SafeUrl, status: u16 },
    #[error("GET {url}: the response is larger than {max} bytes")]
    TooLarge { url: SafeUrl, max: usize },
}

/// A URL as shown in errors and logs: scheme, host and path only, since a query string or
/// user info may carry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeUrl(String);

impl SafeUrl {
    fn of(url: &reqwest::Url) -> Self {
        let host = url.host_str().unwrap_or("?");
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Self(format!("{}://{host}{port}{}", url.scheme(), url.path()))
    }
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fetched response body and how it was obtained.
#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// Reads the source API; built once and reused across invocations.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    url: reqwest::Url,
    settings: FetchSettings,
}

impl Fetcher {
    pub fn new(url: &str, settings: FetchSettings) -> Result<Self, FetchError> {
        // One crypto provider for every TLS client in the process; a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("log-etl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| FetchError::Client(e.without_url()))?;
        let url = reqwest::Url::parse(url).map_err(FetchError::BadUrl)?;
        Ok(Self {
            client,
            url,
            settings,
        })
    }

    /// GETs the current batch, retrying transient failures (connection errors, timeouts, 408,
    /// 429, 5xx) with [`retry_delay`], honouring `Retry-After`, while attempts and time remain before `deadline`.
    pub async fn fetch(&self, deadline: Instant) -> Result<Fetched, FetchError> {
        let url = SafeUrl::of(&self.url);
        let mut rng = fastrand::Rng::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = self.settings.timeout.min(remaining);
            let result = if timeout.is_zero() {
                Err(Failure::Retry(AttemptError::Timeout(timeout), None))
            } else {
                match tokio::time::timeout(timeout, self.attempt(&url)).await {
                    Ok(result) => result,
                    Err(_) => Err(Failure::Retry(AttemptError::Timeout(timeout), None)),
                }
            };
            let (last, retry_after) = match result {
                Ok(body) => {
                    return Ok(Fetched {
                        body,
                        attempts: attempt,
                    });
                }
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::Retry(err, retry_after)) => (err, retry_after),
            };
            let delay = retry_delay(attempt, &mut rng).max(retry_after.unwrap_or_default());
            let out_of_time = Instant::now() + delay >= deadline;
            if attempt >= self.settings.max_attempts || out_of_time {
                return Err(FetchError::GaveUp {
                    url,
                    attempts: attempt,
                    last,
                });
            }
            tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %last, "fetch failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, url: &SafeUrl) -> Result<Vec<u8>, Failure> {
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| {
                // reqwest's errors carry the whole URL, credentials included: never keep it.
                let err = if e.is_connect() {
                    AttemptError::Connect(e.without_url())
                } else {
                    AttemptError::Request(e.without_url())
                };
                Failure::Retry(err, None)
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(if retryable(status) {
                Failure::Retry(
                    AttemptError::Status(status.as_u16()),
                    retry_after(&response),
                )
            } else {
                Failure::Fatal(FetchError::Rejected {
                    url: url.clone(),
                    status: status.as_u16(),
                })
            });
        }
        let max = self.settings.max_response_bytes;
        let too_large = || {
            Failure::Fatal(FetchError::TooLarge {
                url: url.clone(),
                max,
            })
        };
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::Retry(AttemptError::Body(e.without_url()), None))?
        {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

enum Failure {
    Retry(AttemptError, Option<Duration>),
    Fatal(FetchError),
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// A `Retry-After` given in seconds (the HTTP-date form is ignored).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let text = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_statuses_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 410] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn urls_in_errors_drop_credentials_and_queries() {
        let url =
            reqwest::Url::parse("https://user:pw@logs.example.com:8443/api/data/log?token=abc")
                .unwrap();
        assert_eq!(
            SafeUrl::of(&url).to_string(),
            "https://logs.example.com:8443/api/data/log"
        );
    }
}

//! The source API over HTTP: a GET per attempt, bounded retries with backoff and jitter, all
//! inside the time the run has left. The only module that speaks HTTP. The source URL's
//! credential goes to the source only: no `Referer`, and redirects stay on its origin.

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
    /// Not retried: the source would redirect the same way again.
    #[error(
        "GET {url} was redirected from {from} to {to}, which is refused: {refusal}; \
         set LOG_API_URL to the URL the source means, if it is to be trusted"
    )]
    Redirect {
        url: SafeUrl,
        from: SafeUrl,
        to: SafeUrl,
        refusal: RedirectRefusal,
    },
}

/// Same-origin redirects followed per GET at most. A source that moved says so once or twice
/// (`/log` to `/log/`, then to `/v2/log`); a longer chain is a loop or a misconfiguration,
/// and every hop spends the attempt's timeout.
pub const MAX_REDIRECTS: usize = 3;

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefusal {
    /// Another scheme, host or port: the URL's credential is for the source alone.
    #[error("it leads to another origin (scheme, host or port)")]
    OtherOrigin,
    /// https to http would send the request, and what follows, in clear text.
    #[error("it leads from https to http")]
    Downgrade,
    /// Redirect number `.0` of one GET.
    #[error("redirect {0} is over the limit of {MAX_REDIRECTS}")]
    TooMany(usize),
}

/// A redirect the policy refused, kept in reqwest's error for [`Fetcher::attempt`] to find.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redirect from {from} to {to} refused: {refusal}")]
struct RefusedRedirect {
    from: SafeUrl,
    to: SafeUrl,
    refusal: RedirectRefusal,
}

/// Whether to follow a redirect to `next`, given the URLs of the GET so far (`previous[0]` is
/// the source URL, the last one answered with the redirect). Only the source's own origin
/// (scheme, host and port) is followed, at most [`MAX_REDIRECTS`] times.
fn judge_redirect(previous: &[reqwest::Url], next: &reqwest::Url) -> Result<(), RefusedRedirect> {
    let source = previous.first().unwrap_or(next);
    let from = previous.last().unwrap_or(next);
    let refuse = |refusal| {
        Err(RefusedRedirect {
            from: SafeUrl::of(from),
            to: SafeUrl::of(next),
            refusal,
        })
    };
    if source.scheme() == "https" && next.scheme() != "https" {
        return refuse(RedirectRefusal::Downgrade);
    }
    if source.origin() != next.origin() {
        return refuse(RedirectRefusal::OtherOrigin);
    }
    if previous.len() > MAX_REDIRECTS {
        return refuse(RedirectRefusal::TooMany(previous.len()));
    }
    Ok(())
}

/// The refused redirect behind a reqwest error, if that is what it is.
fn refused_redirect(err: &reqwest::Error) -> Option<RefusedRedirect> {
    let mut cause = std::error::Error::source(err);
    // A chain of causes is a handful of links; the bound only guards against a cycle.
    for _ in 0..16 {
        let current = cause?;
        if let Some(refused) = current.downcast_ref::<RefusedRedirect>() {
            return Some(refused.clone());
        }
        cause = current.source();
    }
    None
}

/// A URL as shown in errors and logs: scheme, host, port and path only, since a query string
/// or user info may carry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeUrl(String);

impl SafeUrl {
    /// The shown form of `text`, or `None` when it is not a URL.
    pub fn parse(text: &str) -> Option<Self> {
        reqwest::Url::parse(text).ok().map(|url| Self::of(&url))
    }

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
            // The URL, query included, would be the Referer of a redirected request.
            .referer(false)
            .redirect(reqwest::redirect::Policy::custom(
                |attempt| match judge_redirect(attempt.previous(), attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                },
            ))
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
                if let Some(refused) = refused_redirect(&e) {
                    return Failure::Fatal(FetchError::Redirect {
                        url: url.clone(),
                        from: refused.from,
                        to: refused.to,
                        refusal: refused.refusal,
                    });
                }
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

    fn urls(texts: &[&str]) -> Vec<reqwest::Url> {
        texts
            .iter()
            .map(|t| reqwest::Url::parse(t).unwrap())
            .collect()
    }

    #[test]
    fn redirects_on_the_source_origin_are_followed_up_to_the_limit() {
        // Given a source that moves within its origin (the default port written or not)
        let chain = urls(&[
            "https://u:pw@logs.example.com/log?api_key=k",
            "https://logs.example.com:443/log/",
            "https://logs.example.com/v2/log",
        ]);
        // Then each hop up to the limit is followed, and the next one is refused
        for hops in 1..=MAX_REDIRECTS {
            let previous: Vec<_> = chain.iter().cycle().take(hops).cloned().collect();
            assert!(judge_redirect(&previous, &chain[2]).is_ok(), "{hops}");
        }
        let previous: Vec<_> = chain
            .iter()
            .cycle()
            .take(MAX_REDIRECTS + 1)
            .cloned()
            .collect();
        let refused = judge_redirect(&previous, &chain[2]).unwrap_err();
        assert_eq!(refused.refusal, RedirectRefusal::TooMany(MAX_REDIRECTS + 1));
    }

    #[test]
    fn redirects_to_another_origin_or_to_http_are_refused_without_the_credential() {
        let source = urls(&["https://u:pw@logs.example.com/log?api_key=k"]);
        for (next, refusal) in [
            ("https://evil.example.net/log", RedirectRefusal::OtherOrigin),
            (
                "https://logs.example.com:8443/log",
                RedirectRefusal::OtherOrigin,
            ),
            (
                "https://sub.logs.example.com/log",
                RedirectRefusal::OtherOrigin,
            ),
            ("http://logs.example.com/log", RedirectRefusal::Downgrade),
            (
                "http://logs.example.com:443/log",
                RedirectRefusal::Downgrade,
            ),
        ] {
            // When the source redirects there
            let refused = judge_redirect(&source, &urls(&[next])[0]).unwrap_err();
            // Then it is refused for that reason, and its text names both ends but no credential
            assert_eq!(refused.refusal, refusal, "{next}");
            let text = refused.to_string();
            assert!(text.contains("https://logs.example.com/log"), "{text}");
            assert!(!text.contains("pw") && !text.contains("api_key"), "{text}");
        }
        // and plain http may redirect on its own origin only
        let plain = urls(&["http://127.0.0.1:8080/log?api_key=k"]);
        assert!(judge_redirect(&plain, &urls(&["http://127.0.0.1:8080/v2"])[0]).is_ok());
        let other_port = judge_redirect(&plain, &urls(&["http://127.0.0.1:8081/log"])[0]);
        assert_eq!(
            other_port.unwrap_err().refusal,
            RedirectRefusal::OtherOrigin
        );
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

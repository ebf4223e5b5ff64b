//! Shared AWS SDK set-up: one HTTP client (rustls with ring, pure enough to cross-compile),
//! the standard retry policy, the timeouts of every call, and the region/credentials chain
//! from the environment, with `AWS_ENDPOINT_URL` pointing every client at a local emulator, and
//! how a failed call is told in a few words ([`sdk_reason`]). The Fernet keys from Secrets
//! Manager are in [`secrets`]; S3 is the store's ([`crate::store::s3`]).

mod secrets;

pub use secrets::{FernetKeys, SecretError};

use std::error::Error as StdError;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::{AwsTimeouts, Config};
use crate::source::SafeUrl;

/// Region used when the environment names none (local runs against an emulator).
pub const FALLBACK_REGION: &str = "us-east-1";

/// Loads the SDK configuration once for the run.
pub async fn sdk_config(config: &Config) -> SdkConfig {
    let sdk = loader(config).load().await;
    match sdk.region() {
        Some(_) => sdk,
        None => sdk
            .into_builder()
            .region(Region::new(FALLBACK_REGION))
            .build(),
    }
}

/// The loader behind [`sdk_config`], for callers that add to it (tests give static credentials
/// for the emulator). `PUT_MAX_ATTEMPTS` bounds the SDK's own retries (throttling, 5xx,
/// connection errors, timed-out attempts) on every call, and [`timeouts`] their time.
pub fn loader(config: &Config) -> ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(config.put_max_attempts))
        .timeout_config(timeouts(&config.aws_timeouts));
    match &config.aws_endpoint_url {
        Some(url) => loader.endpoint_url(url),
        None => loader,
    }
}

/// The SDK's timeouts from the settings. Without them an endpoint that accepts the connection
/// and never answers holds a call forever. The read timeout (the longest silence between two
/// reads) is the attempt's: it also bounds a streamed body (`GetObject`), which the attempt and
/// operation timeouts stop covering once the response headers are in.
fn timeouts(timeouts: &AwsTimeouts) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.attempt)
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.operation)
        .build()
}

/// The endpoint a client of `service` (`s3`, `secretsmanager`) calls, as errors show it: the
/// configured `AWS_ENDPOINT_URL` without user info or query, else the service's regional one.
pub fn endpoint_shown(
    endpoint_url: Option<&str>,
    service: &str,
    region: Option<&Region>,
) -> String {
    match endpoint_url {
        Some(url) => SafeUrl::parse(url)
            .map(|url| url.to_string())
            .unwrap_or_else(|| "AWS_ENDPOINT_URL (not a URL)".to_owned()),
        None => {
            let region = region.map_or(FALLBACK_REGION, |region| region.as_ref());
            format!("https://{service}.{region}.amazonaws.com")
        }
    }
}

/// The SDK's error of a failed call, kept whole as the cause. It reads as the few words of
/// [`sdk_reason`] (which the error's own message already holds, so a one-line report stops there);
/// the SDK's full error is its `Debug` and its [`SdkCause::sdk_error`], for logs at debug level.
pub struct SdkCause(Box<Cause>);

/// What an [`SdkCause`] holds, boxed so the errors that carry one stay small.
struct Cause {
    summary: String,
    sdk: Box<dyn StdError + Send + Sync>,
}

impl SdkCause {
    pub fn new<E: ProvideErrorMetadata + StdError + Send + Sync + 'static>(
        err: SdkError<E, HttpResponse>,
    ) -> Self {
        Self(Box::new(Cause {
            summary: sdk_reason(&err),
            sdk: Box::new(err),
        }))
    }

    pub fn other(summary: &str, err: impl StdError + Send + Sync + 'static) -> Self {
        Self(Box::new(Cause {
            summary: summary.to_owned(),
            sdk: Box::new(err),
        }))
    }

    /// The SDK's error, whole.
    pub fn sdk_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self.0.sdk.as_ref()
    }
}

impl std::fmt::Display for SdkCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.summary)
    }
}

impl std::fmt::Debug for SdkCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0.sdk, f)
    }
}

/// The SDK's error stays reachable (`source()` of the cause), so nothing is flattened; a
/// one-line report skips its text, which the lines above already say in words.
impl StdError for SdkCause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.0.sdk.as_ref())
    }
}

/// What went wrong in a call, in a few words: the service's code and message, or why no answer
/// came, and what to check (the rest stays in the error's source).
pub fn sdk_reason<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let said = match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code} (HTTP {status}): {message}"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status}"),
            };
            match err.code().and_then(what_to_check) {
                Some(hint) => format!("{said}; {hint}"),
                None => said,
            }
        }
        SdkError::TimeoutError(_) => "no answer in time (timeout)".to_owned(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            "no answer in time (timeout); check AWS_ENDPOINT_URL and the network".to_owned()
        }
        SdkError::DispatchFailure(_) => {
            "the endpoint could not be reached; check AWS_ENDPOINT_URL, AWS_REGION and the network"
                .to_owned()
        }
        SdkError::ResponseError(_) => "the answer could not be read".to_owned(),
        _ => "the request could not be made".to_owned(),
    }
}

/// What to check for the error codes people meet most (S3's and the credentials').
fn what_to_check(code: &str) -> Option<&'static str> {
    Some(match code {
        "NoSuchBucket" => "check the bucket's name (BUCKET_NAME or --bucket) and AWS_REGION",
        "AccessDenied" | "AllAccessDisabled" => "check the credentials' permissions on the bucket",
        "ExpiredToken" | "TokenRefreshRequired" => "the credentials expired: renew them",
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" => {
            "check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID)"
        }
        "PermanentRedirect" | "AuthorizationHeaderMalformed" => {
            "the bucket is in another region: set AWS_REGION to it"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_shown_without_credentials() {
        assert_eq!(
            endpoint_shown(Some("http://u:pw@127.0.0.1:4566/?token=t"), "s3", None),
            "http://127.0.0.1:4566/"
        );
        assert_eq!(
            endpoint_shown(None, "secretsmanager", Some(&Region::new("eu-west-1"))),
            "https://secretsmanager.eu-west-1.amazonaws.com"
        );
    }
}

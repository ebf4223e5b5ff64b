//! Shared AWS SDK set-up: one HTTP client (rustls with ring, pure enough to cross-compile),
//! the standard retry policy, the timeouts of every call, and the region/credentials chain
//! from the environment, with `AWS_ENDPOINT_URL` pointing every client at a local emulator, and
//! how a failed call is told in a few words ([`sdk_reason`]). The Fernet keys from Secrets
//! Manager are in [`secrets`]; S3 is the store's ([`crate::store::s3`]).

mod secrets;

pub use secrets::{FernetKeys, SecretError};

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

/// What went wrong in a call, in a few words: the service's code and message, or why no answer
/// came (the rest stays in the error's source).
pub fn sdk_reason<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code} (HTTP {status}): {message}"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status}"),
            }
        }
        SdkError::TimeoutError(_) => "no answer in time".to_owned(),
        SdkError::DispatchFailure(_) => "the endpoint could not be reached".to_owned(),
        SdkError::ResponseError(_) => "the answer could not be read".to_owned(),
        _ => "the request could not be made".to_owned(),
    }
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

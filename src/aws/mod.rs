//! Shared AWS SDK set-up: one HTTP client (rustls with ring, pure enough to cross-compile),
//! the standard retry policy, and the region/credentials chain from the environment, with
//! `AWS_ENDPOINT_URL` pointing every client at a local emulator. The Fernet key from Secrets
//! Manager is in [`secrets`]; S3 is the store's ([`crate::store::s3`]).

mod secrets;

pub use secrets::{FernetKeys, SecretError};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use crate::config::Config;

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
/// connection errors) on every call.
pub fn loader(config: &Config) -> ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(config.put_max_attempts));
    match &config.aws_endpoint_url {
        Some(url) => loader.endpoint_url(url),
        None => loader,
    }
}

//! Shared AWS SDK set-up: one HTTP client (rustls with ring, pure enough to cross-compile),
//! the standard retry policy, and the region/endpoint/credentials chain from the environment
//! (`AWS_ENDPOINT_URL` points every client at a local emulator).

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// Region used when the environment names none (local runs against an emulator).
pub const FALLBACK_REGION: &str = "us-east-1";

/// Loads the SDK configuration once; `max_attempts` bounds the SDK's own retries (throttling,
/// 5xx, connection errors) for every call.
pub async fn sdk_config(max_attempts: u32) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new(FALLBACK_REGION));
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(region)
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
        .load()
        .await
}

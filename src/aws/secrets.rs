//! The Fernet key(s) from AWS Secrets Manager, cached and re-read after a TTL so a rotated
//! secret is picked up without a redeploy. The only module that speaks to Secrets Manager.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::record::fernet::{KeyError, KeyRing};

/// Why the key could not be had from the secret. Never contains the secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{operation} of secret {secret_id} at {endpoint} failed: {detail}")]
    Read {
        operation: &'static str,
        secret_id: String,
        /// The endpoint called, without user info or query ([`super::endpoint_shown`]).
        endpoint: String,
        /// The SDK's own description (error code and message), flattened because the SDK error
        /// type's `Display` alone says only "service error".
        detail: String,
        #[source]
        source: Box<SdkError<GetSecretValueError>>,
    },
    #[error("secret {secret_id} has no value")]
    Empty { secret_id: String },
    #[error("secret {secret_id} does not hold a Fernet key (or a JSON list of keys)")]
    NotAKey {
        secret_id: String,
        #[source]
        source: KeyError,
    },
}

/// The Secrets Manager client and the endpoint it calls, as errors show it.
#[derive(Debug, Clone)]
pub struct SecretsClient {
    client: Client,
    endpoint: String,
}

/// The Secrets Manager client, from the shared SDK configuration.
pub fn client(sdk: &aws_config::SdkConfig) -> SecretsClient {
    SecretsClient {
        client: Client::new(sdk),
        endpoint: super::endpoint_shown(sdk.endpoint_url(), "secretsmanager", sdk.region()),
    }
}

/// Keys read from one secret, cached for `ttl`.
#[derive(Debug)]
pub struct SecretKeys {
    client: SecretsClient,
    secret_id: String,
    ttl: Duration,
    cached: Mutex<Option<(Arc<KeyRing>, Instant)>>,
}

impl SecretKeys {
    pub fn new(client: SecretsClient, secret_id: String, ttl: Duration) -> Self {
        Self {
            client,
            secret_id,
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The current keys: the cached ones while younger than the TTL, else read anew. A failed
    /// re-read is an error, not a silent fall-back to the old keys: a deleted or emptied secret
    /// stops the pipeline (the schedule retries it) rather than running on revoked keys.
    pub async fn current(&self) -> Result<Arc<KeyRing>, SecretError> {
        let mut cached = self.cached.lock().await;
        if let Some((keys, read_at)) = cached.as_ref()
            && read_at.elapsed() < self.ttl
        {
            return Ok(keys.clone());
        }
        let keys = Arc::new(self.read().await?);
        *cached = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    async fn read(&self) -> Result<KeyRing, SecretError> {
        let output = self
            .client
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|err| SecretError::Read {
                operation: "GetSecretValue",
                secret_id: self.secret_id.clone(),
                endpoint: self.client.endpoint.clone(),
                detail: DisplayErrorContext(&err).to_string(),
                source: Box::new(err),
            })?;
        let text = match (output.secret_string(), output.secret_binary()) {
            (Some(text), _) => text.to_owned(),
            (None, Some(blob)) => String::from_utf8_lossy(blob.as_ref()).into_owned(),
            (None, None) => {
                return Err(SecretError::Empty {
                    secret_id: self.secret_id.clone(),
                });
            }
        };
        KeyRing::parse(&text).map_err(|source| SecretError::NotAKey {
            secret_id: self.secret_id.clone(),
            source,
        })
    }
}

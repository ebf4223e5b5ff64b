//! The Fernet key(s) of a run: given directly, or from AWS Secrets Manager, cached and re-read
//! after a TTL so a rotated secret is picked up without a redeploy. The only module that speaks
//! to Secrets Manager.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::FernetKeySource;
use crate::record::fernet::{KeyError, KeyRing};

/// Why the key could not be had from the secret. Never contains the secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{operation} of secret {secret_id} at {endpoint} failed: {reason}")]
    Read {
        operation: &'static str,
        secret_id: String,
        /// The endpoint called, without user info or query ([`super::endpoint_shown`]).
        endpoint: String,
        /// What went wrong, in a few words ([`super::sdk_reason`]).
        reason: String,
        #[source]
        source: super::SdkCause,
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
fn client(sdk: &aws_config::SdkConfig) -> SecretsClient {
    SecretsClient {
        client: Client::new(sdk),
        endpoint: super::endpoint_shown(sdk.endpoint_url(), "secretsmanager", sdk.region()),
    }
}

/// The Fernet keys of a run, built once from where the configuration says they are: given keys
/// are parsed now and kept; a secret's are read when first needed, cached for its TTL.
#[derive(Debug)]
pub struct FernetKeys {
    /// The secret and its client; `None` for keys given directly, which never expire.
    secret: Option<(SecretsClient, String)>,
    ttl: Duration,
    cached: Mutex<Option<(Arc<KeyRing>, Instant)>>,
}

impl FernetKeys {
    /// Keys from `source`; `sdk` is needed (and used) only for a secret.
    pub fn new(
        source: &FernetKeySource,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, KeyError> {
        Ok(match source {
            FernetKeySource::Direct(material) => Self {
                secret: None,
                ttl: Duration::MAX,
                cached: Mutex::new(Some((
                    Arc::new(KeyRing::parse(material.expose())?),
                    Instant::now(),
                ))),
            },
            FernetKeySource::SecretsManager { secret_id, ttl } => Self {
                secret: Some((
                    client(sdk.expect("an SDK configuration is given when a secret is used")),
                    secret_id.clone(),
                )),
                ttl: *ttl,
                cached: Mutex::new(None),
            },
        })
    }

    /// The current keys: the cached ones while younger than the TTL, else read anew. A failed
    /// re-read is an error, not a silent fall-back to the old keys: a deleted or emptied secret
    /// stops the pipeline (the schedule retries it) rather than running on revoked keys.
    pub async fn current(&self) -> Result<Arc<KeyRing>, SecretError> {
        let mut cached = self.cached.lock().await;
        match (cached.as_ref(), &self.secret) {
            (Some((keys, _)), None) => return Ok(keys.clone()),
            (Some((keys, read_at)), Some(_)) if read_at.elapsed() < self.ttl => {
                return Ok(keys.clone());
            }
            _ => {}
        }
        let keys = Arc::new(self.read().await?);
        *cached = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    async fn read(&self) -> Result<KeyRing, SecretError> {
        let (client, secret_id) = self
            .secret
            .as_ref()
            .expect("keys given directly are always cached");
        let output = client
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|err| SecretError::Read {
                operation: "GetSecretValue",
                secret_id: secret_id.clone(),
                endpoint: client.endpoint.clone(),
                reason: super::sdk_reason(&err),
                source: super::SdkCause::new(err),
            })?;
        let text = match (output.secret_string(), output.secret_binary()) {
            (Some(text), _) => text.to_owned(),
            (None, Some(blob)) => String::from_utf8_lossy(blob.as_ref()).into_owned(),
            (None, None) => {
                return Err(SecretError::Empty {
                    secret_id: secret_id.clone(),
                });
            }
        };
        KeyRing::parse(&text).map_err(|source| SecretError::NotAKey {
            secret_id: secret_id.clone(),
            source,
        })
    }
}

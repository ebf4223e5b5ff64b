//! Settings from the environment: the same variable names for the Lambda and the command line,
//! each with a default or a clear error naming the variable. Validated once, at start-up.

use std::fmt;
use std::time::Duration;

use crate::encode::DEFAULT_GZIP_LEVEL;
use crate::object_key::{KeyLayout, LayoutError, PartitionStyle};
use crate::pyrepr::ParseLimits;
use crate::record::RecordLimits;

/// Every variable read, in one place.
pub mod var {
    pub const LOG_API_URL: &str = "LOG_API_URL";
    pub const BUCKET_NAME: &str = "BUCKET_NAME";
    pub const KEY_PREFIX: &str = "KEY_PREFIX";
    pub const QUARANTINE_PREFIX: &str = "QUARANTINE_PREFIX";
    pub const PARTITION_STYLE: &str = "PARTITION_STYLE";
    pub const FERNET_SECRET_ID: &str = "FERNET_SECRET_ID";
    pub const FERNET_KEY: &str = "FERNET_KEY";
    pub const KEY_CACHE_TTL_SECONDS: &str = "KEY_CACHE_TTL_SECONDS";
    pub const GZIP_LEVEL: &str = "GZIP_LEVEL";
    pub const START_DELAY_MS: &str = "START_DELAY_MS";
    pub const FETCH_TIMEOUT_MS: &str = "FETCH_TIMEOUT_MS";
    pub const FETCH_MAX_ATTEMPTS: &str = "FETCH_MAX_ATTEMPTS";
    pub const PUT_MAX_ATTEMPTS: &str = "PUT_MAX_ATTEMPTS";
    pub const MAX_RESPONSE_BYTES: &str = "MAX_RESPONSE_BYTES";
    pub const MAX_RECORD_BYTES: &str = "MAX_RECORD_BYTES";
    pub const MAX_NESTING_DEPTH: &str = "MAX_NESTING_DEPTH";
    pub const MAX_STRING_BYTES: &str = "MAX_STRING_BYTES";
    pub const METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";
    /// Standard AWS SDK variable: every AWS client goes to this endpoint (a local emulator).
    pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
}

/// Why the configuration is unusable. Names the variable, never echoes a key.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} = {value:?} is invalid: {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("key layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("neither FERNET_KEY nor FERNET_SECRET_ID is set")]
    NoKeySource,
}

/// Text that must not be printed (a key given directly).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Self {
        Self(text)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the Fernet key(s) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `FERNET_KEY`: given directly (local runs, tests); wins over the secret.
    Direct(Secret),
    /// `FERNET_SECRET_ID`: read from Secrets Manager, re-read after `ttl`.
    SecretsManager { secret_id: String, ttl: Duration },
}

/// How the source API is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSettings {
    /// Wait before the first request (the source replaces its batch on the minute; the original
    /// script read at second 5).
    pub start_delay: Duration,
    /// Timeout of one request, connection to last byte.
    pub timeout: Duration,
    /// Requests made at most, the first included.
    pub max_attempts: u32,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

/// Every setting of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub api_url: Option<String>,
    pub bucket: Option<String>,
    pub layout: KeyLayout,
    pub key_source: Option<KeySource>,
    pub gzip_level: u32,
    pub fetch: FetchSettings,
    pub put_max_attempts: u32,
    pub limits: RecordLimits,
    pub metrics_namespace: String,
    /// `AWS_ENDPOINT_URL`, when set: S3 and Secrets Manager at a local emulator.
    pub aws_endpoint_url: Option<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests). Empty values count
    /// as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let text =
            |name: &'static str, default: &str| get(name).unwrap_or_else(|| default.to_owned());

        let layout = KeyLayout::new(
            &text(var::KEY_PREFIX, "data"),
            &text(var::QUARANTINE_PREFIX, "quarantine"),
            text(var::PARTITION_STYLE, "flat").parse::<PartitionStyle>()?,
        )?;

        let key_source = match (get(var::FERNET_KEY), get(var::FERNET_SECRET_ID)) {
            (Some(key), _) => Some(KeySource::Direct(Secret::new(key))),
            (None, Some(secret_id)) => Some(KeySource::SecretsManager {
                secret_id,
                ttl: Duration::from_secs(number(
                    &get,
                    var::KEY_CACHE_TTL_SECONDS,
                    300,
                    0..=86_400,
                )?),
            }),
            (None, None) => None,
        };

        let api_url = get(var::LOG_API_URL);
        if let Some(url) = &api_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                var: var::LOG_API_URL,
                value: url.clone(),
                expected: "an http:// or https:// URL",
            });
        }

        Ok(Self {
            api_url,
            bucket: get(var::BUCKET_NAME),
            layout,
            key_source,
            gzip_level: number(&get, var::GZIP_LEVEL, DEFAULT_GZIP_LEVEL.into(), 0..=9)? as u32,
            fetch: FetchSettings {
                start_delay: Duration::from_millis(number(
                    &get,
                    var::START_DELAY_MS,
                    0,
                    0..=60_000,
                )?),
                timeout: Duration::from_millis(number(
                    &get,
                    var::FETCH_TIMEOUT_MS,
                    10_000,
                    100..=600_000,
                )?),
                max_attempts: number(&get, var::FETCH_MAX_ATTEMPTS, 4, 1..=20)? as u32,
                max_response_bytes: number(&get, var::MAX_RESPONSE_BYTES, 64 << 20, 1024..=1 << 32)?
                    as usize,
            },
            put_max_attempts: number(&get, var::PUT_MAX_ATTEMPTS, 5, 1..=20)? as u32,
            limits: RecordLimits {
                max_record_bytes: number(&get, var::MAX_RECORD_BYTES, 1 << 20, 256..=1 << 30)?
                    as usize,
                parse: ParseLimits {
                    max_depth: number(&get, var::MAX_NESTING_DEPTH, 32, 1..=512)? as usize,
                    max_string_len: number(&get, var::MAX_STRING_BYTES, 1 << 20, 1..=1 << 30)?
                        as usize,
                },
            },
            metrics_namespace: text(var::METRICS_NAMESPACE, "LogEtl"),
            aws_endpoint_url: get(var::AWS_ENDPOINT_URL),
        })
    }

    /// The API URL, or the error naming its variable.
    pub fn require_api_url(&self) -> Result<&str, ConfigError> {
        self.api_url
            .as_deref()
            .ok_or(ConfigError::Missing(var::LOG_API_URL))
    }

    /// The bucket, or the error naming its variable.
    pub fn require_bucket(&self) -> Result<&str, ConfigError> {
        self.bucket
            .as_deref()
            .ok_or(ConfigError::Missing(var::BUCKET_NAME))
    }

    /// The key source, or the error naming both variables.
    pub fn require_key_source(&self) -> Result<&KeySource, ConfigError> {
        self.key_source.as_ref().ok_or(ConfigError::NoKeySource)
    }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(value) = get(name) else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or(ConfigError::Invalid {
            var: name,
            value,
            expected: "a whole number in the allowed range (see the README)",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.layout.data_prefix(), "data");
        assert_eq!(c.layout.quarantine_prefix(), "quarantine");
        assert_eq!(c.layout.style(), PartitionStyle::Flat);
        assert_eq!(c.gzip_level, DEFAULT_GZIP_LEVEL);
        assert_eq!(c.fetch.max_attempts, 4);
        assert_eq!(c.key_source, None);
        assert_eq!(c.require_bucket(), Err(ConfigError::Missing("BUCKET_NAME")));
        assert_eq!(c.require_key_source(), Err(ConfigError::NoKeySource));
    }

    #[test]
    fn direct_key_wins_over_the_secret_and_is_never_printed() {
        let c = config(&[("FERNET_KEY", "k3y"), ("FERNET_SECRET_ID", "arn:secret")]).unwrap();
        assert_eq!(
            c.key_source,
            Some(KeySource::Direct(Secret::new("k3y".into())))
        );
        assert!(!format!("{c:?}").contains("k3y"));
        let c = config(&[
            ("FERNET_SECRET_ID", "arn:secret"),
            ("KEY_CACHE_TTL_SECONDS", "60"),
        ])
        .unwrap();
        assert_eq!(
            c.key_source,
            Some(KeySource::SecretsManager {
                secret_id: "arn:secret".into(),
                ttl: Duration::from_secs(60)
            })
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = config(&[("GZIP_LEVEL", "11")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("GZIP_LEVEL = \"11\" is invalid"),
            "{err}"
        );
        let err = config(&[("FETCH_MAX_ATTEMPTS", "many")]).unwrap_err();
        assert!(err.to_string().starts_with("FETCH_MAX_ATTEMPTS"), "{err}");
        let err = config(&[("LOG_API_URL", "ftp://x")]).unwrap_err();
        assert!(err.to_string().starts_with("LOG_API_URL"), "{err}");
        assert!(matches!(
            config(&[("PARTITION_STYLE", "weekly")]),
            Err(ConfigError::Layout(_))
        ));
        assert!(matches!(
            config(&[("QUARANTINE_PREFIX", "data/bad")]),
            Err(ConfigError::Layout(LayoutError::Overlap(..)))
        ));
    }
}

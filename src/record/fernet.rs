//! Fernet keys and token decryption: one key, or several for rotation (newest first).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use fernet::Fernet;

/// Version byte every Fernet token starts with (spec: `0x80`).
const FERNET_VERSION: u8 = 0x80;
/// Version (1) + timestamp (8) + IV (16) + HMAC (32): a token shorter than this plus one
/// cipher block cannot be valid.
const FERNET_OVERHEAD: usize = 1 + 8 + 16 + 32;
const AES_BLOCK: usize = 16;

/// Why the key material given to [`KeyRing::parse`] is unusable. Never contains the key itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no Fernet key given")]
    Empty,
    #[error("key #{index} is not a Fernet key (32 bytes, URL-safe base64)")]
    Invalid { index: usize },
    #[error("key list is not a JSON list of strings")]
    NotAList,
}

/// Why one token could not be decrypted. The token and the keys are never part of the message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecryptError {
    #[error("token is not a string")]
    NotAString,
    #[error("token is not URL-safe base64")]
    NotBase64,
    #[error("token is too short ({len} bytes decoded)")]
    TooShort { len: usize },
    #[error("token has version byte {found:#04x}, expected 0x80")]
    BadVersion { found: u8 },
    #[error("token ciphertext is not a whole number of AES blocks")]
    BadLength,
    #[error("token does not verify under any of the {keys} key(s): wrong key or tampered")]
    NoKeyMatched { keys: usize },
}

/// The keys a batch is decrypted with, newest first. Holds no clock: token age is not checked,
/// because logs are landed however late they are read.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Fernet>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "KeyRing({} key(s))", self.keys.len())
    }
}

impl KeyRing {
    /// Parses key material as stored in the secret or given in `FERNET_KEY`: either one key,
    /// or a JSON list of keys, newest first.
    pub fn parse(material: &str) -> Result<Self, KeyError> {
        let material = material.trim();
        if material.is_empty() {
            return Err(KeyError::Empty);
        }
        let texts: Vec<String> = if material.starts_with('[') {
            serde_json::from_str(material).map_err(|_| KeyError::NotAList)?
        } else {
            vec![material.to_owned()]
        };
        if texts.is_empty() {
            return Err(KeyError::Empty);
        }
        let keys = texts
            .iter()
            .enumerate()
            .map(|(index, text)| Fernet::new(text.trim()).ok_or(KeyError::Invalid { index }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring is never built empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Decrypts a token with the first key that verifies it.
    pub fn decrypt(&self, token: &str) -> Result<Vec<u8>, DecryptError> {
        for key in &self.keys {
            if let Ok(plain) = key.decrypt(token) {
                return Ok(plain);
            }
        }
        Err(diagnose(token, self.keys.len()))
    }

    /// Encrypts with the newest key (the simulator and tests; the pipeline only decrypts).
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        self.keys[0].encrypt(plaintext)
    }
}

/// A new random key, URL-safe base64 as Fernet keys are written.
pub fn generate_key() -> String {
    Fernet::generate_key()
}

/// Names the first structural fault of a token that no key accepted. Only runs on the failure
/// path, so valid tokens are decoded once.
fn diagnose(token: &str, keys: usize) -> DecryptError {
    let token = token.trim_end_matches('=');
    let Ok(raw) = URL_SAFE_NO_PAD
        .decode(token)
        .or_else(|_| URL_SAFE.decode(token))
    else {
        return DecryptError::NotBase64;
    };
    if raw.len() < FERNET_OVERHEAD + AES_BLOCK {
        return DecryptError::TooShort { len: raw.len() };
    }
    if raw[0] != FERNET_VERSION {
        return DecryptError::BadVersion { found: raw[0] };
    }
    if !(raw.len() - FERNET_OVERHEAD).is_multiple_of(AES_BLOCK) {
        return DecryptError::BadLength;
    }
    DecryptError::NoKeyMatched { keys }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_key_round_trips() {
        // Given a ring with one fresh key
        let ring = KeyRing::parse(&generate_key()).unwrap();
        // When a payload is encrypted and decrypted
        let token = ring.encrypt(b"{'a': 1}");
        // Then it comes back unchanged
        assert_eq!(ring.decrypt(&token).unwrap(), b"{'a': 1}");
    }

    #[test]
    fn rotation_accepts_old_and_new_keys() {
        let old = generate_key();
        let new = generate_key();
        let old_ring = KeyRing::parse(&old).unwrap();
        let rotated = KeyRing::parse(&format!("[\"{new}\", \"{old}\"]")).unwrap();
        assert_eq!(rotated.len(), 2);
        let token = old_ring.encrypt(b"x");
        assert_eq!(rotated.decrypt(&token).unwrap(), b"x");
        // and new tokens are made with the newest key
        let fresh = rotated.encrypt(b"y");
        assert!(old_ring.decrypt(&fresh).is_err());
    }

    #[test]
    fn wrong_key_is_a_typed_error() {
        let a = KeyRing::parse(&generate_key()).unwrap();
        let b = KeyRing::parse(&generate_key()).unwrap();
        let token = a.encrypt(b"secret payload");
        assert_eq!(
            b.decrypt(&token),
            Err(DecryptError::NoKeyMatched { keys: 1 })
        );
    }

    #[test]
    fn structural_faults_are_named() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        assert_eq!(ring.decrypt("%%%"), Err(DecryptError::NotBase64));
        assert_eq!(ring.decrypt("gAAA"), Err(DecryptError::TooShort { len: 3 }));
        let token = ring.encrypt(b"payload");
        let mut raw = URL_SAFE.decode(&token).unwrap();
        raw[0] = 0x81;
        assert_eq!(
            ring.decrypt(&URL_SAFE.encode(&raw)),
            Err(DecryptError::BadVersion { found: 0x81 })
        );
    }

    #[test]
    fn bad_key_material_is_rejected_without_echoing_it() {
        assert_eq!(KeyRing::parse("  ").unwrap_err(), KeyError::Empty);
        assert_eq!(KeyRing::parse("[]").unwrap_err(), KeyError::Empty);
        assert_eq!(KeyRing::parse("[1]").unwrap_err(), KeyError::NotAList);
        let err = KeyRing::parse("not-a-key").unwrap_err();
        assert_eq!(err, KeyError::Invalid { index: 0 });
        assert!(!err.to_string().contains("not-a-key"));
        let debug = format!("{:?}", KeyRing::parse(&generate_key()).unwrap());
        assert_eq!(debug, "KeyRing(1 key(s))");
    }
}

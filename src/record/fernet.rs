//! Fernet keys and token decryption: one key, or several for rotation (newest first).
//!
//! A token is accepted exactly when Python's `cryptography` `Fernet.decrypt(token)` (no TTL)
//! accepts it: base64 is read as Python's `urlsafe_b64decode` reads it (either alphabet,
//! characters outside it such as whitespace skipped, nothing after the padding read), the
//! token's timestamp is not judged, and the HMAC is always verified before anything is
//! decrypted. The `fernet` crate makes keys and tokens (the simulator, the tests); it cannot
//! decrypt here, since it refuses tokens stamped more than a minute ahead of the local clock.

use std::fmt;

use aes::Aes128;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use fernet::Fernet;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Version byte every Fernet token starts with (spec: `0x80`).
const FERNET_VERSION: u8 = 0x80;
/// Version (1) + timestamp (8) + IV (16): where the ciphertext starts.
const HEADER: usize = 1 + 8 + 16;
const HMAC_LEN: usize = 32;
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

/// Why one token could not be decrypted, naming what actually failed. The token and the keys
/// are never part of the message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecryptError {
    #[error("token is not base64 (as Python's Fernet reads it)")]
    NotBase64,
    #[error("token is too short ({len} bytes decoded, a token has at least 73)")]
    TooShort { len: usize },
    #[error("token has version byte {found:#04x}, expected 0x80")]
    BadVersion { found: u8 },
    #[error("token does not verify under any of the {keys} key(s): wrong key or tampered")]
    NoKeyMatched { keys: usize },
    #[error("token verifies, but its ciphertext is not a whole number of AES blocks")]
    BadLength,
    #[error("token verifies, but its plaintext padding is invalid")]
    BadPadding,
}

/// One key: the HMAC-SHA256 signing half and the AES-128 encryption half.
#[derive(Clone)]
struct Key {
    /// HMAC-SHA256 keyed with the signing half once, cloned per token (saves hashing the key).
    signing: Hmac<Sha256>,
    encryption: [u8; 16],
    /// The same key for making tokens.
    maker: Fernet,
}

/// The keys a batch is decrypted with, newest first. Holds no clock: token age is not checked,
/// because logs are landed however late they are read.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
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
            .map(|(index, text)| Key::parse(text.trim()).ok_or(KeyError::Invalid { index }))
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

    /// Decrypts a token with the first key whose HMAC verifies it.
    pub fn decrypt(&self, token: &str) -> Result<Vec<u8>, DecryptError> {
        let mut buffers = TokenBuffers::default();
        self.decrypt_into(token, &mut buffers)?;
        Ok(buffers.plain)
    }

    /// [`KeyRing::decrypt`] into reused buffers: the plaintext is `buffers.plain` (also
    /// returned). Allocates nothing once the buffers have grown to the tokens' size (a token in
    /// another form than Fernet writes it takes Python's slower reading, which allocates).
    pub fn decrypt_into<'b>(
        &self,
        token: &str,
        buffers: &'b mut TokenBuffers,
    ) -> Result<&'b [u8], DecryptError> {
        decode_token_into(token, &mut buffers.token)?;
        let data = &buffers.token[..];
        match data.first() {
            Some(&FERNET_VERSION) => {}
            Some(&found) => return Err(DecryptError::BadVersion { found }),
            None => return Err(DecryptError::TooShort { len: 0 }),
        }
        if data.len() < HEADER + AES_BLOCK + HMAC_LEN {
            return Err(DecryptError::TooShort { len: data.len() });
        }
        let (signed, tag) = data.split_at(data.len() - HMAC_LEN);
        let key = self
            .keys
            .iter()
            .find(|key| key.verifies(signed, tag))
            .ok_or(DecryptError::NoKeyMatched {
                keys: self.keys.len(),
            })?;
        let ciphertext = &signed[HEADER..];
        if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(AES_BLOCK) {
            return Err(DecryptError::BadLength);
        }
        // Cannot fail: the header's length was checked above.
        let iv: [u8; AES_BLOCK] = signed[9..HEADER]
            .try_into()
            .map_err(|_| DecryptError::TooShort { len: data.len() })?;
        let plain = &mut buffers.plain;
        plain.clear();
        plain.extend_from_slice(ciphertext);
        let len = cbc::Decryptor::<Aes128>::new(&key.encryption.into(), &iv.into())
            .decrypt_padded::<Pkcs7>(plain)
            .map_err(|_| DecryptError::BadPadding)?
            .len();
        plain.truncate(len);
        Ok(&plain[..])
    }

    /// Encrypts with the newest key (the simulator and tests; the pipeline only decrypts).
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        self.keys[0].maker.encrypt(plaintext)
    }
}

impl Key {
    /// A key as Python's `Fernet(key)` takes it: 32 bytes in base64.
    fn parse(text: &str) -> Option<Self> {
        let raw = decode_like_python(text).ok()?;
        let raw: [u8; 32] = raw.try_into().ok()?;
        let (signing, encryption) = raw.split_at(16);
        Some(Self {
            signing: Hmac::<Sha256>::new_from_slice(signing).ok()?,
            encryption: encryption.try_into().ok()?,
            maker: Fernet::new(&URL_SAFE.encode(raw))?,
        })
    }

    /// Whether `tag` is the HMAC-SHA256 of `signed` under this key (compared in constant time).
    fn verifies(&self, signed: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.signing.clone();
        mac.update(signed);
        mac.verify_slice(tag).is_ok()
    }
}

/// Whether the AES and SHA-256 instructions of this CPU are used for tokens (AES-NI and SHA-NI
/// on x86_64, the ARMv8 AES and SHA2 extensions on arm64), as the crates decide it: at run time
/// (detected once, then cached), or at build time where the target CPU has them (the Lambda
/// build, for Neoverse N1). The Lambda logs it once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardware {
    /// AES-128 (decryption) runs on the CPU's AES instructions.
    pub aes: bool,
    /// SHA-256 (the HMAC) runs on the CPU's SHA-256 instructions.
    pub sha256: bool,
}

/// What the `aes` and `sha2` crates chose on this CPU: `aes` says so itself; for SHA-256 the
/// check is the one `sha2` makes (its `cpufeatures` token, with the same features).
pub fn hardware() -> Hardware {
    Hardware {
        aes: aes::hardware_accelerated(),
        sha256: sha256_hardware(),
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn sha256_hardware() -> bool {
    cpufeatures::new!(shani_cpuid, "sha", "sse2", "ssse3", "sse4.1");
    shani_cpuid::get()
}

#[cfg(target_arch = "aarch64")]
fn sha256_hardware() -> bool {
    cpufeatures::new!(sha2_hwcap, "sha2");
    sha2_hwcap::get()
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
fn sha256_hardware() -> bool {
    false
}

/// A new random key, URL-safe base64 as Fernet keys are written.
pub fn generate_key() -> String {
    Fernet::generate_key()
}

/// The buffers [`KeyRing::decrypt_into`] reuses from token to token.
#[derive(Default)]
pub struct TokenBuffers {
    /// The token's bytes, base64 decoded.
    token: Vec<u8>,
    /// The last plaintext decrypted.
    pub plain: Vec<u8>,
}

impl fmt::Debug for TokenBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a plaintext.
        write!(f, "TokenBuffers({} bytes)", self.plain.capacity())
    }
}

/// The bytes of a token into `out`. Tokens as Fernet writes them (URL-safe, padded, nothing
/// else) take the fast decoder; anything else is read as Python reads it, so both accept the
/// same tokens.
fn decode_token_into(token: &str, out: &mut Vec<u8>) -> Result<(), DecryptError> {
    out.clear();
    if URL_SAFE.decode_vec(token, out).is_err() {
        *out = decode_like_python(token)?;
    }
    Ok(())
}

/// Python's `base64.urlsafe_b64decode` on a `str`: ASCII only; `-`/`_` and `+`/`/` both read as
/// 62/63; any other character that is not `=` is skipped; once the padding completes a group of
/// four, the rest is ignored; a group left incomplete is an error; unused trailing bits are
/// dropped (CPython's `binascii.a2b_base64` in its non-strict mode).
fn decode_like_python(text: &str) -> Result<Vec<u8>, DecryptError> {
    if !text.is_ascii() {
        return Err(DecryptError::NotBase64);
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let (mut quad_pos, mut left, mut pads) = (0u8, 0u8, 0u8);
    for &c in text.as_bytes() {
        if c == b'=' {
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    return Ok(out);
                }
            }
            continue;
        }
        let Some(v) = sextet(c) else { continue };
        pads = 0;
        match quad_pos {
            0 => left = v,
            1 => {
                out.push(left << 2 | v >> 4);
                left = v & 0x0f;
            }
            2 => {
                out.push(left << 4 | v >> 2);
                left = v & 0x03;
            }
            _ => out.push(left << 6 | v),
        }
        quad_pos = (quad_pos + 1) % 4;
    }
    if quad_pos == 0 {
        Ok(out)
    } else {
        Err(DecryptError::NotBase64)
    }
}

/// The value of a base64 character in either alphabet.
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
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
        // Python skips characters outside the alphabet: this is an empty token
        assert_eq!(ring.decrypt("%%%"), Err(DecryptError::TooShort { len: 0 }));
        // but a group of four left incomplete is not base64
        assert_eq!(ring.decrypt("gAAAA"), Err(DecryptError::NotBase64));
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

    /// The CPU's flags as the kernel lists them in /proc/cpuinfo (`flags` on x86_64,
    /// `Features` on arm64), each CPU's line merged.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn cpuinfo_flags() -> std::collections::HashSet<String> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo is readable");
        cpuinfo
            .lines()
            .filter(|line| line.starts_with("flags") || line.starts_with("Features"))
            .filter_map(|line| line.split_once(':'))
            .flat_map(|(_, flags)| flags.split_whitespace().map(str::to_owned))
            .collect()
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn hardware_is_used_exactly_when_the_cpu_lists_its_instructions() {
        // Given the CPU's flags as the kernel reports them
        let flags = cpuinfo_flags();
        let has = |names: &[&str]| names.iter().all(|name| flags.contains(*name));
        let (aes, sha256) = if cfg!(target_arch = "x86_64") {
            (has(&["aes"]), has(&["sha_ni", "sse2", "ssse3", "sse4_1"]))
        } else {
            (has(&["aes", "pmull"]), has(&["sha2"]))
        };
        // When the build is asked what it uses for tokens
        let chosen = hardware();
        // Then it uses the AES and SHA-256 instructions exactly when the CPU has them
        assert_eq!(
            chosen,
            Hardware { aes, sha256 },
            "CPU flags aes={aes} sha256={sha256}, but the build chose {chosen:?}"
        );
    }
}

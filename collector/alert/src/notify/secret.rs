//! Channel secrets at rest: AES-256-GCM under a master key, a fresh random nonce per seal.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{AlertError, Result};

/// Version tag of the sealed format, so the scheme can change without guessing.
const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Seals and opens secrets with one master key. The `aad` (associated data) binds a
/// ciphertext to its owner, e.g. the channel id: a sealed secret copied onto another channel
/// fails to open.
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(master_key)),
        }
    }

    /// Builds a box from a base64-encoded 32-byte key (how the collector reads it from its
    /// configuration or environment).
    pub fn from_base64(key: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| AlertError::Crypto("master key is not base64"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| AlertError::Crypto("master key must be 32 bytes"))?;
        Ok(Self::new(&key))
    }

    /// A fresh random master key, base64-encoded.
    pub fn generate_key_base64() -> String {
        STANDARD.encode(Aes256Gcm::generate_key(&mut OsRng))
    }

    /// Encrypts `plaintext`; the result is `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| AlertError::Crypto("encryption failed"))?;
        let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", STANDARD.encode(raw)))
    }

    /// Decrypts what [`SecretBox::seal`] produced; any tampering, a wrong key or a wrong
    /// `aad` is an error.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>> {
        let encoded = sealed
            .strip_prefix(PREFIX)
            .ok_or(AlertError::Crypto("unknown sealed format"))?;
        let raw = STANDARD
            .decode(encoded)
            .map_err(|_| AlertError::Crypto("sealed value is not base64"))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(AlertError::Crypto("sealed value is truncated"));
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| AlertError::Crypto("ciphertext failed authentication"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let sb = SecretBox::from_base64(&SecretBox::generate_key_base64()).unwrap();
        let a = sb
            .seal(b"https://hooks.example/T0/B0/xyz", b"chan-1")
            .unwrap();
        let b = sb
            .seal(b"https://hooks.example/T0/B0/xyz", b"chan-1")
            .unwrap();
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(
            sb.open(&a, b"chan-1").unwrap(),
            b"https://hooks.example/T0/B0/xyz"
        );
    }

    #[test]
    fn tampering_wrong_key_and_wrong_owner_fail() {
        let sb = SecretBox::new(&[7; 32]);
        let sealed = sb.seal(b"secret", b"chan-1").unwrap();
        let mut raw = STANDARD.decode(&sealed[3..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let tampered = format!("v1:{}", STANDARD.encode(&raw));
            assert!(
                sb.open(&tampered, b"chan-1").is_err(),
                "flip at {i} accepted"
            );
            raw[i] ^= 1;
        }
        assert!(sb.open(&sealed, b"chan-2").is_err());
        assert!(SecretBox::new(&[8; 32]).open(&sealed, b"chan-1").is_err());
        assert!(sb.open("v1:AAAA", b"chan-1").is_err());
        assert!(sb.open("v2:AAAA", b"chan-1").is_err());
        assert!(sb.open("v1:!!", b"chan-1").is_err());
        assert!(SecretBox::from_base64("c2hvcnQ=").is_err());
    }
}

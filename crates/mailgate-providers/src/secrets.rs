//! Encryption of provider credentials at rest: XChaCha20-Poly1305 with a 256-bit key, a random
//! 192-bit nonce per seal, and the owner (environment and scope) as associated data, so a sealed
//! value copied to another environment's row does not open.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const PREFIX: &str = "mg1";
const NONCE_LEN: usize = 24;

/// Why a key or a sealed value was refused. Never contains key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key is not base64 of 32 bytes.
    #[error("the secret key must be 32 bytes, base64-encoded (generate one with `mailgate secrets generate-key`)")]
    BadKey,
    /// The value was sealed with another key.
    #[error("provider configuration was encrypted with another secret key (key id {0}); set MAILGATE_SECRET_KEY to that key or rotate")]
    WrongKey(String),
    /// The value is damaged or belongs to another owner.
    #[error(
        "provider configuration cannot be decrypted: damaged, or moved from another environment"
    )]
    Corrupt,
}

/// The key that seals provider secrets. `Debug` shows only its id.
#[derive(Clone)]
pub struct SecretKey {
    key: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(id {})", self.id())
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            key: XChaCha20Poly1305::generate_key(&mut OsRng).into(),
        }
    }

    /// Parses base64 of 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| SecretError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(Self { key })
    }

    /// The key as base64, to write to a key file or show once.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.key)
    }

    /// A short public fingerprint of the key (not secret), stored with each sealed value.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.key)[..4])
    }

    /// Encrypts `plaintext` for `owner`.
    pub fn seal(&self, plaintext: &[u8], owner: &str) -> String {
        let cipher = XChaCha20Poly1305::new(&self.key.into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: owner.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}.{}.{}", self.id(), STANDARD.encode(out))
    }

    /// Decrypts a value sealed for `owner`.
    pub fn open(&self, sealed: &str, owner: &str) -> Result<Vec<u8>, SecretError> {
        let mut parts = sealed.splitn(3, '.');
        let (prefix, kid, body) = (parts.next(), parts.next(), parts.next());
        if prefix != Some(PREFIX) {
            return Err(SecretError::Corrupt);
        }
        let kid = kid.ok_or(SecretError::Corrupt)?;
        if kid != self.id() {
            return Err(SecretError::WrongKey(kid.to_owned()));
        }
        let bytes = STANDARD
            .decode(body.ok_or(SecretError::Corrupt)?)
            .map_err(|_| SecretError::Corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Corrupt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(&self.key.into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_owner_and_key() {
        let key = SecretKey::generate();
        let sealed = key.seal(b"{\"password\":\"hunter2\"}", "env_1/");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            key.seal(b"{\"password\":\"hunter2\"}", "env_1/"),
            "random nonce per seal"
        );
        assert_eq!(
            key.open(&sealed, "env_1/").unwrap(),
            b"{\"password\":\"hunter2\"}"
        );
        assert_eq!(key.open(&sealed, "env_2/"), Err(SecretError::Corrupt));
        let other = SecretKey::generate();
        assert!(matches!(
            other.open(&sealed, "env_1/"),
            Err(SecretError::WrongKey(_))
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open(&tampered, "env_1/").is_err());
    }

    #[test]
    fn keys_round_trip_through_base64_and_never_print() {
        let key = SecretKey::generate();
        let again = SecretKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.id(), key.id());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert_eq!(
            SecretKey::from_base64("c2hvcnQ=").unwrap_err(),
            SecretError::BadKey
        );
    }
}

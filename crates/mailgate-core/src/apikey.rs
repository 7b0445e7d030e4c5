//! API keys: generated secrets shown once, stored only as SHA-256 hashes.

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::ids::{ApiKeyId, EnvironmentId};
use crate::time::Timestamp;

/// What a key may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Every environment, and environments themselves.
    Admin,
    /// One environment only.
    Environment(EnvironmentId),
}

/// A key's secret as presented by a caller. Never logged, never stored.
#[derive(Clone)]
pub struct ApiKeySecret(String);

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeySecret(**redacted**)")
    }
}

impl ApiKeySecret {
    /// The prefix every generated key carries, so leaked keys are easy to recognise.
    pub const PREFIX: &'static str = "mg_";

    /// A fresh random key (`mg_` + 40 alphanumerics, ~238 bits).
    pub fn generate() -> Self {
        let body: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        Self(format!("{}{body}", Self::PREFIX))
    }

    /// Wraps a key presented by a caller or configured by the operator.
    pub fn from_presented(s: &str) -> Self {
        Self(s.to_owned())
    }

    /// The secret itself, for showing once at creation.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash that is stored and looked up.
    pub fn hash(&self) -> KeyHash {
        // Into a buffer in one pass (`hex::encode` pushes one char at a time; every request
        // hashes its key).
        let mut text = [0u8; 64];
        hex::encode_to_slice(Sha256::digest(self.0.as_bytes()), &mut text)
            .expect("64 hex digits for 32 bytes");
        KeyHash(String::from_utf8_lossy(&text).into_owned())
    }

    /// The first characters, stored to help people tell keys apart.
    pub fn hint(&self) -> String {
        self.0.chars().take(7).collect()
    }
}

/// Hex SHA-256 of a key. The keys are long random strings, so a fast hash is enough: there is
/// nothing to brute-force.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(pub String);

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Its identifier.
    pub id: ApiKeyId,
    /// What it may act on.
    pub scope: KeyScope,
    /// A label chosen by its creator.
    pub name: String,
    /// The first characters of the secret.
    pub hint: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The record.
    pub record: ApiKeyRecord,
    /// The hash of its secret.
    pub hash: KeyHash,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_hash_stably() {
        let a = ApiKeySecret::generate();
        let b = ApiKeySecret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("mg_"));
        assert_eq!(a.expose().len(), 43);
        assert_eq!(a.hash(), ApiKeySecret::from_presented(a.expose()).hash());
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(&a.expose()[3..]));
        // SHA-256 in lower-case hex: the form stored keys were hashed in (FIPS 180-2's "abc").
        assert_eq!(
            ApiKeySecret::from_presented("abc").hash().0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

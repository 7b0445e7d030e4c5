//! Environments: the tenants of a mailgate installation (e.g. `production`, `staging`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::EnvironmentId;
use crate::time::Timestamp;
use crate::validation::FieldError;

/// An environment's name: 1–63 characters of lower-case letters, digits and inner hyphens, not
/// starting with `env_` (so that names and ids cannot be confused).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvironmentName(String);

impl EnvironmentName {
    /// Checks a name.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.starts_with("env_");
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new(
                "invalid_environment_name",
                "name",
                "environment names are 1–63 lower-case letters, digits and inner hyphens",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EnvironmentName {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EnvironmentName> for String {
    fn from(n: EnvironmentName) -> Self {
        n.0
    }
}

impl fmt::Display for EnvironmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An organization's name (Auth0's organizations): a tenant of the caller's product whose
/// messages may go through its own provider chain and sender. 1–64 letters, digits, `_`, `-`, `.`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct OrganizationName(String);

impl OrganizationName {
    /// Checks a name.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !s.starts_with('.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new(
                "invalid_organization",
                "organization",
                "organization names are 1–64 letters, digits, '_', '-' and '.' (not first)",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrganizationName {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<OrganizationName> for String {
    fn from(n: OrganizationName) -> Self {
        n.0
    }
}

impl fmt::Display for OrganizationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Its identifier.
    pub id: EnvironmentId,
    /// Its unique name.
    pub name: EnvironmentName,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The name of the environment every installation starts with.
pub const DEFAULT_ENVIRONMENT: &str = "default";

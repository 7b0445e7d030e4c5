//! Suppression and recipient bodies.

use mailgate_core::address::EmailAddress;
use mailgate_core::suppression::{Suppression, SuppressionReason};
use mailgate_core::{FieldError, Timestamp};
use serde::{Deserialize, Serialize};

use crate::dto::EmailOut;

/// One suppressed address as the API shows it.
#[derive(Debug, Serialize)]
pub struct SuppressionOut {
    /// The address (normalized).
    pub address: String,
    /// Why it is suppressed.
    pub reason: SuppressionReason,
    /// The event that caused it.
    pub source_event_id: Option<String>,
    /// The provider that reported it.
    pub provider: Option<String>,
    /// A note.
    pub note: Option<String>,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// When it lapses, if ever (RFC 3339).
    pub expires_at: Option<String>,
}

impl From<Suppression> for SuppressionOut {
    fn from(s: Suppression) -> Self {
        Self {
            address: s.address,
            reason: s.reason,
            source_event_id: s.source_event_id.map(|e| e.to_string()),
            provider: s.provider,
            note: s.note,
            created_at: s.created_at.to_rfc3339(),
            expires_at: s.expires_at.map(Timestamp::to_rfc3339),
        }
    }
}

/// The answer to "is this address suppressed?".
#[derive(Debug, Serialize)]
pub struct SuppressionCheckOut {
    /// The address asked about (normalized).
    pub address: String,
    /// Whether sends to it are refused.
    pub suppressed: bool,
    /// The suppression, when there is one.
    pub suppression: Option<SuppressionOut>,
}

/// A page of suppressions.
#[derive(Debug, Serialize)]
pub struct SuppressionListOut {
    /// The suppressions, by address.
    pub data: Vec<SuppressionOut>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `POST …/suppressions`: add an address by hand.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionIn {
    /// The address.
    pub address: String,
    /// The reason (default `manual`).
    #[serde(default)]
    pub reason: Option<SuppressionReason>,
    /// A note for people.
    #[serde(default)]
    pub note: Option<String>,
    /// When the suppression lapses (RFC 3339), if ever.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// `GET …/suppressions` filters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionParams {
    /// Only this reason.
    pub reason: Option<String>,
    /// Only addresses containing this text.
    pub contains: Option<String>,
    /// Only suppressions added at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Page size (1–500, default 100).
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// `GET …/recipients/{address}`: why an address did or did not get its mail.
#[derive(Debug, Serialize)]
pub struct RecipientOut {
    /// The address (normalized).
    pub address: String,
    /// Whether sends to it are refused.
    pub suppressed: bool,
    /// The suppression, when there is one.
    pub suppression: Option<SuppressionOut>,
    /// The newest messages to it, newest first, each with its events.
    pub messages: Vec<EmailOut>,
}

/// Parses an address given in a path or body into its normalized form.
pub fn normalized_address(s: &str, field: &str) -> Result<String, FieldError> {
    EmailAddress::parse(s.trim())
        .map(|a| a.normalized())
        .map_err(|e| FieldError::new("invalid_address", field, e))
}

/// Parses an RFC 3339 instant given in a query or body.
pub fn instant(s: &str, field: &str) -> Result<Timestamp, FieldError> {
    Timestamp::parse(s)
        .ok_or_else(|| FieldError::new("invalid_timestamp", field, "expected an RFC 3339 instant"))
}

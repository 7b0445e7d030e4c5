//! A message: its validated content, its lifecycle status and the records the store keeps.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::address::Mailbox;
use crate::environment::OrganizationName;
use crate::ids::{EnvironmentId, MessageId};
use crate::settings::Tracking;
use crate::time::Timestamp;
use crate::validation::{check_header_value, FieldError};

/// Where a message is in its life. Terminal statuses never change again except through provider
/// events (`sent` → `delivered` | `bounced` | `complained`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for a worker (first attempt or a retry).
    Queued,
    /// Claimed by a worker under a lease.
    Sending,
    /// Accepted by the provider.
    Sent,
    /// Delivered to the recipient's server (or stored by `capture`).
    Delivered,
    /// Bounced by the recipient's server.
    Bounced,
    /// The recipient marked it as spam.
    Complained,
    /// Could not be delivered after the last attempt, or refused permanently.
    Failed,
    /// Refused because a recipient is on the suppression list.
    Suppressed,
    /// Refused by the environment's sandbox.
    Sandboxed,
    /// A code that outlived its expiry before delivery.
    Expired,
    /// Cancelled by the operator.
    Cancelled,
}

impl MessageStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [MessageStatus; 11] = [
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Bounced,
        Self::Complained,
        Self::Failed,
        Self::Suppressed,
        Self::Sandboxed,
        Self::Expired,
        Self::Cancelled,
    ];

    /// The stable lower-case name stored and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Failed => "failed",
            Self::Suppressed => "suppressed",
            Self::Sandboxed => "sandboxed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether no worker will touch the message again.
    pub fn is_final_for_queue(self) -> bool {
        !matches!(self, Self::Queued | Self::Sending)
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file name shown to the recipient.
    pub filename: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The raw bytes (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
    /// Content-ID for inline images, without angle brackets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Header names that mailgate sets itself and that a caller may not override.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "sender",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "return-path",
    "received",
    "dkim-signature",
];

/// One custom header, already checked: a valid field name and a value without line breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The field name as given (e.g. `X-Campaign`).
    pub name: String,
    /// The value, free of CR and LF.
    pub value: String,
}

impl Header {
    /// Checks a caller-supplied header.
    pub fn parse(name: &str, value: &str, field: &str) -> Result<Self, FieldError> {
        if name.is_empty()
            || name.len() > 76
            || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
        {
            return Err(FieldError::new(
                "invalid_header",
                field,
                "header names are 1–76 printable ASCII characters without ':'",
            ));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(FieldError::new(
                "reserved_header",
                field,
                format!("'{name}' is set by mailgate; use the message field instead"),
            ));
        }
        check_header_value(field, value)?;
        if value.len() > 998 {
            return Err(FieldError::new(
                "invalid_header",
                field,
                "header value is longer than 998 characters",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// The rendered, validated content of a message: what a provider delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// The sender.
    pub from: Mailbox,
    /// Primary recipients (at least one recipient across to, cc and bcc).
    #[serde(default)]
    pub to: Vec<Mailbox>,
    /// Carbon-copy recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<Mailbox>,
    /// Blind carbon-copy recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<Mailbox>,
    /// Reply-To addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<Mailbox>,
    /// The subject line.
    pub subject: String,
    /// Plain-text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// HTML body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Custom headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// Attached files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

impl Content {
    /// Every recipient: to, then cc, then bcc.
    pub fn recipients(&self) -> impl Iterator<Item = &Mailbox> {
        self.to.iter().chain(&self.cc).chain(&self.bcc)
    }

    /// Total size of the attachments' decoded bytes.
    pub fn attachment_bytes(&self) -> usize {
        self.attachments.iter().map(|a| a.content.len()).sum()
    }

    /// Size of subject and bodies in bytes.
    pub fn body_bytes(&self) -> usize {
        self.subject.len()
            + self.text.as_ref().map_or(0, String::len)
            + self.html.as_ref().map_or(0, String::len)
    }
}

/// Limits a message must respect; the binary fills them from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Recipients across to, cc and bcc.
    pub max_recipients: usize,
    /// Subject plus text plus html, in bytes.
    pub max_body_bytes: usize,
    /// Decoded attachment bytes, all attachments together.
    pub max_attachment_bytes: usize,
    /// Number of attachments.
    pub max_attachments: usize,
    /// Number of tags.
    pub max_tags: usize,
    /// Number of metadata entries.
    pub max_metadata: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_recipients: 50,
            max_body_bytes: 5 * 1024 * 1024,
            max_attachment_bytes: 10 * 1024 * 1024,
            max_attachments: 20,
            max_tags: 10,
            max_metadata: 20,
        }
    }
}

/// A caller's idempotency key: 1–255 printable ASCII characters, unique per environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a key from the `Idempotency-Key` header.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(FieldError::new(
                "invalid_idempotency_key",
                "Idempotency-Key",
                "idempotency keys are 1–255 printable ASCII characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The idempotency key of a send together with the fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The caller's key.
    pub key: IdempotencyKey,
    /// Hex SHA-256 of the canonical request body.
    pub fingerprint: String,
}

impl Idempotency {
    /// Fingerprints a request body by its canonical JSON form (key order and whitespace do not
    /// matter).
    pub fn new(key: IdempotencyKey, canonical_body: &serde_json::Value) -> Self {
        let bytes = serde_json::to_vec(canonical_body).unwrap_or_default();
        Self {
            key,
            fingerprint: hex::encode(Sha256::digest(bytes)),
        }
    }
}

/// A message ready to be stored: validated content plus what the queue needs.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its identifier.
    pub id: MessageId,
    /// The environment it belongs to.
    pub environment_id: EnvironmentId,
    /// What to deliver.
    pub content: Content,
    /// Caller's tags (labels).
    pub tags: Vec<String>,
    /// Caller's metadata, passed to providers and echoed in events.
    pub metadata: BTreeMap<String, String>,
    /// Provider-specific overrides merged into the provider request.
    pub provider_options: Option<serde_json::Value>,
    /// Idempotency key and request fingerprint, if the caller gave a key.
    pub idempotency: Option<Idempotency>,
    /// How many delivery attempts before the message fails.
    pub max_attempts: u32,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// Expiry and tracking.
    pub delivery: Delivery,
    /// Secret values to redact from the stored content once the message is final.
    pub secrets: Vec<String>,
    /// The template it was rendered from, recorded in its `queued` event.
    pub template: Option<TemplateChoice>,
}

/// How a message is to be delivered, beyond its content: what providers and the dispatcher read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// After this instant the message is never delivered: it ends `expired`.
    pub expires_at: Option<Timestamp>,
    /// The effective open and click tracking (providers map it to their own options).
    pub tracking: Tracking,
    /// The organization the message is for: its provider chain is used where one is set, and
    /// SES may receive it as `TenantName`.
    pub organization: Option<OrganizationName>,
    /// Held by the environment's sandbox: captured, never handed to a provider, ends `sandboxed`.
    pub sandboxed: bool,
}

/// The template a message was rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateChoice {
    /// The usage type asked for.
    pub requested: String,
    /// The usage type of the template used (`Generic` after a fallback).
    pub usage: String,
    /// The locale of the template used.
    pub locale: String,
    /// `environment` or `builtin`.
    pub source: &'static str,
}

/// What the store did with an enqueued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Stored and committed.
    Created(MessageId),
    /// The idempotency key was used before with the same request: the original message.
    Replayed(MessageId),
    /// The idempotency key was used before with a different request.
    Conflict(MessageId),
    /// A recipient is on the environment's suppression list: nothing was stored. The
    /// suppressions in force for its recipients, checked in the transaction that would have
    /// stored it.
    Suppressed(Vec<crate::suppression::Suppression>),
}

/// A stored message as the API shows it (without content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Its identifier.
    pub id: MessageId,
    /// Its environment.
    pub environment_id: EnvironmentId,
    /// Current status.
    pub status: MessageStatus,
    /// Delivery attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When the next attempt is due (for queued messages).
    pub next_attempt_at: Timestamp,
    /// The provider that handled the last attempt.
    pub provider: Option<String>,
    /// The provider's id for the message, once sent.
    pub provider_message_id: Option<String>,
    /// The reason of the last failure, if any.
    pub last_error: Option<String>,
    /// Caller's tags.
    pub tags: Vec<String>,
    /// Caller's metadata.
    pub metadata: BTreeMap<String, String>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Whether its content has been purged after the retention period.
    pub content_purged: bool,
}

/// A message claimed by a worker under a lease: everything needed to deliver it.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// Its identifier.
    pub id: MessageId,
    /// Its environment.
    pub environment_id: EnvironmentId,
    /// The attempt number this claim starts (1 for the first).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Fencing token: completion is applied only while this lease is still the message's.
    pub lease_token: String,
    /// What to deliver.
    pub content: Content,
    /// Caller's tags.
    pub tags: Vec<String>,
    /// Caller's metadata.
    pub metadata: BTreeMap<String, String>,
    /// Provider overrides.
    pub provider_options: Option<serde_json::Value>,
    /// The caller's idempotency key, forwarded to providers that accept one.
    pub idempotency_key: Option<String>,
    /// Expiry and the effective tracking flags (providers: `delivery.tracking`).
    pub delivery: Delivery,
}

/// Decodes a base64 attachment body sent by a caller.
pub fn decode_base64(field: &str, s: &str) -> Result<Vec<u8>, FieldError> {
    let cleaned: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|_| FieldError::new("invalid_base64", field, "attachment content must be base64"))
}

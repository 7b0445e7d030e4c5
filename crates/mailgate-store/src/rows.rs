//! Rows as both backends return them, and their conversion to domain types. Column types are
//! the same on both (TEXT, 64-bit integers), so one `FromRow` serves both.

use std::collections::BTreeMap;
use std::str::FromStr;

use mailgate_core::apikey::{ApiKeyRecord, KeyScope};
use mailgate_core::environment::{Environment, EnvironmentName, OrganizationName};
use mailgate_core::event::{Event, EventType};
use mailgate_core::message::{ClaimedMessage, Content, Delivery, MessageRecord, MessageStatus};
use mailgate_core::settings::Tracking;
use mailgate_core::store::{CapturedMessage, StoreError};
use mailgate_core::Timestamp;
use serde::de::DeserializeOwned;

/// Parses a stored identifier.
pub(crate) fn parse_id<T: FromStr>(column: &str, s: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column}: not a valid id")))
}

/// Parses a stored JSON column.
pub(crate) fn parse_json<T: DeserializeOwned>(column: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// Serializes a value for a JSON column.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(
    column: &str,
    v: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// A JSON value as the text stored for it. Written straight into a `String`: `Value`'s
/// `Display` goes through `fmt` for every token, at twice the cost (every event's `data`).
pub(crate) fn value_text(v: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail: its map keys are strings.
    serde_json::to_string(v).unwrap_or_default()
}

/// Converts a stored count to `u32`.
fn to_u32(column: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column}: {v} out of range")))
}

/// Columns of `environments`.
#[derive(sqlx::FromRow)]
pub(crate) struct EnvironmentRow {
    id: String,
    name: String,
    created_at: i64,
}

impl EnvironmentRow {
    /// The domain value.
    pub(crate) fn into_domain(self) -> Result<Environment, StoreError> {
        Ok(Environment {
            id: parse_id("environments.id", &self.id)?,
            name: EnvironmentName::parse(&self.name)
                .map_err(|_| StoreError::Corrupt("environments.name: invalid name".into()))?,
            created_at: Timestamp(self.created_at),
        })
    }
}

/// Columns of `api_keys` (without the hash).
#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: String,
    environment_id: Option<String>,
    name: String,
    hint: String,
    created_at: i64,
}

impl ApiKeyRow {
    /// The domain value; a NULL environment is an admin key.
    pub(crate) fn into_domain(self) -> Result<ApiKeyRecord, StoreError> {
        let scope = match self.environment_id {
            None => KeyScope::Admin,
            Some(env) => KeyScope::Environment(parse_id("api_keys.environment_id", &env)?),
        };
        Ok(ApiKeyRecord {
            id: parse_id("api_keys.id", &self.id)?,
            scope,
            name: self.name,
            hint: self.hint,
            created_at: Timestamp(self.created_at),
        })
    }
}

/// The columns `MESSAGE_COLUMNS` selects from `messages`.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: String,
    environment_id: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    next_attempt_at: i64,
    provider: Option<String>,
    provider_message_id: Option<String>,
    last_error: Option<String>,
    tags: String,
    metadata: String,
    created_at: i64,
    updated_at: i64,
    content_purged: bool,
}

/// The select list matching [`MessageRow`]; the content itself is not read.
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, environment_id, status, attempts, max_attempts, next_attempt_at, \
     provider, provider_message_id, last_error, tags, metadata, created_at, updated_at, \
     (content IS NULL) AS content_purged";

/// Parses a stored status.
pub(crate) fn parse_status(s: &str) -> Result<MessageStatus, StoreError> {
    MessageStatus::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("messages.status: unknown status {s:?}")))
}

impl MessageRow {
    /// The domain value.
    pub(crate) fn into_domain(self) -> Result<MessageRecord, StoreError> {
        Ok(MessageRecord {
            id: parse_id("messages.id", &self.id)?,
            environment_id: parse_id("messages.environment_id", &self.environment_id)?,
            status: parse_status(&self.status)?,
            attempts: to_u32("messages.attempts", self.attempts)?,
            max_attempts: to_u32("messages.max_attempts", self.max_attempts)?,
            next_attempt_at: Timestamp(self.next_attempt_at),
            provider: self.provider,
            provider_message_id: self.provider_message_id,
            last_error: self.last_error,
            tags: parse_json("messages.tags", &self.tags)?,
            metadata: parse_json::<BTreeMap<String, String>>("messages.metadata", &self.metadata)?,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            content_purged: self.content_purged,
        })
    }
}

/// The columns a claim returns.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    id: String,
    environment_id: String,
    attempts: i64,
    max_attempts: i64,
    lease_token: String,
    content: Option<String>,
    tags: String,
    metadata: String,
    provider_options: Option<String>,
    idempotency_key: Option<String>,
    expires_at: Option<i64>,
    track_opens: bool,
    track_links: bool,
    organization: Option<String>,
    sandboxed: bool,
}

/// The `RETURNING` list matching [`ClaimRow`].
pub(crate) const CLAIM_COLUMNS: &str =
    "id, environment_id, attempts, max_attempts, lease_token, content, tags, \
     metadata, provider_options, idempotency_key, expires_at, track_opens, track_links, \
     organization, sandboxed";

impl ClaimRow {
    /// A row of the SQLite writer's own connection (`rusqlite`), in `CLAIM_COLUMNS` order.
    pub(crate) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            environment_id: row.get(1)?,
            attempts: row.get(2)?,
            max_attempts: row.get(3)?,
            lease_token: row.get(4)?,
            content: row.get(5)?,
            tags: row.get(6)?,
            metadata: row.get(7)?,
            provider_options: row.get(8)?,
            idempotency_key: row.get(9)?,
            expires_at: row.get(10)?,
            track_opens: row.get(11)?,
            track_links: row.get(12)?,
            organization: row.get(13)?,
            sandboxed: row.get(14)?,
        })
    }

    /// The domain value; a claimed message always has its content.
    pub(crate) fn into_domain(self) -> Result<ClaimedMessage, StoreError> {
        let content = self.content.as_deref().ok_or_else(|| {
            StoreError::Corrupt("messages.content: purged content on a queued message".into())
        })?;
        Ok(ClaimedMessage {
            id: parse_id("messages.id", &self.id)?,
            environment_id: parse_id("messages.environment_id", &self.environment_id)?,
            attempt: to_u32("messages.attempts", self.attempts)?,
            max_attempts: to_u32("messages.max_attempts", self.max_attempts)?,
            lease_token: self.lease_token,
            content: parse_json::<Content>("messages.content", content)?,
            tags: parse_json("messages.tags", &self.tags)?,
            metadata: parse_json("messages.metadata", &self.metadata)?,
            provider_options: self
                .provider_options
                .as_deref()
                .map(|s| parse_json("messages.provider_options", s))
                .transpose()?,
            idempotency_key: self.idempotency_key,
            delivery: Delivery {
                expires_at: self.expires_at.map(Timestamp),
                tracking: Tracking {
                    opens: self.track_opens,
                    links: self.track_links,
                },
                organization: self
                    .organization
                    .as_deref()
                    .map(|o| {
                        OrganizationName::parse(o).map_err(|_| {
                            StoreError::Corrupt("messages.organization: invalid name".into())
                        })
                    })
                    .transpose()?,
                sandboxed: self.sandboxed,
            },
        })
    }
}

/// Columns of `events`.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    seq: i64,
    id: String,
    environment_id: String,
    message_id: Option<String>,
    #[sqlx(rename = "type")]
    event_type: String,
    created_at: i64,
    data: String,
}

impl EventRow {
    /// The domain value.
    pub(crate) fn into_domain(self) -> Result<Event, StoreError> {
        Ok(Event {
            seq: self.seq,
            id: parse_id("events.id", &self.id)?,
            environment_id: parse_id("events.environment_id", &self.environment_id)?,
            message_id: self
                .message_id
                .as_deref()
                .map(|m| parse_id("events.message_id", m))
                .transpose()?,
            event_type: EventType::parse(&self.event_type).ok_or_else(|| {
                StoreError::Corrupt(format!("events.type: unknown type {:?}", self.event_type))
            })?,
            created_at: Timestamp(self.created_at),
            data: parse_json("events.data", &self.data)?,
        })
    }
}

/// Columns of `captured_messages`.
#[derive(sqlx::FromRow)]
pub(crate) struct CaptureRow {
    message_id: String,
    environment_id: String,
    content: String,
    captured_at: i64,
}

impl CaptureRow {
    /// The domain value.
    pub(crate) fn into_domain(self) -> Result<CapturedMessage, StoreError> {
        Ok(CapturedMessage {
            message_id: parse_id("captured_messages.message_id", &self.message_id)?,
            environment_id: parse_id("captured_messages.environment_id", &self.environment_id)?,
            content: parse_json("captured_messages.content", &self.content)?,
            captured_at: Timestamp(self.captured_at),
        })
    }
}

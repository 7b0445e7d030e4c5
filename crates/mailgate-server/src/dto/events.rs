//! Event bodies for `GET /v1/events` and the message timeline.

use mailgate_core::event::{Event, EventQuery, EventType};
use mailgate_core::{EnvironmentId, FieldError, MessageId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event as the API shows it.
#[derive(Debug, Serialize)]
pub struct EventOut {
    /// The event id.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The environment's id.
    pub environment: String,
    /// The message it concerns, if any.
    pub message_id: Option<String>,
    /// When it happened (RFC 3339).
    pub created_at: String,
    /// Details.
    pub data: Value,
}

impl From<Event> for EventOut {
    fn from(e: Event) -> Self {
        Self {
            id: e.id.to_string(),
            event_type: e.event_type,
            environment: e.environment_id.to_string(),
            message_id: e.message_id.map(|m| m.to_string()),
            created_at: e.created_at.to_rfc3339(),
            data: e.data,
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize)]
pub struct EventListOut {
    /// The events, oldest first.
    pub data: Vec<EventOut>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Largest page of events.
pub const MAX_LIMIT: u32 = 1000;
/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 100;
const CURSOR_PREFIX: &str = "c_";

/// The query string of `GET /v1/events` (environment aside, which the caller's key decides).
#[derive(Debug, Default, Deserialize)]
pub struct EventsParams {
    /// Name or id of the environment.
    pub environment: Option<String>,
    /// Comma-separated event types.
    #[serde(rename = "type")]
    pub types: Option<String>,
    /// Only this message's events.
    pub message_id: Option<String>,
    /// RFC 3339 or milliseconds since the epoch.
    pub since: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl EventsParams {
    /// The environment named in the query, if any (an empty value counts as none).
    pub fn environment(&self) -> Option<&str> {
        self.environment.as_deref().filter(|s| !s.is_empty())
    }

    /// The store query for these parameters; `limit` is the page size (fetch one more to know
    /// whether another page follows).
    pub fn to_query(
        &self,
        environment_id: Option<EnvironmentId>,
    ) -> Result<EventQuery, FieldError> {
        let types = match self.types.as_deref().filter(|s| !s.is_empty()) {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|t| {
                    EventType::parse(t.trim()).ok_or_else(|| {
                        FieldError::new(
                            "invalid_event_type",
                            "type",
                            format!("'{}' is not an event type", t.trim()),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let message_id = match self.message_id.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                MessageId::parse(s)
                    .map_err(|_| FieldError::new("invalid_id", "message_id", "not a message id"))?,
            ),
        };
        let since = match self.since.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(Timestamp::parse(s).ok_or_else(|| {
                FieldError::new(
                    "invalid_timestamp",
                    "since",
                    "since must be RFC 3339 or milliseconds since the epoch",
                )
            })?),
        };
        let limit = match self.limit.as_deref().filter(|s| !s.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    FieldError::new(
                        "invalid_limit",
                        "limit",
                        format!("limit must be 1–{MAX_LIMIT}"),
                    )
                })?,
        };
        let after_seq = match self.cursor.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                s.strip_prefix(CURSOR_PREFIX)
                    .and_then(|n| n.parse::<i64>().ok())
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        FieldError::new(
                            "invalid_cursor",
                            "cursor",
                            "not a cursor returned by this API",
                        )
                    })?,
            ),
        };
        Ok(EventQuery {
            environment_id,
            message_id,
            types,
            since,
            after_seq,
            limit,
        })
    }
}

/// The opaque cursor that resumes after the event with this `seq`.
pub fn cursor_after(seq: i64) -> String {
    format!("{CURSOR_PREFIX}{seq}")
}

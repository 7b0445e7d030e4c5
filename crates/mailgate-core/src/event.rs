//! Events: the append-only history of every message and environment.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{EnvironmentId, EventId, MessageId};
use crate::time::Timestamp;

/// The normalized event types (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Accepted and stored.
    Queued,
    /// Accepted by the provider.
    Sent,
    /// Delivered to the recipient's server.
    Delivered,
    /// An attempt failed and another is scheduled.
    Deferred,
    /// The recipient's server refused it.
    Bounced,
    /// Marked as spam.
    Complained,
    /// Refused by the provider.
    Rejected,
    /// Given up after the last attempt, or refused permanently.
    Failed,
    /// Opened.
    Opened,
    /// A link was clicked.
    Clicked,
    /// The recipient unsubscribed.
    Unsubscribed,
    /// Refused by the suppression list.
    Suppressed,
    /// Refused by the sandbox.
    Sandboxed,
    /// A code outlived its expiry before delivery.
    Expired,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 14] = [
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Deferred,
        Self::Bounced,
        Self::Complained,
        Self::Rejected,
        Self::Failed,
        Self::Opened,
        Self::Clicked,
        Self::Unsubscribed,
        Self::Suppressed,
        Self::Sandboxed,
        Self::Expired,
    ];

    /// The stable name stored and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
            Self::Unsubscribed => "unsubscribed",
            Self::Suppressed => "suppressed",
            Self::Sandboxed => "sandboxed",
            Self::Expired => "expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its identifier.
    pub id: EventId,
    /// Its environment.
    pub environment_id: EnvironmentId,
    /// The message it concerns, if any.
    pub message_id: Option<MessageId>,
    /// What happened.
    pub event_type: EventType,
    /// When it happened.
    pub created_at: Timestamp,
    /// Details (attempt, provider, reason, …); never addresses or bodies.
    pub data: serde_json::Value,
}

impl NewEvent {
    /// An event about one message.
    pub fn for_message(
        environment_id: EnvironmentId,
        message_id: MessageId,
        event_type: EventType,
        created_at: Timestamp,
        data: serde_json::Value,
    ) -> Self {
        Self {
            id: EventId::new(),
            environment_id,
            message_id: Some(message_id),
            event_type,
            created_at,
            data,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the global append order; the pagination cursor.
    pub seq: i64,
    /// Its identifier.
    pub id: EventId,
    /// Its environment.
    pub environment_id: EnvironmentId,
    /// The message it concerns, if any.
    pub message_id: Option<MessageId>,
    /// What happened.
    pub event_type: EventType,
    /// When it happened.
    pub created_at: Timestamp,
    /// Details.
    pub data: serde_json::Value,
}

/// A filtered, paginated read of events, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    /// Only this environment's events (always set for environment-scoped keys).
    pub environment_id: Option<EnvironmentId>,
    /// Only this message's events.
    pub message_id: Option<MessageId>,
    /// Only these types (empty: all).
    pub types: Vec<EventType>,
    /// Only events at or after this instant.
    pub since: Option<Timestamp>,
    /// Only events after this cursor (`seq`).
    pub after_seq: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

//! Suppression: addresses an environment no longer sends to, and when repeated soft bounces
//! add one (`crate::ingest` records the provider events that suppress).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{EnvironmentId, EventId};
use crate::time::Timestamp;

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// A permanent bounce.
    HardBounce,
    /// The recipient marked a message as spam.
    Complaint,
    /// Repeated soft bounces within the configured window.
    SoftBounces,
    /// Added by the operator.
    Manual,
}

impl SuppressionReason {
    /// Every reason.
    pub const ALL: [SuppressionReason; 4] = [
        Self::HardBounce,
        Self::Complaint,
        Self::SoftBounces,
        Self::Manual,
    ];

    /// The stable name stored and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HardBounce => "hard_bounce",
            Self::Complaint => "complaint",
            Self::SoftBounces => "soft_bounces",
            Self::Manual => "manual",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A suppressed address of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The environment.
    pub environment_id: EnvironmentId,
    /// The address, normalized (`EmailAddress::normalized`).
    pub address: String,
    /// Why.
    pub reason: SuppressionReason,
    /// The event that caused it, if any.
    pub source_event_id: Option<EventId>,
    /// The provider that reported it, if any.
    pub provider: Option<String>,
    /// A note (the operator's, or the provider's diagnostic).
    pub note: Option<String>,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it lapses by itself, if ever.
    pub expires_at: Option<Timestamp>,
}

/// A filtered page of an environment's suppressions, ordered by address.
#[derive(Debug, Clone, PartialEq)]
pub struct SuppressionQuery {
    /// The environment.
    pub environment_id: EnvironmentId,
    /// Only this reason.
    pub reason: Option<SuppressionReason>,
    /// Only addresses containing this text (lower case).
    pub contains: Option<String>,
    /// Only suppressions added at or after this instant.
    pub since: Option<Timestamp>,
    /// Only addresses after this one (the cursor).
    pub after: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// When repeated soft bounces suppress an address: `count` of them within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftBouncePolicy {
    /// Soft bounces that suppress (0 turns the rule off).
    pub count: u32,
    /// The window they are counted in.
    pub window: Duration,
}

impl Default for SoftBouncePolicy {
    fn default() -> Self {
        Self {
            count: 3,
            window: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

//! Provider events: what a provider's webhook reported, normalized, and how it moves a message.

use serde::{Deserialize, Serialize};

use crate::address::EmailAddress;
use crate::event::EventType;
use crate::ids::MessageId;
use crate::message::MessageStatus;
use crate::time::Timestamp;

/// Whether a bounce is permanent (hard) or temporary (soft).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceType {
    /// The address does not accept mail (unknown user, domain gone).
    Hard,
    /// A temporary failure (mailbox full, greylisting, delays).
    Soft,
}

impl BounceType {
    /// `hard` or `soft`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
        }
    }
}

/// One event reported by a provider's webhook, authenticated and normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderEvent {
    /// The provider type (`ses`, `mailgun`, …).
    pub provider: String,
    /// The provider's id for this event, the deduplication key.
    pub provider_event_id: String,
    /// The provider's id for the message, normalized to what its send call returned.
    pub provider_message_id: Option<String>,
    /// mailgate's own message id, from the provider's metadata field.
    pub message_id: Option<MessageId>,
    /// The normalized type.
    pub event_type: EventType,
    /// Hard or soft, for bounces (soft bounces are stored as `bounced` with `soft`).
    pub bounce_type: Option<BounceType>,
    /// The recipient the event is about.
    pub recipient: Option<EmailAddress>,
    /// When the provider says it happened.
    pub occurred_at: Timestamp,
    /// The provider's raw detail (MTA response, bounce sub-type, …) without addresses.
    pub detail: serde_json::Value,
}

impl ProviderEvent {
    /// The status this event moves a message to, if it moves it: `sent` → `delivered` →
    /// `bounced` | `complained`, never backwards and never out of another final state.
    pub fn advance(&self, current: MessageStatus) -> Option<MessageStatus> {
        move_to(current, self.target()?)
    }

    /// The status this event moves a message towards, from a status behind it: `delivered`,
    /// `bounced` (hard bounces) or `complained`.
    pub fn target(&self) -> Option<MessageStatus> {
        match (self.event_type, self.bounce_type) {
            (EventType::Delivered, _) => Some(MessageStatus::Delivered),
            (EventType::Bounced, Some(BounceType::Hard)) => Some(MessageStatus::Bounced),
            (EventType::Complained, _) => Some(MessageStatus::Complained),
            _ => None,
        }
    }

    /// Whether this event suppresses its recipient at once (hard bounce or complaint).
    pub fn suppresses(&self) -> bool {
        matches!(
            (self.event_type, self.bounce_type),
            (EventType::Bounced, Some(BounceType::Hard)) | (EventType::Complained, _)
        )
    }

    /// Whether this is a soft bounce (counted towards the soft-bounce rule).
    pub fn is_soft_bounce(&self) -> bool {
        self.event_type == EventType::Bounced && self.bounce_type == Some(BounceType::Soft)
    }
}

/// `target` if it is ahead of `current`.
fn move_to(current: MessageStatus, target: MessageStatus) -> Option<MessageStatus> {
    let (to, from) = (rank(target)?, rank(current)?);
    (to > from).then_some(target)
}

/// What the events of one message do to its status, whatever status it has when they are
/// recorded: given their targets in order, the `(from, to)` pairs — one for each status they
/// move it from, the furthest first. Applied as conditional updates (`to` if the message is
/// still `from`), one after the other, they leave the message where the events applied one by
/// one would: a move never leaves the message in a status a later pair moves from.
pub fn status_moves(targets: &[MessageStatus]) -> Vec<(MessageStatus, MessageStatus)> {
    [MessageStatus::Delivered, MessageStatus::Sent]
        .into_iter()
        .filter_map(|from| {
            let to = targets
                .iter()
                .fold(from, |s, t| move_to(s, *t).unwrap_or(s));
            (to != from).then_some((from, to))
        })
        .collect()
}

/// The order of the statuses a provider event may move; `None` for statuses it never touches.
fn rank(status: MessageStatus) -> Option<u8> {
    match status {
        MessageStatus::Sent => Some(1),
        MessageStatus::Delivered => Some(2),
        MessageStatus::Bounced | MessageStatus::Complained => Some(3),
        _ => None,
    }
}

/// What recording a batch of provider events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    /// Events newly recorded.
    pub recorded: usize,
    /// Events already recorded earlier (same provider event id).
    pub duplicates: usize,
    /// Recorded events that matched no message.
    pub unmatched: usize,
    /// Addresses newly suppressed.
    pub suppressed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: EventType, b: Option<BounceType>) -> ProviderEvent {
        ProviderEvent {
            provider: "x".into(),
            provider_event_id: "1".into(),
            provider_message_id: None,
            message_id: None,
            event_type: t,
            bounce_type: b,
            recipient: None,
            occurred_at: Timestamp(0),
            detail: serde_json::Value::Null,
        }
    }

    #[test]
    fn statuses_move_forward_only() {
        use MessageStatus as S;
        let delivered = ev(EventType::Delivered, None);
        let hard = ev(EventType::Bounced, Some(BounceType::Hard));
        let soft = ev(EventType::Bounced, Some(BounceType::Soft));
        assert_eq!(delivered.advance(S::Sent), Some(S::Delivered));
        assert_eq!(delivered.advance(S::Bounced), None);
        assert_eq!(hard.advance(S::Delivered), Some(S::Bounced));
        assert_eq!(hard.advance(S::Complained), None);
        assert_eq!(soft.advance(S::Sent), None);
        assert_eq!(delivered.advance(S::Failed), None);
        assert_eq!(delivered.advance(S::Sending), None);
        assert!(hard.suppresses() && !soft.suppresses() && soft.is_soft_bounce());
    }

    /// The moves of a message's events, for each status it may have when they are recorded,
    /// agree with the events applied one by one.
    #[test]
    fn status_moves_compose_the_events_in_order() {
        use MessageStatus as S;
        let (d, b, c) = (S::Delivered, S::Bounced, S::Complained);
        assert_eq!(status_moves(&[d]), [(S::Sent, d)]);
        assert_eq!(status_moves(&[d, b]), [(d, b), (S::Sent, b)]);
        // The first final status wins; a later one does not replace it.
        assert_eq!(status_moves(&[c, b, d]), [(d, c), (S::Sent, c)]);
        assert_eq!(status_moves(&[]), []);
        for targets in [vec![d], vec![b, d], vec![d, c], vec![c, b], vec![d, d, b]] {
            let events: Vec<ProviderEvent> = targets
                .iter()
                .map(|t| match t {
                    S::Delivered => ev(EventType::Delivered, None),
                    S::Bounced => ev(EventType::Bounced, Some(BounceType::Hard)),
                    _ => ev(EventType::Complained, None),
                })
                .collect();
            let moves = status_moves(&targets);
            for start in [S::Queued, S::Sending, S::Sent, d, b, c, S::Failed] {
                let one_by_one = events.iter().fold(start, |s, e| e.advance(s).unwrap_or(s));
                let applied = moves
                    .iter()
                    .fold(start, |s, (from, to)| if s == *from { *to } else { s });
                assert_eq!(applied, one_by_one, "{targets:?} from {start:?}");
            }
        }
    }
}

//! Suppression: addresses an environment no longer sends to, and the service that records
//! provider events and suppresses what they call for.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::{EventType, NewEvent};
use crate::ids::{EnvironmentId, EventId};
use crate::inbound::{IngestSummary, ProviderEvent};
use crate::store::{InboundRecord, InboundStore, RecordOutcome, StoreError, SuppressionStore};
use crate::time::{Clock, Timestamp};

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

/// Records authenticated provider events: deduplicates, matches them to messages, moves message
/// statuses forward, and suppresses addresses after hard bounces, complaints and repeated soft
/// bounces. Events that match no message are recorded without one.
#[derive(Clone)]
pub struct IngestService {
    store: Arc<dyn InboundStore>,
    suppressions: Arc<dyn SuppressionStore>,
    clock: Arc<dyn Clock>,
    policy: SoftBouncePolicy,
}

impl IngestService {
    /// An ingest service with the given soft-bounce rule.
    pub fn new(
        store: Arc<dyn InboundStore>,
        suppressions: Arc<dyn SuppressionStore>,
        clock: Arc<dyn Clock>,
        policy: SoftBouncePolicy,
    ) -> Self {
        Self {
            store,
            suppressions,
            clock,
            policy,
        }
    }

    /// Records a batch of events of one environment; each is handled on its own.
    #[tracing::instrument(skip_all, fields(environment.id = %env, events = events.len()))]
    pub async fn ingest(
        &self,
        env: &EnvironmentId,
        events: &[ProviderEvent],
    ) -> Result<IngestSummary, StoreError> {
        let mut summary = IngestSummary::default();
        // A provider's own "accepted" events add nothing to the worker's `sent` event and would
        // count the volume twice in reputation; they are acknowledged and skipped.
        for event in events.iter().filter(|e| e.event_type != EventType::Sent) {
            self.ingest_one(env, event, &mut summary).await?;
        }
        tracing::info!(
            recorded = summary.recorded,
            duplicates = summary.duplicates,
            unmatched = summary.unmatched,
            suppressed = summary.suppressed,
            "provider events ingested"
        );
        Ok(summary)
    }

    async fn ingest_one(
        &self,
        env: &EnvironmentId,
        event: &ProviderEvent,
        summary: &mut IngestSummary,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let message = self
            .store
            .match_message(
                env,
                &event.provider,
                event.provider_message_id.as_deref(),
                event.message_id.as_ref(),
            )
            .await?;
        let mut data = serde_json::json!({
            "provider": event.provider,
            "provider_event_id": event.provider_event_id,
            "occurred_at": event.occurred_at.to_rfc3339(),
            "detail": event.detail,
        });
        if let Some(b) = event.bounce_type {
            data["bounce_type"] = b.as_str().into();
        }
        if let Some(pmid) = &event.provider_message_id {
            data["provider_message_id"] = pmid.clone().into();
        }
        let new_event = NewEvent {
            id: EventId::new(),
            environment_id: *env,
            message_id: message.as_ref().map(|m| m.id),
            event_type: event.event_type,
            created_at: now,
            data,
        };
        let advance = message
            .as_ref()
            .and_then(|m| event.advance(m.status).map(|to| (m.status, to)));
        let record = InboundRecord {
            event,
            new_event: &new_event,
            advance,
        };
        if self.store.record_inbound(&record, now).await? == RecordOutcome::Duplicate {
            summary.duplicates += 1;
            return Ok(());
        }
        summary.recorded += 1;
        if message.is_none() {
            summary.unmatched += 1;
        }
        let Some(recipient) = &event.recipient else {
            return Ok(());
        };
        let address = recipient.normalized();
        let reason = if event.suppresses() {
            Some(if event.event_type == EventType::Complained {
                SuppressionReason::Complaint
            } else {
                SuppressionReason::HardBounce
            })
        } else if event.is_soft_bounce() && self.policy.count > 0 {
            let since = now.minus(self.policy.window);
            let n = self.store.count_soft_bounces(env, &address, since).await?;
            (n >= u64::from(self.policy.count)).then_some(SuppressionReason::SoftBounces)
        } else {
            None
        };
        if let Some(reason) = reason {
            let suppression = Suppression {
                environment_id: *env,
                address,
                reason,
                source_event_id: Some(new_event.id),
                provider: Some(event.provider.clone()),
                note: None,
                created_at: now,
                expires_at: None,
            };
            if self
                .suppressions
                .add_suppression(&suppression, false)
                .await?
            {
                summary.suppressed += 1;
                tracing::info!(reason = reason.as_str(), event.id = %new_event.id, "address suppressed");
            }
        }
        Ok(())
    }
}

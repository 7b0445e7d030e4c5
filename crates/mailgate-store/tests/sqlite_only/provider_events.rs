//! Provider events on a SQLite file: their deduplication keys (migrations 0015 and 0017).

use mailgate_core::address::EmailAddress;
use mailgate_core::event::{EventType, NewEvent};
use mailgate_core::ids::EnvironmentId;
use mailgate_core::inbound::{BounceType, ProviderEvent};
use mailgate_core::store::{InboundRecord, RecordOutcome, Storage};
use mailgate_testkit::db::TestDatabase;

use crate::row_counts;
use crate::support::{at, environment};

/// A provider event of Postmark's, about no message.
fn event(id: &str, kind: EventType, bounce: Option<BounceType>, ms: i64) -> ProviderEvent {
    ProviderEvent {
        provider: "postmark".into(),
        provider_event_id: id.into(),
        provider_message_id: None,
        message_id: None,
        event_type: kind,
        bounce_type: bounce,
        recipient: Some(EmailAddress::parse("a@example.com").unwrap()),
        occurred_at: at(ms),
        detail: serde_json::json!({}),
    }
}

/// Records `events` of `env` at 40 ms, each with a log event of its own (as the ingest service
/// makes one for every request, a provider's retry included).
async fn record(
    s: &dyn Storage,
    env: EnvironmentId,
    events: &[ProviderEvent],
) -> Vec<RecordOutcome> {
    let logs: Vec<NewEvent> = events
        .iter()
        .map(|e| NewEvent {
            id: mailgate_core::EventId::new(),
            environment_id: env,
            message_id: None,
            event_type: e.event_type,
            created_at: e.occurred_at,
            data: serde_json::json!({}),
        })
        .collect();
    let records: Vec<InboundRecord<'_>> = events
        .iter()
        .zip(&logs)
        .map(|(event, new_event)| InboundRecord { event, new_event })
        .collect();
    s.record_inbound(&records, at(40)).await.unwrap()
}

use RecordOutcome::{Duplicate, Recorded};

/// Provider events are keyed by the provider's time, then a hash of their environment, provider
/// and id (migration 0017): the same id at the same time is a duplicate, whatever else differs;
/// only a soft bounce keeps its address, which the soft-bounce rule counts.
#[tokio::test]
async fn provider_events_are_keyed_by_time_and_keep_soft_bounce_addresses_only() {
    let t = TestDatabase::sqlite().await;
    let path = t.url.trim_start_matches("sqlite://").to_owned();
    let db = t.open().await;
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let events = [
        event("e1", EventType::Delivered, None, 10),
        event("e2", EventType::Bounced, Some(BounceType::Hard), 20),
        event("e3", EventType::Bounced, Some(BounceType::Soft), 30),
        // e1 again, and e1 again as its sender retries it (the same time): one duplicate each.
        event("e1", EventType::Delivered, None, 10),
    ];
    let outcomes = record(&*s, env.id, &events).await;
    assert_eq!(outcomes, [Recorded, Recorded, Recorded, Duplicate]);
    // A retry is parsed again: a new log event for the same provider event.
    assert_eq!(record(&*s, env.id, &events[..1]).await, [Duplicate]);
    assert_eq!(
        row_counts(&path, None, ["provider_event_keys", "soft_bounces"]).await,
        (3, 1)
    );
    assert_eq!(
        s.count_soft_bounces(&env.id, "a@example.com", at(0))
            .await
            .unwrap(),
        1
    );
    db.close().await;
}

/// The rows of the old `provider_events` table (before migration 0017) get their hashed keys when
/// the database is migrated, so a provider's retry of an event recorded before the upgrade is
/// still a duplicate.
#[tokio::test]
async fn old_provider_event_rows_are_hashed_when_migrated() {
    let t = TestDatabase::sqlite().await;
    let path = t.url.trim_start_matches("sqlite://").to_owned();
    let db = t.open().await;
    let s = db.storage();
    let env = environment(&*s, "default").await;
    // Rows as migration 0015 wrote them, more than one so the conversion's order shows.
    let env_id = env.id.to_string();
    let c = rusqlite::Connection::open(&path).unwrap();
    for (ms, id) in [(20, "old-2"), (10, "old-1"), (10, "old-0")] {
        c.execute(
            "INSERT INTO provider_events (environment_id, provider, occurred_at, \
             provider_event_id, event_id) VALUES (?1, 'postmark', ?2, ?3, 'ev')",
            rusqlite::params![env_id, at(ms).0, id],
        )
        .unwrap();
    }
    drop(c);
    db.migrate().await.unwrap();
    assert_eq!(
        row_counts(&path, None, ["provider_events", "provider_event_keys"]).await,
        (0, 3)
    );
    let delivered = |id, ms| event(id, EventType::Delivered, None, ms);
    let events = [
        delivered("old-1", 10),
        delivered("old-2", 20),
        delivered("new", 20),
    ];
    let outcomes = record(&*s, env.id, &events).await;
    assert_eq!(outcomes, [Duplicate, Duplicate, Recorded]);
    db.close().await;
}

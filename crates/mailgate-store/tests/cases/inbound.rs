//! Provider events (deduplication, matching, forward-only status), suppressions and the
//! recipient index.

use std::time::Duration;

use mailgate_core::address::EmailAddress;
use mailgate_core::event::{EventType, NewEvent};
use mailgate_core::ids::MessageId;
use mailgate_core::inbound::{BounceType, ProviderEvent};
use mailgate_core::message::MessageStatus;
use mailgate_core::store::{InboundRecord, MatchKey, RecordOutcome};
use mailgate_core::suppression::{Suppression, SuppressionQuery, SuppressionReason};
use mailgate_core::EventId;
use mailgate_store::Database;

use crate::support::*;

fn provider_event(
    id: &str,
    t: EventType,
    bounce: Option<BounceType>,
    to: &str,
    ms: i64,
) -> ProviderEvent {
    ProviderEvent {
        provider: "ses".into(),
        provider_event_id: id.into(),
        provider_message_id: Some("pm-1".into()),
        message_id: None,
        event_type: t,
        bounce_type: bounce,
        recipient: Some(EmailAddress::parse(to).unwrap()),
        occurred_at: at(ms),
        detail: serde_json::json!({"mta_response": "550 5.1.1"}),
    }
}

pub async fn provider_events_dedupe_match_and_advance(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let id = sent_message(&*s, &env.id, Some("ses"), Some("pm-1")).await;

    // Matched by the provider id, or by mailgate's id; never across environments; in the
    // keys' order.
    let key = |env: &mailgate_core::ids::EnvironmentId, pmid, id| MatchKey {
        env: *env,
        provider_message_id: pmid,
        message_id: id,
    };
    let found: Vec<Option<MessageId>> = s
        .match_messages(&[
            key(&env.id, Some("pm-1"), None),
            key(&env.id, Some("nope"), Some(id)),
            key(&other.id, Some("pm-1"), Some(id)),
            key(&env.id, None, None),
            key(&env.id, Some("nope"), None),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.map(|m| m.id))
        .collect();
    assert_eq!(found, vec![Some(id), Some(id), None, None, None]);
    let matched = s
        .match_messages(&[key(&env.id, None, Some(id))])
        .await
        .unwrap();
    assert_eq!(matched[0].map(|m| m.status), Some(MessageStatus::Sent));

    let e = provider_event("sns-1", EventType::Delivered, None, "a@example.com", 300);
    let log = NewEvent::for_message(
        env.id,
        id,
        EventType::Delivered,
        at(300),
        serde_json::json!({}),
    );
    let record = InboundRecord {
        event: &e,
        new_event: &log,
    };
    assert_eq!(
        s.record_inbound(&[record], at(300)).await.unwrap(),
        vec![RecordOutcome::Recorded]
    );
    assert_eq!(
        s.get_message(None, &id).await.unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    // The same provider event again: nothing changes, no second log event.
    let again = NewEvent {
        id: EventId::new(),
        ..log.clone()
    };
    let record = InboundRecord {
        event: &e,
        new_event: &again,
    };
    assert_eq!(
        s.record_inbound(&[record], at(301)).await.unwrap(),
        vec![RecordOutcome::Duplicate]
    );
    let events = s
        .list_events(&mailgate_core::event::EventQuery {
            message_id: Some(id),
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == EventType::Delivered)
            .count(),
        1
    );
    // The same id in another environment is another event.
    let elsewhere = NewEvent {
        id: EventId::new(),
        environment_id: other.id,
        message_id: None,
        ..log.clone()
    };
    let record = InboundRecord {
        event: &e,
        new_event: &elsewhere,
    };
    assert_eq!(
        s.record_inbound(&[record], at(302)).await.unwrap(),
        vec![RecordOutcome::Recorded]
    );
    // A message moves forward only, from the status it has when the event is recorded: a
    // hard bounce moves the delivered message on; a delivery reported after it does not move
    // it back.
    let bounce = provider_event(
        "sns-b",
        EventType::Bounced,
        Some(BounceType::Hard),
        "a@example.com",
        350,
    );
    let late = provider_event("sns-2", EventType::Delivered, None, "a@example.com", 400);
    for (event, ms) in [(&bounce, 350), (&late, 400)] {
        let log =
            NewEvent::for_message(env.id, id, event.event_type, at(ms), serde_json::json!({}));
        let record = InboundRecord {
            event,
            new_event: &log,
        };
        assert_eq!(
            s.record_inbound(&[record], at(ms)).await.unwrap(),
            vec![RecordOutcome::Recorded]
        );
        assert_eq!(
            s.get_message(None, &id).await.unwrap().unwrap().status,
            MessageStatus::Bounced
        );
    }

    // Soft bounces are counted per address and window (recorded as one batch).
    let softs: Vec<(ProviderEvent, NewEvent)> = [("s1", 1_000), ("s2", 2_000), ("s3", 3_000)]
        .into_iter()
        .map(|(n, ms)| {
            let soft = provider_event(
                n,
                EventType::Bounced,
                Some(BounceType::Soft),
                "B@Example.com",
                ms,
            );
            let log = NewEvent::for_message(
                env.id,
                id,
                EventType::Bounced,
                at(ms),
                serde_json::json!({}),
            );
            (soft, log)
        })
        .collect();
    let records: Vec<InboundRecord<'_>> = softs
        .iter()
        .map(|(event, new_event)| InboundRecord { event, new_event })
        .collect();
    assert_eq!(
        s.record_inbound(&records, at(3_000)).await.unwrap(),
        vec![RecordOutcome::Recorded; 3]
    );
    assert_eq!(
        s.count_soft_bounces(&env.id, "b@example.com", at(0))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.count_soft_bounces(&env.id, "b@example.com", at(1_500))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.count_soft_bounces(&other.id, "b@example.com", at(0))
            .await
            .unwrap(),
        0
    );

    // The recipient index covers to and cc, normalized.
    let view = s
        .recipient_messages(&env.id, "b@example.com", 10)
        .await
        .unwrap();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].message.id, id);
    assert!(view[0]
        .events
        .iter()
        .any(|e| e.event_type == EventType::Delivered));
    assert!(s
        .recipient_messages(&other.id, "a@example.com", 10)
        .await
        .unwrap()
        .is_empty());
}

fn suppression(
    env: &mailgate_core::EnvironmentId,
    address: &str,
    reason: SuppressionReason,
    ms: i64,
) -> Suppression {
    Suppression {
        environment_id: *env,
        address: address.into(),
        reason,
        source_event_id: Some(EventId::new()),
        provider: Some("ses".into()),
        note: None,
        created_at: at(ms),
        expires_at: None,
    }
}

/// A batch: several status changes of one message apply as one (first `from`, last `to`); an
/// event twice in a batch is recorded once; a duplicate's change is not applied; the provider's
/// id matches the newest message carrying it.
pub async fn provider_event_batches(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let mut sent = Vec::new();
    for (n, pmid) in [(0, "pm-a"), (10, "pm-b"), (20, "pm-b")] {
        let m = message(&env.id, at(n));
        s.enqueue(m.clone()).await.unwrap();
        let claimed = s
            .claim(1, at(n), Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        let mut done = completion(&claimed, MessageStatus::Sent);
        done.provider_message_id = Some(pmid.into());
        s.complete(&[done], at(n + 1)).await.unwrap();
        sent.push(m.id);
    }
    let (a, b_new) = (sent[0], sent[2]);
    let matched = s
        .match_messages(&[MatchKey {
            env: env.id,
            provider_message_id: Some("pm-b"),
            message_id: None,
        }])
        .await
        .unwrap();
    assert_eq!(matched[0].map(|m| m.id), Some(b_new));

    let ev = |pid: &str, t, bounce| provider_event(pid, t, bounce, "a@example.com", 500);
    let delivered = ev("d-1", EventType::Delivered, None);
    let bounced = ev("b-1", EventType::Bounced, Some(BounceType::Hard));
    let log = |t| NewEvent::for_message(env.id, a, t, at(500), serde_json::json!({}));
    let logs = [
        log(EventType::Delivered),
        log(EventType::Bounced),
        log(EventType::Delivered),
    ];
    let records = [
        InboundRecord {
            event: &delivered,
            new_event: &logs[0],
        },
        InboundRecord {
            event: &bounced,
            new_event: &logs[1],
        },
        // The first event again, in the same batch.
        InboundRecord {
            event: &delivered,
            new_event: &logs[2],
        },
    ];
    assert_eq!(
        s.record_inbound(&records, at(500)).await.unwrap(),
        vec![
            RecordOutcome::Recorded,
            RecordOutcome::Recorded,
            RecordOutcome::Duplicate
        ]
    );
    assert_eq!(
        s.get_message(None, &a).await.unwrap().unwrap().status,
        MessageStatus::Bounced
    );
    let logged = s
        .list_events(&mailgate_core::event::EventQuery {
            message_id: Some(a),
            ..query()
        })
        .await
        .unwrap();
    let ids: Vec<EventId> = logged
        .iter()
        .filter(|e| matches!(e.event_type, EventType::Delivered | EventType::Bounced))
        .map(|e| e.id)
        .collect();
    assert_eq!(
        ids,
        vec![logs[0].id, logs[1].id],
        "in the batch's order, once each"
    );

    // A duplicate's status change is not applied, even when it would move the message.
    let other = sent[1];
    let log_other = NewEvent::for_message(
        env.id,
        other,
        EventType::Delivered,
        at(600),
        serde_json::json!({}),
    );
    let dup = InboundRecord {
        event: &delivered,
        new_event: &log_other,
    };
    assert_eq!(
        s.record_inbound(&[dup], at(600)).await.unwrap(),
        vec![RecordOutcome::Duplicate]
    );
    assert_eq!(
        s.get_message(None, &other).await.unwrap().unwrap().status,
        MessageStatus::Sent
    );
    assert_eq!(s.record_inbound(&[], at(600)).await.unwrap(), vec![]);
}

pub async fn suppressions_crud(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    assert!(s
        .add_suppression(
            &suppression(&env.id, "a@example.com", SuppressionReason::HardBounce, 10),
            false
        )
        .await
        .unwrap());
    // Kept unless replaced.
    assert!(!s
        .add_suppression(
            &suppression(&env.id, "a@example.com", SuppressionReason::Complaint, 20),
            false
        )
        .await
        .unwrap());
    assert_eq!(
        s.get_suppression(&env.id, "a@example.com", at(30))
            .await
            .unwrap()
            .unwrap()
            .reason,
        SuppressionReason::HardBounce
    );
    assert!(s
        .add_suppression(
            &suppression(&env.id, "a@example.com", SuppressionReason::Manual, 20),
            true
        )
        .await
        .unwrap());
    assert_eq!(
        s.get_suppression(&env.id, "a@example.com", at(30))
            .await
            .unwrap()
            .unwrap()
            .reason,
        SuppressionReason::Manual
    );
    assert!(s
        .get_suppression(&other.id, "a@example.com", at(30))
        .await
        .unwrap()
        .is_none());

    let mut expiring = suppression(
        &env.id,
        "b_x@example.org",
        SuppressionReason::SoftBounces,
        40,
    );
    expiring.expires_at = Some(at(1_000));
    s.add_suppression(&expiring, false).await.unwrap();
    s.add_suppression(
        &suppression(&env.id, "c%@example.org", SuppressionReason::Complaint, 50),
        false,
    )
    .await
    .unwrap();
    let found = s
        .find_suppressions(
            &env.id,
            &["b_x@example.org".into(), "zz@example.com".into()],
            at(500),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        s.find_suppressions(&env.id, &["b_x@example.org".into()], at(1_000))
            .await
            .unwrap()
            .is_empty(),
        "expired"
    );

    let q = SuppressionQuery {
        environment_id: env.id,
        reason: None,
        contains: None,
        since: None,
        after: None,
        limit: 10,
    };
    let all = s.list_suppressions(&q).await.unwrap();
    let addresses: Vec<&str> = all.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        addresses,
        ["a@example.com", "b_x@example.org", "c%@example.org"]
    );
    let like = s
        .list_suppressions(&SuppressionQuery {
            contains: Some("_x".into()),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(like.len(), 1, "LIKE wildcards are literal");
    let pct = s
        .list_suppressions(&SuppressionQuery {
            contains: Some("%".into()),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(pct.len(), 1);
    let by_reason = s
        .list_suppressions(&SuppressionQuery {
            reason: Some(SuppressionReason::Complaint),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(by_reason[0].address, "c%@example.org");
    let page = s
        .list_suppressions(&SuppressionQuery {
            after: Some("a@example.com".into()),
            limit: 1,
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(page[0].address, "b_x@example.org");
    let since = s
        .list_suppressions(&SuppressionQuery {
            since: Some(at(45)),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 1);

    assert!(s
        .delete_suppression(&env.id, "a@example.com")
        .await
        .unwrap());
    assert!(!s
        .delete_suppression(&env.id, "a@example.com")
        .await
        .unwrap());
    // Deleting an environment removes its suppressions.
    s.add_suppression(
        &suppression(&other.id, "o@example.com", SuppressionReason::Manual, 1),
        false,
    )
    .await
    .unwrap();
    s.delete_environment(&other.id).await.unwrap();
    let q = SuppressionQuery {
        environment_id: other.id,
        ..q
    };
    assert!(s.list_suppressions(&q).await.unwrap().is_empty());
}

/// Delegates to the real store, but its first `record_inbound` panics (as a bug in it would).
struct PanicsOnce {
    inner: std::sync::Arc<dyn mailgate_core::store::Storage>,
    panicked: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl mailgate_core::store::InboundStore for PanicsOnce {
    async fn match_messages(
        &self,
        keys: &[MatchKey<'_>],
    ) -> Result<Vec<Option<mailgate_core::store::MatchedMessage>>, mailgate_core::store::StoreError>
    {
        self.inner.match_messages(keys).await
    }
    async fn record_inbound(
        &self,
        records: &[InboundRecord<'_>],
        now: mailgate_core::Timestamp,
    ) -> Result<Vec<RecordOutcome>, mailgate_core::store::StoreError> {
        if !self
            .panicked
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("a bug while recording provider events");
        }
        self.inner.record_inbound(records, now).await
    }
    async fn count_soft_bounces(
        &self,
        env: &mailgate_core::ids::EnvironmentId,
        address: &str,
        since: mailgate_core::Timestamp,
    ) -> Result<u64, mailgate_core::store::StoreError> {
        self.inner.count_soft_bounces(env, address, since).await
    }
    async fn recipient_messages(
        &self,
        env: &mailgate_core::ids::EnvironmentId,
        address: &str,
        limit: u32,
    ) -> Result<Vec<mailgate_core::store::RecipientMessage>, mailgate_core::store::StoreError> {
        self.inner.recipient_messages(env, address, limit).await
    }
}

/// A panic while recording a webhook batch (a bug) fails that batch's requests only: they get
/// an error, and the next request is recorded as usual.
pub async fn a_panic_while_recording_fails_only_its_batch(db: Database) {
    use mailgate_core::ingest::IngestService;
    use mailgate_core::suppression::SoftBouncePolicy;
    use mailgate_core::time::SystemClock;
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let store = std::sync::Arc::new(PanicsOnce {
        inner: s.clone(),
        panicked: std::sync::atomic::AtomicBool::new(false),
    });
    let ingest = IngestService::new(
        store,
        s.clone(),
        std::sync::Arc::new(SystemClock),
        SoftBouncePolicy::default(),
    );
    let event = |id: &str| provider_event(id, EventType::Delivered, None, "a@example.com", 0);
    let first = ingest
        .ingest(&env.id, vec![event("lost-to-the-panic")])
        .await;
    assert!(
        matches!(first, Err(mailgate_core::store::StoreError::Unavailable(_))),
        "{first:?}"
    );
    let second = ingest
        .ingest(&env.id, vec![event("after-the-panic")])
        .await
        .expect("the next request is recorded");
    assert_eq!((second.recorded, second.duplicates), (1, 0));
    // What the panicking batch held was not recorded: the provider retries it (it got an
    // error), and then it is recorded once.
    let retried = ingest
        .ingest(&env.id, vec![event("lost-to-the-panic")])
        .await
        .unwrap();
    assert_eq!((retried.recorded, retried.duplicates), (1, 0));
}

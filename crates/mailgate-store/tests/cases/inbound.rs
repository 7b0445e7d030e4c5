//! Provider events (deduplication, matching, forward-only status), suppressions and the
//! recipient index.

use std::time::Duration;

use mailgate_core::address::EmailAddress;
use mailgate_core::event::{EventType, NewEvent};
use mailgate_core::inbound::{BounceType, ProviderEvent};
use mailgate_core::message::MessageStatus;
use mailgate_core::store::{InboundRecord, RecordOutcome};
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
    let m = message(&env.id, at(0));
    let id = m.id;
    s.enqueue(m).await.unwrap();
    let claimed = s
        .claim(1, at(0), Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let mut done = completion(&claimed, MessageStatus::Sent);
    done.provider = Some("ses".into());
    done.provider_message_id = Some("pm-1".into());
    s.complete(&[done], at(100)).await.unwrap();

    // Matched by the provider id, or by mailgate's id; never across environments.
    let found = s
        .match_message(&env.id, "ses", Some("pm-1"), None)
        .await
        .unwrap();
    assert_eq!(found.map(|m| m.id), Some(id));
    let found = s
        .match_message(&env.id, "ses", Some("nope"), Some(&id))
        .await
        .unwrap();
    assert_eq!(found.map(|m| m.id), Some(id));
    assert!(s
        .match_message(&other.id, "ses", Some("pm-1"), Some(&id))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .match_message(&env.id, "ses", None, None)
        .await
        .unwrap()
        .is_none());

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
        advance: Some((MessageStatus::Sent, MessageStatus::Delivered)),
    };
    assert_eq!(
        s.record_inbound(&record, at(300)).await.unwrap(),
        RecordOutcome::Recorded
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
        advance: None,
    };
    assert_eq!(
        s.record_inbound(&record, at(301)).await.unwrap(),
        RecordOutcome::Duplicate
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
        advance: None,
    };
    assert_eq!(
        s.record_inbound(&record, at(302)).await.unwrap(),
        RecordOutcome::Recorded
    );
    // An advance from a status the message no longer has is not applied.
    let late = provider_event("sns-2", EventType::Delivered, None, "a@example.com", 400);
    let log2 = NewEvent::for_message(
        env.id,
        id,
        EventType::Delivered,
        at(400),
        serde_json::json!({}),
    );
    let record = InboundRecord {
        event: &late,
        new_event: &log2,
        advance: Some((MessageStatus::Sent, MessageStatus::Delivered)),
    };
    s.record_inbound(&record, at(400)).await.unwrap();
    assert_eq!(
        s.get_message(None, &id).await.unwrap().unwrap().status,
        MessageStatus::Delivered
    );

    // Soft bounces are counted per address and window.
    for (n, ms) in [("s1", 1_000), ("s2", 2_000), ("s3", 3_000)] {
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
        s.record_inbound(
            &InboundRecord {
                event: &soft,
                new_event: &log,
                advance: None,
            },
            at(ms),
        )
        .await
        .unwrap();
    }
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

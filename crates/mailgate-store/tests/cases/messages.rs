//! Enqueue, idempotency, group commit, reads and the retention purge.

use std::sync::Arc;
use std::time::Duration;

use mailgate_core::address::Mailbox;
use mailgate_core::event::{EventQuery, EventType};
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{EnqueueOutcome, MessageStatus, NewMessage};
use mailgate_core::store::StoredContent;
use mailgate_core::suppression::{Suppression, SuppressionReason};
use mailgate_core::Timestamp;
use mailgate_store::Database;

use crate::support::*;

pub async fn enqueue_and_read(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let m = message(&env.id, T0);
    assert_eq!(
        s.enqueue(m.clone()).await.unwrap(),
        EnqueueOutcome::Created(m.id)
    );

    let rec = s.get_message(Some(&env.id), &m.id).await.unwrap().unwrap();
    assert_eq!(
        (rec.id, rec.environment_id, rec.status),
        (m.id, env.id, MessageStatus::Queued)
    );
    assert_eq!(
        (rec.attempts, rec.max_attempts, rec.next_attempt_at),
        (0, 5, T0)
    );
    assert_eq!(
        (rec.tags, rec.metadata),
        (m.tags.clone(), m.metadata.clone())
    );
    assert_eq!(
        (rec.created_at, rec.updated_at, rec.content_purged),
        (T0, T0, false)
    );
    assert_eq!(
        (rec.provider, rec.provider_message_id, rec.last_error),
        (None, None, None)
    );
    assert!(s.get_message(None, &m.id).await.unwrap().is_some());
    assert_eq!(s.get_message(Some(&other.id), &m.id).await.unwrap(), None);
    assert_eq!(s.get_message(None, &MessageId::new()).await.unwrap(), None);

    let content = s.get_content(Some(&env.id), &m.id).await.unwrap();
    assert_eq!(
        content,
        Some(StoredContent::Retained(Box::new(m.content.clone())))
    );
    assert_eq!(s.get_content(Some(&other.id), &m.id).await.unwrap(), None);

    let events = s
        .list_events(&EventQuery {
            message_id: Some(m.id),
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].event_type, events[0].created_at),
        (EventType::Queued, T0)
    );
    assert_eq!(events[0].data, serde_json::json!({ "recipients": 2 }));
    assert_eq!(s.next_due().await.unwrap(), Some(T0));
}

pub async fn idempotency_replay_and_conflict(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let first = idempotent(&env.id, "order-1", "a");
    assert_eq!(
        s.enqueue(first.clone()).await.unwrap(),
        EnqueueOutcome::Created(first.id)
    );
    let replay = idempotent(&env.id, "order-1", "a");
    assert_eq!(
        s.enqueue(replay.clone()).await.unwrap(),
        EnqueueOutcome::Replayed(first.id)
    );
    assert_eq!(
        s.get_message(None, &replay.id).await.unwrap(),
        None,
        "a replay stores nothing"
    );
    let changed = idempotent(&env.id, "order-1", "b");
    assert_eq!(
        s.enqueue(changed).await.unwrap(),
        EnqueueOutcome::Conflict(first.id)
    );
    let elsewhere = idempotent(&other.id, "order-1", "b");
    assert_eq!(
        s.enqueue(elsewhere.clone()).await.unwrap(),
        EnqueueOutcome::Created(elsewhere.id)
    );
    assert_eq!(
        queued_events(&*s).await,
        2,
        "replays and conflicts add no event"
    );
}

pub async fn concurrent_same_key_creates_once(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = Arc::clone(&s);
            let body = if i % 2 == 0 { "same" } else { "different" };
            tokio::spawn(async move { s.enqueue(idempotent(&env.id, "k", body)).await.unwrap() })
        })
        .collect();
    let mut created = Vec::new();
    let mut others = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            EnqueueOutcome::Created(id) => created.push(id),
            EnqueueOutcome::Replayed(id) | EnqueueOutcome::Conflict(id) => others.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created.len(), 1);
    assert!(others.iter().all(|id| *id == created[0]));
}

pub async fn group_commit_under_concurrency(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let m = message(&env.id, T0);
                (m.id, s.enqueue(m).await.unwrap())
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        let (id, outcome) = t.await.unwrap();
        assert_eq!(outcome, EnqueueOutcome::Created(id));
        ids.push(id);
    }
    for id in &ids {
        assert!(s.get_message(Some(&env.id), id).await.unwrap().is_some());
    }
    let events = s
        .list_events(&EventQuery {
            limit: 1000,
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 500);
}

pub async fn enqueue_to_missing_environment_fails_alone(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let good: Vec<_> = (0..20).map(|_| message(&env.id, T0)).collect();
    let bad = message(&EnvironmentId::new(), T0);
    let bad_task = tokio::spawn({
        let s = Arc::clone(&s);
        async move { s.enqueue(bad).await }
    });
    let good_tasks: Vec<_> = good
        .into_iter()
        .map(|m| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.enqueue(m).await })
        })
        .collect();
    assert!(bad_task.await.unwrap().is_err());
    for t in good_tasks {
        assert!(matches!(t.await.unwrap(), Ok(EnqueueOutcome::Created(_))));
    }
}

pub async fn purge_content(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let done = message(&env.id, T0);
    let waiting = message(&env.id, at(1_000_000));
    s.enqueue(done.clone()).await.unwrap();
    s.enqueue(waiting.clone()).await.unwrap();
    let c = s
        .claim(1, at(0), Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    s.complete(&[completion(&c, MessageStatus::Sent)], at(100))
        .await
        .unwrap();

    assert_eq!(
        s.purge_content(at(100)).await.unwrap(),
        0,
        "changed exactly at the cut-off: kept"
    );
    assert_eq!(
        s.purge_content(at(2_000_000)).await.unwrap(),
        1,
        "queued messages keep their content"
    );
    assert_eq!(
        s.get_content(None, &done.id).await.unwrap(),
        Some(StoredContent::Purged)
    );
    assert!(
        s.get_message(None, &done.id)
            .await
            .unwrap()
            .unwrap()
            .content_purged
    );
    assert!(matches!(
        s.get_content(None, &waiting.id).await.unwrap(),
        Some(StoredContent::Retained(_))
    ));
    assert_eq!(s.purge_content(at(2_000_000)).await.unwrap(), 0);
    let events = s
        .list_events(&EventQuery {
            message_id: Some(done.id),
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "the event trail stays");
}

/// How many `queued` events the store holds.
async fn queued_events(s: &dyn mailgate_core::store::Storage) -> usize {
    s.list_events(&EventQuery {
        types: vec![EventType::Queued],
        ..query()
    })
    .await
    .unwrap()
    .len()
}

fn suppression(env: &EnvironmentId, address: &str, expires_at: Option<Timestamp>) -> Suppression {
    Suppression {
        environment_id: *env,
        address: address.into(),
        reason: SuppressionReason::HardBounce,
        source_event_id: None,
        provider: Some("ses".into()),
        note: None,
        created_at: T0,
        expires_at,
    }
}

/// A message to `to` (and the support content's cc, b@example.com).
fn message_to(env: &EnvironmentId, to: &str) -> NewMessage {
    let mut m = message(env, at(10));
    m.content.to = vec![Mailbox::parse(to, "to").unwrap()];
    m
}

pub async fn enqueue_refuses_suppressed_recipients(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let held = suppression(&env.id, "held@example.com", None);
    s.add_suppression(&held, false).await.unwrap();
    // Lapsed before the message was created; and one in another environment.
    s.add_suppression(
        &suppression(&env.id, "lapsed@example.com", Some(at(5))),
        false,
    )
    .await
    .unwrap();
    s.add_suppression(
        &suppression(&other.id, "elsewhere@example.com", None),
        false,
    )
    .await
    .unwrap();

    // Refused through its cc as well as its to; nothing stored.
    let refused = message_to(&env.id, "held@example.com");
    let mut cc = message_to(&env.id, "fine@example.com");
    cc.content.cc = vec![Mailbox::parse("Held@Example.com", "cc").unwrap()];
    for m in [refused, cc] {
        let id = m.id;
        assert_eq!(
            s.enqueue(m).await.unwrap(),
            EnqueueOutcome::Suppressed(vec![held.clone()])
        );
        assert_eq!(s.get_message(None, &id).await.unwrap(), None);
    }
    for to in ["lapsed@example.com", "elsewhere@example.com"] {
        let m = message_to(&env.id, to);
        assert_eq!(
            s.enqueue(m.clone()).await.unwrap(),
            EnqueueOutcome::Created(m.id)
        );
    }

    // A keyed send is refused before its key is taken: once the suppression is lifted, the
    // same key creates the message.
    let mut keyed = idempotent(&env.id, "k", "body");
    keyed.content.to = vec![Mailbox::parse("held@example.com", "to").unwrap()];
    assert!(matches!(
        s.enqueue(keyed.clone()).await.unwrap(),
        EnqueueOutcome::Suppressed(_)
    ));
    assert!(s
        .delete_suppression(&env.id, "held@example.com")
        .await
        .unwrap());
    assert_eq!(
        s.enqueue(keyed.clone()).await.unwrap(),
        EnqueueOutcome::Created(keyed.id)
    );

    assert_eq!(queued_events(&*s).await, 3, "refused sends add no event");
}

pub async fn suppressions_refuse_only_their_messages_in_a_batch(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let held = suppression(&env.id, "held@example.com", None);
    s.add_suppression(&held, false).await.unwrap();
    // Concurrent sends share transactions: the refused ones must not take the others along.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = Arc::clone(&s);
            let to = if i % 5 == 0 {
                "held@example.com".to_owned()
            } else {
                format!("u{i}@example.com")
            };
            let m = message_to(&env.id, &to);
            tokio::spawn(async move { (i, m.id, s.enqueue(m).await.unwrap()) })
        })
        .collect();
    for t in tasks {
        let (i, id, outcome) = t.await.unwrap();
        if i % 5 == 0 {
            assert_eq!(outcome, EnqueueOutcome::Suppressed(vec![held.clone()]));
            assert_eq!(s.get_message(None, &id).await.unwrap(), None);
        } else {
            assert_eq!(outcome, EnqueueOutcome::Created(id));
            assert!(s.get_message(None, &id).await.unwrap().is_some());
        }
    }
}

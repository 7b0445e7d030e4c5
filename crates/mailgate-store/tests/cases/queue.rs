//! Claim, leases, completion and retries.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::event::{EventQuery, EventType};
use mailgate_core::message::{ClaimedMessage, MessageStatus};
use mailgate_store::Database;

use crate::support::*;

pub async fn claim_due_messages(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let lease = Duration::from_secs(60);
    let due: Vec<_> = (0..3).map(|i| message(&env.id, at(i))).collect();
    for m in &due {
        s.enqueue(m.clone()).await.unwrap();
    }
    let later = message(&env.id, at(10_000));
    s.enqueue(later.clone()).await.unwrap();

    let first = s.claim(2, at(100), lease).await.unwrap();
    assert_eq!(first.len(), 2);
    let second = s.claim(10, at(100), lease).await.unwrap();
    assert_eq!(
        second.len(),
        1,
        "leased and future messages are not claimed"
    );
    let mut claimed: Vec<_> = first.iter().chain(&second).map(|c| c.id).collect();
    claimed.sort();
    let mut expected: Vec<_> = due.iter().map(|m| m.id).collect();
    expected.sort();
    assert_eq!(claimed, expected);

    let c = &first[0];
    let original = due.iter().find(|m| m.id == c.id).unwrap();
    assert_eq!(
        (c.attempt, c.max_attempts, c.environment_id),
        (1, 5, env.id)
    );
    assert_eq!(
        (&c.content, &c.tags, &c.metadata),
        (&original.content, &original.tags, &original.metadata)
    );
    assert_eq!(c.provider_options, original.provider_options);
    assert!(!c.lease_token.is_empty());
    let rec = s.get_message(None, &c.id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.attempts, rec.updated_at),
        (MessageStatus::Sending, 1, at(100))
    );

    assert!(s.claim(10, at(9_999), lease).await.unwrap().is_empty());
    assert_eq!(s.next_due().await.unwrap(), Some(at(10_000)));
    let last = s.claim(10, at(10_000), lease).await.unwrap();
    assert_eq!(
        last.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![later.id]
    );
    assert_eq!(s.next_due().await.unwrap(), None);
    assert!(s.claim(0, at(99_999), lease).await.unwrap().is_empty());
}

pub async fn concurrent_claimers_never_share(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    for _ in 0..200 {
        s.enqueue(message(&env.id, T0)).await.unwrap();
    }
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = s.claim(7, at(1), Duration::from_secs(60)).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for w in workers {
        for id in w.await.unwrap() {
            assert!(seen.insert(id), "message claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

pub async fn expired_lease_is_reclaimed_and_fences_old_worker(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let m = message(&env.id, T0);
    s.enqueue(m.clone()).await.unwrap();
    let lease = Duration::from_secs(1);
    let old = s.claim(1, at(0), lease).await.unwrap().remove(0);
    assert!(
        s.claim(1, at(999), lease).await.unwrap().is_empty(),
        "lease still held"
    );
    let new = s.claim(1, at(1_001), lease).await.unwrap().remove(0);
    assert_eq!((new.id, new.attempt), (m.id, 2));
    assert_ne!(new.lease_token, old.lease_token);

    let stale = completion(&old, MessageStatus::Sent);
    assert_eq!(s.complete(&[stale], at(1_100)).await.unwrap(), 0);
    assert_eq!(
        s.get_message(None, &m.id).await.unwrap().unwrap().status,
        MessageStatus::Sending
    );
    assert_eq!(
        s.complete(&[completion(&new, MessageStatus::Sent)], at(1_200))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.get_message(None, &m.id).await.unwrap().unwrap().status,
        MessageStatus::Sent
    );
}

pub async fn complete_applies_and_skips_stale_tokens(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let a = message(&env.id, T0);
    let b = message(&env.id, T0);
    s.enqueue(a.clone()).await.unwrap();
    s.enqueue(b.clone()).await.unwrap();
    let claimed = s.claim(2, at(1), Duration::from_secs(60)).await.unwrap();
    let ca = claimed.iter().find(|c| c.id == a.id).unwrap();
    let cb = claimed.iter().find(|c| c.id == b.id).unwrap();
    let mut done = completion(ca, MessageStatus::Sent);
    done.provider = Some("capture".into());
    done.provider_message_id = Some("prov-1".into());
    let mut lost = completion(cb, MessageStatus::Failed);
    lost.lease_token = "not-the-token".into();
    assert_eq!(s.complete(&[done, lost], at(50)).await.unwrap(), 1);

    let rec = s.get_message(Some(&env.id), &a.id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.updated_at), (MessageStatus::Sent, at(50)));
    assert_eq!(
        (rec.provider.as_deref(), rec.provider_message_id.as_deref()),
        (Some("capture"), Some("prov-1"))
    );
    let untouched = s.get_message(Some(&env.id), &b.id).await.unwrap().unwrap();
    assert_eq!(untouched.status, MessageStatus::Sending);
    let types = |id| {
        let s = Arc::clone(&s);
        async move {
            let q = EventQuery {
                message_id: Some(id),
                ..query()
            };
            s.list_events(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.event_type)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(types(a.id).await, [EventType::Queued, EventType::Sent]);
    assert_eq!(types(b.id).await, [EventType::Queued]);
    assert_eq!(s.complete(&[], at(60)).await.unwrap(), 0);
}

pub async fn retry_flow(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let m = message(&env.id, T0);
    s.enqueue(m.clone()).await.unwrap();
    let lease = Duration::from_secs(60);
    let first = s.claim(1, at(0), lease).await.unwrap().remove(0);
    let mut retry = completion(&first, MessageStatus::Queued);
    retry.next_attempt_at = Some(at(30_000));
    retry.last_error = Some("421 try later".into());
    retry.events[0].event_type = EventType::Deferred;
    assert_eq!(s.complete(&[retry], at(10)).await.unwrap(), 1);

    let rec = s.get_message(None, &m.id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.next_attempt_at),
        (MessageStatus::Queued, at(30_000))
    );
    assert_eq!(rec.last_error.as_deref(), Some("421 try later"));
    assert_eq!(s.next_due().await.unwrap(), Some(at(30_000)));
    assert!(s.claim(1, at(29_999), lease).await.unwrap().is_empty());
    let second = s.claim(1, at(30_000), lease).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
}

/// A retry keeps its place in line: once due, it is claimed before first attempts that became
/// due earlier but were accepted after it; a retry not yet due waits; the limit spans lanes.
pub async fn due_retries_go_ahead_of_later_first_attempts(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let lease = Duration::from_secs(60);
    let (old, older) = (message(&env.id, at(0)), message(&env.id, at(0)));
    s.enqueue(old.clone()).await.unwrap();
    s.enqueue(older.clone()).await.unwrap();
    let claimed = s.claim(2, at(0), lease).await.unwrap();
    let deferred: Vec<_> = claimed
        .iter()
        .map(|c| {
            let mut d = completion(c, MessageStatus::Queued);
            d.next_attempt_at = Some(at(if c.id == old.id { 500 } else { 900 }));
            d
        })
        .collect();
    assert_eq!(s.complete(&deferred, at(10)).await.unwrap(), 2);
    let fresh = [100, 200, 300].map(|t| message(&env.id, at(t)));
    for m in &fresh {
        s.enqueue(m.clone()).await.unwrap();
    }
    let ids = |v: Vec<ClaimedMessage>| {
        let mut ids: Vec<_> = v.into_iter().map(|c| (c.id, c.attempt)).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<_>| {
        v.sort();
        v
    };
    assert_eq!(
        ids(s.claim(2, at(600), lease).await.unwrap()),
        sorted(vec![(old.id, 2), (fresh[0].id, 1)]),
        "the due retry first, then the oldest first attempt"
    );
    assert_eq!(
        ids(s.claim(10, at(600), lease).await.unwrap()),
        sorted(vec![(fresh[1].id, 1), (fresh[2].id, 1)]),
        "a retry not yet due waits"
    );
    assert_eq!(
        ids(s.claim(10, at(900), lease).await.unwrap()),
        vec![(older.id, 2)]
    );
}

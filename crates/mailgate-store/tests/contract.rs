//! The storage contract: every test runs on a real SQLite file (`sqlite::…`) and on a fresh
//! PostgreSQL database (`postgres::…`, server at `MAILGATE_TEST_POSTGRES_URL`).

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::apikey::KeyScope;
use mailgate_core::environment::EnvironmentName;
use mailgate_core::event::{EventQuery, EventType, NewEvent};
use mailgate_core::ids::{ApiKeyId, EnvironmentId, MessageId};
use mailgate_core::message::{EnqueueOutcome, MessageStatus};
use mailgate_core::store::{CapturedMessage, Completion, StoreError, StoredContent};
use mailgate_store::{Backend, Database, StoreOptions};
use mailgate_testkit::db::TestDatabase;
use support::*;

/// Generates `sqlite::NAME` and `postgres::NAME` for each contract test `NAME(Database)`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = mailgate_testkit::db::TestDatabase::sqlite().await;
                    let db = t.open().await;
                    super::$name(db.clone()).await;
                    db.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = mailgate_testkit::db::TestDatabase::postgres().await;
                    let db = t.open().await;
                    super::$name(db.clone()).await;
                    db.close().await;
                }
            )*
        }
    };
}

contract!(
    ping_and_migrate_again,
    environments_crud,
    delete_environment_cascades,
    api_keys,
    enqueue_and_read,
    idempotency_replay_and_conflict,
    concurrent_same_key_creates_once,
    group_commit_under_concurrency,
    enqueue_to_missing_environment_fails_alone,
    claim_due_messages,
    concurrent_claimers_never_share,
    expired_lease_is_reclaimed_and_fences_old_worker,
    complete_applies_and_skips_stale_tokens,
    retry_flow,
    purge_content,
    list_events_filters_and_pages,
    capture_keeps_duplicates,
    close_refuses_later_writes,
);

async fn ping_and_migrate_again(db: Database) {
    db.storage().ping().await.unwrap();
    db.migrate().await.unwrap();
    db.storage().ping().await.unwrap();
}

async fn environments_crud(db: Database) {
    let s = db.storage();
    let prod = environment(&*s, "production").await;
    let staging = environment(&*s, "staging").await;
    let names: Vec<_> = s.list_environments().await.unwrap().into_iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, ["production", "staging"]);
    assert_eq!(s.find_environment("production").await.unwrap(), Some(prod.clone()));
    assert_eq!(s.find_environment(&staging.id.to_string()).await.unwrap(), Some(staging.clone()));
    assert_eq!(s.find_environment("nope").await.unwrap(), None);
    assert_eq!(s.find_environment(&EnvironmentId::new().to_string()).await.unwrap(), None);

    let dup = mailgate_core::environment::Environment { id: EnvironmentId::new(), ..prod.clone() };
    assert!(matches!(s.create_environment(&dup).await, Err(StoreError::Conflict(_))));
    let ensured = s.ensure_environment(&EnvironmentName::parse("production").unwrap(), at(5)).await.unwrap();
    assert_eq!(ensured, prod);

    assert!(s.delete_environment(&staging.id).await.unwrap());
    assert!(!s.delete_environment(&staging.id).await.unwrap());
    assert_eq!(s.list_environments().await.unwrap(), vec![prod]);
}

async fn delete_environment_cascades(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "doomed").await;
    let other = environment(&*s, "kept").await;
    let (key, secret) = api_key(KeyScope::Environment(env.id), "k");
    s.insert_api_key(&key).await.unwrap();
    let m = message(&env.id, T0);
    let id = m.id;
    s.enqueue(m.clone()).await.unwrap();
    s.enqueue(message(&other.id, T0)).await.unwrap();
    s.capture(&CapturedMessage { message_id: id, environment_id: env.id, content: m.content, captured_at: T0 })
        .await
        .unwrap();

    assert!(s.delete_environment(&env.id).await.unwrap());
    assert_eq!(s.find_api_key(&secret.hash()).await.unwrap(), None);
    assert_eq!(s.get_message(None, &id).await.unwrap(), None);
    assert!(s.list_captured(&env.id, 10).await.unwrap().is_empty());
    let events = s.list_events(&query()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].environment_id, other.id);
}

async fn api_keys(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    assert!(!s.has_admin_key().await.unwrap());
    let (admin, admin_secret) = api_key(KeyScope::Admin, "root");
    s.insert_api_key(&admin).await.unwrap();
    assert!(s.has_admin_key().await.unwrap());
    let (k1, secret1) = api_key(KeyScope::Environment(env.id), "one");
    let (k2, _) = api_key(KeyScope::Environment(env.id), "two");
    s.insert_api_key(&k1).await.unwrap();
    s.insert_api_key(&k2).await.unwrap();

    assert_eq!(s.find_api_key(&admin_secret.hash()).await.unwrap(), Some(admin.record.clone()));
    assert_eq!(s.find_api_key(&secret1.hash()).await.unwrap(), Some(k1.record.clone()));
    assert_eq!(s.find_api_key(&mailgate_core::apikey::ApiKeySecret::generate().hash()).await.unwrap(), None);
    let mut listed = s.list_api_keys(&env.id).await.unwrap();
    listed.sort_by_key(|k| k.name.clone());
    assert_eq!(listed, vec![k1.record.clone(), k2.record.clone()]);

    let (mut same_hash, _) = api_key(KeyScope::Environment(env.id), "copy");
    same_hash.hash = k1.hash.clone();
    assert!(matches!(s.insert_api_key(&same_hash).await, Err(StoreError::Conflict(_))));

    let other = environment(&*s, "other").await;
    assert!(!s.delete_api_key(&other.id, &k1.record.id).await.unwrap());
    assert!(s.delete_api_key(&env.id, &k1.record.id).await.unwrap());
    assert!(!s.delete_api_key(&env.id, &ApiKeyId::new()).await.unwrap());
    assert_eq!(s.find_api_key(&secret1.hash()).await.unwrap(), None);
    assert_eq!(s.list_api_keys(&env.id).await.unwrap(), vec![k2.record]);
}

async fn enqueue_and_read(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let m = message(&env.id, T0);
    assert_eq!(s.enqueue(m.clone()).await.unwrap(), EnqueueOutcome::Created(m.id));

    let rec = s.get_message(Some(&env.id), &m.id).await.unwrap().unwrap();
    assert_eq!((rec.id, rec.environment_id, rec.status), (m.id, env.id, MessageStatus::Queued));
    assert_eq!((rec.attempts, rec.max_attempts, rec.next_attempt_at), (0, 5, T0));
    assert_eq!((rec.tags, rec.metadata), (m.tags.clone(), m.metadata.clone()));
    assert_eq!((rec.created_at, rec.updated_at, rec.content_purged), (T0, T0, false));
    assert_eq!((rec.provider, rec.provider_message_id, rec.last_error), (None, None, None));
    assert!(s.get_message(None, &m.id).await.unwrap().is_some());
    assert_eq!(s.get_message(Some(&other.id), &m.id).await.unwrap(), None);
    assert_eq!(s.get_message(None, &MessageId::new()).await.unwrap(), None);

    let content = s.get_content(Some(&env.id), &m.id).await.unwrap();
    assert_eq!(content, Some(StoredContent::Retained(Box::new(m.content.clone()))));
    assert_eq!(s.get_content(Some(&other.id), &m.id).await.unwrap(), None);

    let events = s.list_events(&EventQuery { message_id: Some(m.id), ..query() }).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].event_type, events[0].created_at), (EventType::Queued, T0));
    assert_eq!(events[0].data, serde_json::json!({ "recipients": 2 }));
    assert_eq!(s.next_due().await.unwrap(), Some(T0));
}

async fn idempotency_replay_and_conflict(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let first = idempotent(&env.id, "order-1", "a");
    assert_eq!(s.enqueue(first.clone()).await.unwrap(), EnqueueOutcome::Created(first.id));
    let replay = idempotent(&env.id, "order-1", "a");
    assert_eq!(s.enqueue(replay.clone()).await.unwrap(), EnqueueOutcome::Replayed(first.id));
    assert_eq!(s.get_message(None, &replay.id).await.unwrap(), None, "a replay stores nothing");
    let changed = idempotent(&env.id, "order-1", "b");
    assert_eq!(s.enqueue(changed).await.unwrap(), EnqueueOutcome::Conflict(first.id));
    let elsewhere = idempotent(&other.id, "order-1", "b");
    assert_eq!(s.enqueue(elsewhere.clone()).await.unwrap(), EnqueueOutcome::Created(elsewhere.id));
    let queued = s.list_events(&EventQuery { types: vec![EventType::Queued], ..query() }).await.unwrap();
    assert_eq!(queued.len(), 2, "replays and conflicts add no event");
}

async fn concurrent_same_key_creates_once(db: Database) {
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
        }
    }
    assert_eq!(created.len(), 1);
    assert!(others.iter().all(|id| *id == created[0]));
}

async fn group_commit_under_concurrency(db: Database) {
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
    let events = s.list_events(&EventQuery { limit: 1000, ..query() }).await.unwrap();
    assert_eq!(events.len(), 500);
}

async fn enqueue_to_missing_environment_fails_alone(db: Database) {
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

async fn claim_due_messages(db: Database) {
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
    assert_eq!(second.len(), 1, "leased and future messages are not claimed");
    let mut claimed: Vec<_> = first.iter().chain(&second).map(|c| c.id).collect();
    claimed.sort();
    let mut expected: Vec<_> = due.iter().map(|m| m.id).collect();
    expected.sort();
    assert_eq!(claimed, expected);

    let c = &first[0];
    let original = due.iter().find(|m| m.id == c.id).unwrap();
    assert_eq!((c.attempt, c.max_attempts, c.environment_id), (1, 5, env.id));
    assert_eq!((&c.content, &c.tags, &c.metadata), (&original.content, &original.tags, &original.metadata));
    assert_eq!(c.provider_options, original.provider_options);
    assert!(!c.lease_token.is_empty());
    let rec = s.get_message(None, &c.id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts, rec.updated_at), (MessageStatus::Sending, 1, at(100)));

    assert!(s.claim(10, at(9_999), lease).await.unwrap().is_empty());
    assert_eq!(s.next_due().await.unwrap(), Some(at(10_000)));
    let last = s.claim(10, at(10_000), lease).await.unwrap();
    assert_eq!(last.iter().map(|c| c.id).collect::<Vec<_>>(), vec![later.id]);
    assert_eq!(s.next_due().await.unwrap(), None);
    assert!(s.claim(0, at(99_999), lease).await.unwrap().is_empty());
}

async fn concurrent_claimers_never_share(db: Database) {
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

async fn expired_lease_is_reclaimed_and_fences_old_worker(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let m = message(&env.id, T0);
    s.enqueue(m.clone()).await.unwrap();
    let lease = Duration::from_secs(1);
    let old = s.claim(1, at(0), lease).await.unwrap().remove(0);
    assert!(s.claim(1, at(999), lease).await.unwrap().is_empty(), "lease still held");
    let new = s.claim(1, at(1_001), lease).await.unwrap().remove(0);
    assert_eq!((new.id, new.attempt), (m.id, 2));
    assert_ne!(new.lease_token, old.lease_token);

    let stale = completion(&old, MessageStatus::Sent);
    assert_eq!(s.complete(&[stale], at(1_100)).await.unwrap(), 0);
    assert_eq!(s.get_message(None, &m.id).await.unwrap().unwrap().status, MessageStatus::Sending);
    assert_eq!(s.complete(&[completion(&new, MessageStatus::Sent)], at(1_200)).await.unwrap(), 1);
    assert_eq!(s.get_message(None, &m.id).await.unwrap().unwrap().status, MessageStatus::Sent);
}

async fn complete_applies_and_skips_stale_tokens(db: Database) {
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
    assert_eq!((rec.provider.as_deref(), rec.provider_message_id.as_deref()), (Some("capture"), Some("prov-1")));
    let untouched = s.get_message(Some(&env.id), &b.id).await.unwrap().unwrap();
    assert_eq!(untouched.status, MessageStatus::Sending);
    let types = |id| {
        let s = Arc::clone(&s);
        async move {
            let q = EventQuery { message_id: Some(id), ..query() };
            s.list_events(&q).await.unwrap().into_iter().map(|e| e.event_type).collect::<Vec<_>>()
        }
    };
    assert_eq!(types(a.id).await, [EventType::Queued, EventType::Sent]);
    assert_eq!(types(b.id).await, [EventType::Queued]);
    assert_eq!(s.complete(&[], at(60)).await.unwrap(), 0);
}

async fn retry_flow(db: Database) {
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
    assert_eq!((rec.status, rec.next_attempt_at), (MessageStatus::Queued, at(30_000)));
    assert_eq!(rec.last_error.as_deref(), Some("421 try later"));
    assert_eq!(s.next_due().await.unwrap(), Some(at(30_000)));
    assert!(s.claim(1, at(29_999), lease).await.unwrap().is_empty());
    let second = s.claim(1, at(30_000), lease).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
}

async fn purge_content(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let done = message(&env.id, T0);
    let waiting = message(&env.id, at(1_000_000));
    s.enqueue(done.clone()).await.unwrap();
    s.enqueue(waiting.clone()).await.unwrap();
    let c = s.claim(1, at(0), Duration::from_secs(60)).await.unwrap().remove(0);
    s.complete(&[completion(&c, MessageStatus::Sent)], at(100)).await.unwrap();

    assert_eq!(s.purge_content(at(100)).await.unwrap(), 0, "changed exactly at the cut-off: kept");
    assert_eq!(s.purge_content(at(2_000_000)).await.unwrap(), 1, "queued messages keep their content");
    assert_eq!(s.get_content(None, &done.id).await.unwrap(), Some(StoredContent::Purged));
    assert!(s.get_message(None, &done.id).await.unwrap().unwrap().content_purged);
    assert!(matches!(s.get_content(None, &waiting.id).await.unwrap(), Some(StoredContent::Retained(_))));
    assert_eq!(s.purge_content(at(2_000_000)).await.unwrap(), 0);
    let events = s.list_events(&EventQuery { message_id: Some(done.id), ..query() }).await.unwrap();
    assert_eq!(events.len(), 2, "the event trail stays");
}

async fn list_events_filters_and_pages(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = message(&env.id, at(i * 10));
        ids.push(m.id);
        s.enqueue(m).await.unwrap();
    }
    s.enqueue(message(&other.id, at(100))).await.unwrap();
    let claimed = s.claim(1, at(0), Duration::from_secs(60)).await.unwrap().remove(0);
    s.complete(&[completion(&claimed, MessageStatus::Sent)], at(200)).await.unwrap();

    let all = s.list_events(&query()).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let mine = s.list_events(&EventQuery { environment_id: Some(env.id), ..query() }).await.unwrap();
    assert_eq!(mine.len(), 6);
    let sent = s.list_events(&EventQuery { types: vec![EventType::Sent], ..query() }).await.unwrap();
    assert_eq!(sent.iter().map(|e| e.message_id).collect::<Vec<_>>(), vec![Some(claimed.id)]);
    let both = EventQuery { types: vec![EventType::Sent, EventType::Queued], environment_id: Some(other.id), ..query() };
    assert_eq!(s.list_events(&both).await.unwrap().len(), 1);
    let since = s.list_events(&EventQuery { since: Some(at(30)), ..query() }).await.unwrap();
    assert_eq!(since.len(), 4, "created at 30, 40, 100 and 200");
    let one = s.list_events(&EventQuery { message_id: Some(ids[3]), ..query() }).await.unwrap();
    assert_eq!(one.len(), 1);

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_events(&EventQuery { after_seq: cursor, limit: 3, ..query() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        cursor = page.last().map(|e| e.seq);
        pages.extend(page);
    }
    assert_eq!(pages, all);
}

async fn capture_keeps_duplicates(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let m = message(&env.id, T0);
    let copy = |subject: &str, t| CapturedMessage {
        message_id: m.id,
        environment_id: env.id,
        content: content(subject),
        captured_at: t,
    };
    s.capture(&copy("first", at(1))).await.unwrap();
    s.capture(&copy("second", at(2))).await.unwrap();
    s.capture(&copy("third", at(3))).await.unwrap();
    let newest = s.list_captured(&env.id, 2).await.unwrap();
    assert_eq!(newest, vec![copy("third", at(3)), copy("second", at(2))]);
    assert_eq!(s.list_captured(&env.id, 10).await.unwrap().len(), 3);
    assert!(s.list_captured(&other.id, 10).await.unwrap().is_empty());
}

async fn close_refuses_later_writes(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    db.close().await;
    assert!(matches!(s.enqueue(message(&env.id, T0)).await, Err(StoreError::Unavailable(_))));
    assert!(s.ping().await.is_err());
}

/// Every event, oldest first.
fn query() -> EventQuery {
    EventQuery { environment_id: None, message_id: None, types: vec![], since: None, after_seq: None, limit: 100 }
}

/// A completion of `claimed` to `status`, with one event of the matching type.
fn completion(claimed: &mailgate_core::message::ClaimedMessage, status: MessageStatus) -> Completion {
    let event_type = EventType::parse(status.as_str()).unwrap_or(EventType::Deferred);
    Completion {
        message_id: claimed.id,
        lease_token: claimed.lease_token.clone(),
        status,
        next_attempt_at: None,
        provider: None,
        provider_message_id: None,
        last_error: None,
        events: vec![NewEvent::for_message(
            claimed.environment_id,
            claimed.id,
            event_type,
            at(200),
            serde_json::json!({ "attempt": claimed.attempt }),
        )],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_data_survives_reopen() {
    let t = TestDatabase::sqlite().await;
    let db = t.open().await;
    assert_eq!(db.backend(), Backend::Sqlite);
    let env = environment(&*db.storage(), "default").await;
    let m = message(&env.id, T0);
    db.storage().enqueue(m.clone()).await.unwrap();
    db.close().await;
    drop(db);

    let db = t.open().await;
    let rec = db.storage().get_message(Some(&env.id), &m.id).await.unwrap().unwrap();
    assert_eq!(rec.status, MessageStatus::Queued);
    assert_eq!(db.storage().find_environment("default").await.unwrap().map(|e| e.id), Some(env.id));
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations_are_safe() {
    let t = TestDatabase::postgres().await;
    let options = StoreOptions::default();
    let a = Database::connect(&t.url, &options).await.unwrap();
    let b = Database::connect(&t.url, &options).await.unwrap();
    assert_eq!(a.backend(), Backend::Postgres);
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    a.storage().ping().await.unwrap();
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn refuses_unknown_urls() {
    let err = Database::connect("mysql://localhost/x", &StoreOptions::default()).await.unwrap_err();
    assert!(matches!(err, mailgate_store::OpenError::InvalidUrl(_)));
}

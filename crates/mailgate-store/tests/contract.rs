//! The storage contract: every test runs on a real SQLite file (`sqlite::…`) and on a fresh
//! PostgreSQL database (`postgres::…`, server at `MAILGATE_TEST_POSTGRES_URL`).
mod cases;
mod sqlite_only;
mod support;

use mailgate_core::event::{EventQuery, EventType};
use mailgate_core::message::MessageStatus;
use mailgate_store::{Backend, Database, DeferredEventIndex, DeferredRecipients, StoreOptions};
use mailgate_testkit::db::TestDatabase;
use support::*;

/// Generates `sqlite::NAME` and `postgres::NAME` for each contract test `NAME(Database)`; an
/// entry marked `(second)` is `NAME(Database, Database)`, the second a store of its own (its own
/// pools) opened on the same database, as another process would.
macro_rules! contract {
    ($($module:ident :: $name:ident $(($second:ident))?),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = mailgate_testkit::db::TestDatabase::sqlite().await;
                    let db = t.open().await;
                    run_case!(t, db, $module::$name $(, $second)?);
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
                    run_case!(t, db, $module::$name $(, $second)?);
                    db.close().await;
                }
            )*
        }
    };
}

/// Calls one contract test body with one store, or with two on the same database.
macro_rules! run_case {
    ($t:ident, $db:ident, $module:ident :: $name:ident) => {
        crate::cases::$module::$name($db.clone()).await
    };
    ($t:ident, $db:ident, $module:ident :: $name:ident, second) => {{
        let second = $t.open().await;
        crate::cases::$module::$name($db.clone(), second.clone()).await;
        second.close().await;
    }};
}

contract!(
    accounts::ping_and_migrate_again,
    accounts::environments_crud,
    accounts::delete_environment_cascades,
    accounts::api_keys,
    accounts::other_processes_see_writes_within_the_cache_ttl(second),
    messages::enqueue_and_read,
    messages::idempotency_replay_and_conflict,
    messages::concurrent_same_key_creates_once,
    messages::group_commit_under_concurrency,
    messages::enqueue_to_missing_environment_fails_alone,
    messages::enqueue_refuses_suppressed_recipients,
    messages::suppressions_refuse_only_their_messages_in_a_batch,
    queue::claim_due_messages,
    queue::concurrent_claimers_never_share,
    queue::expired_lease_is_reclaimed_and_fences_old_worker,
    queue::complete_applies_and_skips_stale_tokens,
    queue::retry_flow,
    queue::due_retries_go_ahead_of_later_first_attempts,
    messages::purge_content,
    events::list_events_filters_and_pages,
    events::capture_keeps_duplicates,
    accounts::provider_configs,
    accounts::close_refuses_later_writes,
    templates::templates_crud,
    templates::settings_roundtrip,
    templates::delivery_options_reach_the_claim,
    templates::organization_and_sandbox_reach_the_claim,
    templates::final_state_redacts_secrets,
    inbound::provider_events_dedupe_match_and_advance,
    inbound::provider_event_batches,
    inbound::a_panic_while_recording_fails_only_its_batch,
    inbound::suppressions_crud,
    limits::a_bucket_allows_its_burst_then_waits,
    limits::stores_share_a_bucket(second),
    limits::concurrent_takers_never_double_take(second),
    limits::recent_sends_to_one_address,
);

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
    let rec = db
        .storage()
        .get_message(Some(&env.id), &m.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, MessageStatus::Queued);
    assert_eq!(
        db.storage()
            .find_environment("default")
            .await
            .unwrap()
            .map(|e| e.id),
        Some(env.id)
    );
    db.close().await;
}

/// On a SQLite file the accepting commit leaves recipients pending and the enqueue writer seals
/// them into sorted runs and merges those into the index (migrations 0011, 0013): readers find
/// each send exactly once, before, during and after, and after a restart with rows still
/// pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recipients_are_found_once_while_pending_and_once_indexed() {
    let t = TestDatabase::sqlite().await;
    let path = t.url.trim_start_matches("sqlite://").to_owned();
    // Every batch defers its recipients; runs of 16 while sends wait (merged past two runs), of
    // 1 when none does.
    let small_chunks = StoreOptions {
        deferred_recipients: DeferredRecipients {
            from_batch: 1,
            move_chunk: 16,
            max_runs: 2,
        },
        ..StoreOptions::default()
    };
    let db = t.open_with(&small_chunks).await;
    let s = db.storage();
    let env = environment(&*s, "default").await;
    // The sends to `address`, newest first, are exactly those of `at(0)` to `at(n - 1)`.
    let found_once = |s: std::sync::Arc<dyn mailgate_core::store::Storage>, address, n: i64| async move {
        let found = s
            .recent_sends_to(&env.id, address, None, T0, 1000)
            .await
            .unwrap();
        assert_eq!(found, (0..n).rev().map(at).collect::<Vec<_>>(), "{address}");
    };
    // 300 messages to a@ with b@ in cc, concurrently: batches of many, runs sealed between them.
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move { s.enqueue(message(&env.id, at(i))).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // How many were sealed or merged by now depends on how the sends fell into batches (the
    // steps themselves are tested in `direct::recipients`); every recipient is somewhere, once.
    let (indexed, waiting) = recipient_rows(&path, None).await;
    assert_eq!(indexed + waiting, 600, "every recipient is stored once");
    found_once(s.clone(), "a@example.com", 300).await;
    found_once(s.clone(), "b@example.com", 300).await;
    // A few sends, one at a time; then, with no send waiting, the writer drains what is pending.
    for i in 300..310 {
        s.enqueue(message(&env.id, at(i))).await.unwrap();
    }
    assert_eq!(drained(&path).await, 620);
    found_once(s.clone(), "a@example.com", 310).await;
    let newest = s
        .recipient_messages(&env.id, "b@example.com", 5)
        .await
        .unwrap();
    let times: Vec<_> = newest.iter().map(|r| r.message.created_at).collect();
    assert_eq!(times, (305..310).rev().map(at).collect::<Vec<_>>());
    db.close().await;
    drop(db);

    // As if the process had stopped before moving them: the last 20 recipients pending again.
    let moved_back = "INSERT INTO message_recipients_pending \
         (environment_id, address, created_at, message_id, usage_type) \
         SELECT environment_id, address, created_at, message_id, usage_type \
         FROM message_recipients WHERE created_at >= ?1; \
         DELETE FROM message_recipients WHERE created_at >= ?1;";
    assert_eq!(
        recipient_rows(&path, Some((moved_back, at(300).0))).await,
        (600, 20)
    );
    // A restart finds them at once, counts them when its writer opens, and moves them.
    let db = t.open_with(&small_chunks).await;
    let s = db.storage();
    found_once(s.clone(), "b@example.com", 310).await;
    for i in 310..320 {
        s.enqueue(message(&env.id, at(i))).await.unwrap();
    }
    assert_eq!(drained(&path).await, 640);
    found_once(s.clone(), "b@example.com", 320).await;
    db.close().await;
}

/// On a SQLite file every event after `queued` enters the per-message index after the fact
/// (migration 0012): a message's events are found exactly once while pending, after a restart,
/// and once the indexer has moved them; deleting the environment removes both kinds of entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_message_events_are_found_once_while_pending_and_once_indexed() {
    let t = TestDatabase::sqlite().await;
    let path = t.url.trim_start_matches("sqlite://").to_owned();
    let tables = ["message_events", "message_events_pending"];
    // An indexer that does not move anything for the first part.
    let held = StoreOptions {
        deferred_event_index: DeferredEventIndex {
            tick: std::time::Duration::from_secs(3600),
            ..DeferredEventIndex::default()
        },
        ..StoreOptions::default()
    };
    let db = t.open_with(&held).await;
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let m = message(&env.id, at(i));
        ids.push(m.id);
        s.enqueue(m).await.unwrap();
    }
    let claimed = s
        .claim(40, at(100), std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 40);
    let sent: Vec<_> = claimed
        .iter()
        .map(|c| completion(c, MessageStatus::Sent))
        .collect();
    s.complete(&sent, at(200)).await.unwrap();
    assert_eq!(row_counts(&path, None, tables).await, (0, 40));
    // Each message's events, in order, once: `queued` on the log's index, `sent` pending.
    let timeline = |s: std::sync::Arc<dyn mailgate_core::store::Storage>, ids: Vec<_>| async move {
        for id in ids {
            for env_filter in [None, Some(env.id)] {
                let events = s
                    .list_events(&EventQuery {
                        environment_id: env_filter,
                        message_id: Some(id),
                        ..query()
                    })
                    .await
                    .unwrap();
                let kinds: Vec<_> = events
                    .iter()
                    .map(|e| (e.message_id, e.event_type))
                    .collect();
                assert_eq!(
                    kinds,
                    [(Some(id), EventType::Queued), (Some(id), EventType::Sent)]
                );
            }
        }
    };
    timeline(s.clone(), ids.clone()).await;
    // A move stopped between indexing and deleting leaves entries indexed and still pending:
    // still found once (readers ask by set membership).
    let indexed_too = "INSERT INTO message_events (message_id, seq) \
         SELECT message_id, seq FROM message_events_pending WHERE seq > ?1";
    assert_eq!(
        row_counts(&path, Some((indexed_too, 0)), tables).await,
        (40, 40)
    );
    timeline(s.clone(), ids.clone()).await;
    // Another environment's key sees none of them.
    let foreign = s
        .list_events(&EventQuery {
            environment_id: Some(other.id),
            message_id: Some(ids[0]),
            ..query()
        })
        .await
        .unwrap();
    assert!(foreign.is_empty());
    db.close().await;
    drop(db);

    // A restart with an indexer that moves slices of 8 as soon as the log is quiet.
    let quick = StoreOptions {
        deferred_event_index: DeferredEventIndex {
            tick: std::time::Duration::from_millis(10),
            high_water: 16,
            slice: 8,
            max_wait: std::time::Duration::from_secs(1),
            max_runs: 64,
        },
        ..StoreOptions::default()
    };
    let db = t.open_with(&quick).await;
    let s = db.storage();
    timeline(s.clone(), ids.clone()).await;
    let mut counts = (0, 0);
    for _ in 0..500 {
        counts = row_counts(&path, None, tables).await;
        if counts.1 == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(counts, (40, 0), "every entry indexed once");
    timeline(s.clone(), ids.clone()).await;
    // Deleting the environment takes its entries along, indexed or pending.
    s.enqueue(message(&env.id, at(300))).await.unwrap();
    let more = s
        .claim(1, at(400), std::time::Duration::from_secs(60))
        .await
        .unwrap();
    s.complete(&[completion(&more[0], MessageStatus::Sent)], at(500))
        .await
        .unwrap();
    assert!(s.delete_environment(&env.id).await.unwrap());
    assert_eq!(row_counts(&path, None, tables).await, (0, 0));
    db.close().await;
}

/// Rows in `message_recipients`, and waiting outside it (pending or in runs), of the SQLite
/// file at `path`, after running `sql` (with `?1` bound) on it.
async fn recipient_rows(path: &str, sql: Option<(&'static str, i64)>) -> (i64, i64) {
    row_counts(
        path,
        sql,
        [
            "message_recipients",
            "(SELECT seq FROM message_recipients_pending \
              UNION ALL SELECT run FROM message_recipient_runs)",
        ],
    )
    .await
}

/// Rows of the two `tables` (or subqueries) of the SQLite file at `path`, read in one
/// transaction, after running `sql` (with `?1` bound) on it.
async fn row_counts(
    path: &str,
    sql: Option<(&'static str, i64)>,
    tables: [&'static str; 2],
) -> (i64, i64) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let c = rusqlite::Connection::open(path).unwrap();
        if let Some((sql, value)) = sql {
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                c.execute(statement, [value]).unwrap();
            }
        }
        let count = |table: &str| -> i64 {
            c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        // One snapshot for both: the writer moves rows from one to the other in the background
        // (after it has answered the sends), and a move committed between two separate reads
        // made rows vanish from the sum.
        c.execute_batch("BEGIN").unwrap();
        let counts = (count(tables[0]), count(tables[1]));
        c.execute_batch("COMMIT").unwrap();
        counts
    })
    .await
    .unwrap()
}

/// Waits until the writer has moved every pending recipient of the SQLite file at `path`, and
/// returns how many are indexed.
async fn drained(path: &str) -> i64 {
    for _ in 0..500 {
        let (indexed, waiting) = recipient_rows(path, None).await;
        if waiting == 0 {
            return indexed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "recipients were not indexed: {:?}",
        recipient_rows(path, None).await
    );
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
    let err = Database::connect("mysql://localhost/x", &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, mailgate_store::OpenError::InvalidUrl(_)));
}

/// A status move that waited for another transaction's change of the same message acts on the
/// status the message has after it: a hard bounce recorded while a delivery holds the message's
/// row still bounces it. PostgreSQL re-checks a waiting update on the row it had joined; with one
/// row per status the message could be moved from, the `sent` row no longer matched and the
/// `delivered` one was never looked at (the message stayed `delivered`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_status_move_that_waited_acts_on_the_new_status() {
    use std::time::Duration;

    use mailgate_core::address::EmailAddress;
    use mailgate_core::event::NewEvent;
    use mailgate_core::inbound::{BounceType, ProviderEvent};
    use mailgate_core::store::{InboundRecord, RecordOutcome};
    use sqlx::Connection;

    let t = TestDatabase::postgres().await;
    let db = t.open().await;
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let id = sent_message(&*s, &env.id, None, None).await;

    // Another transaction delivers the message and holds its row.
    let mut other = sqlx::PgConnection::connect(&t.url).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    sqlx::query("UPDATE messages SET status = 'delivered' WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();

    let recorder = std::sync::Arc::clone(&s);
    let env_id = env.id;
    let bounce = tokio::spawn(async move {
        let event = ProviderEvent {
            provider: "postmark".into(),
            provider_event_id: "b-1".into(),
            provider_message_id: None,
            message_id: Some(id),
            event_type: EventType::Bounced,
            bounce_type: Some(BounceType::Hard),
            recipient: Some(EmailAddress::parse("a@example.com").unwrap()),
            occurred_at: at(200),
            detail: serde_json::json!({}),
        };
        let log = NewEvent::for_message(
            env_id,
            id,
            EventType::Bounced,
            at(200),
            serde_json::json!({}),
        );
        let record = InboundRecord {
            event: &event,
            new_event: &log,
        };
        recorder.record_inbound(&[record], at(200)).await.unwrap()
    });
    // The bounce waits for the row.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !bounce.is_finished(),
        "the bounce waits for the delivery's transaction"
    );
    tx.commit().await.unwrap();
    assert_eq!(bounce.await.unwrap(), [RecordOutcome::Recorded]);
    assert_eq!(
        s.get_message(None, &id).await.unwrap().unwrap().status,
        MessageStatus::Bounced
    );
    db.close().await;
}

//! The storage contract: every test runs on a real SQLite file (`sqlite::…`) and on a fresh
//! PostgreSQL database (`postgres::…`, server at `MAILGATE_TEST_POSTGRES_URL`).
mod cases;
mod support;

use mailgate_core::message::MessageStatus;
use mailgate_store::{Backend, Database, StoreOptions};
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

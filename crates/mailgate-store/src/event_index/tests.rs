//! The event indexer's steps on a real SQLite file, and its policy.

use std::time::Duration;

use mailgate_core::ids::EnvironmentId;
use sqlx::SqlitePool;
use tempfile::TempDir;
use tokio::sync::watch;

use super::*;
use crate::pools::Pools;
use crate::test_file::{assert_searches, query_plan};
use crate::{Database, StoreOptions};

/// A migrated SQLite file whose store's indexer never looks; its pools; an environment.
async fn file() -> (TempDir, Database, SqlitePool, SqlitePool, EnvironmentId) {
    let options = StoreOptions {
        deferred_event_index: DeferredEventIndex {
            tick: Duration::from_secs(3600),
            ..DeferredEventIndex::default()
        },
        ..StoreOptions::default()
    };
    let (dir, _, db, env) = crate::test_file::migrated_file(&options).await;
    let Pools::Sqlite { read, write } = db.store.pools() else {
        unreachable!("a SQLite file")
    };
    let (read, write) = (read.clone(), write.clone());
    (dir, db, read, write, env)
}

/// A message of `env`, as few columns as the table needs.
async fn message(write: &SqlitePool, env: EnvironmentId, id: &str) {
    sqlx::query(
        "INSERT INTO messages (id, environment_id, status, tags, metadata, attempts, \
         max_attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, 'sent', '[]', '{}', 1, 3, 0, 0, 0)",
    )
    .bind(id)
    .bind(env.to_string())
    .execute(write)
    .await
    .unwrap();
}

/// A `delivered` event about `message`, its index entry pending (as the writers leave it);
/// its seq.
async fn event(write: &SqlitePool, env: EnvironmentId, message: &str) -> i64 {
    let mut tx = write.begin().await.unwrap();
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (id, environment_id, message_id, type, created_at, data) \
         VALUES (lower(hex(randomblob(16))), $1, $2, 'delivered', 0, '{}') RETURNING seq",
    )
    .bind(env.to_string())
    .bind(message)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO message_events_pending (seq, environment_id, message_id) \
         VALUES ($1, $2, $3)",
    )
    .bind(seq)
    .bind(env.to_string())
    .bind(message)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    seq
}

/// The seqs of `message`'s events that readers find, in the shape `list_events` asks.
async fn found(read: &SqlitePool, message: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT seq FROM events WHERE message_id = $1 AND seq IN \
         (SELECT seq FROM message_event_seqs WHERE message_id = $1) ORDER BY seq",
    )
    .bind(message)
    .fetch_all(read)
    .await
    .unwrap()
}

/// (index, run entries, listed runs, pending) of the file.
async fn places(read: &SqlitePool) -> [i64; 4] {
    let mut out = [0; 4];
    for (n, table) in [
        "message_events",
        "message_event_runs",
        "message_event_run_ids",
        "message_events_pending",
    ]
    .iter()
    .enumerate()
    {
        out[n] = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(read)
            .await
            .unwrap();
    }
    out
}

/// Pending entries are sealed into runs and runs merged into the index a slice at a time;
/// at every step each message's events are found, each once; runs are probed by their key;
/// entries already indexed (by another process) are skipped; deleting the environment
/// deletes its entries wherever they are.
#[tokio::test]
async fn runs_are_sealed_merged_and_read_once() {
    let (_dir, db, read, write, env) = file().await;
    let ids = ["m0", "m1", "m2"];
    for id in ids {
        message(&write, env, id).await;
    }
    let mut seqs: Vec<Vec<i64>> = vec![Vec::new(); 3];
    for i in 0..12 {
        seqs[i % 3].push(event(&write, env, ids[i % 3]).await);
    }
    let all_found = || async {
        for (id, expected) in ids.iter().zip(&seqs) {
            assert_eq!(&found(&read, id).await, expected, "{id}");
        }
    };
    assert_eq!(places(&read).await, [0, 0, 0, 12]);
    all_found().await;

    // The first eight into run 1, the rest into run 2.
    assert_eq!(seal(&write, seqs[1][2]).await.unwrap(), 1);
    assert_eq!(places(&read).await, [0, 8, 1, 4]);
    all_found().await;
    assert_eq!(seal(&write, seqs[2][3]).await.unwrap(), 2);
    assert_eq!(places(&read).await, [0, 12, 2, 0]);
    all_found().await;

    let list = "SELECT seq FROM events WHERE message_id = $1 AND seq IN \
         (SELECT seq FROM message_event_seqs WHERE message_id = $2)";
    let read_plan = query_plan(&read, list, 2).await;
    assert_searches(&read_plan, "message_event_runs", "PRIMARY KEY");
    let slice_plan = query_plan(
        &read,
        &DELETE_SLICE.replace("$1", "1").replace("$3", "1"),
        1,
    )
    .await;
    assert!(
        slice_plan[0]
            .starts_with("SEARCH message_event_runs USING PRIMARY KEY (run=? AND (message_id,"),
        "{slice_plan:?}"
    );

    // Run 1 merged three entries per transaction, then unlisted.
    let (_stop, stopped) = watch::channel(false);
    assert_eq!(merge_oldest(&read, &write, 3, &stopped).await.unwrap(), 8);
    assert_eq!(places(&read).await, [8, 4, 1, 0]);
    all_found().await;
    // One of run 2's entries indexed elsewhere meanwhile: skipped, not an error.
    sqlx::query("INSERT INTO message_events (message_id, seq) VALUES ('m2', $1)")
        .bind(seqs[2][3])
        .execute(&write)
        .await
        .unwrap();
    assert_eq!(merge_oldest(&read, &write, 3, &stopped).await.unwrap(), 3);
    assert_eq!(places(&read).await, [12, 0, 0, 0]);
    all_found().await;
    assert_eq!(merge_oldest(&read, &write, 3, &stopped).await.unwrap(), 0);

    // A run, an entry pending and the index: all go with the environment.
    event(&write, env, "m0").await;
    seal(&write, i64::MAX).await.unwrap();
    event(&write, env, "m1").await;
    assert_eq!(places(&read).await, [12, 1, 1, 1]);
    assert!(db.storage().delete_environment(&env).await.unwrap());
    assert_eq!(places(&read).await, [0, 0, 1, 0]);
    db.close().await;
}

/// A run whose message was deleted after the seal: its entries are dropped by the merge.
#[tokio::test]
async fn a_merge_drops_entries_of_messages_gone() {
    let (_dir, db, read, write, env) = file().await;
    message(&write, env, "m0").await;
    message(&write, env, "m1").await;
    event(&write, env, "m0").await;
    event(&write, env, "m1").await;
    seal(&write, i64::MAX).await.unwrap();
    sqlx::query("DELETE FROM messages WHERE id = 'm1'")
        .execute(&write)
        .await
        .unwrap();
    let (_stop, stopped) = watch::channel(false);
    assert_eq!(merge_oldest(&read, &write, 8, &stopped).await.unwrap(), 1);
    assert_eq!(places(&read).await, [1, 0, 0, 0]);
    db.close().await;
}

/// What the indexer does at one look.
#[test]
fn steps_follow_the_policy() {
    let policy = DeferredEventIndex {
        high_water: 100,
        max_runs: 4,
        ..DeferredEventIndex::default()
    };
    let state = |pending: usize, runs: usize| State {
        pending,
        newest_pending: (pending > 0).then_some(7),
        newest_event: 9,
        runs,
    };
    // Quiet: pending straight into the index, then a run merged.
    assert_eq!(
        steps_due(&policy, state(5, 2), true, false),
        [Step::Move(7), Step::Merge]
    );
    assert_eq!(steps_due(&policy, state(0, 1), true, false), [Step::Merge]);
    assert_eq!(steps_due(&policy, state(0, 0), true, false), []);
    // Events coming: a few pending wait; a high-water mark of them is sealed.
    assert_eq!(steps_due(&policy, state(99, 4), false, false), []);
    assert_eq!(
        steps_due(&policy, state(100, 4), false, false),
        [Step::Seal(7)]
    );
    // A trickle waited long enough: moved; a full mark is still sealed.
    assert_eq!(
        steps_due(&policy, state(3, 0), false, true),
        [Step::Move(7)]
    );
    assert_eq!(
        steps_due(&policy, state(150, 0), false, true),
        [Step::Seal(7)]
    );
    // Too many runs: merged while events come.
    assert_eq!(
        steps_due(&policy, state(100, 5), false, false),
        [Step::Seal(7), Step::Merge]
    );
}

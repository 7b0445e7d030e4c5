//! Appending events straight into a test database, as the provider-webhook ingestion would, to
//! drive reputation and feeds without a provider.

use mailgate_core::event::NewEvent;
use sqlx::{Connection, PgConnection, SqliteConnection};

const INSERT: &str = "INSERT INTO events (id, environment_id, message_id, type, created_at, data) \
                      VALUES ($1, $2, $3, $4, $5, $6)";

/// On SQLite, the per-message index entries of the events just appended (not `queued`) wait in
/// `message_events_pending`, as the store's writers leave them (its migration 0012).
const PENDING: &str = "INSERT INTO message_events_pending (seq, environment_id, message_id) \
                       SELECT seq, environment_id, message_id FROM events \
                       WHERE seq > $1 AND message_id IS NOT NULL AND type <> 'queued'";

/// Appends `events` in one transaction to the database at `url`.
pub async fn append_events(url: &str, events: &[NewEvent]) {
    macro_rules! insert_all {
        ($begin:expr, $sqlite:expr) => {{
            let mut tx = $begin.await.expect("begin");
            let before: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM events")
                .fetch_one(&mut *tx)
                .await
                .expect("newest event");
            for e in events {
                sqlx::query(INSERT)
                    .bind(e.id.to_string())
                    .bind(e.environment_id.to_string())
                    .bind(e.message_id.map(|m| m.to_string()))
                    .bind(e.event_type.as_str())
                    .bind(e.created_at.0)
                    .bind(e.data.to_string())
                    .execute(&mut *tx)
                    .await
                    .expect("insert event");
            }
            if $sqlite {
                sqlx::query(PENDING)
                    .bind(before)
                    .execute(&mut *tx)
                    .await
                    .expect("pending index entries");
            }
            tx.commit().await.expect("commit");
        }};
    }
    if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url)
            .await
            .expect("connect SQLite");
        sqlx::query("PRAGMA busy_timeout = 5000")
            .execute(&mut conn)
            .await
            .expect("busy timeout");
        // Immediate: the write lock from the start, so no other writer's events come between
        // the newest seq read and the inserts.
        insert_all!(conn.begin_with("BEGIN IMMEDIATE"), true);
    } else {
        let mut conn = PgConnection::connect(url)
            .await
            .expect("connect PostgreSQL");
        insert_all!(conn.begin(), false);
    }
}

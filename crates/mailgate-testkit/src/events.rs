//! Appending events straight into a test database, as the provider-webhook ingestion would, to
//! drive reputation and feeds without a provider.

use mailgate_core::event::NewEvent;
use sqlx::{Connection, PgConnection, SqliteConnection};

const INSERT: &str = "INSERT INTO events (id, environment_id, message_id, type, created_at, data) \
                      VALUES ($1, $2, $3, $4, $5, $6)";

/// Appends `events` in one transaction to the database at `url`.
pub async fn append_events(url: &str, events: &[NewEvent]) {
    macro_rules! insert_all {
        ($conn:expr) => {{
            let mut tx = $conn.begin().await.expect("begin");
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
        insert_all!(conn);
    } else {
        let mut conn = PgConnection::connect(url)
            .await
            .expect("connect PostgreSQL");
        insert_all!(conn);
    }
}

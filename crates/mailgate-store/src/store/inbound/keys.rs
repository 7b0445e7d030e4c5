//! Provider events' deduplication keys on SQLite (migration 0017): the provider's time, and 16
//! bytes of SHA-256 over the environment, the provider and the provider's event id — a row a
//! quarter the size of the columns themselves, so that a second's events, inserted in random
//! order of their ids, dirty a quarter as many pages.

use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::pools::BeginWrite;

/// A provider event's key: the first 16 bytes of SHA-256 over its environment, provider and
/// event id, each length-prefixed so that no two triples run together.
pub(crate) fn event_key(environment_id: &str, provider: &str, provider_event_id: &str) -> [u8; 16] {
    let mut hash = Sha256::new();
    for part in [environment_id, provider, provider_event_id] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// Stores a key (`?1` the provider's time, `?2` the key) unless it is there; one row changed
/// says the event is new.
pub(crate) const INSERT_KEY: &str = "INSERT INTO provider_event_keys (occurred_at, key) \
     VALUES (?1, ?2) ON CONFLICT DO NOTHING";

/// A soft bounce the soft-bounce rule counts (`?1` environment, `?2` address, `?3` time).
pub(crate) const INSERT_SOFT_BOUNCE: &str =
    "INSERT INTO soft_bounces (environment_id, address, occurred_at) VALUES (?1, ?2, ?3)";

/// Rows of the old `provider_events` converted per transaction.
const CONVERT_CHUNK: i64 = 4_096;

/// Gives the rows left in the old `provider_events` table (migration 0015's) their keys and
/// deletes them, a chunk per transaction, so that a retry of an event recorded before the
/// upgrade is still known. Their soft bounces were copied by the migration. Returns how many
/// it converted; a run stopped halfway resumes where it stopped.
pub(crate) async fn convert_old_rows(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    // Nearly always none: asked without the write lock, so that a process starting beside a
    // busy writer does not wait for it to learn so.
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM provider_events)")
        .fetch_one(pool)
        .await?;
    if !any {
        return Ok(0);
    }
    let mut converted = 0u64;
    loop {
        // Another process may be writing: the lock first, then the read.
        let mut tx = pool.begin_write().await?;
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT environment_id, provider, occurred_at, provider_event_id \
             FROM provider_events ORDER BY 1, 2, 3, 4 LIMIT ?1",
        )
        .bind(CONVERT_CHUNK)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().cloned() else {
            return Ok(converted);
        };
        for (env, provider, at, id) in &rows {
            sqlx::query(INSERT_KEY)
                .bind(at)
                .bind(&event_key(env, provider, id)[..])
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "DELETE FROM provider_events \
             WHERE (environment_id, provider, occurred_at, provider_event_id) <= (?1, ?2, ?3, ?4)",
        )
        .bind(last.0)
        .bind(last.1)
        .bind(last.2)
        .bind(last.3)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        converted += rows.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::event_key;

    #[test]
    fn keys_of_different_events_differ() {
        let keys = [
            event_key("e1", "p", "x"),
            event_key("e1", "px", ""),
            event_key("e1p", "", "x"),
            event_key("e", "1p", "x"),
            event_key("e1", "p", "x "),
            event_key("e2", "p", "x"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(event_key("e1", "p", "x"), event_key("e1", "p", "x"));
    }
}

//! The queue's writes on a SQLite file, as the writer thread runs them on its own connection
//! (`group_commit`): a claim, or a batch of completions, is one job of the writer's turn, in
//! the transaction that also stores the sends waiting then.
//!
//! Through sqlx each was a transaction of its own on the process's write connection: every
//! statement a round trip to that connection's thread, every commit a sync of the log, and a
//! wait for the connection behind the enqueue writer's turns. End to end, the messages are
//! written three times (accepted, claimed, completed) by one connection; sharing the writer's
//! turn and its commit is what lets a delivered message cost one sync instead of three.

use std::collections::HashSet;
use std::sync::LazyLock;

use mailgate_core::store::Completion;
use mailgate_core::Timestamp;
use rusqlite::{params, Connection};

use super::{complete_sql, completion_rows, redacted, sqlite_claim_sql};
use crate::rows::ClaimRow;
use crate::store::events::direct::{append_events_on, numbered, EventColumns};
use crate::store::events::SQLITE_JSON_ROWS;

static CLAIM: LazyLock<String> = LazyLock::new(|| numbered(&sqlite_claim_sql()));
static COMPLETE: LazyLock<String> = LazyLock::new(|| numbered(&complete_sql(SQLITE_JSON_ROWS)));

/// A claim, ready for the writer.
pub(crate) struct ClaimJob {
    limit: i64,
    now: i64,
    locked_until: i64,
    token: String,
}

impl ClaimJob {
    pub(crate) fn new(limit: u32, now: Timestamp, locked_until: Timestamp, token: String) -> Self {
        Self {
            limit: i64::from(limit),
            now: now.0,
            locked_until: locked_until.0,
            token,
        }
    }
}

/// Claims as `QueueStore::claim` (the sqlx form's statement).
pub(crate) fn claim_on(conn: &Connection, job: &ClaimJob) -> rusqlite::Result<Vec<ClaimRow>> {
    let mut claim = conn.prepare_cached(&CLAIM)?;
    let rows = claim.query_map(
        params![job.now, job.limit, job.locked_until, job.token],
        ClaimRow::from_sqlite,
    )?;
    rows.collect()
}

/// A batch of completions, serialized for the writer.
pub(crate) struct CompleteJob {
    /// `completion_rows`: the JSON array the update reads.
    rows: String,
    now: i64,
    /// Each completion's message, whether the outcome ends its time in the queue, and the
    /// events it appends if its lease still holds; in the batch's order.
    messages: Vec<(String, bool, Vec<EventColumns>)>,
}

impl CompleteJob {
    pub(crate) fn new(completions: &[Completion], now: Timestamp) -> Self {
        Self {
            rows: completion_rows(completions),
            now: now.0,
            messages: completions
                .iter()
                .map(|c| {
                    (
                        c.message_id.to_string(),
                        c.status.is_final_for_queue(),
                        c.events.iter().map(EventColumns::from).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// Records completions as `QueueStore::complete`: those whose lease still holds change their
/// message and append their events; a message done with the queue has its secrets redacted.
/// Returns how many applied.
pub(crate) fn complete_on(conn: &Connection, job: &CompleteJob) -> rusqlite::Result<usize> {
    let changed: Vec<(String, Option<String>)> = conn
        .prepare_cached(&COMPLETE)?
        .query_map(params![job.rows, job.now], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let done: HashSet<&str> = job
        .messages
        .iter()
        .filter(|(_, done, _)| *done)
        .map(|(id, _, _)| id.as_str())
        .collect();
    let mut applied = HashSet::with_capacity(changed.len());
    for (id, secrets) in changed {
        if let (Some(secrets), true) = (secrets, done.contains(id.as_str())) {
            redact_secrets(conn, &id, &secrets)?;
        }
        applied.insert(id);
    }
    let events = job
        .messages
        .iter()
        .filter(|(id, _, _)| applied.contains(id))
        .flat_map(|(_, _, events)| events);
    append_events_on(conn, events)?;
    Ok(applied.len())
}

/// Removes the message's secrets (a JSON array of strings) from its stored content and its
/// captured copies, and forgets them: a delivered sign-in code is not kept.
fn redact_secrets(conn: &Connection, id: &str, secrets: &str) -> rusqlite::Result<()> {
    let secrets: Vec<String> = serde_json::from_str(secrets).map_err(decode)?;
    let content: Option<String> = conn
        .prepare_cached("SELECT content FROM messages WHERE id = ?1")?
        .query_row([id], |row| row.get(0))?;
    let content = content
        .map(|c| redacted(&c, &secrets))
        .transpose()
        .map_err(decode)?;
    conn.prepare_cached("UPDATE messages SET content = ?1, secrets = NULL WHERE id = ?2")?
        .execute(params![content, id])?;
    let captured: Vec<(i64, String)> = conn
        .prepare_cached("SELECT seq, content FROM captured_messages WHERE message_id = ?1")?
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (seq, c) in captured {
        conn.prepare_cached("UPDATE captured_messages SET content = ?1 WHERE seq = ?2")?
            .execute(params![redacted(&c, &secrets).map_err(decode)?, seq])?;
    }
    Ok(())
}

/// A stored value that does not parse: the job is refused as corrupt data.
fn decode(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::test_file::migrated_file;
    use crate::StoreOptions;

    /// The claim is compiled once, not on every run: SQLite (3.54) plans a `LIMIT` bound to a
    /// bare parameter with the value bound, and compiles the statement again each time that
    /// parameter is bound — every claim. It ran on the writer's thread, the one every send
    /// waits for (3 % of the gateway's CPU end to end, `perf`).
    #[tokio::test]
    async fn the_claim_is_compiled_once() {
        let (_dir, path, db, _) = migrated_file(&StoreOptions::default()).await;
        let conn = Connection::open(&path).unwrap();
        for (limit, now) in [(64, 1), (3, 2), (64, 3), (1, 4)] {
            let job = ClaimJob::new(limit, Timestamp(now), Timestamp(now + 60_000), "t".into());
            assert!(claim_on(&conn, &job).unwrap().is_empty());
        }
        let claim = conn.prepare_cached(&CLAIM).unwrap();
        assert_eq!(claim.get_status(StatementStatus::RePrepare), 0);
        db.close().await;
    }
}

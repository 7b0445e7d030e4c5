//! The queue's writes on a SQLite file, as the writer thread runs them on its own connection
//! (`group_commit`): a claim, or a batch of completions, is one job of the writer's turn, in
//! the transaction that also stores the sends waiting then.
//!
//! Through sqlx each was a transaction of its own on the process's write connection: every
//! statement a round trip to that connection's thread, every commit a sync of the log, and a
//! wait for the connection behind the enqueue writer's turns. End to end, the messages are
//! written three times (accepted, claimed, completed) by one connection; sharing the writer's
//! turn and its commit is what lets a delivered message cost one sync instead of three.

use std::sync::LazyLock;

use mailgate_core::store::Completion;
use mailgate_core::Timestamp;
use rusqlite::{params, Connection};

use super::{redacted, sqlite_claim_sql};
use crate::rows::ClaimRow;
use crate::store::events::direct::{append_events_on, numbered, EventColumns};

static CLAIM: LazyLock<String> = LazyLock::new(|| numbered(&sqlite_claim_sql()));

/// One completion, fenced by its lease token: the update `complete_sql` makes for each row of
/// its JSON array, with the row's fields bound instead. The writer's statements cost no round
/// trip, so the array (there to make a batch one statement through sqlx or over the network)
/// only added work: serializing it, then SQLite's `->>` parsing it again for each of seven
/// fields of each row (~25,000 instructions per delivered message, `instructions.sh E2E=1`).
/// No `RETURNING`: SQLite runs it as a trigger filling a temporary table, which makes the
/// statement a multi-row write that copies every page it changes into a statement journal
/// first; the secrets are read apart (`SECRETS`), for the messages that need them.
const COMPLETE_ONE: &str = "UPDATE messages SET status = ?1, \
     next_attempt_at = COALESCE(?2, next_attempt_at), provider = COALESCE(?3, provider), \
     provider_message_id = COALESCE(?4, provider_message_id), last_error = ?5, \
     locked_until = NULL, lease_token = NULL, updated_at = ?6 \
     WHERE id = ?7 AND lease_token = ?8";

/// The secrets of a message whose completion ends its time in the queue.
const SECRETS: &str = "SELECT secrets FROM messages WHERE id = ?1";

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

/// A batch of completions, in the form the writer binds.
pub(crate) struct CompleteJob {
    now: i64,
    /// In the batch's order.
    rows: Vec<CompletionRow>,
}

/// One completion's columns.
struct CompletionRow {
    id: String,
    lease_token: String,
    status: &'static str,
    next_attempt_at: Option<i64>,
    provider: Option<String>,
    provider_message_id: Option<String>,
    last_error: Option<String>,
    /// Whether the outcome ends the message's time in the queue (its secrets are redacted).
    done: bool,
    /// What it appends if its lease still holds.
    events: Vec<EventColumns>,
}

impl CompleteJob {
    pub(crate) fn new(completions: &[Completion], now: Timestamp) -> Self {
        Self {
            now: now.0,
            rows: completions
                .iter()
                .map(|c| CompletionRow {
                    id: c.message_id.to_string(),
                    lease_token: c.lease_token.clone(),
                    status: c.status.as_str(),
                    next_attempt_at: c.next_attempt_at.map(|t| t.0),
                    provider: c.provider.clone(),
                    provider_message_id: c.provider_message_id.clone(),
                    last_error: c.last_error.clone(),
                    done: c.status.is_final_for_queue(),
                    events: c.events.iter().map(EventColumns::from).collect(),
                })
                .collect(),
        }
    }
}

/// Records completions as `QueueStore::complete`: those whose lease still holds change their
/// message and append their events; a message done with the queue has its secrets redacted.
/// Returns how many applied.
pub(crate) fn complete_on(conn: &Connection, job: &CompleteJob) -> rusqlite::Result<usize> {
    let mut update = conn.prepare_cached(COMPLETE_ONE)?;
    let mut applied = Vec::with_capacity(job.rows.len());
    for r in &job.rows {
        let changed = update.execute(params![
            r.status,
            r.next_attempt_at,
            r.provider,
            r.provider_message_id,
            r.last_error,
            job.now,
            r.id,
            r.lease_token,
        ])?;
        if changed == 0 {
            // The lease was lost to another worker: the completion is skipped.
            continue;
        }
        if r.done {
            let secrets: Option<String> = conn
                .prepare_cached(SECRETS)?
                .query_row([&r.id], |row| row.get(0))?;
            if let Some(secrets) = secrets {
                redact_secrets(conn, &r.id, &secrets)?;
            }
        }
        applied.push(r);
    }
    append_events_on(conn, applied.iter().flat_map(|r| &r.events))?;
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

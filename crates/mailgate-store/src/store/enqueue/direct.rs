//! The enqueue batch on a SQLite file, run by the enqueue thread on a connection it owns.
//!
//! Through sqlx, every statement of a batch is a round trip to the connection's own thread (a
//! channel send and a wake-up each way), and a batch is four of them (begin, the suppression
//! read, the inserts, commit). Here the enqueue thread calls SQLite itself (rusqlite, on the same
//! libsqlite3 that sqlx links): no hand-offs, statements prepared once and cached, parameters
//! bound by reference. The `durable floor` benchmark writes the same way.
//!
//! The connection is one more writer on the file, so it never writes unless the enqueue thread
//! holds the process's sqlx write connection (`WriteConnection`, taken by the caller): the
//! process still has one writer at a time, and its writers wait in the pool's queue rather than
//! in SQLite's busy handler.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

pub use recipients::DeferredRecipients;

use mailgate_core::message::EnqueueOutcome;
use mailgate_core::suppression::Suppression;
use rusqlite::{params, Connection, OptionalExtension};

use super::{lookups, refusals, PreparedMessage, ADDRESSES_PER_LOOKUP};
use crate::rows::parse_id;
use crate::store::suppressions::{SuppressionRow, COLUMNS};
use crate::WRITER_CACHE_KIB;

mod recipients;

/// A file-backed SQLite database's enqueue writer. Opens its connection on first use (after the
/// migrations have run) and again after a failure.
pub(crate) struct DirectWriter {
    path: PathBuf,
    busy_timeout: Duration,
    conn: Option<Connection>,
    /// Messages committed since the last checkpoint this writer ran.
    since_checkpoint: usize,
    /// Batches of at least this many messages leave their recipients pending.
    defer_from: usize,
    /// Recipients sealed into a run (or merged from one) per transaction while sends wait; when
    /// none does, a 64th of a chunk at a time (`recipients`).
    move_chunk: usize,
    /// Rows in `message_recipients_pending`: counted when the connection opens, then kept.
    pending: usize,
    /// Runs listed in `message_recipient_run_ids`: counted when the connection opens, then kept.
    runs: usize,
    /// Runs allowed before merging while sends wait.
    max_runs: usize,
    /// After a failed step, no idle step before this instant (a broken database is not
    /// retried in a tight loop).
    idle_after: Option<Instant>,
}

/// Rows written (messages stored, claimed or completed, provider events recorded; about two
/// pages of log each) after which an idle writer copies the log into the database file, well
/// before SQLite's own threshold (1,000 pages) would make a commit do it.
const CHECKPOINT_AFTER: usize = 64;

const INSERT_PLAIN: &str = "INSERT INTO messages (id, environment_id, status, content, tags, \
     metadata, provider_options, idempotency_key, idempotency_fingerprint, attempts, max_attempts, \
     next_attempt_at, created_at, updated_at, expires_at, track_opens, track_links, secrets, \
     organization, sandboxed) \
     VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, NULL, NULL, 0, ?7, ?8, ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

const INSERT_KEYED: &str = "INSERT INTO messages (id, environment_id, status, content, tags, \
     metadata, provider_options, idempotency_key, idempotency_fingerprint, attempts, max_attempts, \
     next_attempt_at, created_at, updated_at, expires_at, track_opens, track_links, secrets, \
     organization, sandboxed) \
     VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?15, ?16, 0, ?7, ?8, ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
     ON CONFLICT (environment_id, idempotency_key) DO NOTHING RETURNING id";

const FIND_KEYED: &str = "SELECT id, idempotency_fingerprint FROM messages \
     WHERE environment_id = ?1 AND idempotency_key = ?2";

/// One event (also the writer's completions', `store/queue/direct.rs`).
pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO events (id, environment_id, message_id, type, created_at, data) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const INSERT_RECIPIENT: &str = "INSERT INTO message_recipients \
     (message_id, environment_id, address, created_at, usage_type) VALUES (?1, ?2, ?3, ?4, ?5)";

/// A large batch appends its recipients to the pending table instead; `move_recipients`
/// indexes them later (migration 0011).
const INSERT_PENDING: &str = "INSERT INTO message_recipients_pending \
     (message_id, environment_id, address, created_at, usage_type) VALUES (?1, ?2, ?3, ?4, ?5)";

/// The suppressions of one environment in force at `?2` among the addresses of the JSON array
/// `?3`: one statement text for any number of addresses, so it is prepared once.
static SELECT_SUPPRESSED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM suppressions WHERE environment_id = ?1 \
         AND (expires_at IS NULL OR expires_at > ?2) \
         AND address IN (SELECT value FROM json_each(?3))"
    )
});

impl DirectWriter {
    pub(crate) fn new(
        path: PathBuf,
        busy_timeout: Duration,
        recipients: DeferredRecipients,
    ) -> Self {
        Self {
            path,
            busy_timeout,
            conn: None,
            since_checkpoint: 0,
            defer_from: recipients.from_batch.max(1),
            move_chunk: recipients.move_chunk.max(1),
            pending: 0,
            runs: 0,
            max_runs: recipients.max_runs,
            idle_after: None,
        }
    }

    /// Copies the WAL into the database file (`PASSIVE`) if enough was committed since the last
    /// time. For the moments when no send is waiting: left to SQLite, the copy happens inside
    /// the commit that crosses 1,000 pages of log, and every send of that batch and the next
    /// waits it out (the p99 at a steady rate). It runs on this connection while the caller
    /// holds the process's write connection, so no other connection of the process commits
    /// meanwhile. (A thread checkpointing every 20 ms beside the writers, with the SQLite
    /// patched for the WAL-reset bug, was no faster: its syncs of the database file compete
    /// with the commits'; bench/JOURNAL.md.) Returns, if it ran, the frames in the log and how
    /// many of them it copied.
    pub(crate) fn checkpoint_if_due(&mut self) -> Option<(i64, i64)> {
        if self.since_checkpoint < CHECKPOINT_AFTER {
            return None;
        }
        self.since_checkpoint = 0;
        let checkpoint =
            self.conn
                .as_ref()?
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get(1)?, row.get(2)?))
                });
        checkpoint
            .inspect_err(|e| tracing::warn!(error = %e, "checkpoint failed"))
            .ok()
    }

    /// Forgets the connection (after a failure of the database, not of a statement).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }

    fn connection(&mut self) -> rusqlite::Result<&mut Connection> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let conn = self.open()?;
                (self.pending, self.runs) = recipients::deferred_counts(&conn)?;
                conn
            }
        };
        Ok(self.conn.insert(conn))
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(self.busy_timeout)?;
        // The same settings as the sqlx write connection (`Database::connect`), its page cache
        // included: with SQLite's default (2 MiB) every batch read back pages of the indexes it
        // writes from the operating system.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = {WRITER_CACHE_KIB};"
        ))?;
        // The batch's statements and the recipient index's (`recipients`): about twenty.
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// Whether a batch of `size` messages leaves its recipients pending: a large batch is a
    /// saturated writer, whose recipients wait in the pending table to be indexed many at a time
    /// (migration 0011).
    pub(crate) fn defers(&self, size: usize) -> bool {
        size >= self.defer_from
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on this writer's connection and commits;
    /// rolls back if `f` or the commit fails. `BEGIN` and `COMMIT` are cached statements, not
    /// compiled again each turn as rusqlite's `Transaction` does.
    pub(crate) fn transaction<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let conn: &Connection = self.connection()?;
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let done = f(conn).and_then(|value| {
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(value)
        });
        if done.is_err() && !conn.is_autocommit() {
            // A failed statement or commit leaves the transaction open: nothing of it is kept.
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "rollback failed");
            }
        }
        done
    }

    /// Counts what a committed transaction wrote: `rows` rows written (for the checkpoint:
    /// `CHECKPOINT_AFTER`), `pending` recipients left in the pending table.
    pub(crate) fn committed(&mut self, rows: usize, pending: usize) {
        self.since_checkpoint += rows;
        self.pending += pending;
    }

    /// The recipients this writer counts as pending.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// As `write_batch` (the sqlx form, for PostgreSQL), in a transaction of its own.
    #[cfg(test)]
    pub(crate) fn write_batch(
        &mut self,
        batch: &[&PreparedMessage],
    ) -> rusqlite::Result<Vec<EnqueueOutcome>> {
        let deferred = self.defers(batch.len());
        let outcomes = self.transaction(|tx| write_batch_on(tx, batch, deferred))?;
        let pending = if deferred {
            let created = outcomes
                .iter()
                .map(|o| matches!(o, EnqueueOutcome::Created(_)));
            pending_recipients(batch, created)
        } else {
            0
        };
        self.committed(batch.len(), pending);
        Ok(outcomes)
    }
}

/// The recipients a batch whose recipients were deferred left pending: those of the messages
/// it created (`created`, one flag per message of `batch`, in its order).
pub(crate) fn pending_recipients(
    batch: &[&PreparedMessage],
    created: impl Iterator<Item = bool>,
) -> usize {
    batch
        .iter()
        .zip(created)
        .filter(|(_, created)| *created)
        .map(|(p, _)| p.recipients.len())
        .sum()
}

/// As `write_batch` (the sqlx form, for PostgreSQL), inside the caller's transaction `tx`: a
/// message with a suppressed recipient stores nothing and yields `Suppressed`; a message whose
/// idempotency key is taken yields `Replayed` or `Conflict`. With `deferred`, the recipients
/// go to the pending table.
pub(crate) fn write_batch_on(
    tx: &Connection,
    batch: &[&PreparedMessage],
    deferred: bool,
) -> rusqlite::Result<Vec<EnqueueOutcome>> {
    let mut found = Vec::new();
    {
        let mut select = tx.prepare_cached(&SELECT_SUPPRESSED)?;
        for (env, addresses, at) in lookups(batch) {
            for chunk in addresses.chunks(ADDRESSES_PER_LOOKUP) {
                let list = serde_json::to_string(chunk)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                let mut rows = select.query(params![env, at, list])?;
                while let Some(row) = rows.next()? {
                    found.push(suppression(row)?);
                }
            }
        }
    }
    let refused = refusals(batch, &found);
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut plain = tx.prepare_cached(INSERT_PLAIN)?;
        let mut keyed = tx.prepare_cached(INSERT_KEYED)?;
        let mut event = tx.prepare_cached(INSERT_EVENT)?;
        let mut recipient = tx.prepare_cached(if deferred {
            INSERT_PENDING
        } else {
            INSERT_RECIPIENT
        })?;
        for (p, refused) in batch.iter().zip(refused) {
            if !refused.is_empty() {
                outcomes.push(EnqueueOutcome::Suppressed(refused));
                continue;
            }
            let m = &p.message;
            let (id, env) = (&p.id, &p.env);
            let columns = params![
                id,
                env,
                p.content,
                p.tags,
                p.metadata,
                p.provider_options,
                i64::from(m.max_attempts),
                m.created_at.0,
                m.delivery.expires_at.map(|t| t.0),
                m.delivery.tracking.opens,
                m.delivery.tracking.links,
                p.secrets,
                p.organization,
                m.delivery.sandboxed,
            ];
            match &m.idempotency {
                None => {
                    plain.execute(columns)?;
                }
                Some(key) => {
                    let key_text = key.key.as_str();
                    let mut all: Vec<&dyn rusqlite::ToSql> = columns.to_vec();
                    all.push(&key_text);
                    all.push(&key.fingerprint);
                    let inserted: Option<String> = keyed
                        .query_row(all.as_slice(), |row| row.get(0))
                        .optional()?;
                    if inserted.is_none() {
                        let (id, fingerprint): (String, Option<String>) = tx
                            .prepare_cached(FIND_KEYED)?
                            .query_row(params![env, key_text], |row| {
                                Ok((row.get(0)?, row.get(1)?))
                            })?;
                        let id = parse_id("messages.id", &id).map_err(corrupt)?;
                        outcomes.push(if fingerprint.as_deref() == Some(&key.fingerprint) {
                            EnqueueOutcome::Replayed(id)
                        } else {
                            EnqueueOutcome::Conflict(id)
                        });
                        continue;
                    }
                }
            }
            let e = &p.queued_event;
            event.execute(params![
                p.event_id,
                env,
                id,
                e.event_type.as_str(),
                e.created_at.0,
                p.event_data,
            ])?;
            for address in &p.recipients {
                recipient.execute(params![id, env, address, m.created_at.0, p.usage_type])?;
            }
            outcomes.push(EnqueueOutcome::Created(m.id));
        }
    }
    Ok(outcomes)
}

/// A `suppressions` row, in `COLUMNS` order.
fn suppression(row: &rusqlite::Row<'_>) -> rusqlite::Result<Suppression> {
    SuppressionRow {
        environment_id: row.get(0)?,
        address: row.get(1)?,
        reason: row.get(2)?,
        source_event_id: row.get(3)?,
        provider: row.get(4)?,
        note: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
    }
    .into_domain()
    .map_err(corrupt)
}

fn corrupt(e: mailgate_core::store::StoreError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

#[cfg(test)]
pub(super) mod tests {
    use mailgate_core::ids::{EnvironmentId, MessageId};
    use mailgate_core::message::{Content, NewMessage};
    use mailgate_core::{Mailbox, Timestamp};
    use tempfile::TempDir;

    use super::*;
    use crate::{Database, StoreOptions};

    /// A migrated SQLite file with one environment: its directory (kept alive), its path, the
    /// open database and the environment.
    pub(crate) async fn migrated() -> (TempDir, PathBuf, Database, EnvironmentId) {
        crate::test_file::migrated_file(&StoreOptions::default()).await
    }

    /// A message of `env` created at `at` to the first of `to`, the rest in cc.
    pub(crate) fn message(env: EnvironmentId, at: i64, to: &[&str]) -> NewMessage {
        let mailbox = |a: &&str, field| Mailbox::parse(a, field).unwrap();
        NewMessage {
            id: MessageId::new(),
            environment_id: env,
            content: Content {
                from: Mailbox::parse("sender@example.com", "from").unwrap(),
                to: to.iter().take(1).map(|a| mailbox(a, "to")).collect(),
                cc: to.iter().skip(1).map(|a| mailbox(a, "cc")).collect(),
                bcc: vec![],
                reply_to: vec![],
                subject: "hello".into(),
                text: Some("hello".into()),
                html: None,
                headers: vec![],
                attachments: vec![],
            },
            tags: Vec::new(),
            metadata: Default::default(),
            provider_options: None,
            idempotency: None,
            max_attempts: 3,
            created_at: Timestamp(at),
            delivery: Default::default(),
            secrets: Vec::new(),
            template: None,
        }
    }

    /// [`message`], ready for the writer.
    pub(crate) fn prepared(env: EnvironmentId, at: i64, to: &[&str]) -> PreparedMessage {
        prepare(message(env, at, to))
    }

    /// `message`, ready for the writer.
    pub(crate) fn prepare(message: NewMessage) -> PreparedMessage {
        PreparedMessage::new(message).unwrap()
    }

    /// Rows this writer counted as pending can be gone when it moves them (another process on
    /// the file moved them first): the move finds an empty table, and the writer stops counting
    /// them instead of trying again forever.
    #[tokio::test]
    async fn pending_rows_moved_elsewhere_are_not_waited_for() {
        let (_dir, path, db, env) = migrated().await;
        let prepared = prepared(env, 1, &["a@example.com", "b@example.com"]);
        let recipients = DeferredRecipients {
            from_batch: 1,
            move_chunk: 64,
            max_runs: 4,
        };
        let mut writer = DirectWriter::new(path.clone(), Duration::from_secs(5), recipients);
        let outcomes = writer.write_batch(&[&prepared]).unwrap();
        assert!(matches!(outcomes[..], [EnqueueOutcome::Created(_)]));
        assert!(writer.idle_work_due(), "two recipients pending");

        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "INSERT INTO message_recipients (environment_id, address, created_at, message_id, usage_type) \
                 SELECT environment_id, address, created_at, message_id, usage_type FROM message_recipients_pending; \
                 DELETE FROM message_recipients_pending;",
            )
            .unwrap();
        writer.move_recipients_if_due(true);
        assert!(!writer.idle_work_due(), "nothing left to wait for");
        let indexed: i64 = other
            .query_row("SELECT count(*) FROM message_recipients", [], |r| r.get(0))
            .unwrap();
        assert_eq!(indexed, 2);
        db.close().await;
    }
}

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

use mailgate_core::message::EnqueueOutcome;
use mailgate_core::suppression::Suppression;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{lookups, refusals, PreparedMessage, ADDRESSES_PER_LOOKUP};
use crate::rows::parse_id;
use crate::store::suppressions::{SuppressionRow, COLUMNS};
use crate::WRITER_CACHE_KIB;

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
    /// Recipients moved per transaction from `message_recipients_pending` into the index once
    /// two chunks are pending; when no send waits, a 64th of a chunk.
    move_chunk: usize,
    /// Rows in `message_recipients_pending`: counted when the connection opens, then kept.
    pending: usize,
    /// After a failed move, no idle move before this instant (a broken database is not
    /// retried in a tight loop).
    idle_after: Option<Instant>,
}

/// When the enqueue writer leaves recipients pending and how it moves them into the index
/// (migration 0011).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredRecipients {
    /// Batches of at least this many messages append their recipients to the pending table;
    /// smaller ones (a writer that keeps up) index them in their own commit.
    pub from_batch: usize,
    /// Recipients moved per transaction once two chunks are pending; a 64th of it at a time
    /// when no send waits.
    pub move_chunk: usize,
}

impl Default for DeferredRecipients {
    fn default() -> Self {
        Self {
            from_batch: 32,
            move_chunk: 8_192,
        }
    }
}

/// How long the writer leaves pending recipients alone after a failed move.
const MOVE_BACKOFF: Duration = Duration::from_secs(1);

/// Messages (about two pages of log each) after which an idle writer copies the log into the
/// database file, well before SQLite's own threshold (1,000 pages) would make a commit do it.
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

const INSERT_EVENT: &str =
    "INSERT INTO events (id, environment_id, message_id, type, created_at, data) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const INSERT_RECIPIENT: &str = "INSERT INTO message_recipients \
     (message_id, environment_id, address, created_at, usage_type) VALUES (?1, ?2, ?3, ?4, ?5)";

/// A large batch appends its recipients to the pending table instead; `move_recipients`
/// indexes them later (migration 0011).
const INSERT_PENDING: &str = "INSERT INTO message_recipients_pending \
     (message_id, environment_id, address, created_at, usage_type) VALUES (?1, ?2, ?3, ?4, ?5)";

/// The last `seq` of the oldest `?1` pending recipients.
const CHUNK_END: &str = "SELECT max(seq) FROM (SELECT seq FROM message_recipients_pending \
     ORDER BY seq LIMIT ?1)";

/// Indexes the pending recipients up to `seq` `?1`, in key order: consecutive rows of one
/// address share a page of the index.
const MOVE_RECIPIENTS: &str = "INSERT INTO message_recipients \
     (environment_id, address, created_at, message_id, usage_type) \
     SELECT environment_id, address, created_at, message_id, usage_type \
     FROM message_recipients_pending WHERE seq <= ?1 \
     ORDER BY environment_id, address, created_at, message_id";

const DELETE_MOVED: &str = "DELETE FROM message_recipients_pending WHERE seq <= ?1";

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
            idle_after: None,
        }
    }

    /// Whether recipients are pending, to be moved when no send waits. Unknown until the
    /// connection opens (the first batch opens it).
    pub(crate) fn idle_work_due(&self) -> bool {
        self.conn.is_some()
            && self.pending > 0
            && self.idle_after.is_none_or(|t| Instant::now() >= t)
    }

    /// Puts idle moves off for a while after a failure (here: the write connection could not
    /// be had).
    pub(crate) fn defer_idle_work(&mut self, e: &impl std::fmt::Display) {
        tracing::warn!(error = %e, "moving pending recipients into the index put off");
        self.idle_after = Some(Instant::now() + MOVE_BACKOFF);
    }

    /// Moves pending recipients into the index if it is time to. While sends keep coming, a
    /// chunk once two are pending: readers scan the pending rows, so they stay few, and a
    /// chunk takes tens of milliseconds, which only a saturated writer (whose senders wait
    /// for throughput, not for one commit) can afford. When no send waits (`idle`), a 64th
    /// of a chunk: a send arriving meanwhile waits for a few pages of index at most. Called,
    /// like `checkpoint_if_due`, while the caller holds the process's write connection. A
    /// failure leaves the rows pending, where readers still find them.
    pub(crate) fn move_recipients_if_due(&mut self, idle: bool) {
        let chunk = if idle {
            if !self.idle_work_due() {
                return;
            }
            (self.move_chunk / 64).max(1)
        } else {
            if self.pending < self.move_chunk.saturating_mul(2) {
                return;
            }
            self.move_chunk
        };
        match self.move_recipients(chunk) {
            Ok(moved) => {
                // Fewer than a chunk moved: the table is empty now (the move held the write
                // lock), whatever this writer had counted — another process on the file may
                // have moved some of them. Counting on would spin on an empty table.
                self.pending = if moved < chunk {
                    0
                } else {
                    self.pending.saturating_sub(moved)
                };
                // About two recipients' worth of index per page of log, as a message's.
                self.since_checkpoint += moved / 2;
            }
            Err(e) => {
                tracing::warn!(error = %e, "moving pending recipients into the index failed");
                self.idle_after = Some(Instant::now() + MOVE_BACKOFF);
                self.reset();
            }
        }
    }

    /// Moves the oldest `chunk` pending recipients into the index, in one transaction;
    /// returns how many it moved.
    fn move_recipients(&mut self, chunk: usize) -> rusqlite::Result<usize> {
        let chunk = i64::try_from(chunk).unwrap_or(i64::MAX);
        let conn = self.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let end: Option<i64> = tx
            .prepare_cached(CHUNK_END)?
            .query_row(params![chunk], |row| row.get(0))?;
        let Some(end) = end else {
            return Ok(0);
        };
        tx.prepare_cached(MOVE_RECIPIENTS)?.execute(params![end])?;
        let moved = tx.prepare_cached(DELETE_MOVED)?.execute(params![end])?;
        tx.commit()?;
        Ok(moved)
    }

    /// Copies the WAL into the database file (`PASSIVE`) if enough was committed since the last
    /// time. For the moments when no send is waiting: left to SQLite, the copy happens inside
    /// the commit that crosses 1,000 pages of log, and every send of that batch and the next
    /// waits it out (the p99 at a steady rate). It runs on this connection while the caller
    /// holds the process's write connection, so no other connection of the process commits
    /// meanwhile. (A thread checkpointing every 20 ms beside the writers, with the SQLite
    /// patched for the WAL-reset bug, was no faster: its syncs of the database file compete
    /// with the commits'; BENCHMARKS.md.)
    pub(crate) fn checkpoint_if_due(&mut self) {
        if self.since_checkpoint < CHECKPOINT_AFTER {
            return;
        }
        self.since_checkpoint = 0;
        if let Some(conn) = &self.conn {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "checkpoint failed");
            }
        }
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
                let pending: i64 = conn.query_row(
                    "SELECT count(*) FROM message_recipients_pending",
                    [],
                    |row| row.get(0),
                )?;
                self.pending = usize::try_from(pending).unwrap_or(0);
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
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }

    /// As `write_batch` (the sqlx form, for PostgreSQL): one transaction for the batch; a
    /// message with a suppressed recipient stores nothing and yields `Suppressed`; a message
    /// whose idempotency key is taken yields `Replayed` or `Conflict`.
    pub(crate) fn write_batch(
        &mut self,
        batch: &[&PreparedMessage],
    ) -> rusqlite::Result<Vec<EnqueueOutcome>> {
        // A large batch is a saturated writer: its recipients wait in the pending table, to be
        // indexed many at a time (migration 0011).
        let deferred = batch.len() >= self.defer_from;
        let conn = self.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                let id = m.id.to_string();
                let env = m.environment_id.to_string();
                let organization = p.organization();
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
                    organization,
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
                    e.id.to_string(),
                    e.environment_id.to_string(),
                    e.message_id.map(|m| m.to_string()),
                    e.event_type.as_str(),
                    e.created_at.0,
                    e.data.to_string(),
                ])?;
                let usage = p.usage_type();
                for address in &p.recipients {
                    recipient.execute(params![id, env, address, m.created_at.0, usage])?;
                }
                outcomes.push(EnqueueOutcome::Created(m.id));
            }
        }
        tx.commit()?;
        self.since_checkpoint += batch.len();
        if deferred {
            self.pending += batch
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, EnqueueOutcome::Created(_)))
                .map(|(p, _)| p.recipients.len())
                .sum::<usize>();
        }
        Ok(outcomes)
    }
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
mod tests {
    use mailgate_core::environment::{Environment, EnvironmentName};
    use mailgate_core::ids::{EnvironmentId, MessageId};
    use mailgate_core::message::{Content, NewMessage};
    use mailgate_core::{Mailbox, Timestamp};

    use super::*;
    use crate::{Database, StoreOptions};

    /// Rows this writer counted as pending can be gone when it moves them (another process on
    /// the file moved them first): the move finds an empty table, and the writer stops counting
    /// them instead of trying again forever.
    #[tokio::test]
    async fn pending_rows_moved_elsewhere_are_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailgate.db");
        let db = Database::connect(
            &format!("sqlite://{}", path.display()),
            &StoreOptions::default(),
        )
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let env = Environment {
            id: EnvironmentId::new(),
            name: EnvironmentName::parse("default").unwrap(),
            created_at: Timestamp(0),
        };
        db.storage().create_environment(&env).await.unwrap();
        let message = NewMessage {
            id: MessageId::new(),
            environment_id: env.id,
            content: Content {
                from: Mailbox::parse("sender@example.com", "from").unwrap(),
                to: vec![Mailbox::parse("a@example.com", "to").unwrap()],
                cc: vec![Mailbox::parse("b@example.com", "cc").unwrap()],
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
            created_at: Timestamp(1),
            delivery: Default::default(),
            secrets: Vec::new(),
            template: None,
        };
        let prepared = PreparedMessage::new(message).unwrap();
        let recipients = DeferredRecipients {
            from_batch: 1,
            move_chunk: 64,
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

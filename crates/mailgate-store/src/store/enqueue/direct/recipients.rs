//! The recipient index on a SQLite file, kept by the enqueue writer between batches (migrations
//! 0011 and 0013).
//!
//! `message_recipients` is keyed by address, so a recipient written into it lands on a leaf page
//! of its own: a batch of many messages wrote (and synced, and later checkpointed) about one page
//! per recipient. A busy writer (a batch of `from_batch` messages or more) therefore appends its
//! batches' recipients to `message_recipients_pending` (arrival order, a few pages per batch)
//! and, while sends keep coming, **seals** each chunk of them into a sorted run
//! (`message_recipient_runs`, keyed by the run first): a run is written at the right edge of its
//! table, page after page, at a small fraction of the cost of putting its rows in their places
//! in the index. Once no send has come for a while (the group commit's `QUIET`), the writer
//! moves what is still pending straight into `message_recipients`, then **merges** the runs, a
//! slice at a time, oldest run first; if runs pile up past `max_runs` under sustained load, it
//! merges a chunk between batches too, so readers never probe more than that many.
//!
//! Readers read `recipient_sends` (index, runs through `message_recipient_run_ids`, pending):
//! every step moves rows from one place to another in one transaction, so a send is found once
//! before, during and after. A run is visible only while its id is listed: sealing adds both in
//! one transaction, merging removes the id with the last of its rows.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::DirectWriter;

/// When the enqueue writer leaves recipients pending and how it indexes them (migrations 0011 and
/// 0013).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredRecipients {
    /// Batches of at least this many messages append their recipients to the pending table;
    /// smaller ones (a writer that keeps up) index them in their own commit. 8: side by side,
    /// 32 indexed inline the recipients of the many mid-sized batches of 64 closed-loop
    /// connections (10–20 % fewer accepted sends per second), and 2 sealed runs so often at
    /// 5,000 sends per second that the p99 rose from 3.4 ms to 5.3 ms.
    pub from_batch: usize,
    /// Recipients sealed into a run once two chunks are pending, and merged per transaction
    /// when runs pile up; a 64th of it at a time in a quiet moment.
    pub move_chunk: usize,
    /// Runs allowed before the writer merges while sends wait (each is one more index probe per
    /// read).
    pub max_runs: usize,
}

impl Default for DeferredRecipients {
    fn default() -> Self {
        Self {
            from_batch: 8,
            move_chunk: 8_192,
            max_runs: 64,
        }
    }
}

/// How long the writer leaves pending recipients alone after a failed step.
const MOVE_BACKOFF: Duration = Duration::from_secs(1);

/// The last `seq` of the oldest `?1` pending recipients (`+?1`: a bare parameter as the limit
/// makes SQLite compile the statement again whenever it is bound).
const CHUNK_END: &str = "SELECT max(seq) FROM (SELECT seq FROM message_recipients_pending \
     ORDER BY seq LIMIT +?1)";

/// Indexes the pending recipients up to `seq` `?1`, in key order: consecutive rows of one
/// address share a page of the index.
const MOVE_RECIPIENTS: &str = "INSERT INTO message_recipients \
     (environment_id, address, created_at, message_id, usage_type) \
     SELECT environment_id, address, created_at, message_id, usage_type \
     FROM message_recipients_pending WHERE seq <= ?1 \
     ORDER BY environment_id, address, created_at, message_id";

const DELETE_MOVED: &str = "DELETE FROM message_recipients_pending WHERE seq <= ?1";

/// A new run's id: after every run there is (ids are never reused while listed).
const NEXT_RUN: &str = "SELECT coalesce(max(run), 0) + 1 FROM message_recipient_run_ids";

/// Writes the pending recipients up to `seq` `?2` as run `?1`, in key order.
const SEAL_RUN: &str = "INSERT INTO message_recipient_runs \
     (run, environment_id, address, created_at, message_id, usage_type) \
     SELECT ?1, environment_id, address, created_at, message_id, usage_type \
     FROM message_recipients_pending WHERE seq <= ?2 \
     ORDER BY environment_id, address, created_at, message_id";

const LIST_RUN: &str = "INSERT INTO message_recipient_run_ids (run) VALUES (?1)";

const OLDEST_RUN: &str = "SELECT min(run) FROM message_recipient_run_ids";

/// The key of run `?1`'s row number `?2` (from 0) in key order: where a merge slice ends.
const SLICE_END: &str = "SELECT environment_id, address, created_at, message_id \
     FROM message_recipient_runs WHERE run = ?1 \
     ORDER BY environment_id, address, created_at, message_id LIMIT 1 OFFSET ?2";

/// Run `?1`'s rows up to the key `(?2, ?3, ?4, ?5)` (a range of its primary key): merged into
/// the index, then deleted.
static MERGE_SLICE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO message_recipients \
         (environment_id, address, created_at, message_id, usage_type) \
         SELECT environment_id, address, created_at, message_id, usage_type \
         FROM message_recipient_runs WHERE {IN_SLICE}"
    )
});
static DELETE_SLICE: LazyLock<String> =
    LazyLock::new(|| format!("DELETE FROM message_recipient_runs WHERE {IN_SLICE}"));
const IN_SLICE: &str = "run = ?1 \
     AND (environment_id, address, created_at, message_id) <= (?2, ?3, ?4, ?5)";

const MERGE_REST: &str = "INSERT INTO message_recipients \
     (environment_id, address, created_at, message_id, usage_type) \
     SELECT environment_id, address, created_at, message_id, usage_type \
     FROM message_recipient_runs WHERE run = ?1";

const DELETE_REST: &str = "DELETE FROM message_recipient_runs WHERE run = ?1";

const ANY_LEFT: &str = "SELECT 1 FROM message_recipient_runs WHERE run = ?1 LIMIT 1";

const UNLIST_RUN: &str = "DELETE FROM message_recipient_run_ids WHERE run = ?1";

/// One step of keeping the index.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Up to this many pending recipients straight into the index.
    Index(usize),
    /// Up to this many pending recipients into a new run.
    Seal(usize),
    /// Up to this many recipients of the oldest run into the index.
    Merge(usize),
}

/// The pending recipients and the runs the file holds: counted when the writer's connection
/// opens, then kept by the writer.
pub(super) fn deferred_counts(conn: &Connection) -> rusqlite::Result<(usize, usize)> {
    let count = |sql: &str| -> rusqlite::Result<usize> {
        let n: i64 = conn.query_row(sql, [], |row| row.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    };
    Ok((
        count("SELECT count(*) FROM message_recipients_pending")?,
        count("SELECT count(*) FROM message_recipient_run_ids")?,
    ))
}

impl DirectWriter {
    /// Whether recipients wait outside the index, to be indexed when no send waits. Unknown
    /// until the connection opens (the first batch opens it).
    pub(crate) fn idle_work_due(&self) -> bool {
        self.conn.is_some()
            && (self.pending > 0 || self.runs > 0)
            && self.idle_after.is_none_or(|t| Instant::now() >= t)
    }

    /// Puts idle steps off for a while after a failure (here: the write connection could not be
    /// had).
    pub(crate) fn defer_idle_work(&mut self, e: &impl std::fmt::Display) {
        tracing::warn!(error = %e, "indexing recipients put off");
        self.idle_after = Some(Instant::now() + MOVE_BACKOFF);
    }

    /// Keeps the recipient index if it is time to. While sends keep coming (`idle` false): a
    /// chunk of pending recipients sealed into a run once two chunks are pending (readers scan
    /// the pending rows, so they stay few), and a chunk of the oldest run merged once there are
    /// more than `max_runs`. In a quiet moment (`idle`, the caller's judgement): a 64th of a
    /// chunk, pending recipients first (straight into the index), then the oldest run's — a
    /// send arriving meanwhile waits for a few pages of index at most. Called, like `checkpoint_if_due`, while the caller holds
    /// the process's write connection. A failure leaves the rows where they were, where
    /// readers still find them.
    pub(crate) fn move_recipients_if_due(&mut self, idle: bool) {
        if idle {
            if !self.idle_work_due() {
                return;
            }
            let slice = (self.move_chunk / 64).max(1);
            self.step(if self.pending > 0 {
                Step::Index(slice)
            } else {
                Step::Merge(slice)
            });
            return;
        }
        if self.pending >= self.move_chunk.saturating_mul(2) {
            self.step(Step::Seal(self.move_chunk));
        }
        if self.runs > self.max_runs {
            self.step(Step::Merge(self.move_chunk));
        }
    }

    fn step(&mut self, step: Step) {
        let done = match step {
            Step::Index(n) => self.take_pending(n, false).map(|moved| {
                self.took_pending(moved, n);
                // About two recipients' worth of index per page of log, as a message's.
                self.since_checkpoint += moved / 2;
            }),
            Step::Seal(n) => self.take_pending(n, true).map(|sealed| {
                self.took_pending(sealed, n);
                if sealed > 0 {
                    self.runs += 1;
                }
                // A run packs ~40 recipients per page, and their pending rows freed as many.
                self.since_checkpoint += sealed / 32;
            }),
            Step::Merge(n) => self.merge(n).map(|merged| match merged {
                // No run left (another process on the file may have merged them).
                None => self.runs = 0,
                Some((merged, emptied)) => {
                    if emptied {
                        self.runs = self.runs.saturating_sub(1);
                    }
                    self.since_checkpoint += merged / 2;
                }
            }),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, step = ?step, "indexing recipients failed");
            self.idle_after = Some(Instant::now() + MOVE_BACKOFF);
            self.reset();
        }
    }

    /// Counts `taken` pending recipients gone, of `asked`. Fewer than asked: the table is empty
    /// now (the step held the write lock), whatever this writer had counted — another process
    /// on the file may have taken some. Counting on would spin on an empty table.
    fn took_pending(&mut self, taken: usize, asked: usize) {
        self.pending = if taken < asked {
            0
        } else {
            self.pending.saturating_sub(taken)
        };
    }

    /// Takes the oldest `chunk` pending recipients, in one transaction, straight into the index
    /// or (`seal`) into a new run; returns how many it took.
    fn take_pending(&mut self, chunk: usize, seal: bool) -> rusqlite::Result<usize> {
        let chunk = i64::try_from(chunk).unwrap_or(i64::MAX);
        let tx = self
            .connection()?
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let end: Option<i64> = tx
            .prepare_cached(CHUNK_END)?
            .query_row(params![chunk], |row| row.get(0))?;
        let Some(end) = end else {
            return Ok(0);
        };
        if seal {
            let run: i64 = tx
                .prepare_cached(NEXT_RUN)?
                .query_row([], |row| row.get(0))?;
            tx.prepare_cached(SEAL_RUN)?.execute(params![run, end])?;
            tx.prepare_cached(LIST_RUN)?.execute(params![run])?;
        } else {
            tx.prepare_cached(MOVE_RECIPIENTS)?.execute(params![end])?;
        }
        let taken = tx.prepare_cached(DELETE_MOVED)?.execute(params![end])?;
        tx.commit()?;
        Ok(taken)
    }

    /// Merges the first `chunk` recipients (in key order) of the oldest run into the index, in
    /// one transaction, and unlists the run once it is empty. `None` when there is no run;
    /// else how many it merged and whether the run is gone.
    fn merge(&mut self, chunk: usize) -> rusqlite::Result<Option<(usize, bool)>> {
        let last = i64::try_from(chunk.saturating_sub(1)).unwrap_or(i64::MAX);
        let tx = self
            .connection()?
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let run: Option<i64> = tx
            .prepare_cached(OLDEST_RUN)?
            .query_row([], |row| row.get(0))?;
        let Some(run) = run else {
            return Ok(None);
        };
        let end: Option<(String, String, i64, String)> = tx
            .prepare_cached(SLICE_END)?
            .query_row(params![run, last], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()?;
        let merged = match end {
            Some((env, address, at, message)) => {
                let key = params![run, env, address, at, message];
                tx.prepare_cached(&MERGE_SLICE)?.execute(key)?;
                let merged = tx.prepare_cached(&DELETE_SLICE)?.execute(key)?;
                let rest: Option<i64> = tx
                    .prepare_cached(ANY_LEFT)?
                    .query_row(params![run], |row| row.get(0))
                    .optional()?;
                if rest.is_none() {
                    tx.prepare_cached(UNLIST_RUN)?.execute(params![run])?;
                }
                (merged, rest.is_none())
            }
            None => {
                tx.prepare_cached(MERGE_REST)?.execute(params![run])?;
                let merged = tx.prepare_cached(DELETE_REST)?.execute(params![run])?;
                tx.prepare_cached(UNLIST_RUN)?.execute(params![run])?;
                (merged, true)
            }
        };
        tx.commit()?;
        Ok(Some(merged))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mailgate_core::ids::EnvironmentId;
    use rusqlite::Connection;

    use super::super::tests::{migrated, prepared};
    use super::*;

    /// (index, run rows, listed runs, pending) of the file.
    fn places(c: &Connection) -> [i64; 4] {
        [
            "message_recipients",
            "message_recipient_runs",
            "message_recipient_run_ids",
            "message_recipients_pending",
        ]
        .map(|table| {
            c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        })
    }

    /// The send times to `address` that readers find, as the per-recipient cap reads them.
    fn sends_to(c: &Connection, env: EnvironmentId, address: &str) -> Vec<i64> {
        c.prepare(
            "SELECT created_at FROM recipient_sends WHERE environment_id = ?1 AND address = ?2 \
             AND created_at >= 0 ORDER BY created_at",
        )
        .unwrap()
        .query_map(params![env.to_string(), address], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// While sends wait, pending recipients are sealed into runs, and the oldest run merged once
    /// there are more than `max_runs`; when none waits, everything is merged into the index and
    /// the runs unlisted. At every step each send is found exactly once, and runs are probed by
    /// their key, not scanned.
    #[tokio::test]
    async fn runs_are_sealed_merged_and_read_once() {
        let (_dir, path, db, env) = migrated().await;
        let recipients = DeferredRecipients {
            from_batch: 1,
            move_chunk: 4,
            max_runs: 2,
        };
        let mut w = DirectWriter::new(path.clone(), Duration::from_secs(5), recipients);
        let c = Connection::open(&path).unwrap();
        for i in 0..12 {
            let m = prepared(env, i, &["a@example.com", &format!("b{i}@example.com")]);
            w.write_batch(&[&m]).unwrap();
        }
        let all: Vec<i64> = (0..12).collect();
        assert_eq!(places(&c), [0, 0, 0, 24]);
        assert_eq!(sends_to(&c, env, "a@example.com"), all);

        // Two chunks pending: one sealed per batch, no merge while there are at most two runs.
        w.move_recipients_if_due(false);
        assert_eq!(places(&c), [0, 4, 1, 20]);
        w.move_recipients_if_due(false);
        assert_eq!(places(&c), [0, 8, 2, 16]);
        assert_eq!(sends_to(&c, env, "a@example.com"), all);
        // A third run: the oldest is merged (all four of its rows) and unlisted.
        w.move_recipients_if_due(false);
        assert_eq!(places(&c), [4, 8, 2, 12]);
        assert_eq!(sends_to(&c, env, "a@example.com"), all);
        assert_eq!(sends_to(&c, env, "b0@example.com"), [0]);
        assert_eq!(sends_to(&c, env, "b11@example.com"), [11]);

        let plan: Vec<String> = c
            .prepare(
                "EXPLAIN QUERY PLAN SELECT created_at FROM recipient_sends \
                 WHERE environment_id = ?1 AND address = ?2 AND created_at >= ?3",
            )
            .unwrap()
            .query_map(params!["e", "a", 0], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        crate::test_file::assert_searches(&plan, "message_recipient_runs", "PRIMARY KEY");

        let slice_plan: String = c
            .query_row(
                &format!("EXPLAIN QUERY PLAN {}", *DELETE_SLICE),
                params![1, "e", "a", 0, "m"],
                |r| r.get(3),
            )
            .unwrap();
        // A slice is a range of the run's key, not a scan of the run.
        assert!(
            slice_plan.starts_with(
                "SEARCH message_recipient_runs USING PRIMARY KEY (run=? AND (environment_id,"
            ),
            "{slice_plan}"
        );

        // No send waits: pending first (straight into the index), then the runs, a slice
        // (a 64th of a chunk: one row) at a time.
        let mut steps = 0;
        while w.idle_work_due() {
            w.move_recipients_if_due(true);
            assert_eq!(sends_to(&c, env, "a@example.com"), all);
            steps += 1;
            assert!(steps <= 40, "{:?}", places(&c));
        }
        assert_eq!(places(&c), [24, 0, 0, 0]);
        assert_eq!(steps, 20, "one row per step");

        // Deleting the environment deletes its recipients wherever they are.
        for i in 12..20 {
            w.write_batch(&[&prepared(env, i, &["a@example.com"])])
                .unwrap();
        }
        w.move_recipients_if_due(false);
        assert_eq!(places(&c), [24, 4, 1, 4]);
        assert!(db.storage().delete_environment(&env).await.unwrap());
        assert_eq!(places(&c), [0, 0, 1, 0]);
        db.close().await;
    }

    /// Runs this writer counted can be gone (another process on the file merged them): the
    /// merge finds none and the writer stops counting them.
    #[tokio::test]
    async fn runs_merged_elsewhere_are_not_waited_for() {
        let (_dir, path, db, env) = migrated().await;
        let recipients = DeferredRecipients {
            from_batch: 1,
            move_chunk: 2,
            max_runs: 8,
        };
        let mut w = DirectWriter::new(path.clone(), Duration::from_secs(5), recipients);
        for i in 0..2 {
            w.write_batch(&[&prepared(env, i, &["a@example.com", "b@example.com"])])
                .unwrap();
        }
        w.move_recipients_if_due(false);
        let c = Connection::open(&path).unwrap();
        assert_eq!(places(&c), [0, 2, 1, 2]);
        c.execute_batch(
            "INSERT INTO message_recipients \
             SELECT environment_id, address, created_at, message_id, usage_type \
             FROM recipient_sends; \
             DELETE FROM message_recipient_runs; DELETE FROM message_recipient_run_ids; \
             DELETE FROM message_recipients_pending;",
        )
        .unwrap();
        w.move_recipients_if_due(true);
        w.move_recipients_if_due(true);
        assert!(!w.idle_work_due(), "nothing left to wait for");
        assert_eq!(places(&c), [4, 0, 0, 0]);
        db.close().await;
    }
}

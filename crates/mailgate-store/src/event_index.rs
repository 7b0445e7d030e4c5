//! The event indexer (SQLite): moves `message_events_pending` into `message_events`, the
//! per-message index of the event log, in key order and in large batches (migration 0012 says
//! why the index is written after the fact).
//!
//! A task of the store looks at the pending rows every `tick`. It moves them when they reach
//! the high-water mark (events keep coming: a large batch, whose entries share leaf pages), when
//! none arrived during the last tick (nobody waits), or when the last move is `max_wait` old (a
//! trickle). A move reads a snapshot of the pending rows sorted by message, then indexes it in
//! transactions of `slice` entries: each takes the write connection for a few milliseconds and a
//! narrow range of the index, so a send or a webhook waits for one slice at most. Once all are
//! indexed, it deletes the pending rows by ranges of seq, `slice` at a time: contiguous rows,
//! a few whole pages, where deleting each slice's rows (in message order, so scattered over the
//! whole table) dirtied nearly every page of it once per slice. In between an entry is both
//! indexed and pending; readers ask `seq IN (SELECT seq FROM message_event_seqs …)`, set
//! membership, so they find every event exactly once throughout.

use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// When the event indexer moves pending entries and how many per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredEventIndex {
    /// How often the indexer looks at the pending rows.
    pub tick: Duration,
    /// Pending rows that start a move while events keep coming.
    pub high_water: usize,
    /// Entries indexed per transaction.
    pub slice: usize,
    /// Longest pending rows wait while events trickle in.
    pub max_wait: Duration,
}

impl Default for DeferredEventIndex {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(100),
            high_water: 32_768,
            slice: 4_096,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// How long the indexer leaves pending rows alone after a failed move.
const MOVE_BACKOFF: Duration = Duration::from_secs(1);

/// The pending rows up to a seq, sorted by message, as one JSON array of `[message_id, seq]`:
/// one result row (sqlx hands each row of a result to the caller's thread on its own).
const SNAPSHOT: &str = "SELECT json_group_array(json_array(message_id, seq)) FROM \
     (SELECT message_id, seq FROM message_events_pending WHERE seq <= $1 \
      ORDER BY message_id, seq)";

/// Indexes a slice (`$1`, a JSON array of `[message_id, seq]`). Entries another process moved
/// first are skipped; an entry whose message is gone (its environment was deleted since the
/// snapshot) is dropped.
const INDEX_SLICE: &str = "INSERT INTO message_events (message_id, seq) \
     SELECT j.value ->> 0, j.value ->> 1 FROM json_each($1) AS j \
     WHERE EXISTS (SELECT 1 FROM messages WHERE id = j.value ->> 0) \
     ON CONFLICT DO NOTHING";

/// Deletes the pending rows of a range of seqs (`$1` < seq <= `$2`).
const DELETE_RANGE: &str = "DELETE FROM message_events_pending WHERE seq > $1 AND seq <= $2";

/// The running indexer; `stop` ends it between two transactions.
pub(crate) struct EventIndexer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EventIndexer {
    /// Starts the indexer on the current runtime.
    pub(crate) fn spawn(read: SqlitePool, write: SqlitePool, policy: DeferredEventIndex) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(read, write, policy, stopped));
        Self { stop, task }
    }

    /// Stops the indexer and waits for it (what is pending stays pending, where readers find
    /// it, until the next start).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    read: SqlitePool,
    write: SqlitePool,
    policy: DeferredEventIndex,
    mut stopped: watch::Receiver<bool>,
) {
    let mut last_seen: Option<i64> = None;
    let mut last_move = Instant::now();
    loop {
        tokio::select! {
            // Asked to stop, or the store is gone.
            _ = stopped.changed() => break,
            () = tokio::time::sleep(policy.tick) => {}
        }
        let state: Result<(i64, Option<i64>), sqlx::Error> =
            sqlx::query_as("SELECT count(*), max(seq) FROM message_events_pending")
                .fetch_one(&read)
                .await;
        let (pending, newest) = match state {
            Ok((pending, Some(newest))) if pending > 0 => (pending, newest),
            Ok(_) => {
                last_seen = None;
                continue;
            }
            // Before the migrations have run (an operator migrating by hand), there is no table.
            Err(e) if e.to_string().contains("no such table") => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the pending event index failed");
                continue;
            }
        };
        let quiet = last_seen == Some(newest);
        last_seen = Some(newest);
        let full = usize::try_from(pending).unwrap_or(usize::MAX) >= policy.high_water;
        if !(full || quiet || last_move.elapsed() >= policy.max_wait) {
            continue;
        }
        last_move = Instant::now();
        match move_pending(&read, &write, newest, policy.slice, &stopped).await {
            Ok(moved) => tracing::debug!(moved, "message events indexed"),
            Err(e) => {
                // The rows stay pending, where readers find them; a broken database is not
                // retried every tick.
                tracing::warn!(error = %e, "indexing message events failed");
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(MOVE_BACKOFF) => {}
                }
            }
        }
    }
}

/// Indexes the pending entries up to `newest`, `slice` at a time in key order; returns how
/// many it indexed. Stops early if asked to.
async fn move_pending(
    read: &SqlitePool,
    write: &SqlitePool,
    newest: i64,
    slice: usize,
    stopped: &watch::Receiver<bool>,
) -> Result<u64, sqlx::Error> {
    let snapshot: String = sqlx::query_scalar(SNAPSHOT)
        .bind(newest)
        .fetch_one(read)
        .await?;
    let entries: Vec<(String, i64)> =
        serde_json::from_str(&snapshot).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let slice = slice.max(1);
    let stopping = || *stopped.borrow() || stopped.has_changed().is_err();
    let mut moved = 0;
    for chunk in entries.chunks(slice) {
        if stopping() {
            // What is indexed stays pending too (found once, as above); the next move skips it.
            return Ok(moved);
        }
        let json = serde_json::to_string(chunk).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        // BEGIN IMMEDIATE: each statement reads before it writes (see `begin_write`).
        let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
        moved += sqlx::query(INDEX_SLICE)
            .bind(&json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
    }
    let mut seqs: Vec<i64> = entries.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    let mut after = 0;
    for chunk in seqs.chunks(slice) {
        let last = chunk[chunk.len() - 1];
        let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(DELETE_RANGE)
            .bind(after)
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        after = last;
    }
    Ok(moved)
}

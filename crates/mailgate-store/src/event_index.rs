//! The event indexer (SQLite): moves `message_events_pending` into `message_events`, the
//! per-message index of the event log, in key order and in large batches (migrations 0012 and
//! 0014 say why the index is written after the fact, and through runs).
//!
//! A task of the store looks at the log every `tick`. While events keep coming, it **seals** the
//! pending rows into a sorted run (`message_event_runs`, keyed by the run first) once there are
//! `high_water` of them: a run is appended at the right edge of its table, page after page, where
//! putting the same entries into `message_events` dirtied most of its leaves, on the write
//! connection the recordings wait for. Once the log is quiet for a tick (no event since the last
//! look), it moves what is pending straight into the index and **merges** the oldest run into it,
//! `slice` entries per transaction; if runs pile up past `max_runs` under sustained load, it
//! merges while events come too, so readers never probe more than that many. A trickle of
//! events is moved once the oldest pending one is `max_wait` old.
//!
//! Each transaction takes the write connection for a few milliseconds and a narrow range of the
//! index, so a send or a webhook waits for one slice at most. Readers ask `seq IN (SELECT seq
//! FROM message_event_seqs …)`, set membership, over the index, the listed runs and the pending
//! rows: an entry is found wherever it is, and an entry in two places at once (a move stopped
//! between indexing and deleting, or a pending row sealed by two processes) is still one event.

use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// When the event indexer seals, moves and merges entries, and how many per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredEventIndex {
    /// How often the indexer looks at the log.
    pub tick: Duration,
    /// Pending rows sealed into a run while events keep coming (readers scan the pending rows,
    /// so they stay few).
    pub high_water: usize,
    /// Entries indexed per transaction.
    pub slice: usize,
    /// Longest pending rows wait while events trickle in.
    pub max_wait: Duration,
    /// Runs allowed before the indexer merges while events keep coming (each is one more index
    /// probe per read).
    pub max_runs: usize,
}

impl Default for DeferredEventIndex {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(100),
            high_water: 32_768,
            slice: 4_096,
            max_wait: Duration::from_secs(5),
            max_runs: 64,
        }
    }
}

/// How long the indexer leaves the entries alone after a failed step.
const MOVE_BACKOFF: Duration = Duration::from_secs(1);

/// What the indexer looks at each tick: the pending rows, the newest of them, the newest event
/// of the log (whether events came since the last look) and the listed runs.
const STATE: &str = "SELECT (SELECT count(*) FROM message_events_pending), \
     (SELECT max(seq) FROM message_events_pending), \
     (SELECT coalesce(max(seq), 0) FROM events), \
     (SELECT count(*) FROM message_event_run_ids)";

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

/// A new run's id: after every run there is (ids are never reused while listed).
const NEXT_RUN: &str = "SELECT coalesce(max(run), 0) + 1 FROM message_event_run_ids";

/// Writes the pending rows up to seq `$2` as run `$1`, in key order.
const SEAL_RUN: &str = "INSERT INTO message_event_runs (run, message_id, seq) \
     SELECT $1, message_id, seq FROM message_events_pending WHERE seq <= $2 \
     ORDER BY message_id, seq";

const LIST_RUN: &str = "INSERT INTO message_event_run_ids (run) VALUES ($1)";

const DELETE_SEALED: &str = "DELETE FROM message_events_pending WHERE seq <= $1";

const OLDEST_RUN: &str = "SELECT min(run) FROM message_event_run_ids";

/// The key of run `$1`'s entry number `$2` (from 0) in key order: where a merge slice ends.
const SLICE_END: &str = "SELECT message_id, seq FROM message_event_runs WHERE run = $1 \
     ORDER BY message_id, seq LIMIT 1 OFFSET $2";

/// Run `$1`'s entries up to the key `($2, $3)` (a range of its primary key) into the index, then
/// deleted. Entries of messages gone since are dropped, as in `INDEX_SLICE`.
const MERGE_SLICE: &str = "INSERT INTO message_events (message_id, seq) \
     SELECT message_id, seq FROM message_event_runs AS r \
     WHERE run = $1 AND (message_id, seq) <= ($2, $3) \
     AND EXISTS (SELECT 1 FROM messages WHERE id = r.message_id) \
     ON CONFLICT DO NOTHING";
const DELETE_SLICE: &str =
    "DELETE FROM message_event_runs WHERE run = $1 AND (message_id, seq) <= ($2, $3)";

/// The rest of run `$1`, as `MERGE_SLICE` and `DELETE_SLICE`.
const MERGE_REST: &str = "INSERT INTO message_events (message_id, seq) \
     SELECT message_id, seq FROM message_event_runs AS r \
     WHERE run = $1 AND EXISTS (SELECT 1 FROM messages WHERE id = r.message_id) \
     ON CONFLICT DO NOTHING";
const DELETE_REST: &str = "DELETE FROM message_event_runs WHERE run = $1";

const UNLIST_RUN: &str = "DELETE FROM message_event_run_ids WHERE run = $1";

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

    /// Stops the indexer and waits for it (what is pending or in runs stays there, where
    /// readers find it, until the next start).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the indexer saw at one look.
#[derive(Debug, Clone, Copy)]
struct State {
    pending: usize,
    newest_pending: Option<i64>,
    newest_event: i64,
    runs: usize,
}

/// One step of keeping the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The pending rows up to this seq straight into the index.
    Move(i64),
    /// The pending rows up to this seq into a new run.
    Seal(i64),
    /// The oldest run into the index.
    Merge,
}

/// The steps due, in order, given what the indexer saw: `quiet` when no event came since the
/// last look, `stale` when pending rows have waited `max_wait`.
fn steps_due(policy: &DeferredEventIndex, state: State, quiet: bool, stale: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(newest) = state.newest_pending {
        if quiet || (stale && state.pending < policy.high_water) {
            steps.push(Step::Move(newest));
        } else if state.pending >= policy.high_water {
            steps.push(Step::Seal(newest));
        }
    }
    if state.runs > 0 && (quiet || state.runs > policy.max_runs) {
        steps.push(Step::Merge);
    }
    steps
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
        let state = match look(&read).await {
            Ok(state) => state,
            // Before the migrations have run (an operator migrating by hand), there are no
            // tables.
            Err(e) if e.to_string().contains("no such table") => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the pending event index failed");
                continue;
            }
        };
        let quiet = last_seen == Some(state.newest_event);
        last_seen = Some(state.newest_event);
        if state.newest_pending.is_none() {
            last_move = Instant::now();
        }
        let steps = steps_due(
            &policy,
            state,
            quiet,
            last_move.elapsed() >= policy.max_wait,
        );
        for step in steps {
            if matches!(step, Step::Move(_) | Step::Seal(_)) {
                last_move = Instant::now();
            }
            let done = match step {
                Step::Move(newest) => move_pending(&read, &write, newest, policy.slice, &stopped)
                    .await
                    .map(|moved| tracing::debug!(moved, "message events indexed")),
                Step::Seal(newest) => seal(&write, newest)
                    .await
                    .map(|run| tracing::debug!(run, "message events sealed into a run")),
                Step::Merge => merge_oldest(&read, &write, policy.slice, &stopped)
                    .await
                    .map(|merged| tracing::debug!(merged, "a run of message events merged")),
            };
            if let Err(e) = done {
                // The entries stay where they were, where readers find them; a broken
                // database is not retried every tick.
                tracing::warn!(error = %e, "indexing message events failed");
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(MOVE_BACKOFF) => {}
                }
                break;
            }
        }
    }
}

async fn look(read: &SqlitePool) -> Result<State, sqlx::Error> {
    let (pending, newest_pending, newest_event, runs): (i64, Option<i64>, i64, i64) =
        sqlx::query_as(STATE).fetch_one(read).await?;
    Ok(State {
        pending: usize::try_from(pending).unwrap_or(0),
        newest_pending,
        newest_event,
        runs: usize::try_from(runs).unwrap_or(0),
    })
}

fn stopping(stopped: &watch::Receiver<bool>) -> bool {
    *stopped.borrow() || stopped.has_changed().is_err()
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
    let mut moved = 0;
    for chunk in entries.chunks(slice) {
        if stopping(stopped) {
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

/// Seals the pending entries up to `newest` into a new run, listed and taken out of the pending
/// rows in one transaction; returns the run's id.
async fn seal(write: &SqlitePool, newest: i64) -> Result<i64, sqlx::Error> {
    let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
    let run: i64 = sqlx::query_scalar(NEXT_RUN).fetch_one(&mut *tx).await?;
    sqlx::query(SEAL_RUN)
        .bind(run)
        .bind(newest)
        .execute(&mut *tx)
        .await?;
    sqlx::query(LIST_RUN).bind(run).execute(&mut *tx).await?;
    sqlx::query(DELETE_SEALED)
        .bind(newest)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(run)
}

/// Merges the oldest listed run into the index, `slice` entries per transaction in key order,
/// and unlists it with its last entries; returns how many entries it indexed. Stops early if
/// asked to (the rest of the run stays listed).
async fn merge_oldest(
    read: &SqlitePool,
    write: &SqlitePool,
    slice: usize,
    stopped: &watch::Receiver<bool>,
) -> Result<u64, sqlx::Error> {
    let Some(run) = sqlx::query_scalar::<_, Option<i64>>(OLDEST_RUN)
        .fetch_one(read)
        .await?
    else {
        return Ok(0);
    };
    let offset = i64::try_from(slice.max(1) - 1).unwrap_or(i64::MAX);
    let mut merged = 0;
    loop {
        if stopping(stopped) {
            return Ok(merged);
        }
        // Read on the write pool's transaction: the end is a key of this run as it is now.
        let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
        let end: Option<(String, i64)> = sqlx::query_as(SLICE_END)
            .bind(run)
            .bind(offset)
            .fetch_optional(&mut *tx)
            .await?;
        let (merge, delete) = if end.is_some() {
            (MERGE_SLICE, DELETE_SLICE)
        } else {
            (MERGE_REST, DELETE_REST)
        };
        let bind = |sql| {
            let q = sqlx::query(sql).bind(run);
            match &end {
                Some((id, seq)) => q.bind(id.clone()).bind(*seq),
                None => q,
            }
        };
        merged += bind(merge).execute(&mut *tx).await?.rows_affected();
        bind(delete).execute(&mut *tx).await?;
        if end.is_none() {
            sqlx::query(UNLIST_RUN).bind(run).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        if end.is_none() {
            return Ok(merged);
        }
    }
}

#[cfg(test)]
mod tests;

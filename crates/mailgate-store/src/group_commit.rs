//! Group commit: one background writer takes every job waiting (up to a maximum) — sends to
//! store and, on a SQLite file, claims, completions and provider events — runs them all in one
//! transaction, and answers each only after the commit.

use std::time::{Duration, Instant};

use mailgate_core::message::EnqueueOutcome;
use mailgate_core::store::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::error::{db_error, BatchFailed};
use crate::pools::{Pools, WriteConnection};
use crate::rows::ClaimRow;
use crate::store::enqueue::{write_batch, DirectWriter, PreparedMessage};
use crate::store::inbound::direct::RecordJob;
use crate::store::queue::direct::{ClaimJob, CompleteJob};

mod turn;

/// One waiting `enqueue`.
pub(crate) struct Request {
    /// The message, already serialized.
    pub(crate) message: PreparedMessage,
    /// Where the outcome goes, after the commit.
    pub(crate) reply: oneshot::Sender<Result<EnqueueOutcome, StoreError>>,
}

/// Where a job's answer goes, after the commit.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the writer is asked to do. Sends are most of the jobs and travel unboxed, as they did
/// when they were the only kind (the channel's slots are the size of one).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Job {
    /// Store a send.
    Enqueue(Request),
    /// Claim due messages (a SQLite file only).
    Claim(ClaimJob, Reply<Vec<ClaimRow>>),
    /// Record delivery outcomes (a SQLite file only).
    Complete(CompleteJob, Reply<usize>),
    /// Record provider events (a SQLite file only): whether each was new.
    Record(RecordJob, Reply<Vec<bool>>),
}

impl Job {
    /// Answers the job with `error`.
    fn fail(self, error: StoreError) {
        // A caller that gave up has nothing to be told.
        match self {
            Self::Enqueue(r) => drop(r.reply.send(Err(error))),
            Self::Claim(_, reply) => drop(reply.send(Err(error))),
            Self::Complete(_, reply) => drop(reply.send(Err(error))),
            Self::Record(_, reply) => drop(reply.send(Err(error))),
        }
    }
}

/// Starts the writer on a thread of its own, with a single-threaded runtime. A batch takes
/// several round trips to the database, and each resumes the writer: on the shared runtime every
/// resumption waited behind the request handlers that were filling the next batch, which made
/// the writer — the one thing every send waits for — the slowest task in the process. With
/// `direct` (a SQLite file), every job is run on the thread's own connection (`turn`);
/// otherwise the writer only stores sends. It stops once every sender is dropped and the queue
/// is drained; `stopped` fires then.
pub(crate) fn spawn(
    pools: Pools,
    direct: Option<DirectWriter>,
    group_commit_max: usize,
) -> (mpsc::Sender<Job>, oneshot::Receiver<()>) {
    let max = group_commit_max.max(1);
    let (tx, rx) = mpsc::channel(max.saturating_mul(2));
    let (stopped_tx, stopped) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => {
            let spawned = std::thread::Builder::new()
                .name("mailgate-enqueue".into())
                .spawn(move || {
                    runtime.block_on(run(pools, direct, rx, max));
                    let _ = stopped_tx.send(());
                });
            if let Err(e) = spawned {
                // No thread to be had: the sends fail as if the store were closed.
                tracing::error!(error = %e, "could not start the enqueue writer thread");
            }
        }
        Err(e) => tracing::error!(error = %e, "could not start the enqueue writer runtime"),
    }
    (tx, stopped)
}

/// Longest the writer keeps the write connection across consecutive batches before it lets
/// other writers of the process (completions, webhooks, the API) have it.
const HOLD_SLICE: Duration = Duration::from_millis(10);

/// How long no send must have come before the writer indexes recipients that wait outside the
/// recipient index (pending or in runs). Under load the queue is empty for moments between
/// batches; a slice indexed in each of them put its recipients in their places in the index one
/// page each (the cost sealing runs avoids), ~15 % fewer accepted sends per second side by side.
const QUIET: Duration = Duration::from_millis(20);

async fn run(
    pools: Pools,
    mut direct: Option<DirectWriter>,
    mut rx: mpsc::Receiver<Job>,
    max: usize,
) {
    let mut batch = Vec::with_capacity(max);
    // When the last batch was written: recipients are indexed in the writer's quiet moments.
    let mut last_batch = Instant::now();
    loop {
        if let Some(direct) = direct.as_mut().filter(|d| d.idle_work_due()) {
            let quiet = last_batch.elapsed();
            if quiet >= QUIET && rx.is_empty() {
                // Nobody waits, nor has for a while: index a slice of the recipients still
                // outside the index, then look again, so that a send arriving meanwhile waits
                // for one slice at most.
                match WriteConnection::acquire(&pools).await {
                    Ok(_held) => direct.move_recipients_if_due(true),
                    Err(e) => direct.defer_idle_work(&e),
                }
                continue;
            }
            // Sends, or the quiet moment, whichever comes first (`recv_many` is cancel-safe).
            match tokio::time::timeout(QUIET.saturating_sub(quiet), rx.recv_many(&mut batch, max))
                .await
            {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => continue,
            }
        } else if rx.recv_many(&mut batch, max).await == 0 {
            break;
        }
        // Taking and giving back a pooled connection costs round trips to the database (sqlx
        // pings it on release), so one connection serves every batch that is already waiting,
        // for up to HOLD_SLICE. With a direct writer, holding it is what keeps the process's
        // other writers out while the direct connection writes.
        let mut conn = match WriteConnection::acquire(&pools).await {
            Ok(conn) => conn,
            Err(e) => {
                for job in batch.drain(..) {
                    job.fail(unavailable(&e));
                }
                continue;
            }
        };
        let held = Instant::now();
        loop {
            let failed = match direct.as_mut() {
                Some(direct) => turn::run(direct, &mut batch),
                None => pooled_turn(&mut conn, &mut batch).await,
            };
            // The database failed (not a statement): give the connection back, so the pool
            // checks it, rather than sending the next batch down it.
            if failed {
                break;
            }
            // Sends keep coming: index pending recipients only once they pass the high-water
            // mark, between two batches.
            if let Some(direct) = direct.as_mut() {
                direct.move_recipients_if_due(false);
            }
            if held.elapsed() >= HOLD_SLICE {
                break;
            }
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                // Nobody waits: the moment to copy the log, rather than inside a commit.
                if let Some(direct) = direct.as_mut() {
                    direct.checkpoint_if_due();
                }
                break;
            }
        }
        last_batch = Instant::now();
        // Whatever arrived after the slice ended waits for the next connection.
    }
    tracing::debug!("enqueue writer stopped");
}

/// Stores the sends of `jobs` through the pool (PostgreSQL, SQLite in memory), answers them,
/// and says whether the database failed. Claims, completions and provider events never come
/// here: without a direct writer the store runs them on its pool.
async fn pooled_turn(conn: &mut WriteConnection, jobs: &mut Vec<Job>) -> bool {
    let mut sends = Vec::with_capacity(jobs.len());
    for job in jobs.drain(..) {
        match job {
            Job::Enqueue(request) => sends.push(request),
            other => other.fail(StoreError::Unavailable(Box::new(BatchFailed(
                "this job runs on the pool here, not on the writer".into(),
            )))),
        }
    }
    let outcomes = commit(conn, &sends).await;
    let failed = outcomes
        .iter()
        .any(|o| matches!(o, Err(StoreError::Unavailable(_))));
    for (request, outcome) in sends.into_iter().zip(outcomes) {
        // A caller that gave up still has its message stored; nothing to undo.
        let _ = request.reply.send(outcome);
    }
    failed
}

fn unavailable(e: &impl ToString) -> StoreError {
    StoreError::Unavailable(Box::new(BatchFailed(e.to_string())))
}

/// Stores a batch in one transaction. If a statement refuses it (say, one message names a
/// deleted environment), each message is retried alone so that one bad message does not fail
/// its neighbours; if the database itself failed, every waiter gets `Unavailable`.
async fn commit(
    conn: &mut WriteConnection,
    batch: &[Request],
) -> Vec<Result<EnqueueOutcome, StoreError>> {
    let messages: Vec<&PreparedMessage> = batch.iter().map(|r| &r.message).collect();
    match write(conn, &messages).await {
        Ok(outcomes) => {
            tracing::debug!(size = outcomes.len(), "enqueue batch committed");
            outcomes.into_iter().map(Ok).collect()
        }
        Err(WriteError::Refused(e)) if messages.len() > 1 => {
            tracing::warn!(error = %e, size = messages.len(), "enqueue batch refused; storing its messages one by one");
            let mut outcomes = Vec::with_capacity(messages.len());
            for m in messages {
                let one = write(conn, &[m]).await;
                outcomes.push(match one {
                    Ok(mut v) => v
                        .pop()
                        .ok_or_else(|| StoreError::Corrupt("empty enqueue outcome".into())),
                    Err(WriteError::Refused(e)) => Err(e),
                    Err(WriteError::Failed(e)) => Err(unavailable(&e)),
                });
            }
            outcomes
        }
        Err(WriteError::Refused(e)) => vec![Err(e)],
        Err(WriteError::Failed(e)) => {
            tracing::error!(error = %e, size = messages.len(), "enqueue batch failed");
            messages.iter().map(|_| Err(unavailable(&e))).collect()
        }
    }
}

/// Why a batch was not stored.
enum WriteError {
    /// A statement refused it: retrying its messages one by one can store the others.
    Refused(StoreError),
    /// The database failed.
    Failed(String),
}

/// Writes a batch on `conn`.
async fn write(
    conn: &mut WriteConnection,
    messages: &[&PreparedMessage],
) -> Result<Vec<EnqueueOutcome>, WriteError> {
    write_batch(conn, messages).await.map_err(|e| match e {
        e @ sqlx::Error::Database(_) => WriteError::Refused(db_error(e)),
        e => WriteError::Failed(e.to_string()),
    })
}

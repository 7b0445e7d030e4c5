//! Group commit for `enqueue`: one background writer takes every request waiting (up to a
//! maximum), stores them all in one transaction, and answers each only after the commit.

use mailgate_core::message::EnqueueOutcome;
use mailgate_core::store::StoreError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{db_error, BatchFailed};
use crate::pools::Pools;
use crate::store::enqueue::{write_batch, PreparedMessage};

/// One waiting `enqueue`.
pub(crate) struct Request {
    /// The message, already serialized.
    pub(crate) message: PreparedMessage,
    /// Where the outcome goes, after the commit.
    pub(crate) reply: oneshot::Sender<Result<EnqueueOutcome, StoreError>>,
}

/// Starts the writer. It stops once every sender is dropped and the queue is drained.
pub(crate) fn spawn(
    pools: Pools,
    group_commit_max: usize,
) -> (mpsc::Sender<Request>, JoinHandle<()>) {
    let max = group_commit_max.max(1);
    let (tx, rx) = mpsc::channel(max.saturating_mul(2));
    (tx, tokio::spawn(run(pools, rx, max)))
}

async fn run(pools: Pools, mut rx: mpsc::Receiver<Request>, max: usize) {
    let mut batch = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        let outcomes = commit(&pools, &batch).await;
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            // A caller that gave up still has its message stored; nothing to undo.
            let _ = request.reply.send(outcome);
        }
    }
    tracing::debug!("enqueue writer stopped");
}

/// Stores a batch in one transaction. If a statement refuses it (say, one message names a
/// deleted environment), each message is retried alone so that one bad message does not fail
/// its neighbours; if the database itself failed, every waiter gets `Unavailable`.
async fn commit(pools: &Pools, batch: &[Request]) -> Vec<Result<EnqueueOutcome, StoreError>> {
    let messages: Vec<&PreparedMessage> = batch.iter().map(|r| &r.message).collect();
    match write_batch(pools, &messages).await {
        Ok(outcomes) => {
            tracing::debug!(size = outcomes.len(), "enqueue batch committed");
            outcomes.into_iter().map(Ok).collect()
        }
        Err(e @ sqlx::Error::Database(_)) if messages.len() > 1 => {
            tracing::warn!(error = %e, size = messages.len(), "enqueue batch refused; storing its messages one by one");
            let mut outcomes = Vec::with_capacity(messages.len());
            for m in messages {
                let one = write_batch(pools, &[m]).await;
                outcomes.push(one.map_err(db_error).and_then(|mut v| {
                    v.pop()
                        .ok_or_else(|| StoreError::Corrupt("empty enqueue outcome".into()))
                }));
            }
            outcomes
        }
        Err(e @ sqlx::Error::Database(_)) => vec![Err(db_error(e))],
        Err(e) => {
            tracing::error!(error = %e, size = messages.len(), "enqueue batch failed");
            let reason = e.to_string();
            messages
                .iter()
                .map(|_| {
                    Err(StoreError::Unavailable(Box::new(BatchFailed(
                        reason.clone(),
                    ))))
                })
                .collect()
        }
    }
}

//! `SqlStore`: the storage traits implemented once over both backends.

mod captures;
pub(crate) mod enqueue;
mod environments;
mod events;
mod feeds;
pub(crate) mod inbound;
mod keys;
mod limits;
mod messages;
mod providers;
pub(crate) mod queue;
mod reputation;
pub(crate) mod suppressions;
mod templates;

use std::sync::Mutex;

use mailgate_core::store::{HealthCheck, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::cache::HotCache;
use crate::error::db_error;
use crate::error::{Closed, WriterGone};
use crate::event_index::{DeferredEventIndex, EventIndexer};
use crate::group_commit::{self, Job};
use crate::pools::{with_pool, Pools};

/// The storage of one database: its pool and the enqueue writer's inbox.
pub(crate) struct SqlStore {
    pools: Pools,
    /// Copies of the rows every request reads (keys, environments, settings).
    cache: HotCache,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    /// A SQLite file: the writer also claims, completes (`queue::direct`) and records provider
    /// events (`inbound::direct`).
    direct_writes: bool,
    /// Fires when the writer has drained its queue and stopped.
    writer_stopped: Mutex<Option<oneshot::Receiver<()>>>,
    /// SQLite: the task that indexes message events after the fact (migration 0012).
    indexer: Mutex<Option<EventIndexer>>,
}

impl SqlStore {
    /// Wraps a pool and starts its enqueue writer (on its own connection with `direct`) and,
    /// on SQLite, its event indexer (on the current runtime).
    pub(crate) fn new(
        pools: Pools,
        direct: Option<enqueue::DirectWriter>,
        group_commit_max: usize,
        cache_ttl: std::time::Duration,
        event_index: DeferredEventIndex,
    ) -> Self {
        let direct_writes = direct.is_some();
        let (tx, stopped) = group_commit::spawn(pools.clone(), direct, group_commit_max);
        let indexer = match &pools {
            Pools::Sqlite { read, write } => Some(EventIndexer::spawn(
                read.clone(),
                write.clone(),
                event_index,
            )),
            Pools::Postgres(_) => None,
        };
        Self {
            pools,
            cache: HotCache::new(cache_ttl),
            writer: Mutex::new(Some(tx)),
            direct_writes,
            writer_stopped: Mutex::new(Some(stopped)),
            indexer: Mutex::new(indexer),
        }
    }

    /// The pool.
    pub(crate) fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Lets the writer finish what it holds, stops the indexer, then closes the pool.
    pub(crate) async fn close(&self) {
        let indexer = lock(&self.indexer).take();
        if let Some(indexer) = indexer {
            indexer.stop().await;
        }
        drop(lock(&self.writer).take());
        let stopped = lock(&self.writer_stopped).take();
        if let Some(stopped) = stopped {
            // Err: the writer thread never started or is gone; nothing to wait for.
            let _ = stopped.await;
        }
        self.pools.close().await;
    }

    /// The writer's inbox, unless the store is closed.
    fn writer(&self) -> Option<mpsc::Sender<Job>> {
        lock(&self.writer).clone()
    }

    /// Whether claims, completions and provider events go to the writer (a SQLite file) rather
    /// than the pool.
    fn direct_writes(&self) -> bool {
        self.direct_writes
    }

    /// Hands the writer the job `job(reply)` makes and waits for its answer, which comes after
    /// the commit.
    async fn on_writer<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let writer = self
            .writer()
            .ok_or_else(|| StoreError::Unavailable(Box::new(Closed)))?;
        let (reply, answer) = oneshot::channel();
        writer
            .send(job(reply))
            .await
            .map_err(|_| StoreError::Unavailable(Box::new(Closed)))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable(Box::new(WriterGone)))?
    }
}

/// Locks a mutex, ignoring poisoning (the guarded values stay consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Appends one event (a `NewEvent`) on a transaction (`&mut *tx`), keeping its per-message
/// index entry as `events::MessageEventIndex` says.
macro_rules! insert_event {
    ($conn:expr, $event:expr) => {{
        use $crate::store::events::MessageEventIndex as _;
        let e: &mailgate_core::event::NewEvent = $event;
        let conn = $conn;
        let deferred = e.message_id.is_some()
            && e.event_type != mailgate_core::event::EventType::Queued;
        async {
            let before = if deferred { conn.newest_event_seq().await? } else { 0 };
            sqlx::query("INSERT INTO events (id, environment_id, message_id, type, created_at, data) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(e.id.to_string())
                .bind(e.environment_id.to_string())
                .bind(e.message_id.map(|m| m.to_string()))
                .bind(e.event_type.as_str())
                .bind(e.created_at.0)
                .bind(crate::rows::value_text(&e.data))
                .execute(&mut *conn)
                .await?;
            if deferred {
                conn.defer_message_events_after(before).await?;
            }
            Ok::<_, sqlx::Error>(())
        }
        .await
    }};
}
pub(crate) use insert_event;

#[async_trait::async_trait]
impl HealthCheck for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.pools, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(db_error))
    }
}

//! SQLite checkpoints off the commit path.
//!
//! In WAL mode a commit appends its pages to the log, and a checkpoint copies them back into the
//! database file: it reads the log, writes the file and syncs it. Left to SQLite, the connection
//! that commits runs that copy itself each time the log passes `wal_autocheckpoint` pages. That
//! connection is the process's one writer, which every send waits for: in the accept profile it
//! spent about a third of its time copying, and every send queued behind it waited the copy out.
//!
//! Here a task copies what was committed soon after the commit, on a reader connection and in
//! `PASSIVE` mode, which never blocks the writer. The writer's own auto-checkpoint stays as the
//! backstop that lets the log start over from its beginning: when it runs, most of the log has
//! already been copied and it finishes the rest.

use std::time::Duration;

use sqlx::SqlitePool;

/// Pause between checkpoints while commits keep coming.
const BUSY_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause: an idle database is looked at once a second.
const IDLE_PAUSE: Duration = Duration::from_secs(1);

/// Starts the checkpoint task on the current runtime. It stops when `pool` is closed.
pub(crate) fn spawn(pool: SqlitePool) {
    tokio::spawn(run(pool));
}

async fn run(pool: SqlitePool) {
    let mut pause = BUSY_PAUSE;
    let mut last_log = -1;
    loop {
        tokio::time::sleep(pause).await;
        if pool.is_closed() {
            break;
        }
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(sqlx::Error::PoolClosed) => break,
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint: no connection");
                pause = IDLE_PAUSE;
                continue;
            }
        };
        // (busy, pages in the log, pages of the log copied into the database)
        let result: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await;
        drop(conn);
        pause = match result {
            // The log moved since the last look: commits are coming, look again soon.
            Ok((_, log, _)) if log != last_log => {
                last_log = log;
                BUSY_PAUSE
            }
            Ok(_) => (pause * 2).min(IDLE_PAUSE),
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed");
                IDLE_PAUSE
            }
        };
    }
    tracing::debug!("checkpoint task stopped");
}

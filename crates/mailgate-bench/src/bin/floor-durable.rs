//! The durable-accept floor (reference/performance.md §4.5): `POST /v1/emails` parses the JSON,
//! requires `to`, hands the row to one SQLite writer thread and answers `202 {"id"}` only after
//! the row's transaction committed (WAL, `synchronous=FULL`). The writer commits whatever is
//! waiting, up to 256 rows, in one transaction (group commit).
//!
//! `THREADS` (default 1) sets the HTTP runtime's threads, `DB` the database file, `LISTEN` the
//! address; prints its address.
#![forbid(unsafe_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};

struct Job {
    body: Bytes,
    to: String,
    done: oneshot::Sender<i64>,
}

fn writer(path: String, mut rx: mpsc::UnboundedReceiver<Job>) -> rusqlite::Result<()> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS q(id INTEGER PRIMARY KEY, msg_id TEXT, status INT, run_at INT,
           attempts INT, lease_until INT, payload BLOB);
         CREATE INDEX IF NOT EXISTS q_due ON q(status, run_at);",
    )?;
    let mut batch = Vec::with_capacity(256);
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let tx = conn.transaction()?;
        let mut ids = Vec::with_capacity(batch.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO q(msg_id, status, run_at, attempts, payload) VALUES (?1, 0, ?2, 0, ?3)",
            )?;
            for job in &batch {
                stmt.execute(rusqlite::params![job.to, now, &job.body[..]])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        for (job, id) in batch.drain(..).zip(ids) {
            let _ = job.done.send(id);
        }
    }
    Ok(())
}

async fn send(
    State(tx): State<mpsc::UnboundedSender<Job>>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), StatusCode> {
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let to = v["to"]
        .as_str()
        .ok_or(StatusCode::UNPROCESSABLE_ENTITY)?
        .to_owned();
    let (done, wait) = oneshot::channel();
    tx.send(Job { body, to, done })
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let id = wait.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"id": format!("msg_{id}"), "status": "queued"})),
    ))
}

fn main() -> anyhow::Result<()> {
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let db = std::env::var("DB").unwrap_or_else(|_| "floor-durable.db".into());
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = std::thread::spawn(move || writer(db, rx));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(async move {
            let app = Router::new()
                .route("/v1/emails", post(send))
                .route("/healthz", get(|| async { "ok" }))
                .with_state(tx);
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            println!(
                "floor-durable listening on http://{}",
                listener.local_addr()?
            );
            axum::serve(listener, app).await?;
            anyhow::Ok(())
        })?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    Ok(())
}

//! The HTTP floor: axum hello-world (`GET /`) and a 1 KB JSON parse-and-reply (`POST /echo`).
//! `THREADS` (default 1) sets the runtime's worker threads; prints its address.
#![forbid(unsafe_code)]

use axum::routing::{get, post};
use axum::Router;

fn main() -> anyhow::Result<()> {
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(async move {
            let app = Router::new()
                .route("/", get(|| async { "Hello, World!" }))
                .route(
                    "/echo",
                    post(|body: axum::body::Bytes| async move {
                        let v: serde_json::Value = serde_json::from_slice(&body)
                            .map_err(|_| axum::http::StatusCode::BAD_REQUEST)?;
                        Ok::<_, axum::http::StatusCode>(axum::Json(
                            serde_json::json!({"to": v["to"]}),
                        ))
                    }),
                );
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            println!("floor-http listening on http://{}", listener.local_addr()?);
            axum::serve(listener, app).await?;
            anyhow::Ok(())
        })
}

//! The HTTP server: the routes of every imitated provider, the control and stats endpoints, and
//! an accept loop that can drop a connection mid-request (the `reset` fault).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::behavior::{Behavior, Fault};
use crate::providers::{self, Kind};
use crate::stats::{Stats, StatsSnapshot};

/// Signals the connection's task to drop the connection without answering.
#[derive(Clone)]
struct ResetSignal(Arc<Notify>);

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The state shared by every connection.
pub struct Shared {
    behavior: RwLock<Behavior>,
    bucket: Mutex<Bucket>,
    stats: Stats,
}

impl Shared {
    fn new(behavior: Behavior) -> Self {
        Self {
            behavior: RwLock::new(behavior),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
            stats: Stats::default(),
        }
    }

    /// Draws the delay and the fault for one message, the rate limit included.
    pub(crate) fn draw(&self) -> (std::time::Duration, Option<Fault>) {
        let behavior = self.behavior.read().unwrap().clone();
        let (delay, fault) = {
            let mut rng = rand::thread_rng();
            (
                behavior.latency.sample(&mut rng),
                behavior.faults.draw(&mut rng),
            )
        };
        if self.admit(behavior.rate_limit) {
            (delay, fault)
        } else {
            (delay, Some(Fault::Throttled))
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes one token; false when the rate limit is exceeded.
    fn admit(&self, rate: Option<f64>) -> bool {
        let Some(rate) = rate.filter(|r| *r > 0.0) else {
            return true;
        };
        let mut b = self.bucket.lock().unwrap();
        let now = Instant::now();
        let burst = rate.max(1.0);
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A running mock provider.
pub struct MockHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockHandle {
    /// `http://ADDR`, the base URL to give a provider's `endpoint` option.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Per message id, how many 2xx answers it got.
    pub fn accepted_by_id(&self) -> std::collections::HashMap<String, u32> {
        self.shared.stats.accepted_by_id()
    }

    /// Per message id, how many requests carried it.
    pub fn requests_by_id(&self) -> std::collections::HashMap<String, u32> {
        self.shared.stats.requests_by_id()
    }

    /// The shared state, for the SMTP sink to count into the same stats.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Changes latency, faults and rate limit from the next request on.
    pub fn set_behavior(&self, behavior: Behavior) {
        *self.shared.behavior.write().unwrap() = behavior;
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the mock on `addr` (port 0: any free port) on the current tokio runtime.
pub async fn spawn(addr: SocketAddr, behavior: Behavior) -> std::io::Result<MockHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(behavior));
    let app = router(Arc::clone(&shared));
    let task = tokio::spawn(accept_loop(listener, app, Arc::clone(&shared)));
    Ok(MockHandle { addr, shared, task })
}

async fn accept_loop(listener: TcpListener, app: Router, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        shared.stats().connection();
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let reset = Arc::new(Notify::new());
            let svc = TowerToHyperService::new(app.layer(Extension(ResetSignal(reset.clone()))));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            // Dropping the connection future closes the socket without an answer.
            tokio::select! {
                _ = conn => {}
                _ = reset.notified() => {}
            }
        });
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v2/email/outbound-emails", post(ses))
        .route("/v2/email/account", get(ses_account))
        .route("/v3/{domain}/messages", post(mailgun))
        .route("/email", post(postmark))
        .route("/email/batch", post(postmark))
        .route("/email/withTemplate", post(postmark))
        .route("/emails", post(resend))
        .route("/emails/batch", post(resend))
        .route("/v3/mail/send", post(sendgrid))
        .route("/stats", get(stats))
        .route("/stats/ids", get(stats_ids))
        .route("/stats/wait", get(stats_wait))
        .route("/reset", post(reset_stats))
        .route("/control", get(get_control).post(set_control))
        .with_state(shared)
}

type St = State<Arc<Shared>>;

async fn ses(s: St, r: Extension<ResetSignal>, h: HeaderMap, b: Bytes) -> Response {
    send(Kind::Ses, s, r, h, b).await
}
async fn mailgun(s: St, r: Extension<ResetSignal>, h: HeaderMap, b: Bytes) -> Response {
    send(Kind::Mailgun, s, r, h, b).await
}
async fn postmark(s: St, r: Extension<ResetSignal>, h: HeaderMap, b: Bytes) -> Response {
    send(Kind::Postmark, s, r, h, b).await
}
async fn resend(s: St, r: Extension<ResetSignal>, h: HeaderMap, b: Bytes) -> Response {
    send(Kind::Resend, s, r, h, b).await
}
async fn sendgrid(s: St, r: Extension<ResetSignal>, h: HeaderMap, b: Bytes) -> Response {
    send(Kind::SendGrid, s, r, h, b).await
}

async fn send(
    kind: Kind,
    State(shared): St,
    Extension(reset): Extension<ResetSignal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = providers::parse(kind, &headers, &body);
    shared.stats.begin();
    let (delay, fault) = shared.draw();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match fault {
        None => {
            let r = providers::success(kind, parsed.ids.len(), parsed.batch);
            let status = r.status().as_u16().to_string();
            shared.stats.end(&parsed.ids, &status, true);
            r
        }
        Some(Fault::Reset) => {
            shared.stats.end(&parsed.ids, "reset", false);
            reset.0.notify_one();
            std::future::pending::<Response>().await
        }
        Some(f) => {
            let r = providers::fault(kind, f);
            shared
                .stats
                .end(&parsed.ids, r.status().as_str(), r.status().is_success());
            r
        }
    }
}

async fn ses_account(State(shared): St) -> Response {
    let rate = shared
        .behavior
        .read()
        .unwrap()
        .rate_limit
        .unwrap_or(1_000_000.0);
    Json(json!({
        "DedicatedIpAutoWarmupEnabled": false,
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": true,
        "SendQuota": {"Max24HourSend": 1.0e9, "MaxSendRate": rate, "SentLast24Hours": 0.0},
        "SendingEnabled": true
    }))
    .into_response()
}

async fn stats(State(shared): St) -> Json<StatsSnapshot> {
    Json(shared.stats.snapshot())
}

/// `GET /stats/wait?unique_ids_2xx=N&timeout_ms=T`: answers once N distinct ids were
/// accepted (200) or after T ms (default 600,000) with 408, the counters in both cases.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    unique_ids_2xx: u64,
    timeout_ms: Option<u64>,
}

async fn stats_wait(State(shared): St, Query(q): Query<WaitQuery>) -> Response {
    let timeout = std::time::Duration::from_millis(q.timeout_ms.unwrap_or(600_000));
    let reached = shared.stats.wait_for_2xx(q.unique_ids_2xx, timeout).await;
    let status = if reached {
        StatusCode::OK
    } else {
        StatusCode::REQUEST_TIMEOUT
    };
    (status, Json(shared.stats.snapshot())).into_response()
}

async fn stats_ids(State(shared): St) -> Json<std::collections::HashMap<String, u32>> {
    Json(shared.stats.accepted_by_id())
}

async fn reset_stats(State(shared): St) -> StatusCode {
    shared.stats.reset();
    StatusCode::NO_CONTENT
}

async fn get_control(State(shared): St) -> Json<Behavior> {
    Json(shared.behavior.read().unwrap().clone())
}

async fn set_control(State(shared): St, Json(b): Json<Behavior>) -> Json<Behavior> {
    *shared.behavior.write().unwrap() = b.clone();
    Json(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/stats/wait` over real HTTP: 408 with the counters while the count is short, 200 as
    /// soon as the awaited delivery is answered.
    #[tokio::test]
    async fn stats_wait_answers_when_the_awaited_ids_are_delivered() {
        let mock = spawn("127.0.0.1:0".parse().unwrap(), Behavior::default())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let wait = |timeout_ms: u64| {
            http.get(format!(
                "{}/stats/wait?unique_ids_2xx=1&timeout_ms={timeout_ms}",
                mock.url()
            ))
            .send()
        };
        let short = wait(30).await.unwrap();
        assert_eq!(short.status(), 408);
        let body: StatsSnapshot = short.json().await.unwrap();
        assert_eq!((body.unique_ids_2xx, body.last_new_2xx_at), (0, None));

        let waiting = tokio::spawn(wait(10_000));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        let sent = http
            .post(format!("{}/email", mock.url()))
            .json(&json!({"Subject": "hi", "Metadata": {"mailgate_message_id": "msg_1"}}))
            .send()
            .await
            .unwrap();
        assert!(sent.status().is_success());
        let done = waiting.await.unwrap().unwrap();
        assert_eq!(done.status(), 200);
        let body: StatsSnapshot = done.json().await.unwrap();
        assert_eq!(body.unique_ids_2xx, 1);
        assert!(body.last_new_2xx_at.is_some());

        let typo = http
            .get(format!("{}/stats/wait?unique_ids=1", mock.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(typo.status(), 400, "an unknown parameter is refused");
    }
}

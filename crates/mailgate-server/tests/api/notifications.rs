//! Failure notifications, the event stream and reputation, against a real HTTP receiver on
//! loopback that verifies every Standard Webhooks signature itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use mailgate_core::dispatcher::DispatcherConfig;
use mailgate_core::event::{EventType, NewEvent};
use mailgate_core::feeds::FeedConfig;
use mailgate_core::provider::{SendError, SingleProvider};
use mailgate_core::retry::RetryPolicy;
use mailgate_core::{Clock, EnvironmentId, SystemClock};
use mailgate_testkit::app::{TestApp, TestAppBuilder};
use mailgate_testkit::events::append_events;
use mailgate_testkit::fake_provider::{FakeProvider, Scripted};
use serde_json::{json, Value};
use sha2::Sha256;

use super::support::{body, default_environment, email_with};

/// One verified delivery.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    status: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<Mutex<u32>>,
}

/// Standard Webhooks verification, from the spec: HMAC-SHA256 over `id.timestamp.body` with the
/// base64-decoded secret, any `v1,` entry matching, timestamp within 5 minutes.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let h = |n: &str| headers.get(n)?.to_str().ok().map(str::to_owned);
    let (id, ts, sigs) = (
        h("webhook-id")?,
        h("webhook-timestamp")?,
        h("webhook-signature")?,
    );
    let now = SystemClock.now().millis() / 1000;
    if (now - ts.parse::<i64>().ok()?).abs() > 300 {
        return None;
    }
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    sigs.split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
        .then_some(id)
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = r.secret.lock().unwrap().clone();
    let Some(id) = verify(&secret, &headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    let status = {
        let mut fail = r.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            500
        } else {
            200
        }
    };
    r.got.lock().unwrap().push(Received {
        id,
        body: serde_json::from_slice(&body).unwrap(),
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn accepted(&self) -> Vec<Received> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|r| r.status == 200).cloned().collect()
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.accepted();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn fast_feeds() -> FeedConfig {
    FeedConfig {
        poll_interval: Duration::from_millis(30),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        reputation_interval: Duration::from_millis(100),
        ..FeedConfig::default()
    }
}

fn with_fake(provider: &FakeProvider) -> TestAppBuilder {
    let retry = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    };
    let config = DispatcherConfig {
        poll_interval: Duration::from_millis(20),
        ..DispatcherConfig::default()
    };
    TestApp::builder().with_dispatcher(
        Arc::new(SingleProvider(Arc::new(provider.clone()))),
        retry,
        config,
    )
}

async fn set_targets(app: &TestApp, r: &Receiver, body_in: Value, key: &str) -> Value {
    let out = body(
        app.put_json(
            "/v1/environments/default/notifications",
            &app.admin_key,
            &body_in,
        )
        .await,
        200,
    )
    .await;
    *r.secret.lock().unwrap() = out[key]["secret"]
        .as_str()
        .expect("secret shown once")
        .into();
    out
}

async fn send(app: &TestApp) -> String {
    let email = email_with(json!({"environment": "default"}));
    let out = body(
        app.post_json("/v1/emails", &app.admin_key, &email).await,
        202,
    )
    .await;
    out["id"].as_str().unwrap().to_owned()
}

fn event(env: EnvironmentId, t: EventType, data: Value) -> NewEvent {
    NewEvent {
        id: mailgate_core::EventId::new(),
        environment_id: env,
        message_id: None,
        event_type: t,
        created_at: SystemClock.now(),
        data,
    }
}

fn batch(
    env: EnvironmentId,
    provider: &str,
    sent: usize,
    hard: usize,
    complaints: usize,
) -> Vec<NewEvent> {
    let mut v = Vec::new();
    v.extend((0..sent).map(|_| event(env, EventType::Sent, json!({"provider": provider}))));
    v.extend((0..hard).map(|_| {
        event(
            env,
            EventType::Bounced,
            json!({"provider": provider, "bounce_type": "hard"}),
        )
    }));
    v.extend(
        (0..complaints).map(|_| event(env, EventType::Complained, json!({"provider": provider}))),
    );
    v
}

#[tokio::test]
async fn permanent_and_credential_failures_send_signed_notifications() {
    let fake = FakeProvider::new();
    fake.script([
        Scripted::Fail(SendError::permanent(
            "MessageRejected",
            "rejected <ann@example.com>",
        )),
        Scripted::Fail(SendError::permanent("http_401", "bad key")),
    ]);
    let app = with_fake(&fake).with_feeds(fast_feeds(), 1).spawn().await;
    let (r, url) = Receiver::start().await;
    let out = set_targets(&app, &r, json!({"webhook": {"url": url}}), "webhook").await;
    assert_eq!(out["webhook"]["url"], url.as_str());

    let first = send(&app).await;
    let got = r
        .wait_for("a failure notification", |g| !g.is_empty())
        .await;
    let n = &got[0].body;
    assert_eq!(n["type"], "message.failed");
    assert_eq!(n["failures"][0]["message_id"], first.as_str());
    let text = n.to_string();
    assert!(!text.contains("ann@example.com"), "no addresses: {text}");

    send(&app).await;
    let got = r
        .wait_for("an auth notification", |g| {
            g.iter().any(|x| x.body["type"] == "provider.auth_failed")
        })
        .await;
    assert!(got.iter().all(|x| x.id.starts_with("ntf_")));

    // The secret is never shown again.
    let shown = body(
        app.get("/v1/environments/default/notifications", &app.admin_key)
            .await,
        200,
    )
    .await;
    assert!(shown["webhook"]["secret"].is_null());
    assert!(!shown.to_string().contains("whsec_"));
    assert!(shown["delivery"]["notifications"]["last_delivered_at"].is_string());
}

#[tokio::test]
async fn event_stream_delivers_every_event_once_in_order_despite_errors_and_two_workers() {
    let fake = FakeProvider::new();
    let app = with_fake(&fake).with_feeds(fast_feeds(), 2).spawn().await;
    let (r, url) = Receiver::start().await;
    *r.fail_first.lock().unwrap() = 3;
    set_targets(
        &app,
        &r,
        json!({"event_stream": {"url": url}}),
        "event_stream",
    )
    .await;

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(send(&app).await);
    }
    // queued + sent per message.
    let got = r.wait_for("ten events", |g| g.len() >= 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_after = r.accepted();
    assert_eq!(got_after.len(), got.len(), "no duplicates: {got_after:?}");
    assert_eq!(got.len(), 10);
    let event_ids: Vec<&str> = got.iter().map(|x| x.id.as_str()).collect();
    let mut unique = event_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    for x in &got {
        assert_eq!(x.body["id"], x.id.as_str());
    }
    // Every event the events API lists.
    let listed = body(
        app.get("/v1/events?environment=default&limit=100", &app.admin_key)
            .await,
        200,
    )
    .await;
    let listed: Vec<&str> = listed["data"]
        .as_array()
        .or(listed["events"].as_array())
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    // The same events; the stream is in commit order, which on PostgreSQL may interleave
    // concurrent transactions differently from `seq`, but never reorders one message's events.
    let mut sorted_listed = listed.clone();
    sorted_listed.sort_unstable();
    assert_eq!(unique, sorted_listed);
    for id in &ids {
        let types: Vec<&str> = got
            .iter()
            .filter(|x| x.body["message_id"] == id.as_str())
            .map(|x| x.body["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["queued", "sent"], "message {id}");
    }
    // Three 500s were retried.
    assert_eq!(
        r.got
            .lock()
            .unwrap()
            .iter()
            .filter(|x| x.status == 500)
            .count(),
        3
    );
    let shown = body(
        app.get("/v1/environments/default/notifications", &app.admin_key)
            .await,
        200,
    )
    .await;
    let d = &shown["delivery"]["event_stream"];
    assert_eq!(d["failures"], 0);
    assert!(d["last_error"].is_null());
    assert!(d["last_seq"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn reputation_numbers_and_one_notification_per_crossing() {
    let app = TestApp::builder().with_feeds(fast_feeds(), 2).spawn().await;
    let env = default_environment(&app).await;
    let (r, url) = Receiver::start().await;
    set_targets(&app, &r, json!({"webhook": {"url": url}}), "webhook").await;

    append_events(&app.db.url, &batch(env, "ses", 400, 24, 0)).await;
    append_events(&app.db.url, &batch(env, "smtp", 50, 10, 0)).await;
    let rep = body(
        app.get("/v1/environments/default/reputation", &app.admin_key)
            .await,
        200,
    )
    .await;
    assert_eq!(rep["level"], "warning");
    assert_eq!(rep["overall"]["sent"], 450);
    assert_eq!(rep["overall"]["hard_bounces"], 34);
    assert_eq!(rep["providers"]["ses"]["level"], "warning");
    assert_eq!(rep["providers"]["ses"]["bounce_rate"], 0.06);
    assert_eq!(rep["providers"]["smtp"]["judged"], false);
    assert_eq!(rep["window"]["seconds"], 86400);

    let reputation = |g: &[Received]| {
        g.iter()
            .filter(|x| x.body["type"] == "reputation.changed")
            .count()
    };
    r.wait_for("the warning", |g| reputation(g) == 1).await;
    // More events at the same level: no new notification.
    append_events(&app.db.url, &batch(env, "ses", 10, 1, 0)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reputation(&r.accepted()), 1);
    // Complaints push it to critical: exactly one more.
    append_events(&app.db.url, &batch(env, "ses", 0, 0, 3)).await;
    let got = r.wait_for("the critical", |g| reputation(g) == 2).await;
    let last = got
        .iter()
        .rev()
        .find(|x| x.body["type"] == "reputation.changed")
        .unwrap();
    assert_eq!(last.body["from"], "warning");
    assert_eq!(last.body["level"], "critical");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reputation(&r.accepted()), 2);
}

#[tokio::test]
async fn critical_reputation_pauses_sending_when_asked() {
    let fake = FakeProvider::new();
    let app = with_fake(&fake).spawn().await;
    let env = default_environment(&app).await;
    append_events(&app.db.url, &batch(env, "fake", 100, 20, 0)).await;
    let rep = body(
        app.client
            .patch(app.url("/v1/environments/default/reputation"))
            .bearer_auth(&app.admin_key)
            .json(&json!({"pause_on_critical": true}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(rep["level"], "critical");
    assert_eq!(rep["paused"], true);

    let id = send(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = body(
            app.get(&format!("/v1/emails/{id}"), &app.admin_key).await,
            200,
        )
        .await;
        // The message and its timeline are read separately: wait until both show the hold.
        let held = m.to_string().contains("paused_reputation") && m["status"] == "queued";
        if held {
            assert_eq!(m["attempts"], 0, "a held attempt is not counted: {m}");
            break;
        }
        assert!(Instant::now() < deadline, "not held: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fake.calls().is_empty(), "nothing reached the provider");
}

/// An email target receives a notification through the environment's own pipeline; a failing
/// notification email does not notify again.
#[tokio::test]
async fn email_targets_are_notified_through_the_pipeline_without_loops() {
    let fake = FakeProvider::new();
    // The application's message fails permanently, then the notification email fails too.
    fake.script([
        Scripted::Fail(SendError::permanent(
            "MessageRejected",
            "sender not verified",
        )),
        Scripted::Fail(SendError::permanent(
            "MessageRejected",
            "sender not verified",
        )),
    ]);
    let app = with_fake(&fake).with_feeds(fast_feeds(), 1).spawn().await;
    let bad = app
        .put_json(
            "/v1/environments/default/notifications",
            &app.admin_key,
            &json!({"email": {"to": "not an address"}}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let set = body(
        app.put_json(
            "/v1/environments/default/notifications",
            &app.admin_key,
            &json!({"email": {"to": "ops@acme.example", "from": "mailgate@acme.example"}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        set["email"],
        json!({"to": "ops@acme.example", "from": "mailgate@acme.example"})
    );

    let failed = send(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let notification = loop {
        if let Some(c) = fake
            .calls()
            .into_iter()
            .find(|c| c.subject.starts_with("[mailgate]"))
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no notification email: {:?}",
            fake.calls()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(notification.subject, "[mailgate] message.failed");
    assert_ne!(notification.message_id.to_string(), failed);
    // The notification email itself failed; that failure must not produce another email.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let emails = fake
        .calls()
        .into_iter()
        .filter(|c| c.subject.starts_with("[mailgate]"))
        .count();
    assert_eq!(
        emails,
        1,
        "a failing notification email must not notify again: {:?}",
        fake.calls()
    );
}

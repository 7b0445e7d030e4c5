//! Helpers for the webhook tests: messages put in `sent` state directly through the store, and
//! the checks every provider's scenario shares.

use std::time::Duration;

use mailgate_core::message::MessageStatus;
use mailgate_core::store::Completion;
use mailgate_core::{Clock, SystemClock};
use mailgate_testkit::app::TestApp;
use serde_json::{json, Value};

use super::support::{body, error};

/// The kinds of webhook every provider scenario sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Delivered,
    Bounced,
    Complained,
}

/// What a signed webhook is about.
#[derive(Debug, Clone)]
pub struct About {
    pub event_id: String,
    pub message_id: Option<String>,
    pub provider_message_id: Option<String>,
    pub recipient: String,
}

/// A webhook request to post.
#[derive(Debug, Clone, Default)]
pub struct Hook {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Seconds since the epoch now.
pub fn now_seconds() -> i64 {
    SystemClock.now().0 / 1000
}

/// When the test events happened (seconds since the epoch): the first time it is asked, then
/// the same. A provider's retry carries the event's own time again (part of its deduplication
/// key) under a fresh signature.
pub fn event_seconds() -> i64 {
    static AT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *AT.get_or_init(now_seconds)
}

/// Sets the default environment's provider.
pub async fn set_provider(app: &TestApp, config: Value) {
    body(
        app.put_json("/v1/environments/default/provider", &app.admin_key, &config)
            .await,
        200,
    )
    .await;
}

/// Sends to `to` and marks the message `sent` by `provider` with `pmid`, as a worker would.
pub async fn sent_message(app: &TestApp, to: &str, provider: &str, pmid: &str) -> String {
    let email = json!({"environment": "default", "from": "noreply@acme.example", "to": to, "subject": "Code", "text": "123456"});
    let out = body(
        app.post_json("/v1/emails", &app.admin_key, &email).await,
        202,
    )
    .await;
    let id = out["id"].as_str().unwrap().to_owned();
    let now = SystemClock.now();
    let claimed = app
        .storage
        .claim(50, now, Duration::from_secs(60))
        .await
        .unwrap();
    let c = claimed
        .into_iter()
        .find(|c| c.id.to_string() == id)
        .expect("claimed");
    let done = Completion {
        message_id: c.id,
        lease_token: c.lease_token,
        status: MessageStatus::Sent,
        next_attempt_at: None,
        provider: Some(provider.into()),
        provider_message_id: Some(pmid.into()),
        last_error: None,
        events: vec![],
    };
    assert_eq!(app.storage.complete(&[done], now).await.unwrap(), 1);
    id
}

/// Posts a webhook; returns the status and the JSON body.
pub async fn post(app: &TestApp, provider: &str, hook: &Hook) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(&format!("/webhooks/default/{provider}")))
        .body(hook.body.clone());
    for (k, v) in &hook.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A message's status.
pub async fn status(app: &TestApp, id: &str) -> String {
    let m = body(
        app.get(&format!("/v1/emails/{id}"), &app.admin_key).await,
        200,
    )
    .await;
    m["status"].as_str().unwrap().to_owned()
}

/// How many events a message has.
pub async fn event_count(app: &TestApp, id: &str) -> usize {
    let e = body(
        app.get(&format!("/v1/events?message_id={id}"), &app.admin_key)
            .await,
        200,
    )
    .await;
    e["data"].as_array().unwrap().len()
}

/// The suppression check of an address.
pub async fn suppression(app: &TestApp, address: &str) -> Value {
    body(
        app.get(
            &format!("/v1/environments/default/suppressions/{address}"),
            &app.admin_key,
        )
        .await,
        200,
    )
    .await
}

/// The shared scenario: delivery, bounce and complaint move messages and suppress; the next send
/// is refused; forged, stale and unsigned webhooks get 401 and record nothing; a redelivered
/// event is a duplicate. `sign(kind, about, unix_seconds)` signs a webhook; `forge` and
/// `unsign` spoil one; `stale` is false for providers without a signed timestamp.
pub async fn scenario(
    app: &TestApp,
    provider: &str,
    sign: impl Fn(Kind, &About, i64) -> Hook,
    forge: impl Fn(Hook) -> Hook,
    unsign: impl Fn(Hook) -> Hook,
    stale: bool,
) {
    let about = |n: &str, mid: Option<&str>, pmid: Option<&str>, to: &str| About {
        event_id: format!("{provider}-evt-{n}"),
        message_id: mid.map(str::to_owned),
        provider_message_id: pmid.map(str::to_owned),
        recipient: to.to_owned(),
    };
    let now = now_seconds();

    // Delivered, matched by the provider's message id alone.
    let a = sent_message(
        app,
        "ann@example.net",
        provider,
        &format!("{provider}-pm-1"),
    )
    .await;
    let delivered = about(
        "1",
        None,
        Some(&format!("{provider}-pm-1")),
        "ann@example.net",
    );
    let (code, out) = post(app, provider, &sign(Kind::Delivered, &delivered, now)).await;
    assert_eq!(code, 200, "{provider} delivery: {out}");
    assert_eq!(out["recorded"], 1, "{out}");
    assert_eq!(status(app, &a).await, "delivered");
    // The same event again (re-signed, as a provider retry would be) changes nothing.
    let (code, out) = post(app, provider, &sign(Kind::Delivered, &delivered, now + 1)).await;
    assert_eq!(
        (code, out["duplicates"].as_u64()),
        (200, Some(1)),
        "{provider}: {out}"
    );
    assert_eq!(event_count(app, &a).await, 2, "queued + delivered");

    // Hard bounce, matched by mailgate's id alone: bounced, suppressed, next send refused.
    let b = sent_message(app, "Bo@Example.net", provider, &format!("{provider}-pm-2")).await;
    let bounce = about("2", Some(&b), None, "Bo@Example.net");
    let (code, out) = post(app, provider, &sign(Kind::Bounced, &bounce, now)).await;
    assert_eq!(
        (code, out["suppressed"].as_u64()),
        (200, Some(1)),
        "{provider} bounce: {out}"
    );
    assert_eq!(status(app, &b).await, "bounced");
    let s = suppression(app, "bo@example.net").await;
    assert_eq!(
        (
            s["suppressed"].as_bool(),
            s["suppression"]["reason"].as_str()
        ),
        (Some(true), Some("hard_bounce")),
        "{s}"
    );
    assert_eq!(s["suppression"]["provider"], provider);
    let events = body(
        app.get(
            &format!("/v1/events?message_id={b}&type=bounced"),
            &app.admin_key,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(events["data"][0]["data"]["bounce_type"], "hard", "{events}");
    // The provider's detail of the bounce is kept in its log event.
    assert!(
        events["data"][0]["data"]["detail"]
            .as_object()
            .is_some_and(|d| d.values().any(|v| !v.is_null())),
        "{provider}: {events}"
    );
    let again = json!({"environment": "default", "from": "noreply@acme.example", "to": ["ok@example.net", "bo@example.net"], "subject": "s", "text": "t"});
    let resp = app.post_json("/v1/emails", &app.admin_key, &again).await;
    let e = error(resp).await;
    assert_eq!(
        (e.status, e.code.as_str(), e.field.as_deref()),
        (422, "recipient_suppressed", Some("to[1]"))
    );

    // Complaint after delivery: complained, suppressed.
    let c = sent_message(app, "cy@example.net", provider, &format!("{provider}-pm-3")).await;
    let pm3 = format!("{provider}-pm-3");
    post(
        app,
        provider,
        &sign(
            Kind::Delivered,
            &about("3a", Some(&c), Some(&pm3), "cy@example.net"),
            now,
        ),
    )
    .await;
    let (code, out) = post(
        app,
        provider,
        &sign(
            Kind::Complained,
            &about("3b", Some(&c), Some(&pm3), "cy@example.net"),
            now,
        ),
    )
    .await;
    assert_eq!(code, 200, "{provider} complaint: {out}");
    assert_eq!(status(app, &c).await, "complained");
    assert_eq!(
        suppression(app, "cy@example.net").await["suppression"]["reason"],
        "complaint"
    );
    // A late delivery event does not move it back.
    post(
        app,
        provider,
        &sign(
            Kind::Delivered,
            &about("3c", Some(&c), Some(&pm3), "cy@example.net"),
            now,
        ),
    )
    .await;
    assert_eq!(status(app, &c).await, "complained");

    // Forged, stale and unsigned: 401, nothing recorded.
    let d = sent_message(
        app,
        "dee@example.net",
        provider,
        &format!("{provider}-pm-4"),
    )
    .await;
    let bad = about(
        "4",
        Some(&d),
        Some(&format!("{provider}-pm-4")),
        "dee@example.net",
    );
    let mut spoiled = vec![
        ("forged", forge(sign(Kind::Bounced, &bad, now))),
        ("unsigned", unsign(sign(Kind::Bounced, &bad, now))),
    ];
    if stale {
        spoiled.push(("stale", sign(Kind::Bounced, &bad, now - 3 * 3600)));
    }
    for (what, hook) in spoiled {
        let (code, out) = post(app, provider, &hook).await;
        assert_eq!(code, 401, "{provider} {what}: {out}");
        assert!(
            out["error"]["code"]
                .as_str()
                .is_some_and(|c| c.starts_with("webhook_")),
            "{out}"
        );
    }
    assert_eq!(status(app, &d).await, "sent");
    assert_eq!(event_count(app, &d).await, 1, "only the queued event");
    assert_eq!(
        suppression(app, "dee@example.net").await["suppressed"],
        false
    );
}

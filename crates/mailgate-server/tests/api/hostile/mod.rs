//! Hostile input (issue 8): thousands of generated, deterministic (seeded) hostile requests over
//! real HTTP on loopback. Each must be answered with its stable error — the expected 4xx status
//! and `error.code` (or one of a small set where the family allows several), never a 2xx, never a
//! 5xx — and none may store anything: events (every message has one), suppressions, templates,
//! provider configurations, environments and keys are counted through the storage API before
//! and after.
//!
//! Families: header injection (subject, display names, custom header names and values,
//! attachment file names and types, tags, metadata, template data rendered into the subject and
//! the sender), oversize requests and contents, deep nesting, invalid UTF-8, malformed JSON,
//! wrong content types, malformed addresses (IDN edge cases included), unknown fields, wrong
//! types and conflicting fields, invalid usage types, locales and organizations (bodies and
//! paths), forged webhooks for every provider (and unconfigured ones), bad provider
//! configurations (DSNs, composite DSNs, JSON chains) and bad API keys.
//!
//! This module holds the test, the runner, the storage snapshot and the shared types; each group
//! of families generates its cases in its own submodule.

mod addresses;
mod fields;
mod injection;
mod json;
mod keys;
mod oversize;
mod providers;
mod webhooks;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::environment::Environment;
use mailgate_core::event::EventQuery;
use mailgate_core::message::Limits;
use mailgate_core::suppression::SuppressionQuery;
use mailgate_testkit::app::TestApp;
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;
use reqwest::Method;
use serde_json::{json, Value};

use super::sns::{fake_sns, FakeSns, TOPIC};
use super::support::body;

use addresses::malformed_addresses;
use fields::{invalid_names, unknown_fields, wrong_types};
use injection::header_injection;
use json::{deep_nesting, invalid_utf8, malformed_json, wrong_content_type};
use keys::bad_keys;
use oversize::oversize;
use providers::bad_provider_configs;
use webhooks::forged_webhooks;

/// The request body limit of the app under attack.
const MAX_REQUEST: usize = 32 * 1024;
const MAX_BODY: usize = 8 * 1024;
const MAX_ATTACHMENT: usize = 2 * 1024;
const MAX_ATTACHMENTS: usize = 3;
const MAILGUN_KEY: &str = "key-hostile-signing-0123456789abcdef";
const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RESEND_OTHER: &str = "whsec_c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXM=";
/// How many requests are in flight at once.
const CONCURRENCY: usize = 16;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn word(&mut self) -> String {
        let n = self.range(3, 10);
        (0..n)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Who sends a request.
#[derive(Clone)]
enum Auth {
    /// The `default` environment's key.
    Env,
    /// The admin key.
    Admin,
    /// No `Authorization` header.
    None,
    /// This exact `Authorization` header value.
    Raw(Vec<u8>),
}

/// One hostile request and the answers it may get.
struct Case {
    family: &'static str,
    what: String,
    method: Method,
    path: String,
    auth: Auth,
    /// `None`: no `Content-Type` header.
    content_type: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// Allowed (status, code) pairs.
    expect: Vec<(u16, &'static str)>,
    /// The `error.field` it must name, when the family makes it certain.
    field: Option<String>,
}

impl Case {
    fn new(family: &'static str, what: impl Into<String>, method: Method, path: &str) -> Self {
        Self {
            family,
            what: what.into(),
            method,
            path: path.to_owned(),
            auth: Auth::Env,
            content_type: Some(b"application/json".to_vec()),
            headers: Vec::new(),
            body: Vec::new(),
            expect: Vec::new(),
            field: None,
        }
    }

    /// `POST /v1/emails` with a JSON body.
    fn send(family: &'static str, what: impl Into<String>, body: &Value) -> Self {
        Self::new(family, what, Method::POST, "/v1/emails").json(body)
    }

    /// `POST /webhooks/{env}/{provider}`: no key, no content type unless given.
    fn hook(family: &'static str, what: impl Into<String>, env: &str, provider: &str) -> Self {
        let mut c = Self::new(
            family,
            what,
            Method::POST,
            &format!("/webhooks/{env}/{provider}"),
        );
        c.auth = Auth::None;
        c.content_type = None;
        c
    }

    fn json(mut self, body: &Value) -> Self {
        self.body = serde_json::to_vec(body).unwrap();
        self
    }

    fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn ct(mut self, ct: Option<&[u8]>) -> Self {
        self.content_type = ct.map(<[u8]>::to_vec);
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.expect.push((status, code));
        self
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// A valid send to mutate.
fn email() -> Value {
    json!({"from": "Sender <sender@example.com>", "to": ["ann@example.com"], "subject": "Hello", "text": "Hi Ann"})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// Percent-encodes everything but ASCII letters and digits (for path segments).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The keys the forged webhooks are (mis)signed with.
struct Keys {
    sendgrid: SigningKey,
    sendgrid_other: SigningKey,
    sns: FakeSns,
}

/// What the store holds, counted through the storage API.
#[derive(Debug, PartialEq)]
struct Snapshot {
    environments: usize,
    events: usize,
    keys: BTreeMap<String, usize>,
    suppressions: BTreeMap<String, usize>,
    templates: BTreeMap<String, usize>,
    captured: BTreeMap<String, usize>,
    provider_configs: Vec<(String, String, i64)>,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    let s = &app.storage;
    let envs: Vec<Environment> = s.list_environments().await.unwrap();
    let events = s
        .list_events(&EventQuery {
            environment_id: None,
            message_id: None,
            types: Vec::new(),
            since: None,
            after_seq: None,
            limit: 1_000_000,
        })
        .await
        .unwrap()
        .len();
    let mut snap = Snapshot {
        environments: envs.len(),
        events,
        keys: BTreeMap::new(),
        suppressions: BTreeMap::new(),
        templates: BTreeMap::new(),
        captured: BTreeMap::new(),
        provider_configs: s
            .list_provider_configs()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.environment_id.to_string(), c.scope, c.updated_at.0))
            .collect(),
    };
    snap.provider_configs.sort();
    for env in envs {
        let name = env.name.as_str().to_owned();
        snap.keys
            .insert(name.clone(), s.list_api_keys(&env.id).await.unwrap().len());
        let q = SuppressionQuery {
            environment_id: env.id,
            reason: None,
            contains: None,
            since: None,
            after: None,
            limit: 1_000_000,
        };
        snap.suppressions
            .insert(name.clone(), s.list_suppressions(&q).await.unwrap().len());
        snap.templates
            .insert(name.clone(), s.list_templates(&env.id).await.unwrap().len());
        snap.captured.insert(
            name,
            s.list_captured(&env.id, 1_000_000).await.unwrap().len(),
        );
    }
    snap
}

/// Sends one case; `Err` says what was wrong with the answer.
async fn run(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    key: &str,
    c: &Case,
) -> Result<(), String> {
    let mut req = client.request(c.method.clone(), format!("{base}{}", c.path));
    match &c.auth {
        Auth::Env => req = req.header("Authorization", format!("Bearer {key}")),
        Auth::Admin => req = req.header("Authorization", format!("Bearer {admin}")),
        Auth::None => {}
        Auth::Raw(v) => {
            req = req.header(
                "Authorization",
                reqwest::header::HeaderValue::from_bytes(v)
                    .map_err(|e| format!("bad test header: {e}"))?,
            )
        }
    }
    if let Some(ct) = &c.content_type {
        req = req.header(
            "Content-Type",
            reqwest::header::HeaderValue::from_bytes(ct)
                .map_err(|e| format!("bad test header: {e}"))?,
        );
    }
    for (k, v) in &c.headers {
        req = req.header(
            k.as_str(),
            reqwest::header::HeaderValue::from_bytes(v)
                .map_err(|e| format!("bad test header: {e}"))?,
        );
    }
    let resp = req
        .body(c.body.clone())
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.map_err(|e| format!("no body: {e}"))?;
    let short: String = text.chars().take(300).collect();
    if !(400..500).contains(&status) {
        return Err(format!("status {status} (not a 4xx): {short}"));
    }
    if ct != "application/json" {
        return Err(format!("status {status} with content type {ct:?}: {short}"));
    }
    let v: Value =
        serde_json::from_str(&text).map_err(|_| format!("status {status}, not JSON: {short}"))?;
    let code = v["error"]["code"].as_str().unwrap_or_default();
    if v["error"]["message"].as_str().is_none_or(str::is_empty) {
        return Err(format!("status {status} without a message: {short}"));
    }
    if !c.expect.iter().any(|(s, k)| *s == status && *k == code) {
        return Err(format!(
            "got {status} {code:?}, expected one of {:?}: {short}",
            c.expect
        ));
    }
    if let Some(field) = &c.field {
        if v["error"]["field"].as_str() != Some(field.as_str()) {
            return Err(format!(
                "{status} {code}: field {:?}, expected {field:?}",
                v["error"]["field"]
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_requests_get_stable_errors_and_store_nothing() {
    let limits = Limits {
        max_body_bytes: MAX_BODY,
        max_attachment_bytes: MAX_ATTACHMENT,
        max_attachments: MAX_ATTACHMENTS,
        ..Limits::default()
    };
    let app = TestApp::builder()
        .limits(limits)
        .max_request_bytes(MAX_REQUEST)
        .spawn()
        .await;
    let key = app.create_key("default").await;
    app.create_env("hooks").await;

    // `hooks` delivers through every provider with webhooks, each with its credentials.
    let sns = fake_sns().await;
    let sendgrid = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let sendgrid_public = STANDARD.encode(
        sendgrid
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    );
    let chain = json!({
        "primary": {"type": "ses", "region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "c2VjcmV0",
            "sns_topic_arn": TOPIC, "dangerous_sns_cert_url_prefix": format!("{}/", sns.base),
            "dangerous_sns_ca_file": sns.ca_file.path().to_str().unwrap()},
        "failovers": [
            {"dsn": format!("mailgun+api://key-api@mg.acme.example?webhook_signing_key={MAILGUN_KEY}")},
            {"dsn": "postmark+api://server-token@default?webhook_username=hook&webhook_password=s3cret"},
            {"type": "resend", "api_key": "re_test", "webhook_secret": RESEND_SECRET},
            {"type": "sendgrid", "api_key": "SG.test", "webhook_public_key": sendgrid_public},
        ],
    });
    body(
        app.put_json("/v1/environments/hooks/provider", &app.admin_key, &chain)
            .await,
        200,
    )
    .await;
    // A template that puts data into the subject and the sender.
    let template = json!({"subject": "Hi {{ name }}", "text": "{{ name }}", "from": "{{ sender }} <noreply@acme.example>"});
    body(
        app.put_json(
            "/v1/environments/default/templates/Hostile",
            &app.admin_key,
            &template,
        )
        .await,
        200,
    )
    .await;

    let keys = Keys {
        sendgrid,
        sendgrid_other: SigningKey::from_slice(&[9u8; 32]).unwrap(),
        sns,
    };
    let mut r = Rng(0x05EE_D0F1_550E);
    let mut cases = Vec::new();
    header_injection(&mut r, &mut cases);
    oversize(&mut r, &mut cases);
    deep_nesting(&mut r, &mut cases);
    invalid_utf8(&mut r, &mut cases);
    malformed_json(&mut r, &mut cases);
    wrong_content_type(&mut r, &mut cases);
    malformed_addresses(&mut r, &mut cases);
    unknown_fields(&mut r, &mut cases);
    wrong_types(&mut r, &mut cases);
    invalid_names(&mut r, &mut cases);
    forged_webhooks(&mut r, &keys, &mut cases);
    bad_provider_configs(&mut r, &mut cases);
    bad_keys(&mut r, &app.admin_key, &key, &mut cases);
    // Interleave the families so that concurrent requests mix.
    let mut order: Vec<usize> = (0..cases.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, r.below(i + 1));
    }
    let cases: Vec<Case> = {
        let mut slots: Vec<Option<Case>> = cases.into_iter().map(Some).collect();
        order.iter().map(|&i| slots[i].take().unwrap()).collect()
    };
    let mut per_family: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        *per_family.entry(c.family).or_default() += 1;
    }
    assert!(cases.len() >= 2000, "only {} cases", cases.len());

    let before = snapshot(&app).await;
    let started = Instant::now();
    let cases = Arc::new(cases);
    let next = Arc::new(AtomicUsize::new(0));
    let resent = Arc::new(AtomicUsize::new(0));
    // One connection per request: the server closes a connection whose oversize body it did not
    // read, and a pooled client could reuse it for the next request.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (cases, next, resent) = (Arc::clone(&cases), Arc::clone(&next), Arc::clone(&resent));
        let (client, base) = (client.clone(), app.address.clone());
        let (admin, key) = (app.admin_key.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(c) = cases.get(i) else { break };
                let mut result = run(&client, &base, &admin, &key, c).await;
                // An oversize body may be cut off by the server's early answer (the kernel
                // resets the connection with unread data); send it again, a few times at most.
                for _ in 0..4 {
                    let reset = result
                        .as_ref()
                        .is_err_and(|e| e.starts_with("request failed"));
                    if !(reset && c.body.len() > MAX_REQUEST) {
                        break;
                    }
                    resent.fetch_add(1, Ordering::SeqCst);
                    result = run(&client, &base, &admin, &key, c).await;
                }
                if let Err(e) = result {
                    failures.push(format!("[{}] {}: {e}", c.family, c.what.escape_debug()));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    eprintln!(
        "hostile: {} requests in {:.1} s, {} oversize ones sent again ({per_family:?})",
        cases.len(),
        elapsed.as_secs_f64(),
        resent.load(Ordering::SeqCst)
    );
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let after = snapshot(&app).await;
    assert_eq!(after, before, "hostile requests changed the store");
    // The server is still well.
    assert_eq!(app.get("/readyz", &app.admin_key).await.status(), 200);

    // The snapshot does see a change: one ordinary send adds a message (its `queued` event).
    body(app.post_json("/v1/emails", &key, &email()).await, 202).await;
    assert_ne!(
        snapshot(&app).await,
        before,
        "the snapshot sees a stored message"
    );
    app.stop().await;
}

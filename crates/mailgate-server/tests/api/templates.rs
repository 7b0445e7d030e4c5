//! Templates, usage types and the safe handling of sign-in secrets (issue 5): resolution,
//! escaping, header injection, validation at save, fuel, preview, test send, expiry, tracking
//! and redaction — over real HTTP on a fresh database.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailgate_core::dispatcher::DispatcherConfig;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{Provider, SendError, SendReceipt, SingleProvider};
use mailgate_core::retry::RetryPolicy;
use mailgate_core::settings::Tracking;
use mailgate_testkit::app::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

use super::support::{body, error, expect};

fn fast() -> (RetryPolicy, DispatcherConfig) {
    let retry = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(300),
        max_delay: Duration::from_millis(300),
    };
    let config = DispatcherConfig {
        poll_interval: Duration::from_millis(20),
        ..DispatcherConfig::default()
    };
    (retry, config)
}

async fn delivering_app() -> TestApp {
    let (retry, config) = fast();
    TestApp::builder()
        .with_registry_dispatcher(retry, config)
        .spawn()
        .await
}

async fn patch(app: &TestApp, path: &str, b: &Value) -> reqwest::Response {
    app.client
        .request(Method::PATCH, app.url(path))
        .bearer_auth(&app.admin_key)
        .json(b)
        .send()
        .await
        .unwrap()
}

async fn put_template(app: &TestApp, usage: &str, locale: &str, subject: &str) {
    let path = format!("/v1/environments/default/templates/{usage}?locale={locale}");
    let t = json!({"subject": subject, "text": "{{ code }}", "html": "<b>{{code}}</b>"});
    body(app.put_json(&path, &app.admin_key, &t).await, 200).await;
}

async fn preview(app: &TestApp, usage: &str, locale: Option<&str>) -> reqwest::Response {
    let path = format!("/v1/environments/default/templates/{usage}/preview");
    let mut b = json!({"data": {"code": "111222"}});
    if let Some(l) = locale {
        b["locale"] = l.into();
    }
    app.post_json(&path, &app.admin_key, &b).await
}

/// A `usage` send to the default environment.
fn signin(data: Value) -> Value {
    json!({"environment": "default", "from": "Acme <noreply@acme.example>",
           "to": "ann@example.com", "usage": "SignIn", "data": data})
}

async fn send(app: &TestApp, b: &Value) -> Value {
    body(app.post_json("/v1/emails", &app.admin_key, b).await, 202).await
}

async fn wait_for(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = body(
            app.get(&format!("/v1/emails/{id}"), &app.admin_key).await,
            200,
        )
        .await;
        if m["status"] == status {
            return m;
        }
        assert!(Instant::now() < deadline, "never reached {status}: {m}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn content(app: &TestApp, id: &str) -> Value {
    body(
        app.get(&format!("/v1/emails/{id}/content"), &app.admin_key)
            .await,
        200,
    )
    .await
}

#[tokio::test]
async fn resolution_follows_every_step() {
    let app = TestApp::spawn().await;
    let step = |r: Value| {
        (
            r["usage"].as_str().unwrap().to_owned(),
            r["locale"].as_str().unwrap().to_owned(),
            r["source"].as_str().unwrap().to_owned(),
        )
    };
    // Nothing stored: the built-in template of the usage, then the built-in Generic.
    let r = body(preview(&app, "SignIn", Some("fr-CA")).await, 200).await;
    assert_eq!(step(r), ("SignIn".into(), "en".into(), "builtin".into()));
    let r = body(preview(&app, "Custom_1", None).await, 200).await;
    assert_eq!(step(r), ("Generic".into(), "en".into(), "builtin".into()));

    put_template(&app, "SignIn", "fr-CA", "canadien").await;
    put_template(&app, "SignIn", "fr", "français").await;
    put_template(&app, "SignIn", "en", "english").await;
    put_template(&app, "Generic", "en", "generic").await;
    // (usage, locale) → (usage, base language) → (usage, default locale) → Generic.
    let r = body(preview(&app, "SignIn", Some("fr-CA")).await, 200).await;
    assert_eq!(
        (r["locale"].as_str(), r["subject"].as_str()),
        (Some("fr-CA"), Some("canadien"))
    );
    let r = body(preview(&app, "SignIn", Some("fr-BE")).await, 200).await;
    assert_eq!(
        (r["locale"].as_str(), r["subject"].as_str()),
        (Some("fr"), Some("français"))
    );
    let r = body(preview(&app, "SignIn", Some("es")).await, 200).await;
    assert_eq!(
        (r["locale"].as_str(), r["subject"].as_str()),
        (Some("en"), Some("english"))
    );
    let r = body(preview(&app, "MagicLink", Some("de")).await, 200).await;
    assert_eq!(
        step(r),
        ("Generic".into(), "en".into(), "environment".into())
    );

    // The default locale is the environment's.
    body(
        patch(
            &app,
            "/v1/environments/default",
            &json!({"default_locale": "fr"}),
        )
        .await,
        200,
    )
    .await;
    let r = body(preview(&app, "SignIn", Some("es")).await, 200).await;
    assert_eq!(r["subject"], "français");

    // A send records the (usage, locale) chosen in its queued event.
    let accepted = send(&app, &json!({"environment": "default", "from": "a@acme.example", "to": "ann@example.com", "usage": "Register", "locale": "en", "data": {"code": "987654"}})).await;
    let m = body(
        app.get(
            &format!("/v1/emails/{}", accepted["id"].as_str().unwrap()),
            &app.admin_key,
        )
        .await,
        200,
    )
    .await;
    let queued = &m["events"][0]["data"];
    assert_eq!(
        (
            queued["usage"].as_str(),
            queued["requested_usage"].as_str(),
            queued["template"].as_str()
        ),
        (Some("Generic"), Some("Register"), Some("environment"))
    );

    // Without Generic and without built-ins: template_not_found, never a blank email.
    assert_eq!(
        app.delete(
            "/v1/environments/default/templates/Generic?locale=en",
            &app.admin_key
        )
        .await
        .status(),
        204
    );
    body(
        patch(
            &app,
            "/v1/environments/default",
            &json!({"builtin_templates": false}),
        )
        .await,
        200,
    )
    .await;
    let b = json!({"environment": "default", "from": "a@acme.example", "to": "ann@example.com", "usage": "Custom_1", "data": {"code": "1"}});
    assert_eq!(
        error(app.post_json("/v1/emails", &app.admin_key, &b).await).await,
        expect(422, "template_not_found", Some("usage"))
    );
}

#[tokio::test]
async fn data_is_escaped_in_html_only_and_cannot_inject_headers() {
    let app = TestApp::spawn().await;
    let t = json!({"subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>", "text": "{{name}}", "from": "{{ sender }} <noreply@acme.example>"});
    body(
        app.put_json(
            "/v1/environments/default/templates/Welcome",
            &app.admin_key,
            &t,
        )
        .await,
        200,
    )
    .await;
    let script = "<script>alert(1)</script>";
    let b = json!({"environment": "default", "to": "ann@example.com", "usage": "Welcome", "data": {"name": script, "sender": "Acme"}});
    let id = send(&app, &b).await["id"].as_str().unwrap().to_owned();
    let c = content(&app, &id).await;
    assert_eq!(
        c["html"],
        "<p>&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</p>"
    );
    assert_eq!(c["text"], script);
    assert_eq!(c["subject"], format!("Hi {script}"));
    assert_eq!(c["from"]["name"], "Acme");

    let injected = json!({"environment": "default", "to": "ann@example.com", "usage": "Welcome", "data": {"name": "x\r\nBcc: victim@example.net", "sender": "Acme"}});
    assert_eq!(
        error(app.post_json("/v1/emails", &app.admin_key, &injected).await).await,
        expect(422, "header_injection", Some("subject"))
    );
    let injected = json!({"environment": "default", "to": "ann@example.com", "usage": "Welcome", "data": {"name": "Ann", "sender": "Acme\nBcc: victim@example.net"}});
    assert_eq!(
        error(app.post_json("/v1/emails", &app.admin_key, &injected).await).await,
        expect(422, "header_injection", Some("template.from"))
    );
    let missing = json!({"environment": "default", "to": "ann@example.com", "usage": "Welcome", "data": {"name": "Ann"}});
    assert_eq!(
        error(app.post_json("/v1/emails", &app.admin_key, &missing).await).await,
        expect(422, "missing_variable", Some("from"))
    );
}

#[tokio::test]
async fn bad_templates_are_refused_at_save_and_fuel_is_limited() {
    let app = TestApp::spawn().await;
    let path = "/v1/environments/default/templates/SignIn?locale=en";
    let bad = json!({"subject": "ok", "html": "<p>\n  {{ code </p>"});
    let r = app.put_json(path, &app.admin_key, &bad).await;
    let b = body(r, 422).await;
    assert_eq!(
        (b["error"]["code"].as_str(), b["error"]["field"].as_str()),
        (Some("invalid_template"), Some("html"))
    );
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("column"),
        "{message}"
    );
    assert_eq!(
        app.get(path, &app.admin_key)
            .await
            .json::<Value>()
            .await
            .unwrap()["source"],
        "builtin"
    );
    assert_eq!(
        error(
            app.put_json(path, &app.admin_key, &json!({"subject": "x", "htm": "y"}))
                .await
        )
        .await
        .code,
        "unknown_field"
    );

    let greedy = json!({"subject": "s", "text": "{% for i in range(1000) %}{% for j in range(1000) %}{{ code }}{% endfor %}{% endfor %}"});
    body(app.put_json(path, &app.admin_key, &greedy).await, 200).await;
    let r = app
        .post_json(
            "/v1/emails",
            &app.admin_key,
            &signin(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(
        error(r).await,
        expect(422, "template_too_expensive", Some("text"))
    );
    let r = preview(&app, "SignIn", None).await;
    assert_eq!(error(r).await.code, "template_too_expensive");
}

#[tokio::test]
async fn templates_api_lists_shows_previews_and_deletes() {
    let app = TestApp::spawn().await;
    put_template(&app, "SignIn", "de", "Anmelden").await;
    let list = body(
        app.get("/v1/environments/default/templates", &app.admin_key)
            .await,
        200,
    )
    .await;
    assert_eq!(list["data"][0]["usage"], "SignIn");
    assert_eq!(list["data"][0]["locale"], "de");
    assert!(list["builtin"]
        .as_array()
        .unwrap()
        .contains(&json!("MagicLink")));
    let shown = body(
        app.get(
            "/v1/environments/default/templates/SignIn?locale=de",
            &app.admin_key,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(shown["template"]["subject"], "Anmelden");
    // Preview with sample data: nothing is sent.
    let r = body(
        app.post_json(
            "/v1/environments/default/templates/MagicLink/preview",
            &app.admin_key,
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    assert!(r["html"]
        .as_str()
        .unwrap()
        .contains("https:&#x2f;&#x2f;example.com"));
    assert!(r["text"]
        .as_str()
        .unwrap()
        .contains("https://example.com/auth/verify"));
    let unsaved = json!({"template": {"subject": "Hello {{ app_name }}", "text": "{{ code }}"}});
    let r = body(
        app.post_json(
            "/v1/environments/default/templates/SignIn/preview",
            &app.admin_key,
            &unsaved,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (
            r["subject"].as_str(),
            r["text"].as_str(),
            r["source"].as_str()
        ),
        (Some("Hello Example"), Some("123456"), Some("request"))
    );
    let events = body(
        app.get("/v1/events?environment=default", &app.admin_key)
            .await,
        200,
    )
    .await;
    assert!(
        events["data"].as_array().unwrap().is_empty(),
        "a preview sends nothing"
    );
    assert_eq!(
        app.delete(
            "/v1/environments/default/templates/SignIn?locale=de",
            &app.admin_key
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        error(
            app.delete(
                "/v1/environments/default/templates/SignIn?locale=de",
                &app.admin_key
            )
            .await
        )
        .await
        .status,
        404
    );
    assert_eq!(
        error(
            app.get(
                "/v1/environments/default/templates/Custom?locale=en",
                &app.admin_key
            )
            .await
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn settings_are_patched_shown_and_applied() {
    let app = delivering_app().await;
    let r = patch(&app, "/v1/environments/default", &json!({"defaults": {"from": "Acme <noreply@acme.example>", "reply_to": "help@acme.example"}, "secret_fields": ["code", "otp"]})).await;
    let env = body(r, 200).await;
    assert_eq!(
        env["settings"]["defaults"]["from"]["email"],
        "noreply@acme.example"
    );
    assert_eq!(env["settings"]["secret_fields"], json!(["code", "otp"]));
    let shown = body(
        app.get("/v1/environments/default", &app.admin_key).await,
        200,
    )
    .await;
    assert_eq!(shown["settings"]["default_locale"], "en");
    assert_eq!(
        error(patch(&app, "/v1/environments/default", &json!({"colour": "red"})).await).await,
        expect(422, "unknown_field", Some("colour"))
    );
    assert_eq!(
        error(
            patch(
                &app,
                "/v1/environments/default",
                &json!({"defaults": {"sender": "x"}})
            )
            .await
        )
        .await,
        expect(422, "unknown_field", Some("defaults.sender"))
    );

    let b = json!({"environment": "default", "to": "ann@example.com", "usage": "SignIn", "data": {"code": "246810"}});
    let id = send(&app, &b).await["id"].as_str().unwrap().to_owned();
    let c = content(&app, &id).await;
    assert_eq!(c["from"]["email"], "noreply@acme.example");
    assert_eq!(c["reply_to"][0]["email"], "help@acme.example");

    // The test send goes through the real path and reports what happened; from is the default.
    let r = body(
        app.post_json(
            "/v1/environments/default/provider/test",
            &app.admin_key,
            &json!({"to": "ops@acme.example"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (
            r["finished"].as_bool(),
            r["ok"].as_bool(),
            r["status"].as_str(),
            r["provider"].as_str()
        ),
        (Some(true), Some(true), Some("delivered"), Some("capture"))
    );
    let types: Vec<_> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["queued", "sent", "delivered"]);
}

#[tokio::test]
async fn secrets_are_redacted_once_delivered() {
    let app = delivering_app().await;
    let link = "https://acme.example/verify?token=s3cr3t&u=1";
    let b = json!({"environment": "default", "from": "a@acme.example", "to": "ann@example.com", "usage": "MagicLink", "data": {"link": link, "code": "734911"}});
    let id = send(&app, &b).await["id"].as_str().unwrap().to_owned();
    let m = wait_for(&app, &id, "delivered").await;
    let c = content(&app, &id).await.to_string();
    assert!(!c.contains("s3cr3t") && !c.contains("734911"), "{c}");
    assert!(c.contains("[redacted]"), "{c}");
    assert!(
        !m.to_string().contains("s3cr3t"),
        "events carry no secrets: {m}"
    );
}

/// Records the tracking flags it is handed, and fails every attempt retryably when asked.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Tracking)>>,
    fail: bool,
}

#[async_trait]
impl Provider for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn send(&self, m: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        self.seen
            .lock()
            .unwrap()
            .push((m.id.to_string(), m.delivery.tracking));
        if self.fail {
            return Err(SendError::retryable("throttled", "slow down"));
        }
        Ok(SendReceipt {
            provider_message_id: None,
            final_delivery: false,
        })
    }
}

async fn app_with(provider: Arc<Recorder>) -> TestApp {
    let (retry, config) = fast();
    TestApp::builder()
        .with_dispatcher(Arc::new(SingleProvider(provider)), retry, config)
        .spawn()
        .await
}

#[tokio::test]
async fn a_code_that_expires_while_retrying_is_never_delivered() {
    let provider = Arc::new(Recorder {
        fail: true,
        ..Recorder::default()
    });
    let app = app_with(provider.clone()).await;
    let mut b = signin(json!({"code": "555123"}));
    b["ttl"] = 1.into();
    let id = send(&app, &b).await["id"].as_str().unwrap().to_owned();
    let m = wait_for(&app, &id, "expired").await;
    let types: Vec<_> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"queued"));
    assert_eq!(types.last(), Some(&"expired"));
    assert!(!types.contains(&"sent"));
    assert!(!provider.seen.lock().unwrap().is_empty());
    let c = content(&app, &id).await.to_string();
    assert!(
        !c.contains("555123"),
        "expired content is redacted too: {c}"
    );

    let mut past = signin(json!({"code": "555123"}));
    past["expires_at"] = "2020-01-01T00:00:00Z".into();
    assert_eq!(
        error(app.post_json("/v1/emails", &app.admin_key, &past).await).await,
        expect(422, "already_expired", Some("expires_at"))
    );
}

#[tokio::test]
async fn tracking_is_off_for_auth_mail_and_warned_about() {
    let provider = Arc::new(Recorder::default());
    let app = app_with(provider.clone()).await;
    body(
        patch(
            &app,
            "/v1/environments/default",
            &json!({"tracking": {"opens": true, "links": true}}),
        )
        .await,
        200,
    )
    .await;
    let auth = send(&app, &signin(json!({"code": "123456"}))).await;
    assert!(auth.get("warnings").is_none());
    let plain = send(&app, &json!({"environment": "default", "from": "a@acme.example", "to": "ann@example.com", "subject": "News", "text": "Hello"})).await;
    let mut magic = json!({"environment": "default", "from": "a@acme.example", "to": "ann@example.com", "usage": "MagicLink", "data": {"link": "https://acme.example/m?t=abcd"}});
    magic["track_links"] = true.into();
    let warned = send(&app, &magic).await;
    assert_eq!(warned["warnings"][0]["code"], "tracking_on_auth_email");
    assert!(warned["warnings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("link scanners"));

    let deadline = Instant::now() + Duration::from_secs(10);
    while provider.seen.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "three deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = provider.seen.lock().unwrap().clone();
    let of = |v: &Value| {
        seen.iter()
            .find(|(id, _)| id == v["id"].as_str().unwrap())
            .unwrap()
            .1
    };
    assert_eq!(
        of(&auth),
        Tracking {
            opens: false,
            links: false
        }
    );
    assert_eq!(
        of(&plain),
        Tracking {
            opens: true,
            links: true
        }
    );
    assert_eq!(
        of(&warned),
        Tracking {
            opens: false,
            links: true
        }
    );
}

//! `/v1/environments/{env}/provider`: setting, showing (redacted), removing, verifying and
//! testing an environment's provider, and delivery through it.

use std::time::Duration;

use mailgate_core::dispatcher::DispatcherConfig;
use mailgate_core::retry::RetryPolicy;
use mailgate_testkit::app::TestApp;
use serde_json::{json, Value};

use super::support::{body, error, expect, wait_for_status};

const PATH: &str = "/v1/environments/default/provider";

#[tokio::test]
async fn an_environment_starts_on_the_default_provider_and_can_set_and_remove_its_own() {
    let app = TestApp::spawn().await;
    let shown = body(app.get(PATH, &app.admin_key).await, 200).await;
    assert_eq!(shown["source"], "default");
    assert_eq!(shown["provider"]["type"], "capture");
    assert_eq!(shown["updated_at"], Value::Null);

    let set = body(
        app.put_json(
            PATH,
            &app.admin_key,
            &json!({"dsn": "capture://?delay_ms=5"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(set["source"], "environment");
    assert_eq!(set["provider"], json!({"type": "capture", "delay_ms": 5}));
    assert!(set["updated_at"].is_string());
    let shown = body(app.get(PATH, &app.admin_key).await, 200).await;
    assert_eq!(shown["provider"], json!({"type": "capture", "delay_ms": 5}));

    // The typed JSON form replaces it.
    let set = body(
        app.put_json(PATH, &app.admin_key, &json!({"type": "capture"}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        set["provider"],
        json!({"type": "capture", "delay_ms": null})
    );

    assert_eq!(app.delete(PATH, &app.admin_key).await.status(), 204);
    assert_eq!(
        body(app.get(PATH, &app.admin_key).await, 200).await["source"],
        "default"
    );
    assert_eq!(
        error(app.delete(PATH, &app.admin_key).await).await,
        expect(404, "not_found", None)
    );
}

#[tokio::test]
async fn bad_configurations_are_refused_with_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"dsn": "carrier-pigeon://coop"}),
            expect(422, "unknown_provider_type", Some("type")),
        ),
        (
            json!({"type": "carrier-pigeon"}),
            expect(422, "unknown_provider_type", Some("type")),
        ),
        (
            json!({"dsn": "capture://?dealy_ms=5"}),
            expect(422, "invalid_provider_config", Some("dealy_ms")),
        ),
        (
            json!({"dsn": "capture://?delay_ms=soon"}),
            expect(422, "invalid_provider_config", Some("delay_ms")),
        ),
        (
            json!({"dsn": "not a dsn"}),
            expect(422, "invalid_provider_config", Some("dsn")),
        ),
        (
            json!({"dsn": 42}),
            expect(422, "invalid_provider_config", Some("dsn")),
        ),
        (
            json!({"dsn": "capture://", "type": "capture"}),
            expect(422, "invalid_provider_config", Some("dsn")),
        ),
        (
            json!({}),
            expect(422, "invalid_provider_config", Some("type")),
        ),
        (
            json!({"type": "capture", "delay": 5}),
            expect(422, "invalid_provider_config", Some("provider")),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            error(app.put_json(PATH, &app.admin_key, &input).await).await,
            expected,
            "{input}"
        );
    }
    assert_eq!(
        body(app.get(PATH, &app.admin_key).await, 200).await["source"],
        "default",
        "nothing was stored"
    );
}

#[tokio::test]
async fn keys_of_other_environments_cannot_touch_the_provider() {
    let app = TestApp::spawn().await;
    app.create_env("staging").await;
    let staging_key = app.create_key("staging").await;
    assert_eq!(
        error(app.get(PATH, &staging_key).await).await,
        expect(403, "forbidden_environment", Some("env"))
    );
    let put = app
        .put_json(PATH, &staging_key, &json!({"dsn": "capture://"}))
        .await;
    assert_eq!(
        error(put).await,
        expect(403, "forbidden_environment", Some("env"))
    );
    // Its own environment is fine.
    let own = app
        .put_json(
            "/v1/environments/staging/provider",
            &staging_key,
            &json!({"dsn": "capture://"}),
        )
        .await;
    assert_eq!(body(own, 200).await["source"], "environment");
    assert_eq!(
        error(app.get(PATH, "mg_wrong").await).await,
        expect(401, "unauthorized", None)
    );
}

#[tokio::test]
async fn verify_reports_and_test_sends_through_the_environment_provider() {
    let retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    };
    let config = DispatcherConfig {
        poll_interval: Duration::from_millis(20),
        ..DispatcherConfig::default()
    };
    let app = TestApp::builder()
        .with_registry_dispatcher(retry, config)
        .spawn()
        .await;
    body(
        app.put_json(
            PATH,
            &app.admin_key,
            &json!({"dsn": "capture://?delay_ms=1"}),
        )
        .await,
        200,
    )
    .await;

    let report = body(
        app.post_json(&format!("{PATH}/verify"), &app.admin_key, &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(report["ok"], true);
    assert_eq!(report["source"], "environment");
    let checks = report["providers"][0]["checks"].as_array().unwrap();
    assert!(!checks.is_empty(), "{report}");
    assert!(
        checks
            .iter()
            .all(|c| c["aspect"].is_string() && c["status"].is_string() && c["detail"].is_string()),
        "{report}"
    );

    let bad = app
        .post_json(
            &format!("{PATH}/test"),
            &app.admin_key,
            &json!({"to": "nobody", "from": "a@acme.example"}),
        )
        .await;
    assert_eq!(error(bad).await, expect(422, "invalid_address", Some("to")));
    // The test send waits for the outcome and reports it.
    let report = body(
        app.post_json(
            &format!("{PATH}/test"),
            &app.admin_key,
            &json!({"to": "ann@example.com", "from": "ops@acme.example"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(report["status"], "delivered", "{report}");
    assert_eq!(report["provider"], "capture");
    assert_eq!(report["finished"], true);
    let no_sender = app
        .post_json(
            &format!("{PATH}/test"),
            &app.admin_key,
            &json!({"to": "ann@example.com"}),
        )
        .await;
    assert_eq!(
        error(no_sender).await,
        expect(422, "missing_sender", Some("from"))
    );
}

/// An environment configured through the API for SES (moto, signature checking on) delivers
/// through SES, and the secret is nowhere in clear: not in answers, not in the database.
#[tokio::test]
async fn an_environment_delivers_through_ses_configured_over_the_api_and_keeps_the_secret_sealed() {
    use mailgate_testkit::peers::moto::MotoPeer;

    let moto = MotoPeer::start().await;
    moto.verify_identity("acme.example").await;
    let retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    };
    let config = DispatcherConfig {
        poll_interval: Duration::from_millis(20),
        ..DispatcherConfig::default()
    };
    let app = TestApp::builder()
        .with_registry_dispatcher(retry, config)
        .spawn()
        .await;
    app.create_env("production").await;
    let key = app.create_key("production").await;

    let ses = json!({
        "type": "ses",
        "region": "us-east-1",
        "access_key_id": moto.access_key_id,
        "secret_access_key": moto.secret_access_key,
        "endpoint": moto.endpoint,
    });
    let path = "/v1/environments/production/provider";
    let set = body(app.put_json(path, &key, &ses).await, 200).await;
    let shown = body(app.get(path, &key).await, 200).await;
    for answer in [&set, &shown] {
        assert_eq!(answer["provider"]["type"], "ses");
        assert_eq!(answer["provider"]["region"], "us-east-1");
        assert!(
            !answer.to_string().contains(&moto.secret_access_key),
            "secret echoed: {answer}"
        );
    }

    let sent = app
        .post_json(
            "/v1/emails",
            &key,
            &json!({"from": "Acme <noreply@acme.example>", "to": "ann@example.net", "subject": "Through SES", "text": "hello"}),
        )
        .await;
    let id = body(sent, 202).await["id"].as_str().unwrap().to_owned();
    let m = wait_for_status(&app, &id, "sent").await;
    assert_eq!(m["provider"], "ses");
    let provider_id = m["provider_message_id"]
        .as_str()
        .expect("SES message id")
        .to_owned();
    let at_moto = moto.sent_messages().await;
    assert!(
        at_moto
            .iter()
            .any(|s| s.id == provider_id && s.subject == "Through SES"),
        "{at_moto:?}"
    );

    // At rest: the stored row holds only the sealed form and the redacted copy.
    let env = app
        .storage
        .find_environment("production")
        .await
        .unwrap()
        .unwrap();
    let stored = app
        .storage
        .get_provider_config(&env.id, "")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.sealed.contains(&moto.secret_access_key)
            && !stored
                .redacted
                .to_string()
                .contains(&moto.secret_access_key)
    );
    if let Some(file) = app.db.url.strip_prefix("sqlite://") {
        for f in [file.to_owned(), format!("{file}-wal")] {
            if let Ok(bytes) = std::fs::read(&f) {
                let needle = moto.secret_access_key.as_bytes();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "secret in clear in {f}"
                );
            }
        }
    }
}

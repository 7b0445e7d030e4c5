//! Sending, reading a message and its content, idempotency.

use mailgate_testkit::app::TestApp;
use serde_json::json;

use super::support::{body, email, email_with, error, expect};

#[tokio::test]
async fn a_send_is_accepted_and_shows_as_queued_with_its_event() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let send = email_with(json!({"tags": ["welcome"], "metadata": {"user": "42"}}));
    let accepted = body(app.post_json("/v1/emails", &key, &send).await, 202).await;
    let id = accepted["id"].as_str().unwrap();
    assert!(id.starts_with("msg_"), "{accepted}");
    assert_eq!(accepted["status"], "queued");

    let message = body(app.get(&format!("/v1/emails/{id}"), &key).await, 200).await;
    assert_eq!(message["id"], id);
    assert_eq!(message["status"], "queued");
    assert!(message["environment"].as_str().unwrap().starts_with("env_"));
    assert_eq!(message["attempts"], 0);
    assert_eq!(message["max_attempts"], 8);
    assert!(
        message["next_attempt_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{message}"
    );
    assert_eq!(message["tags"], json!(["welcome"]));
    assert_eq!(message["metadata"], json!({"user": "42"}));
    assert!(message["provider"].is_null());
    let events = message["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{message}");
    assert_eq!(events[0]["type"], "queued");
    assert!(events[0]["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(events[0]["message_id"], id);

    // The admin key sees it too.
    body(
        app.get(&format!("/v1/emails/{id}"), &app.admin_key).await,
        200,
    )
    .await;
}

#[tokio::test]
async fn the_content_endpoint_returns_what_was_accepted() {
    let app = TestApp::spawn().await;
    let send = email_with(json!({
        "environment": "default",
        "from": {"email": "sender@example.com", "name": "Sender"},
        "cc": "Carl <carl@example.com>",
        "html": "<p>Hi</p>",
        "headers": {"X-Campaign": "spring"},
        "attachments": [{"filename": "a.txt", "content": "aGVsbG8=", "content_type": "text/plain"}],
    }));
    let accepted = body(
        app.post_json("/v1/emails", &app.admin_key, &send).await,
        202,
    )
    .await;
    let id = accepted["id"].as_str().unwrap();
    let content = body(
        app.get(&format!("/v1/emails/{id}/content"), &app.admin_key)
            .await,
        200,
    )
    .await;
    assert_eq!(
        content["from"],
        json!({"name": "Sender", "email": "sender@example.com"})
    );
    assert_eq!(content["to"], json!([{"email": "ann@example.com"}]));
    assert_eq!(
        content["cc"],
        json!([{"name": "Carl", "email": "carl@example.com"}])
    );
    assert_eq!(content["subject"], "Hello");
    assert_eq!(content["html"], "<p>Hi</p>");
    assert_eq!(
        content["headers"],
        json!([{"name": "X-Campaign", "value": "spring"}])
    );
    assert_eq!(content["attachments"][0]["content"], "aGVsbG8=");
    assert_eq!(content["attachments"][0]["filename"], "a.txt");

    let missing = app
        .get(
            "/v1/emails/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV/content",
            &app.admin_key,
        )
        .await;
    assert_eq!(error(missing).await, expect(404, "not_found", None));
}

#[tokio::test]
async fn messages_are_invisible_from_other_environments() {
    let app = TestApp::spawn().await;
    app.create_env("staging").await;
    let staging = app.create_key("staging").await;
    let default = app.create_key("default").await;
    let accepted = body(app.post_json("/v1/emails", &default, &email()).await, 202).await;
    let id = accepted["id"].as_str().unwrap();
    let other = app.get(&format!("/v1/emails/{id}"), &staging).await;
    assert_eq!(error(other).await, expect(404, "not_found", None));
    let other = app.get(&format!("/v1/emails/{id}/content"), &staging).await;
    assert_eq!(error(other).await, expect(404, "not_found", None));
    let bad_id = app.get("/v1/emails/not-an-id", &default).await;
    assert_eq!(error(bad_id).await, expect(404, "not_found", None));
    let unknown = app
        .get("/v1/emails/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV", &default)
        .await;
    assert_eq!(error(unknown).await, expect(404, "not_found", None));
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_request_and_refuses_another() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let send = |body: String| {
        app.client
            .post(app.url("/v1/emails"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("idempotency-key", "order-1234")
            .body(body)
            .send()
    };
    let first = send(email().to_string()).await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = body(first, 202).await;

    // The same body with other key order and whitespace is the same request.
    let reordered = r#"{ "text": "Hi Ann", "subject": "Hello",
        "to": ["ann@example.com"], "from": "Sender <sender@example.com>" }"#;
    let replay = send(reordered.to_owned()).await.unwrap();
    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");
    let replay = body(replay, 200).await;
    assert_eq!(replay, first);

    let other = send(email_with(json!({"subject": "Other"})).to_string())
        .await
        .unwrap();
    assert_eq!(
        error(other).await,
        expect(409, "idempotency_conflict", Some("Idempotency-Key"))
    );

    let bad_key = app
        .client
        .post(app.url("/v1/emails"))
        .bearer_auth(&key)
        .header("idempotency-key", "")
        .json(&email())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error(bad_key).await,
        expect(422, "invalid_idempotency_key", Some("Idempotency-Key"))
    );
}

#[tokio::test]
async fn internationalized_domains_are_accepted() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let send = email_with(
        json!({"to": ["Jürgen <jürgen@bücher.example>", {"email": "ñandú@example.com"}]}),
    );
    body(app.post_json("/v1/emails", &key, &send).await, 202).await;
}

#[tokio::test]
async fn environments_are_chosen_by_the_key_or_named_by_an_admin() {
    let app = TestApp::spawn().await;
    let staging_id = app.create_env("staging").await;
    let staging = app.create_key("staging").await;

    // An environment key may name its own environment, by name or id.
    body(
        app.post_json(
            "/v1/emails",
            &staging,
            &email_with(json!({"environment": "staging"})),
        )
        .await,
        202,
    )
    .await;
    body(
        app.post_json(
            "/v1/emails",
            &staging,
            &email_with(json!({"environment": staging_id})),
        )
        .await,
        202,
    )
    .await;
    // … but no other.
    let other = app
        .post_json(
            "/v1/emails",
            &staging,
            &email_with(json!({"environment": "default"})),
        )
        .await;
    assert_eq!(
        error(other).await,
        expect(403, "forbidden_environment", Some("environment"))
    );

    // An admin key must name one that exists.
    let none = app.post_json("/v1/emails", &app.admin_key, &email()).await;
    assert_eq!(
        error(none).await,
        expect(422, "environment_required", Some("environment"))
    );
    let unknown = app
        .post_json(
            "/v1/emails",
            &app.admin_key,
            &email_with(json!({"environment": "nope"})),
        )
        .await;
    assert_eq!(
        error(unknown).await,
        expect(404, "not_found", Some("environment"))
    );
    let accepted = app
        .post_json(
            "/v1/emails",
            &app.admin_key,
            &email_with(json!({"environment": "staging"})),
        )
        .await;
    let accepted = body(accepted, 202).await;
    let message = body(
        app.get(
            &format!("/v1/emails/{}", accepted["id"].as_str().unwrap()),
            &staging,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(message["environment"], staging_id);
}

#[tokio::test]
async fn a_delivered_message_shows_its_provider_and_purged_content_answers_410() {
    use std::sync::Arc;
    use std::time::Duration;

    use mailgate_core::dispatcher::DispatcherConfig;
    use mailgate_core::provider::SingleProvider;
    use mailgate_core::retry::RetryPolicy;
    use mailgate_core::Timestamp;
    use mailgate_testkit::fake_provider::FakeProvider;

    let fake = FakeProvider::new();
    let config = DispatcherConfig {
        poll_interval: Duration::from_millis(20),
        content_retention: None,
        ..DispatcherConfig::default()
    };
    let app = TestApp::builder()
        .with_dispatcher(
            Arc::new(SingleProvider(Arc::new(fake.clone()))),
            RetryPolicy::default(),
            config,
        )
        .spawn()
        .await;
    let key = app.create_key("default").await;
    let accepted = body(app.post_json("/v1/emails", &key, &email()).await, 202).await;
    let id = accepted["id"].as_str().unwrap().to_owned();

    let mut message = serde_json::Value::Null;
    for _ in 0..250 {
        message = body(app.get(&format!("/v1/emails/{id}"), &key).await, 200).await;
        if message["status"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(message["status"], "sent", "{message}");
    assert_eq!(message["provider"], "fake");
    assert_eq!(message["provider_message_id"], format!("fake-{id}"));
    assert_eq!(message["attempts"], 1);
    assert!(
        message["next_attempt_at"].is_null(),
        "only while queued: {message}"
    );
    let types: Vec<&str> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["queued", "sent"]);
    assert_eq!(fake.calls().len(), 1);

    body(
        app.get(&format!("/v1/emails/{id}/content"), &key).await,
        200,
    )
    .await;
    let purged = app
        .storage
        .purge_content(Timestamp(i64::MAX / 2))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    let gone = app.get(&format!("/v1/emails/{id}/content"), &key).await;
    assert_eq!(error(gone).await, expect(410, "content_purged", None));
}

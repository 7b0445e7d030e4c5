//! The whole pipeline through a real provider client: an environment's SES provider (set over the
//! API) against wiremock, for what no peer can produce — throttling, then 5xx on every attempt.

use std::time::Duration;

use mailgate_core::dispatcher::DispatcherConfig;
use mailgate_core::retry::RetryPolicy;
use mailgate_testkit::app::TestApp;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{body, wait_for_status};

const SEND_PATH: &str = "/v2/email/outbound-emails";

fn ses_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header(
            "x-amzn-ErrorType",
            format!("{code}:http://internal.amazon.com/coral/"),
        )
        .set_body_json(json!({ "message": message }))
}

async fn app_with_ses(server: &MockServer, max_attempts: u32) -> TestApp {
    let retry = RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    let config = DispatcherConfig {
        poll_interval: Duration::from_millis(20),
        ..DispatcherConfig::default()
    };
    let app = TestApp::builder()
        .with_registry_dispatcher(retry, config)
        .spawn()
        .await;
    let dsn = format!(
        "ses+api://AKIDEXAMPLE:c2VjcmV0@default?region=us-east-1&endpoint={}",
        server.uri()
    );
    body(
        app.put_json(
            "/v1/environments/default/provider",
            &app.admin_key,
            &json!({ "dsn": dsn }),
        )
        .await,
        200,
    )
    .await;
    app
}

async fn send(app: &TestApp) -> String {
    let email = json!({"environment": "default", "from": "noreply@acme.example", "to": "ann@example.net", "subject": "Code", "text": "123456"});
    body(
        app.post_json("/v1/emails", &app.admin_key, &email).await,
        202,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn event_types(m: &Value) -> Vec<String> {
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn sends(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == SEND_PATH)
        .count()
}

#[tokio::test]
async fn ses_throttling_is_retried_then_the_message_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ses_error(
            429,
            "TooManyRequestsException",
            "Maximum sending rate exceeded.",
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"MessageId": "0100018c-ses-1"})),
        )
        .mount(&server)
        .await;
    let app = app_with_ses(&server, 3).await;
    let id = send(&app).await;

    let m = wait_for_status(&app, &id, "sent").await;
    assert_eq!(m["attempts"], 2);
    assert_eq!(m["provider"], "ses");
    assert_eq!(m["provider_message_id"], "0100018c-ses-1");
    assert_eq!(event_types(&m), ["queued", "deferred", "sent"]);
    assert_eq!(m["events"][1]["data"]["code"], "TooManyRequestsException");
    assert_eq!(sends(&server).await, 2);
}

#[tokio::test]
async fn ses_server_errors_on_every_attempt_end_failed_with_the_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ses_error(
            503,
            "ServiceUnavailable",
            "Service is unavailable. Please try again later.",
        ))
        .mount(&server)
        .await;
    let app = app_with_ses(&server, 3).await;
    let id = send(&app).await;

    let m = wait_for_status(&app, &id, "failed").await;
    assert_eq!(m["attempts"], 3);
    assert_eq!(
        event_types(&m),
        ["queued", "deferred", "deferred", "failed"]
    );
    assert!(
        m["last_error"]
            .as_str()
            .unwrap()
            .contains("ServiceUnavailable"),
        "{m}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sends(&server).await, 3, "no attempt after the last");
}

#[tokio::test]
async fn ses_rejection_fails_at_once_with_an_actionable_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ses_error(400, "MessageRejected", "Email address is not verified. The following identities failed the check in region US-EAST-1: noreply@acme.example"))
        .mount(&server)
        .await;
    let app = app_with_ses(&server, 5).await;
    let id = send(&app).await;

    let m = wait_for_status(&app, &id, "failed").await;
    assert_eq!(m["attempts"], 1);
    let reason = m["last_error"].as_str().unwrap();
    assert!(
        reason.contains("MessageRejected") && reason.contains("us-east-1"),
        "{reason}"
    );
    assert!(
        !reason.contains("noreply@acme.example"),
        "addresses are not echoed into reasons: {reason}"
    );
}

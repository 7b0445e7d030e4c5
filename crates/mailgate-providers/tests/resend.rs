//! The Resend provider against Stoplight Prism serving Resend's official OpenAPI spec (request
//! validation, `--errors`), and against wiremock for the exact request and every failure path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::address::Mailbox;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{Attachment, ClaimedMessage, Content, Header};
use mailgate_core::provider::{CheckAspect, CheckStatus, Provider, SendError, VerifyReport};
use mailgate_providers::resend::send_request;
use mailgate_providers::ProviderConfig;
use mailgate_testkit::peers::prism::PrismPeer;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "re_test_123";

fn mailbox(s: &str) -> Mailbox {
    Mailbox::parse(s, "test").unwrap()
}

/// A message using every field mailgate maps.
fn full_message() -> ClaimedMessage {
    ClaimedMessage {
        id: MessageId::new(),
        environment_id: EnvironmentId::new(),
        attempt: 1,
        max_attempts: 3,
        lease_token: "lease".into(),
        content: Content {
            from: mailbox("Acme Billing <billing@acme.com>"),
            to: vec![
                mailbox("\"Lee, Ann\" <ann@example.net>"),
                mailbox("bo@example.net"),
            ],
            cc: vec![mailbox("carol@example.net")],
            bcc: vec![mailbox("audit@acme.com")],
            reply_to: vec![mailbox("support@acme.com")],
            subject: "Your receipt".into(),
            text: Some("Thanks for your order.".into()),
            html: Some("<p>Thanks for your order.</p>".into()),
            headers: vec![Header::parse("X-Order", "42", "headers").unwrap()],
            attachments: vec![Attachment {
                filename: "Résumé.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF-1.4 test".to_vec(),
                content_id: None,
            }],
        },
        tags: vec!["receipt".into(), "q4 promo".into()],
        metadata: BTreeMap::from([("order_id".to_owned(), "42".to_owned())]),
        provider_options: Some(json!({"headers": {"X-Entity-Ref-ID": "order-42"}})),
        idempotency_key: Some("order-receipt/42".into()),
        delivery: Default::default(),
    }
}

/// The body Resend must receive for [`full_message`].
fn expected_body(m: &ClaimedMessage) -> Value {
    json!({
        "from": "Acme Billing <billing@acme.com>",
        "to": ["\"Lee, Ann\" <ann@example.net>", "bo@example.net"],
        "cc": ["carol@example.net"],
        "bcc": ["audit@acme.com"],
        "reply_to": ["support@acme.com"],
        "subject": "Your receipt",
        "text": "Thanks for your order.",
        "html": "<p>Thanks for your order.</p>",
        "headers": {"X-Order": "42", "X-Entity-Ref-ID": "order-42"},
        "attachments": [{
            "filename": "Résumé.pdf",
            "content": STANDARD.encode(b"%PDF-1.4 test"),
            "content_type": "application/pdf"
        }],
        "tags": [
            {"name": "mailgate_message_id", "value": m.id.to_string()},
            {"name": "order_id", "value": "42"},
            {"name": "receipt", "value": "true"},
            {"name": "q4_promo", "value": "true"}
        ]
    })
}

async fn provider(dsn: &str) -> Arc<dyn Provider> {
    let ProviderConfig::Resend(config) = ProviderConfig::from_dsn(dsn).unwrap() else {
        panic!("not a Resend config");
    };
    config.build().await.unwrap()
}

async fn at(server: &MockServer, extra: &str) -> Arc<dyn Provider> {
    provider(&format!(
        "resend+api://{KEY}@default?endpoint={}&timeout_seconds=1{extra}",
        server.uri()
    ))
    .await
}

#[tokio::test]
async fn a_full_message_validates_against_the_official_spec() {
    let prism = PrismPeer::start("resend.yaml");
    let resend = provider(&format!(
        "resend+api://{KEY}@default?endpoint={}",
        prism.endpoint
    ))
    .await;
    let m = full_message();
    let receipt = resend.send(&m).await;
    assert!(receipt.is_ok(), "{receipt:?}\nprism:\n{}", prism.output());
    assert!(receipt.unwrap().provider_message_id.is_some());

    // The same body sent raw: Prism must not flag any violation.
    let response = reqwest::Client::new()
        .post(format!("{}/emails", prism.endpoint))
        .bearer_auth(KEY)
        .header("Idempotency-Key", m.id.to_string())
        .json(&send_request(&m).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("sl-violations").is_none());
    assert_no_violation(&prism.output());

    // The check has teeth: a body without `to` is refused (422 under `--errors`; the spec
    // defines no error response, so Prism sends a problem document rather than
    // `sl-violations`) and the refusal shows in Prism's log.
    let mut bad = send_request(&m).unwrap();
    bad.as_object_mut().unwrap().remove("to");
    let response = reqwest::Client::new()
        .post(format!("{}/emails", prism.endpoint))
        .bearer_auth(KEY)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["validation"][0]["code"], "required", "{problem}");
    // Prism writes its log line after answering; on a loaded machine it can lag a little.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !prism.output().contains(NOT_VALID) {
        assert!(
            std::time::Instant::now() < deadline,
            "the refusal is not in Prism's log:\n{}",
            prism.output()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What Prism logs when a request breaks the spec.
const NOT_VALID: &str = "did not pass the validation rules";

/// Fails when Prism's log shows a refused request or a violation.
fn assert_no_violation(output: &str) {
    assert!(
        !output.contains(NOT_VALID) && !output.to_ascii_lowercase().contains("violation"),
        "Prism found the request invalid:\n{output}"
    );
}

#[tokio::test]
async fn sends_the_exact_request_with_key_and_idempotency_key() {
    let server = MockServer::start().await;
    let m = full_message();
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("idempotency-key", m.id.to_string().as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(expected_body(&m)))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let receipt = at(&server, "").await.send(&m).await.unwrap();
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("49a3999c-0ce1-4ea6-ab68-afcd6dc2e794")
    );
    assert!(!receipt.final_delivery);
}

/// Sends [`full_message`] to a server answering `response`.
async fn failure(response: ResponseTemplate) -> SendError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(response)
        .mount(&server)
        .await;
    at(&server, "")
        .await
        .send(&full_message())
        .await
        .unwrap_err()
}

fn error(status: u16, name: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"statusCode": status, "name": name, "message": message}))
}

fn retry_after(e: &SendError) -> Option<Duration> {
    match e {
        SendError::Retryable { retry_after, .. } => *retry_after,
        _ => panic!("expected a retryable error, got {e:?}"),
    }
}

#[tokio::test]
async fn tells_the_three_429s_apart() {
    let e = failure(
        error(429, "rate_limit_exceeded", "Too many requests.").insert_header("retry-after", "3"),
    )
    .await;
    assert_eq!(e.code(), "rate_limit_exceeded");
    assert_eq!(retry_after(&e), Some(Duration::from_secs(3)));

    let e = failure(
        error(429, "rate_limit_exceeded", "Too many requests.")
            .insert_header("ratelimit-reset", "2"),
    )
    .await;
    assert_eq!(retry_after(&e), Some(Duration::from_secs(2)));

    let e = failure(
        error(429, "daily_quota_exceeded", "Daily quota reached.")
            .insert_header("ratelimit-reset", "1"),
    )
    .await;
    assert_eq!(e.code(), "daily_quota_exceeded");
    assert_eq!(retry_after(&e), Some(Duration::from_secs(86_400)));
    let e = failure(
        error(429, "daily_quota_exceeded", "Daily quota reached.")
            .insert_header("retry-after", "3600"),
    )
    .await;
    assert_eq!(retry_after(&e), Some(Duration::from_secs(3600)));

    let e = failure(error(
        429,
        "monthly_quota_exceeded",
        "Monthly quota reached.",
    ))
    .await;
    assert_eq!(e.code(), "monthly_quota_exceeded");
    assert!(
        matches!(e, SendError::Unusable { .. }),
        "a monthly quota is not retried, and another provider may send: {e:?}"
    );
    assert!(e.to_string().contains("monthly"));
}

#[tokio::test]
async fn tells_the_409s_apart() {
    let e = failure(error(409, "concurrent_idempotent_requests", "in progress")).await;
    assert_eq!(e.code(), "concurrent_idempotent_requests");
    assert_eq!(retry_after(&e), Some(Duration::from_secs(2)));
    let e = failure(
        error(409, "concurrent_idempotent_requests", "in progress")
            .insert_header("retry-after", "5"),
    )
    .await;
    assert_eq!(retry_after(&e), Some(Duration::from_secs(5)));
    let e = failure(error(409, "invalid_idempotent_request", "different body")).await;
    assert_eq!(e.code(), "invalid_idempotent_request");
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("Idempotency-Key"));
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retryable() {
    for (status, name) in [(500, "application_error"), (503, "service_unavailable")] {
        let e = failure(error(status, name, "Something went wrong.")).await;
        assert_eq!(e.code(), name);
        assert!(e.is_retryable());
    }
    let e = failure(ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>")).await;
    assert_eq!(e.code(), "http_502");
    assert!(e.is_retryable());

    let e = failure(
        ResponseTemplate::new(200)
            .set_body_json(json!({"id": "late"}))
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    assert_eq!(e.code(), "timeout");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn permanent_and_unusable_errors_carry_actionable_messages() {
    let permanent = [
        (
            400,
            "validation_error",
            "Invalid `to` field.",
            "refused the message",
        ),
        (
            400,
            "invalid_idempotency_key",
            "Key too long.",
            "refused the message",
        ),
        (
            422,
            "invalid_attachment",
            "Attachment too big.",
            "Attachment too big.",
        ),
        (
            422,
            "missing_required_field",
            "Missing `to`.",
            "refused the message",
        ),
    ];
    let unusable = [
        (
            401,
            "missing_api_key",
            "Missing API key.",
            "check the API key",
        ),
        (
            401,
            "restricted_api_key",
            "Restricted.",
            "sending access only",
        ),
        (
            403,
            "invalid_api_key",
            "API key is invalid.",
            "rejected the API key",
        ),
        (
            403,
            "validation_error",
            "The acme.com domain is not verified. Please add and verify your domain.",
            "the From domain is not verified in Resend",
        ),
        (
            403,
            "validation_error",
            "You can only send testing emails to your own email address (owner@acme.com).",
            "test emails",
        ),
        (403, "suspended_api_key", "Suspended.", "suspended"),
        (404, "not_found", "Not found.", "endpoint"),
        (405, "method_not_allowed", "Method not allowed.", "405"),
    ];
    let cases = permanent
        .iter()
        .map(|c| (c, false))
        .chain(unusable.iter().map(|c| (c, true)));
    for (&(status, name, said, expect), provider_side) in cases {
        let e = failure(error(status, name, said)).await;
        assert_eq!(e.code(), name, "{status} {name}");
        if provider_side {
            assert!(
                matches!(e, SendError::Unusable { .. }),
                "{status} {name}: {e:?}"
            );
        } else {
            assert!(
                matches!(e, SendError::Permanent { .. }),
                "{status} {name}: {e:?}"
            );
        }
        let text = e.to_string();
        assert!(text.contains(expect), "{status} {name}: {text}");
        assert!(!text.contains('@'), "addresses are scrubbed: {text}");
        assert!(!text.contains(KEY));
    }
}

#[tokio::test]
async fn verify_reports_the_from_domain() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "has_more": false,
            "data": [
                {"id": "d1", "name": "acme.com", "status": "verified", "region": "us-east-1",
                 "open_tracking": true, "click_tracking": false,
                 "capabilities": {"sending": "enabled", "receiving": "disabled"}},
                {"id": "d2", "name": "pending.io", "status": "pending", "region": "eu-west-1"}
            ]
        })))
        .mount(&server)
        .await;
    let report = at(&server, "&from=noreply@acme.com")
        .await
        .verify()
        .await
        .unwrap();
    assert!(report.ok, "{report:#?}");
    assert!(has(
        &report,
        CheckAspect::Credentials,
        CheckStatus::Ok,
        "API key accepted"
    ));
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Ok,
            "From domain acme.com is verified in Resend (us-east-1)"
        ),
        "{report:#?}"
    );
    assert!(has(
        &report,
        CheckAspect::Sender,
        CheckStatus::Ok,
        "opens on, clicks off"
    ));
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Warning,
            "pending.io (pending)"
        ),
        "{report:#?}"
    );
    assert!(has(
        &report,
        CheckAspect::Region,
        CheckStatus::Ok,
        "sends from region us-east-1"
    ));
    assert_eq!(
        report.about(CheckAspect::Quota).next().map(|c| c.status),
        Some(CheckStatus::Skipped)
    );

    let report = at(&server, "&from=noreply@pending.io")
        .await
        .verify()
        .await
        .unwrap();
    assert!(!report.ok);
    assert!(has(
        &report,
        CheckAspect::Sender,
        CheckStatus::Failed,
        "pending.io is pending"
    ));
    assert!(has(
        &report,
        CheckAspect::Region,
        CheckStatus::Ok,
        "eu-west-1"
    ));

    let report = at(&server, "&from=noreply@other.org")
        .await
        .verify()
        .await
        .unwrap();
    assert!(!report.ok);
    assert!(has(
        &report,
        CheckAspect::Sender,
        CheckStatus::Failed,
        "other.org is not in this Resend account"
    ));
}

fn has(report: &VerifyReport, aspect: CheckAspect, status: CheckStatus, text: &str) -> bool {
    report
        .about(aspect)
        .any(|c| c.status == status && c.detail.contains(text))
}

#[tokio::test]
async fn verify_against_the_official_spec() {
    let prism = PrismPeer::start("resend.yaml");
    let resend = provider(&format!(
        "resend+api://{KEY}@default?endpoint={}&from=noreply@example.com",
        prism.endpoint
    ))
    .await;
    let report = resend.verify().await.unwrap();
    // Prism answers with the schema's example domain, example.com in us-east-1, in the first
    // status of the enum (pending): not verified.
    assert!(
        has(
            &report,
            CheckAspect::Credentials,
            CheckStatus::Ok,
            "API key accepted"
        ),
        "{report:#?}\n{}",
        prism.output()
    );
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Failed,
            "From domain example.com is pending in Resend, not verified"
        ),
        "{report:#?}"
    );
    assert!(
        has(&report, CheckAspect::Region, CheckStatus::Ok, "us-east-1"),
        "{report:#?}"
    );
    assert!(!report.ok);
    assert_no_violation(&prism.output());
}

#[tokio::test]
async fn verify_reports_a_bad_or_restricted_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(error(403, "invalid_api_key", "API key is invalid"))
        .mount(&server)
        .await;
    let report = at(&server, "").await.verify().await.unwrap();
    assert!(!report.ok);
    assert!(has(
        &report,
        CheckAspect::Credentials,
        CheckStatus::Failed,
        "rejected the API key"
    ));
    assert!(has(
        &report,
        CheckAspect::Sender,
        CheckStatus::Skipped,
        "not checked"
    ));

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(error(
            401,
            "restricted_api_key",
            "This API key is restricted",
        ))
        .mount(&server)
        .await;
    let report = at(&server, "&from=a@acme.com")
        .await
        .verify()
        .await
        .unwrap();
    assert!(report.ok, "a sending-only key can send: {report:?}");
    assert!(has(
        &report,
        CheckAspect::Credentials,
        CheckStatus::Ok,
        "sending access only"
    ));
    assert!(has(
        &report,
        CheckAspect::Sender,
        CheckStatus::Skipped,
        "From domain was not checked"
    ));

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(error(500, "application_error", "boom"))
        .mount(&server)
        .await;
    let report = at(&server, "").await.verify().await.unwrap();
    assert!(!report.ok);
    assert!(
        has(
            &report,
            CheckAspect::Connection,
            CheckStatus::Failed,
            "application_error"
        ),
        "{report:#?}"
    );
}

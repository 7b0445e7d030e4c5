//! The SendGrid provider against Stoplight Prism serving SendGrid's official Mail Send spec
//! (request validation, `--errors`), and against wiremock for the exact request, the
//! `X-Message-Id` header and every failure path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::address::Mailbox;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{Attachment, ClaimedMessage, Content, Header};
use mailgate_core::provider::{CheckAspect, CheckStatus, Provider, SendError, VerifyReport};
use mailgate_providers::sendgrid::send_request;
use mailgate_providers::ProviderConfig;
use mailgate_testkit::peers::prism::PrismPeer;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "SG.test-key";

fn mailbox(s: &str) -> Mailbox {
    Mailbox::parse(s, "test").unwrap()
}

/// A message using every field mailgate maps, with one address repeated across to, cc and bcc.
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
                mailbox("Ann Lee <ann@example.net>"),
                mailbox("bo@example.net"),
            ],
            cc: vec![mailbox("carol@example.net"), mailbox("Bo@example.net")],
            bcc: vec![mailbox("audit@acme.com")],
            reply_to: vec![mailbox("Support <support@acme.com>")],
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
        provider_options: Some(json!({
            "tracking_settings": {
                "open_tracking": {"enable": true},
                "click_tracking": {"enable": true, "enable_text": false}
            }
        })),
        idempotency_key: None,
        delivery: Default::default(),
    }
}

/// The body SendGrid must receive for [`full_message`].
fn expected_body(m: &ClaimedMessage) -> Value {
    json!({
        "personalizations": [{
            "to": [{"email": "ann@example.net", "name": "Ann Lee"}, {"email": "bo@example.net"}],
            "cc": [{"email": "carol@example.net"}],
            "bcc": [{"email": "audit@acme.com"}],
            "custom_args": {"mailgate_message_id": m.id.to_string(), "order_id": "42"}
        }],
        "from": {"email": "billing@acme.com", "name": "Acme Billing"},
        "reply_to": {"email": "support@acme.com", "name": "Support"},
        "subject": "Your receipt",
        "content": [
            {"type": "text/plain", "value": "Thanks for your order."},
            {"type": "text/html", "value": "<p>Thanks for your order.</p>"}
        ],
        "attachments": [{
            "content": STANDARD.encode(b"%PDF-1.4 test"),
            "filename": "Résumé.pdf",
            "type": "application/pdf",
            "disposition": "attachment"
        }],
        "headers": {"X-Order": "42"},
        "categories": ["receipt", "q4 promo"],
        "tracking_settings": {
            "open_tracking": {"enable": true},
            "click_tracking": {"enable": true, "enable_text": false}
        }
    })
}

async fn provider(dsn: &str) -> Arc<dyn Provider> {
    let ProviderConfig::Sendgrid(config) = ProviderConfig::from_dsn(dsn).unwrap() else {
        panic!("not a SendGrid config");
    };
    config.build().await.unwrap()
}

async fn at(server: &MockServer, extra: &str) -> Arc<dyn Provider> {
    provider(&format!(
        "sendgrid+api://{KEY}@default?endpoint={}&timeout_seconds=1{extra}",
        server.uri()
    ))
    .await
}

/// What Prism logs when a request breaks the spec.
const NOT_VALID: &str = "did not pass the validation rules";

async fn raw(prism: &PrismPeer, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v3/mail/send", prism.endpoint))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_message_validates_against_the_official_spec() {
    let prism = PrismPeer::start("sendgrid-tsg_mail_v3.json");
    let sendgrid = provider(&format!(
        "sendgrid+api://{KEY}@default?endpoint={}",
        prism.endpoint
    ))
    .await;
    let m = full_message();
    let receipt = sendgrid.send(&m).await;
    assert!(receipt.is_ok(), "{receipt:?}\nprism:\n{}", prism.output());
    // The spec's 202 declares no X-Message-Id header, so Prism sends none: the receipt says
    // so rather than inventing an id.
    assert_eq!(receipt.unwrap().provider_message_id, None);

    let body = send_request(&m).unwrap();
    let response = raw(&prism, &body).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert!(response.headers().get("sl-violations").is_none());
    let output = prism.output();
    assert!(
        !output.contains(NOT_VALID) && !output.to_ascii_lowercase().contains("violation"),
        "{output}"
    );

    // A dynamic template with its data in the personalization validates too.
    let mut t = full_message();
    t.provider_options = Some(json!({
        "template_id": "d-0123456789abcdef",
        "dynamic_template_data": {"name": "Ann", "items": [{"sku": "A1", "qty": 2}]}
    }));
    assert!(sendgrid.send(&t).await.is_ok(), "{}", prism.output());
    assert!(!prism.output().contains(NOT_VALID), "{}", prism.output());

    // Known spec error: the spec types the top-level `custom_args` as a string while the API
    // (and SendGrid's own helpers) take an object of strings. Prism therefore refuses the
    // object form; mailgate puts metadata in the personalization's `custom_args` (an object
    // in the spec) and never sends the top-level field.
    let mut quirk = body.clone();
    quirk["custom_args"] = json!({"order_id": "42"});
    let response = raw(&prism, &quirk).await;
    assert_eq!(response.status(), 400);
    let violations = response
        .headers()
        .get("sl-violations")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(violations.contains("custom_args"), "{violations}");

    // And the check has teeth: a body without `from` is refused with `sl-violations`.
    let mut bad = body.clone();
    bad.as_object_mut().unwrap().remove("from");
    let response = raw(&prism, &bad).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("sl-violations").is_some());
}

#[tokio::test]
async fn sends_the_exact_request_and_reads_x_message_id() {
    let server = MockServer::start().await;
    let m = full_message();
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(expected_body(&m)))
        .respond_with(
            ResponseTemplate::new(202).insert_header("X-Message-Id", "W6A2GYyBRzuaUKYz6GU6tQ"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let receipt = at(&server, "").await.send(&m).await.unwrap();
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("W6A2GYyBRzuaUKYz6GU6tQ")
    );
    assert!(!receipt.final_delivery);
}

#[tokio::test]
async fn a_missing_message_id_is_none() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let receipt = at(&server, "").await.send(&full_message()).await.unwrap();
    assert_eq!(receipt.provider_message_id, None);
}

async fn failure(response: ResponseTemplate) -> SendError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(response)
        .mount(&server)
        .await;
    at(&server, "")
        .await
        .send(&full_message())
        .await
        .unwrap_err()
}

fn errors(status: u16, field: Option<&str>, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"errors": [{"message": message, "field": field, "help": null}]}))
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable() {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30;
    let e = failure(
        errors(429, None, "too many requests")
            .insert_header("X-RateLimit-Limit", "600")
            .insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-Reset", reset.to_string().as_str()),
    )
    .await;
    assert_eq!(e.code(), "rate_limited");
    let SendError::Retryable { retry_after, .. } = &e else {
        panic!("{e:?}")
    };
    let wait = retry_after.expect("X-RateLimit-Reset honoured");
    assert!(
        wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );

    for status in [500, 502, 503] {
        let e = failure(errors(status, None, "internal error")).await;
        assert!(e.is_retryable(), "{status}");
        assert_eq!(e.code(), format!("http_{status}"));
    }
    let e = failure(errors(503, None, "unavailable").insert_header("Retry-After", "7")).await;
    assert!(
        matches!(e, SendError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(7))
    );

    let e = failure(ResponseTemplate::new(202).set_delay(Duration::from_secs(3))).await;
    assert_eq!(e.code(), "timeout");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn permanent_and_unusable_errors_carry_actionable_messages() {
    let cases = [
        (
            400,
            Some("from.email"),
            "The from email does not contain a valid address.",
            "bad_request",
            "from.email: The from email",
        ),
        (
            401,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
            "unauthorized",
            "check it in the provider configuration",
        ),
        (
            403,
            Some("from"),
            "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.",
            "sender_not_verified",
            "sender identity not verified",
        ),
        (403, Some("null"), "access forbidden", "forbidden", "mail.send"),
        (404, None, "not found", "not_found", "endpoint"),
        (405, None, "method not allowed", "method_not_allowed", "405"),
        (413, None, "content too large", "payload_too_large", "too large"),
        (
            400,
            Some("personalizations.0.to"),
            "Each email address in the personalization block should be unique between to, cc, and bcc. We found the first duplicate instance of [bo@example.net] in the personalizations.0.cc field.",
            "bad_request",
            "should be unique",
        ),
    ];
    for (status, field, said, code, expect) in cases {
        let e = failure(errors(status, field, said)).await;
        assert_eq!(e.code(), code, "{status}");
        // The message (or a recipient) is refused for good; the key, the sender identity and
        // the endpoint are the provider's to fix.
        if matches!(status, 400 | 413) {
            assert!(matches!(e, SendError::Permanent { .. }), "{status}: {e:?}");
        } else {
            assert!(matches!(e, SendError::Unusable { .. }), "{status}: {e:?}");
        }
        let text = e.to_string();
        assert!(text.contains(expect), "{status}: {text}");
        assert!(
            !text.contains("@example.net"),
            "addresses are scrubbed: {text}"
        );
        assert!(!text.contains(KEY));
    }
}

fn scopes(scopes: &[&str]) -> Mock {
    Mock::given(method("GET"))
        .and(path("/v3/scopes"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"scopes": scopes})))
}

fn domains_and_senders() -> [Mock; 2] {
    [
        Mock::given(method("GET"))
            .and(path("/v3/whitelabel/domains"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": 1, "domain": "acme.com", "subdomain": "em1", "valid": true},
                {"id": 2, "domain": "broken.io", "subdomain": "em2", "valid": false}
            ]))),
        Mock::given(method("GET"))
            .and(path("/v3/verified_senders"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [
                {"id": 7, "from_email": "ops@single.org", "verified": true},
                {"id": 8, "from_email": "new@pending.org", "verified": false}
            ]}))),
    ]
}

fn has(report: &VerifyReport, aspect: CheckAspect, status: CheckStatus, text: &str) -> bool {
    report
        .about(aspect)
        .any(|c| c.status == status && c.detail.contains(text))
}

#[tokio::test]
async fn verify_reports_scopes_domains_and_senders() {
    let server = MockServer::start().await;
    scopes(&["mail.send", "sender_verification_eligible"])
        .mount(&server)
        .await;
    for m in domains_and_senders() {
        m.mount(&server).await;
    }
    let check = |from: &'static str| {
        let server = &server;
        async move {
            at(server, &format!("&from={from}"))
                .await
                .verify()
                .await
                .unwrap()
        }
    };
    let r = check("noreply@mail.acme.com").await;
    assert!(r.ok, "{r:#?}");
    assert!(
        has(&r, CheckAspect::Credentials, CheckStatus::Ok, "mail.send"),
        "{r:#?}"
    );
    assert!(has(
        &r,
        CheckAspect::Sender,
        CheckStatus::Ok,
        "domain acme.com is authenticated"
    ));
    assert!(has(
        &r,
        CheckAspect::Sender,
        CheckStatus::Warning,
        "do not validate: broken.io"
    ));
    assert!(has(
        &r,
        CheckAspect::Sender,
        CheckStatus::Ok,
        "1 verified Single Sender(s)"
    ));
    assert!(
        !r.checks.iter().any(|c| c.detail.contains("ops@single.org")),
        "Single Senders are counted, not listed: {r:#?}"
    );
    assert!(
        has(
            &r,
            CheckAspect::Region,
            CheckStatus::Ok,
            "region global, through the endpoint override 127.0.0.1:"
        ),
        "{r:#?}"
    );
    assert!(has(&r, CheckAspect::Quota, CheckStatus::Skipped, "credits"));
    let r = check("ops@single.org").await;
    assert!(r.ok, "{r:#?}");
    assert!(has(
        &r,
        CheckAspect::Sender,
        CheckStatus::Ok,
        "verified Single Sender in SendGrid"
    ));
    let r = check("new@pending.org").await;
    assert!(!r.ok);
    assert!(has(
        &r,
        CheckAspect::Sender,
        CheckStatus::Failed,
        "not verified yet"
    ));
    let r = check("x@broken.io").await;
    assert!(!r.ok);
    assert!(has(
        &r,
        CheckAspect::Sender,
        CheckStatus::Failed,
        "not a verified sender identity"
    ));
}

#[tokio::test]
async fn verify_reports_a_key_without_mail_send() {
    let server = MockServer::start().await;
    scopes(&["alerts.read"]).mount(&server).await;
    for m in domains_and_senders() {
        m.mount(&server).await;
    }
    let r = at(&server, "&region=eu").await.verify().await.unwrap();
    assert!(!r.ok);
    assert!(
        has(
            &r,
            CheckAspect::Credentials,
            CheckStatus::Failed,
            "lacks the mail.send permission"
        ),
        "{r:#?}"
    );
    assert!(
        has(&r, CheckAspect::Region, CheckStatus::Ok, "region eu"),
        "{r:#?}"
    );
}

#[tokio::test]
async fn verify_reports_key_problems() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(errors(401, None, "authorization required"))
        .mount(&server)
        .await;
    let r = at(&server, "&from=a@acme.com")
        .await
        .verify()
        .await
        .unwrap();
    assert!(!r.ok);
    assert!(
        has(
            &r,
            CheckAspect::Credentials,
            CheckStatus::Failed,
            "rejected the API key"
        ),
        "{r:#?}"
    );
    assert!(has(
        &r,
        CheckAspect::Sender,
        CheckStatus::Skipped,
        "not checked"
    ));

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(errors(401, None, "Maximum credits exceeded"))
        .mount(&server)
        .await;
    let r = at(&server, "").await.verify().await.unwrap();
    assert!(!r.ok);
    assert!(
        has(
            &r,
            CheckAspect::Quota,
            CheckStatus::Failed,
            "credits are used up"
        ),
        "{r:#?}"
    );

    // A key that may only send: it reads its scopes, nothing else.
    let server = MockServer::start().await;
    scopes(&["mail.send"]).mount(&server).await;
    Mock::given(method("GET"))
        .respond_with(errors(403, None, "access forbidden"))
        .mount(&server)
        .await;
    let r = at(&server, "&from=a@acme.com")
        .await
        .verify()
        .await
        .unwrap();
    assert!(r.ok, "a mail.send-only key may still send: {r:#?}");
    assert!(has(
        &r,
        CheckAspect::Credentials,
        CheckStatus::Ok,
        "mail.send"
    ));
    assert!(
        has(
            &r,
            CheckAspect::Sender,
            CheckStatus::Skipped,
            "cannot read senders"
        ),
        "{r:#?}"
    );

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(errors(500, None, "boom"))
        .mount(&server)
        .await;
    let r = at(&server, "").await.verify().await.unwrap();
    assert!(!r.ok);
    assert!(
        has(&r, CheckAspect::Connection, CheckStatus::Failed, "http_500"),
        "{r:#?}"
    );
}

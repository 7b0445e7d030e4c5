//! The Postmark provider against wiremock, asserting the documented request exactly (body,
//! headers, paths), every error path and `verify`.
//!
//! Postmark's published OpenAPI description (`postmark-server.openapi3.json`) is outdated: it has
//! no `MessageStream` and no `Metadata`, marks nothing required and allows unknown fields, so
//! Prism would prove little; the request is checked here against `reference/providers.md` §3.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::address::Mailbox;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{Attachment, ClaimedMessage, Content, Header};
use mailgate_core::provider::{
    CheckAspect, CheckStatus, Provider, SendError, VerifyCheck, VerifyReport,
};
use mailgate_providers::ProviderConfig;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "server-token-test";

fn mailbox(s: &str) -> Mailbox {
    Mailbox::parse(s, "test").unwrap()
}

/// A message using every field Postmark maps.
fn full_message() -> ClaimedMessage {
    ClaimedMessage {
        id: MessageId::parse(MESSAGE_ID).unwrap(),
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
            cc: vec![mailbox("cy@example.net")],
            bcc: vec![mailbox("audit@acme.com")],
            reply_to: vec![mailbox("support@acme.com")],
            subject: "Your receipt".into(),
            text: Some("Thanks for your order.".into()),
            html: Some("<p>Thanks! <img src=\"cid:logo\"></p>".into()),
            headers: vec![Header::parse("X-Order", "42", "headers").unwrap()],
            attachments: vec![
                Attachment {
                    filename: "Résumé.pdf".into(),
                    content_type: "application/pdf".into(),
                    content: b"%PDF-1.4 test".to_vec(),
                    content_id: None,
                },
                Attachment {
                    filename: "logo.png".into(),
                    content_type: "image/png".into(),
                    content: vec![0x89, b'P', b'N', b'G'],
                    content_id: Some("logo".into()),
                },
            ],
        },
        tags: vec!["receipt".into(), "ignored-second-tag".into()],
        metadata: BTreeMap::from([("order_id".to_owned(), "42".to_owned())]),
        provider_options: Some(json!({"TrackOpens": true, "TrackLinks": "HtmlAndText"})),
        idempotency_key: None,
        delivery: Default::default(),
    }
}

/// The message id of `full_message`, carried in Postmark's Metadata.
const MESSAGE_ID: &str = "msg_01J9Z3Q7X8Y6V5T4S3R2Q1P0NM";

/// The body Postmark documents for `full_message` (reference/providers.md §3.2).
fn expected_body() -> Value {
    json!({
        "From": "\"Acme Billing\" <billing@acme.com>",
        "To": "\"Lee, Ann\" <ann@example.net>, bo@example.net",
        "Cc": "cy@example.net",
        "Bcc": "audit@acme.com",
        "ReplyTo": "support@acme.com",
        "Subject": "Your receipt",
        "TextBody": "Thanks for your order.",
        "HtmlBody": "<p>Thanks! <img src=\"cid:logo\"></p>",
        "Headers": [{"Name": "X-Order", "Value": "42"}],
        "Attachments": [
            {"Name": "Résumé.pdf", "Content": "JVBERi0xLjQgdGVzdA==", "ContentType": "application/pdf"},
            {"Name": "logo.png", "Content": "iVBORw==", "ContentType": "image/png", "ContentID": "cid:logo"}
        ],
        "Tag": "receipt",
        "Metadata": {"order_id": "42", "mailgate_message_id": MESSAGE_ID},
        "TrackOpens": true,
        "TrackLinks": "HtmlAndText",
        "MessageStream": "outbound"
    })
}

async fn provider(server: &MockServer, extra: &str) -> Arc<dyn Provider> {
    let dsn = format!(
        "postmark+api://{TOKEN}@default?endpoint={}{extra}",
        server.uri()
    );
    let ProviderConfig::Postmark(config) = ProviderConfig::from_dsn(&dsn).unwrap() else {
        panic!("not a Postmark config");
    };
    config.build().await.unwrap()
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "To": "ann@example.net", "SubmittedAt": "2014-02-17T07:25:01.4178645-05:00",
        "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d", "ErrorCode": 0, "Message": "OK"
    }))
}

#[tokio::test]
async fn sends_the_documented_request_exactly() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("X-Postmark-Server-Token", TOKEN))
        .and(header("Accept", "application/json"))
        .and(header("Content-Type", "application/json"))
        .and(body_json(expected_body()))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let receipt = provider(&server, "").await.send(&full_message()).await;
    if receipt.is_err() {
        let got: Value = server.received_requests().await.unwrap()[0]
            .body_json()
            .unwrap();
        panic!("{receipt:?}\nsent: {got:#}");
    }
    assert_eq!(
        receipt.unwrap().provider_message_id.as_deref(),
        Some("0a129aee-e1cd-480d-b08d-4f48548ff48d")
    );
}

#[tokio::test]
async fn templates_go_to_with_template_on_the_configured_stream() {
    let server = MockServer::start().await;
    let mut expected = expected_body();
    let obj = expected.as_object_mut().unwrap();
    for gone in ["Subject", "TextBody", "HtmlBody"] {
        obj.remove(gone);
    }
    // Without tracking options, mailgate's effective tracking (off) is sent explicitly.
    obj.insert("TrackOpens".into(), json!(false));
    obj.insert("TrackLinks".into(), json!("None"));
    obj.insert("TemplateAlias".into(), json!("receipt"));
    obj.insert(
        "TemplateModel".into(),
        json!({"name": "Ann", "items": [1, 2]}),
    );
    obj.insert("MessageStream".into(), json!("billing"));
    Mock::given(method("POST"))
        .and(path("/email/withTemplate"))
        .and(header("X-Postmark-Server-Token", TOKEN))
        .and(body_json(expected))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let mut message = full_message();
    message.provider_options = Some(json!({
        "TemplateAlias": "receipt", "TemplateModel": {"name": "Ann", "items": [1, 2]}
    }));
    let result = provider(&server, "&message_stream=billing")
        .await
        .send(&message)
        .await;
    assert!(result.is_ok(), "{result:?}");
}

async fn send_with_answer(answer: ResponseTemplate, extra: &str) -> SendError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&server)
        .await;
    provider(&server, extra)
        .await
        .send(&full_message())
        .await
        .unwrap_err()
}

fn error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"ErrorCode": code, "Message": message}))
}

#[tokio::test]
async fn error_codes_are_permanent_or_unusable_with_their_meaning() {
    let e = send_with_answer(
        error(
            422,
            300,
            "Error parsing 'To': Illegal email address 'ann@'.",
        ),
        "",
    )
    .await;
    assert_eq!(e.code(), "postmark_300");
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("invalid"), "{e}");

    let e = send_with_answer(
        error(422, 406, "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: ann@example.net."),
        "",
    )
    .await;
    assert_eq!(e.code(), "postmark_406");
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("recipient is marked inactive in Postmark (hard bounce or spam complaint)"),
        "{e}"
    );
    assert!(!e.to_string().contains("ann@example.net"), "{e}");

    let e = send_with_answer(error(401, 10, "Bad or missing Server API token."), "").await;
    assert_eq!(e.code(), "postmark_10");
    assert!(
        matches!(e, SendError::Unusable { .. }) && e.to_string().contains("server token"),
        "{e:?}"
    );
    assert!(!e.to_string().contains(TOKEN));

    for (code, words) in [
        (400, "no sender signature"),
        (401, "not confirmed"),
        (405, "billing"),
        (412, "pending"),
        (413, "may not send"),
    ] {
        let e = send_with_answer(error(422, code, "x"), "").await;
        assert!(matches!(e, SendError::Unusable { .. }), "{code}: {e:?}");
        assert!(e.to_string().contains(words), "{code}: {e}");
    }
    let e = send_with_answer(ResponseTemplate::new(401), "").await;
    assert_eq!(e.code(), "http_401");
    assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_200_with_an_error_code_is_a_failure() {
    let e = send_with_answer(
        error(200, 406, "Found inactive addresses: x@example.net."),
        "",
    )
    .await;
    assert_eq!(e.code(), "postmark_406");
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
}

#[tokio::test]
async fn throttling_and_outages_are_retried() {
    let e = send_with_answer(
        error(429, 429, "Rate limit exceeded").insert_header("Retry-After", "7"),
        "",
    )
    .await;
    let SendError::Retryable { retry_after, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*retry_after, Some(Duration::from_secs(7)));
    for status in [429, 500, 503] {
        let e = send_with_answer(ResponseTemplate::new(status), "").await;
        assert!(e.is_retryable(), "{status}");
        let SendError::Retryable { retry_after, .. } = e else {
            unreachable!()
        };
        assert_eq!(retry_after, None, "no documented rate headers");
    }
    let e = send_with_answer(
        ResponseTemplate::new(503).insert_header("Retry-After", "30"),
        "",
    )
    .await;
    let SendError::Retryable { retry_after, .. } = e else {
        unreachable!()
    };
    assert_eq!(retry_after, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_slow_answer_is_a_retryable_timeout() {
    let e = send_with_answer(
        accepted().set_delay(Duration::from_secs(3)),
        "&timeout_seconds=1",
    )
    .await;
    assert!(e.is_retryable());
    assert_eq!(e.code(), "timeout");
}

async fn verify_server(server: &MockServer, stream: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/server"))
        .and(header("X-Postmark-Server-Token", TOKEN))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ID": 1, "Name": "Acme production"})),
        )
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/message-streams/outbound"))
        .and(header("X-Postmark-Server-Token", TOKEN))
        .respond_with(stream)
        .mount(server)
        .await;
}

fn stream_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ID": "outbound", "ServerID": 1, "Name": "Default Transactional Stream",
        "MessageStreamType": "Transactional", "ArchivedAt": null
    }))
}

async fn verify(server: &MockServer, extra: &str) -> VerifyReport {
    provider(server, extra).await.verify().await.unwrap()
}

fn has(report: &VerifyReport, aspect: CheckAspect, status: CheckStatus, text: &str) -> bool {
    report
        .about(aspect)
        .any(|c| c.status == status && c.detail.contains(text))
}

#[tokio::test]
async fn verify_without_account_token_checks_the_server_and_stream() {
    let server = MockServer::start().await;
    verify_server(&server, stream_ok()).await;
    let report = verify(&server, "").await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(
        report.checks,
        [
            VerifyCheck::ok(CheckAspect::Credentials, "server token accepted (server 'Acme production')"),
            VerifyCheck::ok(CheckAspect::Sender, "message stream 'outbound' exists (Transactional)"),
            VerifyCheck::skipped(
                CheckAspect::Sender,
                "sender signatures and domains not checked: verifying them needs the account token (account_token=…)"
            ),
            VerifyCheck::skipped(
                CheckAspect::Quota,
                "Postmark's API does not report credits or account approval; a send that meets them fails with ErrorCode 405 or 412"
            ),
        ]
    );

    let server = MockServer::start().await;
    verify_server(
        &server,
        error(
            422,
            1226,
            "The message stream for the provided 'ID' was not found.",
        ),
    )
    .await;
    let report = verify(&server, "").await;
    assert!(!report.ok);
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Failed,
            "not found"
        ),
        "{report:#?}"
    );

    let server = MockServer::start().await;
    verify_server(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "ID": "outbound", "MessageStreamType": "Broadcasts", "ArchivedAt": null
        })),
    )
    .await;
    let report = verify(&server, "").await;
    assert!(report.ok, "{report:#?}");
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Warning,
            "broadcast stream"
        ),
        "{report:#?}"
    );

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(error(401, 10, "Bad or missing API token."))
        .mount(&server)
        .await;
    let report = verify(&server, "").await;
    assert!(!report.ok);
    assert!(
        has(
            &report,
            CheckAspect::Credentials,
            CheckStatus::Failed,
            "rejected the server token"
        ),
        "{report:#?}"
    );
    assert!(!report.checks.iter().any(|c| c.detail.contains(TOKEN)));
    assert!(has(
        &report,
        CheckAspect::Sender,
        CheckStatus::Skipped,
        "refused"
    ));

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let report = verify(&server, "").await;
    assert!(!report.ok);
    assert!(
        has(
            &report,
            CheckAspect::Connection,
            CheckStatus::Failed,
            "http_503"
        ),
        "{report:#?}"
    );
}

async fn account(server: &MockServer, senders: Value, domains: Value) {
    Mock::given(method("GET"))
        .and(path("/senders"))
        .and(query_param("count", "500"))
        .and(query_param("offset", "0"))
        .and(header("X-Postmark-Account-Token", "acct"))
        .respond_with(ResponseTemplate::new(200).set_body_json(senders))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .and(header("X-Postmark-Account-Token", "acct"))
        .respond_with(ResponseTemplate::new(200).set_body_json(domains))
        .mount(server)
        .await;
}

#[tokio::test]
async fn verify_with_account_token_checks_the_sender() {
    let senders = json!({"TotalCount": 2, "SenderSignatures": [
        {"ID": 1, "EmailAddress": "noreply@acme.com", "Domain": "acme.com", "Confirmed": true},
        {"ID": 2, "EmailAddress": "billing@other.com", "Domain": "other.com", "Confirmed": false}
    ]});
    let domains = json!({"TotalCount": 1, "Domains": [
        {"ID": 1, "Name": "mail.acme.com", "DKIMVerified": true, "ReturnPathDomainVerified": false}
    ]});
    let cases = [
        ("noreply@acme.com", true, "sender noreply@acme.com: sender signature confirmed"),
        ("hi@mail.acme.com", true, "sender hi@mail.acme.com: domain mail.acme.com: DKIM verified; Return-Path not verified"),
        ("billing@other.com", false, "sender billing@other.com: its sender signature is not confirmed"),
        ("x@nowhere.com", false, "sender x@nowhere.com: no sender signature or domain covers it"),
    ];
    for (from, ok, line) in cases {
        let server = MockServer::start().await;
        verify_server(&server, stream_ok()).await;
        account(&server, senders.clone(), domains.clone()).await;
        let report = verify(&server, &format!("&account_token=acct&from={from}")).await;
        assert_eq!(report.ok, ok, "{from}: {report:#?}");
        let check = report
            .about(CheckAspect::Sender)
            .find(|c| c.detail.starts_with(line))
            .unwrap_or_else(|| panic!("{from}: {report:#?}"));
        let expected = match from {
            "noreply@acme.com" => CheckStatus::Ok,
            // DKIM verified, Return-Path not: sending works, something needs attention.
            "hi@mail.acme.com" => CheckStatus::Warning,
            _ => CheckStatus::Failed,
        };
        assert_eq!(check.status, expected, "{from}");
        assert!(has(
            &report,
            CheckAspect::Credentials,
            CheckStatus::Ok,
            "account token accepted"
        ));
    }

    // Without a configured sender: signatures are counted (they are addresses), domains named.
    let server = MockServer::start().await;
    verify_server(&server, stream_ok()).await;
    account(&server, senders, domains).await;
    let report = verify(&server, "&account_token=acct").await;
    assert!(report.ok, "{report:#?}");
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Warning,
            "2 sender signature(s), 1 confirmed"
        ),
        "{report:#?}"
    );
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Warning,
            "domain mail.acme.com: DKIM verified"
        ),
        "{report:#?}"
    );
    assert!(
        !report.checks.iter().any(|c| c.detail.contains('@')),
        "no addresses beyond the configured sender: {report:#?}"
    );

    // A wrong account token.
    let server = MockServer::start().await;
    verify_server(&server, stream_ok()).await;
    Mock::given(method("GET"))
        .and(path("/senders"))
        .respond_with(error(401, 10, "Bad or missing API token."))
        .mount(&server)
        .await;
    let report = verify(&server, "&account_token=bad").await;
    // Sending needs only the server token.
    assert!(report.ok, "{report:#?}");
    assert!(
        has(
            &report,
            CheckAspect::Credentials,
            CheckStatus::Warning,
            "rejected the account token"
        ),
        "{report:#?}"
    );
    assert!(has(
        &report,
        CheckAspect::Sender,
        CheckStatus::Skipped,
        "account token was refused"
    ));
}

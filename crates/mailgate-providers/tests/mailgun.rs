//! The Mailgun provider against Prism serving Mailgun's official OpenAPI spec (patched so that
//! Prism reads repeated multipart fields as arrays) and against wiremock for the exact form, the
//! answers Prism cannot give (rate limits, 5xx, timeouts). `verify` is in `mailgun_verify.rs`.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mailgate_core::address::Mailbox;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{Attachment, ClaimedMessage, Content, Header};
use mailgate_core::provider::SendError;
use mailgate_providers::ProviderConfig;
use mailgate_testkit::peers::prism::{specs_dir, PrismPeer};
use serde_json::json;
use support::{mailgun as provider, mailgun_wiremock as wiremock_provider};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn mailbox(s: &str) -> Mailbox {
    Mailbox::parse(s, "test").unwrap()
}

/// A message using every field Mailgun maps.
fn full_message() -> ClaimedMessage {
    ClaimedMessage {
        id: MessageId::new(),
        environment_id: EnvironmentId::new(),
        attempt: 1,
        max_attempts: 3,
        lease_token: "lease".into(),
        content: Content {
            from: mailbox("Acme Billing <billing@mg.acme.com>"),
            to: vec![
                mailbox("Ann Lee <ann@example.net>"),
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
                    content: vec![0x89, b'P', b'N', b'G', 0, 1, 2],
                    content_id: Some("logo".into()),
                },
            ],
        },
        tags: vec!["receipt".into(), "billing".into()],
        metadata: BTreeMap::from([
            ("order_id".to_owned(), "42".to_owned()),
            ("tier".to_owned(), "gold".to_owned()),
        ]),
        provider_options: Some(json!({"o:tracking-opens": "yes", "o:tracking-clicks": "htmlonly"})),
        idempotency_key: None,
        delivery: Default::default(),
    }
}

/// One multipart part: field name, file name, content type, bytes.
type Part = (String, Option<String>, String, Vec<u8>);

/// Parses a multipart/form-data body with an independent MIME parser (mail-parser).
fn parse_form(content_type: &str, body: &[u8]) -> Vec<Part> {
    let mut raw = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    raw.extend_from_slice(body);
    let message = MessageParser::default().parse(&raw).expect("a MIME body");
    message
        .parts
        .iter()
        .skip(1)
        .map(|p| {
            let disposition = p.content_disposition().expect("Content-Disposition");
            let ct = p
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                .unwrap_or_default();
            (
                disposition.attribute("name").unwrap_or("").to_owned(),
                disposition.attribute("filename").map(str::to_owned),
                ct,
                p.contents().to_vec(),
            )
        })
        .collect()
}

fn texts<'a>(parts: &'a [Part], name: &str) -> Vec<&'a str> {
    parts
        .iter()
        .filter(|p| p.0 == name)
        .map(|p| std::str::from_utf8(&p.3).unwrap())
        .collect()
}

fn ok_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"id": "<20111114174239.25659.5817@mg.acme.com>", "message": "Queued. Thank you."}),
    )
}

/// Sends the full message to wiremock and returns what arrived (content type and body).
async fn capture_full_request() -> (String, Vec<u8>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mg.acme.com/messages"))
        .respond_with(ok_answer())
        .expect(1)
        .mount(&server)
        .await;
    let p = wiremock_provider(&server, "").await;
    let receipt = p.send(&full_message()).await.unwrap();
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("20111114174239.25659.5817@mg.acme.com"),
        "angle brackets stripped"
    );
    let request = server.received_requests().await.unwrap().remove(0);
    let ct = request.headers["content-type"].to_str().unwrap().to_owned();
    let auth = request.headers["authorization"].to_str().unwrap();
    // base64("api:key-test")
    assert_eq!(auth, "Basic YXBpOmtleS10ZXN0");
    (ct, request.body)
}

#[tokio::test]
async fn sends_every_field_as_mailgun_form_fields() {
    let (ct, body) = capture_full_request().await;
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    let parts = parse_form(&ct, &body);
    assert_eq!(
        texts(&parts, "from"),
        ["\"Acme Billing\" <billing@mg.acme.com>"]
    );
    assert_eq!(
        texts(&parts, "to"),
        ["\"Ann Lee\" <ann@example.net>", "bo@example.net"]
    );
    assert_eq!(texts(&parts, "cc"), ["cy@example.net"]);
    assert_eq!(texts(&parts, "bcc"), ["audit@acme.com"]);
    assert_eq!(texts(&parts, "subject"), ["Your receipt"]);
    assert_eq!(texts(&parts, "text"), ["Thanks for your order."]);
    assert_eq!(
        texts(&parts, "html"),
        ["<p>Thanks! <img src=\"cid:logo\"></p>"]
    );
    assert_eq!(texts(&parts, "h:Reply-To"), ["support@acme.com"]);
    assert_eq!(texts(&parts, "h:X-Order"), ["42"]);
    assert_eq!(texts(&parts, "o:tag"), ["receipt", "billing"]);
    assert_eq!(texts(&parts, "v:order_id"), ["42"]);
    assert_eq!(texts(&parts, "v:tier"), ["gold"]);
    assert_eq!(texts(&parts, "o:tracking-opens"), ["yes"]);
    assert_eq!(texts(&parts, "o:tracking-clicks"), ["htmlonly"]);

    let attachment = parts.iter().find(|p| p.0 == "attachment").unwrap();
    assert_eq!(attachment.1.as_deref(), Some("Résumé.pdf"));
    assert_eq!(attachment.2, "application/pdf");
    assert_eq!(attachment.3, b"%PDF-1.4 test");
    let inline = parts.iter().find(|p| p.0 == "inline").unwrap();
    assert_eq!(inline.1.as_deref(), Some("logo"), "cid:logo names the part");
    assert_eq!(inline.2, "image/png");
    assert_eq!(inline.3, [0x89, b'P', b'N', b'G', 0, 1, 2]);
    // The file name travels as UTF-8 in a quoted string, as Mailgun's own Go SDK sends it.
    let raw = String::from_utf8_lossy(&body);
    assert!(raw.contains("filename=\"Résumé.pdf\""), "{raw}");
}

#[tokio::test]
async fn templates_and_variables_from_provider_options() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_answer())
        .mount(&server)
        .await;
    let mut message = full_message();
    message.provider_options = Some(json!({
        "template": "receipt", "t:variables": {"name": "Ann", "total": 12.5}, "o:tag": ["t1", "t2"]
    }));
    wiremock_provider(&server, "")
        .await
        .send(&message)
        .await
        .unwrap();
    let request = server.received_requests().await.unwrap().remove(0);
    let parts = parse_form(
        request.headers["content-type"].to_str().unwrap(),
        &request.body,
    );
    assert_eq!(texts(&parts, "template"), ["receipt"]);
    let vars: serde_json::Value = serde_json::from_str(texts(&parts, "t:variables")[0]).unwrap();
    assert_eq!(vars, json!({"name": "Ann", "total": 12.5}));
    assert_eq!(texts(&parts, "o:tag"), ["t1", "t2"]);
    assert!(texts(&parts, "html").is_empty() && texts(&parts, "text").is_empty());
}

/// Writes the Prism-friendly copy of Mailgun's spec (a derived file, never kept in git).
fn patched_spec() -> PathBuf {
    let out = std::env::temp_dir().join(format!("mailgate-mailgun-{}.json", std::process::id()));
    let python = std::env::var("MAILGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = std::process::Command::new(python)
        .arg(specs_dir().join("patch_mailgun_for_prism.py"))
        .arg(specs_dir().join("mailgun-openapi.yaml"))
        .arg(&out)
        .status()
        .expect("run patch_mailgun_for_prism.py (python3 with PyYAML)");
    assert!(status.success(), "patching the Mailgun spec failed");
    out
}

#[tokio::test]
async fn full_message_validates_against_the_official_spec() {
    let spec = patched_spec();
    let prism = PrismPeer::start(&spec);
    let p = provider(&format!(
        "mailgun+api://key-test@mg.acme.com?endpoint={}",
        prism.endpoint
    ))
    .await;
    // Prism answers a request that breaks the spec with 4xx/422, which `send` reports as a
    // permanent failure: Ok means the request validated.
    let receipt = p.send(&full_message()).await;
    assert!(receipt.is_ok(), "{receipt:?}\n{}", prism.output());

    // The same bytes replayed directly, to see Prism's `sl-violations` header (none expected).
    let (ct, body) = capture_full_request().await;
    let answer = reqwest::Client::new()
        .post(format!("{}/v3/mg.acme.com/messages", prism.endpoint))
        .basic_auth("api", Some("key-test"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", prism.output());
    assert!(
        answer.headers().get("sl-violations").is_none(),
        "{:?}",
        answer.headers().get("sl-violations")
    );
    assert!(
        !prism.output().to_ascii_lowercase().contains("violation"),
        "{}",
        prism.output()
    );

    // A stored template with its variables validates too.
    let mut templated = full_message();
    templated.provider_options =
        Some(json!({"template": "receipt", "t:variables": {"name": "Ann"}}));
    let r = p.send(&templated).await;
    assert!(r.is_ok(), "{r:?}\n{}", prism.output());

    // A negative control: a value outside the spec's enum must be refused, so the checks above
    // have teeth.
    let mut bad = full_message();
    bad.provider_options = Some(json!({"o:tracking-opens": "sometimes"}));
    let e = p.send(&bad).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    let _ = std::fs::remove_file(spec);
}

async fn send_with_answer(answer: ResponseTemplate, extra: &str) -> SendError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&server)
        .await;
    wiremock_provider(&server, extra)
        .await
        .send(&full_message())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 120.5;
    let e = send_with_answer(
        ResponseTemplate::new(429)
            .insert_header("X-RateLimit-Reset", format!("{reset:.3}").as_str())
            .set_body_json(json!({"message": "Domain mg.acme.com is not allowed to send: account-requests-per-sec limit exceeded, try again after 120 seconds"})),
        "",
    )
    .await;
    let SendError::Retryable {
        code, retry_after, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(code, "http_429");
    let wait = retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(118) && wait <= Duration::from_secs(121),
        "{wait:?}"
    );
    for status in [500, 502, 503, 504] {
        let e = send_with_answer(
            ResponseTemplate::new(status)
                .set_body_json(json!({"message": "Internal Server Error"})),
            "",
        )
        .await;
        assert!(e.is_retryable(), "{status}: {e:?}");
    }
}

#[tokio::test]
async fn refusals_are_permanent_or_unusable_and_say_what_to_do() {
    let e = send_with_answer(
        ResponseTemplate::new(400)
            .set_body_json(json!({"message": "'ann@example.net' parameter is not a valid address. please check documentation"})),
        "",
    )
    .await;
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("not a valid address"), "{e}");
    assert!(
        !e.to_string().contains("ann@example.net"),
        "addresses scrubbed: {e}"
    );

    let e = send_with_answer(ResponseTemplate::new(401).set_body_string("Forbidden"), "").await;
    assert_eq!(
        e,
        SendError::unusable(
            "http_401",
            "Mailgun rejected the API key (check the key and the region: EU domains need region=eu)"
        )
    );
    let e = send_with_answer(
        ResponseTemplate::new(404).set_body_json(json!({"message": "Domain not found"})),
        "",
    )
    .await;
    assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("domain mg.acme.com not found in region us — check the domain and region"),
        "{e}"
    );
    let e = send_with_answer(ResponseTemplate::new(402), "").await;
    assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
    assert!(e.to_string().contains("billing"), "{e}");
    let e = send_with_answer(ResponseTemplate::new(413), "").await;
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    let e = send_with_answer(
        ResponseTemplate::new(403).set_body_string("Domain mg.acme.com is disabled"),
        "",
    )
    .await;
    assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_slow_answer_is_a_retryable_timeout() {
    let e = send_with_answer(
        ok_answer().set_delay(Duration::from_secs(3)),
        "&timeout_seconds=1",
    )
    .await;
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(e.code(), "timeout");
    assert!(!e.to_string().contains("key-test"));
}

#[tokio::test]
async fn eu_region_uses_the_eu_host() {
    let ProviderConfig::Mailgun(c) =
        ProviderConfig::from_dsn("mailgun+api://k@mg.acme.eu?region=eu").unwrap()
    else {
        panic!("not mailgun")
    };
    assert_eq!(c.base_url(), "https://api.eu.mailgun.net");
    // An EU configuration with an endpoint override still names its region in messages.
    let e = send_with_answer(ResponseTemplate::new(404), "&region=eu").await;
    assert!(e.to_string().contains("region eu"), "{e}");
}

//! Configuration and mapping tests that need no network.

use std::collections::BTreeMap;

use mailgate_core::address::Mailbox;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{Attachment, ClaimedMessage, Content, Header};
use serde_json::json;

use super::*;
use crate::config::{ProviderConfig, MASK};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn dsn(s: &str) -> Result<ResendConfig, ConfigError> {
    ResendConfig::from_dsn(Dsn::parse(s).unwrap())
}

fn mailbox(s: &str) -> Mailbox {
    Mailbox::parse(s, "test").unwrap()
}

fn message() -> ClaimedMessage {
    ClaimedMessage {
        id: MessageId::new(),
        environment_id: EnvironmentId::new(),
        attempt: 1,
        max_attempts: 3,
        lease_token: "lease".into(),
        content: Content {
            from: mailbox("Acme <noreply@acme.com>"),
            to: vec![mailbox("ann@example.net")],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: "Hi".into(),
            text: Some("text".into()),
            html: Some("<p>html</p>".into()),
            headers: vec![],
            attachments: vec![],
        },
        tags: vec![],
        metadata: BTreeMap::new(),
        provider_options: None,
        idempotency_key: Some("order/1".into()),
        delivery: Default::default(),
    }
}

#[test]
fn parses_the_dsn_and_its_options() {
    let c = dsn(&format!(
        "resend+api://re_123@default?endpoint=http://127.0.0.1:4010/&webhook_secret={SECRET}&timeout_seconds=5&from=noreply@acme.com"
    ))
    .unwrap();
    assert_eq!(c.api_key, "re_123");
    assert_eq!(c.base_url().unwrap(), "http://127.0.0.1:4010");
    assert_eq!(c.webhook_secret.as_deref(), Some(SECRET));
    assert_eq!(c.timeout(), Duration::from_secs(5));
    assert_eq!(c.from.as_deref(), Some("noreply@acme.com"));
    let c = dsn("resend://re_123@default").unwrap();
    assert_eq!(c.base_url().unwrap(), DEFAULT_ENDPOINT);
    assert_eq!(c.timeout(), Duration::from_secs(DEFAULT_TIMEOUT_SECONDS));
    assert!(matches!(
        ProviderConfig::from_dsn("resend+api://re_123@default").unwrap(),
        ProviderConfig::Resend(_)
    ));
}

#[test]
fn refuses_bad_dsns() {
    for bad in [
        "resend+api://default",
        "resend+api://re_1@api.resend.com",
        "resend+api://re_1:pw@default",
        "resend+api://re_1@default?timeout=3",
        "resend+api://re_1@default?timeout_seconds=0",
        "resend+api://re_1@default?timeout_seconds=soon",
        "resend+api://re_1@default?endpoint=ftp://x",
        "resend+api://re_1@default?webhook_secret=nope",
        "resend+api://re_1@default?from=not-an-address",
    ] {
        assert!(dsn(bad).is_err(), "{bad} should be refused");
    }
    let e = dsn("resend+api://re_1@default?api_ky=x").unwrap_err();
    assert!(e.to_string().contains("api_ky"), "{e}");
}

#[test]
fn parses_the_json_form_and_refuses_unknown_fields() {
    let c = ProviderConfig::from_json(json!({
        "type": "resend", "api_key": "re_123", "webhook_secret": SECRET, "timeout_seconds": 10
    }))
    .unwrap();
    let ProviderConfig::Resend(c) = c else {
        panic!("not resend")
    };
    assert_eq!(c.timeout_seconds, Some(10));
    assert!(
        ProviderConfig::from_json(json!({"type": "resend", "api_key": "k", "region": "eu"}))
            .is_err()
    );
    assert!(ProviderConfig::from_json(json!({"dsn": "resend+api://re_9@default"})).is_ok());
}

#[test]
fn redacted_and_debug_hide_every_secret() {
    let c = dsn(&format!(
        "resend+api://re_supersecret@default?webhook_secret={SECRET}"
    ))
    .unwrap();
    let r = c.redacted();
    assert_eq!(r["api_key"], MASK);
    assert_eq!(r["webhook_secret"], MASK);
    for shown in [
        r.to_string(),
        format!("{c:?}"),
        format!("{:?}", ProviderConfig::Resend(c.clone())),
    ] {
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
    }
    assert!(!format!("{:?}", ResendProvider::new(&c).unwrap()).contains("supersecret"));
}

#[test]
fn sanitises_tags() {
    assert_eq!(sanitize_tag("order id/é"), "order_id__");
    assert_eq!(sanitize_tag(""), "_");
    assert_eq!(sanitize_tag(&"a".repeat(300)).len(), 256);
    assert_eq!(sanitize_tag("ok-Tag_1"), "ok-Tag_1");
}

#[test]
fn maps_tags_metadata_and_the_message_id() {
    let mut m = message();
    m.tags = vec!["welcome mail".into(), "plan".into()];
    m.metadata = BTreeMap::from([("plan".into(), "pro+".into()), ("user".into(), "42".into())]);
    let body = send_request(&m).unwrap();
    assert_eq!(
        body["tags"],
        json!([
            {"name": "mailgate_message_id", "value": m.id.to_string()},
            {"name": "plan", "value": "pro_"},
            {"name": "user", "value": "42"},
            {"name": "welcome_mail", "value": "true"},
        ])
    );
}

#[test]
fn templates_drop_the_bodies_and_options_merge() {
    let mut m = message();
    m.provider_options = Some(json!({
        "template": {"id": "tmpl_1", "variables": {"name": "Ann", "n": 2}},
        "scheduled_at": "in 1 min"
    }));
    let body = send_request(&m).unwrap();
    assert!(body.get("html").is_none() && body.get("text").is_none());
    assert_eq!(body["template"]["id"], "tmpl_1");
    assert_eq!(body["scheduled_at"], "in 1 min");
    m.provider_options = Some(json!(["not", "an", "object"]));
    assert_eq!(
        send_request(&m).unwrap_err().code(),
        "invalid_provider_options"
    );
}

#[test]
fn maps_attachments_headers_and_refuses_duplicate_headers() {
    let mut m = message();
    m.content.attachments = vec![Attachment {
        filename: "logo.png".into(),
        content_type: "image/png".into(),
        content: vec![1, 2, 3],
        content_id: Some("logo".into()),
    }];
    m.content.headers = vec![Header::parse("X-A", "1", "h").unwrap()];
    let body = send_request(&m).unwrap();
    assert_eq!(
        body["attachments"],
        json!([{"filename": "logo.png", "content": "AQID", "content_type": "image/png", "content_id": "logo"}])
    );
    assert_eq!(body["headers"], json!({"X-A": "1"}));
    assert!(body.get("cc").is_none() && body.get("reply_to").is_none());
    m.content
        .headers
        .push(Header::parse("X-A", "2", "h").unwrap());
    let e = send_request(&m).unwrap_err();
    assert_eq!(e.code(), "duplicate_header");
    assert!(!e.is_retryable());
}

#[test]
fn the_idempotency_key_is_the_message_id() {
    let m = message();
    assert_eq!(idempotency_key(&m), m.id.to_string());
}

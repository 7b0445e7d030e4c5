//! Configuration and mapping tests that need no network.

use std::collections::BTreeMap;

use mailgate_core::address::Mailbox;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{ClaimedMessage, Content, Header};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

use super::mapping::dedupe;
use super::*;
use crate::config::{ProviderConfig, MASK};

/// The official test key of `sendgrid-python`'s event webhook tests (public by nature).
const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";

fn dsn(s: &str) -> Result<SendgridConfig, ConfigError> {
    SendgridConfig::from_dsn(Dsn::parse(s).unwrap())
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
        idempotency_key: None,
        delivery: Default::default(),
    }
}

#[test]
fn parses_the_dsn_regions_and_endpoint() {
    let c = dsn("sendgrid+api://SG.key@default").unwrap();
    assert_eq!(c.base_url().unwrap(), GLOBAL_ENDPOINT);
    let c = dsn("sendgrid+api://SG.key@default?region=eu").unwrap();
    assert_eq!(c.base_url().unwrap(), "https://api.eu.sendgrid.com");
    assert_eq!(
        SendgridProvider::new(&c).unwrap().base_url(),
        "https://api.eu.sendgrid.com"
    );
    let c = dsn("sendgrid://SG.key@default?region=global").unwrap();
    assert_eq!(c.base_url().unwrap(), GLOBAL_ENDPOINT);
    let c = dsn(&format!(
        "sendgrid+api://SG.key@default?region=eu&endpoint=http://127.0.0.1:9/&timeout_seconds=2&from=noreply@acme.com&webhook_public_key={}",
        PUBLIC_KEY.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
    ))
    .unwrap();
    assert_eq!(c.base_url().unwrap(), "http://127.0.0.1:9");
    assert_eq!(c.timeout(), Duration::from_secs(2));
    assert_eq!(c.webhook_public_key.as_deref(), Some(PUBLIC_KEY));
    assert!(matches!(
        ProviderConfig::from_dsn("sendgrid+api://SG.key@default").unwrap(),
        ProviderConfig::Sendgrid(_)
    ));
}

#[test]
fn refuses_bad_dsns() {
    for bad in [
        "sendgrid+api://default",
        "sendgrid+api://SG.k@api.sendgrid.com",
        "sendgrid+api://SG.k:pw@default",
        "sendgrid+api://SG.k@default?region=us",
        "sendgrid+api://SG.k@default?timeout_seconds=301",
        "sendgrid+api://SG.k@default?webhook_public_key=%%%",
        "sendgrid+api://SG.k@default?endpoint=not-a-url",
    ] {
        assert!(dsn(bad).is_err(), "{bad} should be refused");
    }
    let e = dsn("sendgrid+api://SG.k@default?regoin=eu").unwrap_err();
    assert!(e.to_string().contains("regoin"), "{e}");
}

#[test]
fn parses_the_json_form_and_refuses_unknown_fields() {
    let c = ProviderConfig::from_json(json!({
        "type": "sendgrid", "api_key": "SG.key", "region": "eu", "webhook_public_key": PUBLIC_KEY
    }))
    .unwrap();
    assert!(matches!(c, ProviderConfig::Sendgrid(ref s) if s.region.as_deref() == Some("eu")));
    assert!(ProviderConfig::from_json(
        json!({"type": "sendgrid", "api_key": "SG.key", "sandbox": true})
    )
    .is_err());
}

#[test]
fn redacted_and_debug_hide_the_key() {
    let c = dsn("sendgrid+api://SG.supersecret@default?region=eu").unwrap();
    assert_eq!(c.redacted()["api_key"], MASK);
    for shown in [
        c.redacted().to_string(),
        format!("{c:?}"),
        format!("{:?}", ProviderConfig::Sendgrid(c.clone())),
        format!("{:?}", SendgridProvider::new(&c).unwrap()),
    ] {
        assert!(!shown.contains("supersecret"), "{shown}");
    }
}

#[test]
fn dedupes_recipients_across_to_cc_and_bcc() {
    let to = vec![mailbox("Ann <ann@example.net>"), mailbox("ANN@example.net")];
    let cc = vec![mailbox("bo@example.net"), mailbox("Ann@Example.net")];
    let bcc = vec![mailbox("bo@example.net"), mailbox("cy@example.net")];
    let [to, cc, bcc] = dedupe([&to, &cc, &bcc]);
    let emails = |l: &[&Mailbox]| l.iter().map(|m| m.email.to_string()).collect::<Vec<_>>();
    assert_eq!(emails(&to), ["ann@example.net"]);
    assert_eq!(to[0].name.as_deref(), Some("Ann"));
    assert_eq!(emails(&cc), ["bo@example.net"]);
    assert_eq!(emails(&bcc), ["cy@example.net"]);
}

#[test]
fn a_message_without_to_fails_permanently() {
    let mut m = message();
    m.content.bcc = std::mem::take(&mut m.content.to);
    let e = send_request(&m).unwrap_err();
    assert_eq!(e.code(), "no_to_recipient");
    assert!(!e.is_retryable());
}

#[test]
fn categories_are_unique_short_and_at_most_ten() {
    let mut m = message();
    m.tags = (0..12).map(|i| format!("t{i}")).collect();
    m.tags.insert(0, "t0".into());
    m.tags.push("x".repeat(300));
    let body = send_request(&m).unwrap();
    let cats = body["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 10);
    assert_eq!(cats[0], "t0");
    assert_eq!(cats[1], "t1");
    assert_eq!(category(&"é".repeat(300)).chars().count(), 255);
}

#[test]
fn dynamic_templates_move_their_data_into_the_personalization() {
    let mut m = message();
    m.metadata = BTreeMap::from([("order".into(), "42".into())]);
    m.provider_options = Some(json!({
        "template_id": "d-123",
        "dynamic_template_data": {"name": "Ann", "items": [1, 2]},
        "tracking_settings": {"open_tracking": {"enable": true}}
    }));
    let body = send_request(&m).unwrap();
    assert!(body.get("content").is_none() && body.get("subject").is_none());
    assert!(body.get("dynamic_template_data").is_none());
    assert_eq!(body["template_id"], "d-123");
    let p = &body["personalizations"][0];
    assert_eq!(p["dynamic_template_data"]["name"], "Ann");
    assert_eq!(p["custom_args"]["order"], "42");
    assert_eq!(p["custom_args"]["mailgate_message_id"], m.id.to_string());
    assert_eq!(body["tracking_settings"]["open_tracking"]["enable"], true);
    m.provider_options = Some(json!("d-123"));
    assert_eq!(
        send_request(&m).unwrap_err().code(),
        "invalid_provider_options"
    );
}

#[test]
fn reserved_headers_and_several_reply_tos() {
    let mut m = message();
    m.content.reply_to = vec![mailbox("a@acme.com"), mailbox("B <b@acme.com>")];
    let body = send_request(&m).unwrap();
    assert!(body.get("reply_to").is_none());
    assert_eq!(
        body["reply_to_list"],
        json!([{"email": "a@acme.com"}, {"email": "b@acme.com", "name": "B"}])
    );
    m.content.headers = vec![Header::parse("X-SG-EID", "x", "h").unwrap()];
    assert_eq!(send_request(&m).unwrap_err().code(), "reserved_header");
}

#[test]
fn reads_the_message_id_header() {
    let mut h = HeaderMap::new();
    assert_eq!(message_id(&h), None);
    h.insert(
        "x-message-id",
        HeaderValue::from_static("W6A2GYyBRzuaUKYz6GU6tQ"),
    );
    assert_eq!(message_id(&h).as_deref(), Some("W6A2GYyBRzuaUKYz6GU6tQ"));
}

#[test]
fn tracking_is_explicit_and_options_still_override_it() {
    let mut m = message();
    m.provider_options = None;
    let body = super::mapping::send_request(&m).unwrap();
    assert_eq!(
        body["tracking_settings"],
        json!({"open_tracking": {"enable": false}, "click_tracking": {"enable": false, "enable_text": false}})
    );
    m.delivery.tracking.links = true;
    m.provider_options = Some(json!({"tracking_settings": {"open_tracking": {"enable": true}}}));
    let body = super::mapping::send_request(&m).unwrap();
    assert_eq!(
        body["tracking_settings"],
        json!({"open_tracking": {"enable": true}, "click_tracking": {"enable": true, "enable_text": true}})
    );
}

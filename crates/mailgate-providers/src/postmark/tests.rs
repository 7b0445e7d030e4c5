//! Configuration and mapping tests that need no network.

use std::collections::BTreeMap;

use mailgate_core::address::Mailbox;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{ClaimedMessage, Content};
use serde_json::json;

use super::mapping::{build_request, EMAIL, WITH_TEMPLATE};
use super::*;
use crate::config::{ProviderConfig, MASK};

fn dsn(s: &str) -> Result<PostmarkConfig, ConfigError> {
    PostmarkConfig::from_dsn(Dsn::parse(s).unwrap())
}

#[test]
fn parses_dsns() {
    let c = dsn("postmark+api://tok-1@default").unwrap();
    assert_eq!(c.server_token, "tok-1");
    assert_eq!(c.message_stream, "outbound");
    assert_eq!(c.base_url(), DEFAULT_ENDPOINT);
    assert_eq!(c.account_token, None);
    let c = dsn("postmark://tok@default?message_stream=broadcast&account_token=acc&from=noreply@acme.com&endpoint=http://127.0.0.1:9/&webhook_username=u&webhook_password=p%2Fw&timeout_seconds=3").unwrap();
    assert_eq!(c.message_stream, "broadcast");
    assert_eq!(c.account_token.as_deref(), Some("acc"));
    assert_eq!(c.base_url(), "http://127.0.0.1:9");
    assert_eq!(c.webhook_password.as_deref(), Some("p/w"));
    assert_eq!(c.timeout(), Duration::from_secs(3));
    assert!(matches!(
        ProviderConfig::from_dsn("postmark+api://t@default").unwrap(),
        ProviderConfig::Postmark(_)
    ));
}

#[test]
fn refuses_bad_dsns() {
    let cases = [
        ("postmark+api://default", "server_token"),
        ("postmark+api://t@api.postmarkapp.com", "host"),
        ("postmark+api://t:x@default", "server_token"),
        ("postmark+api://t@default?stream=x", "stream"),
        (
            "postmark+api://t@default?message_stream=a%20b",
            "message_stream",
        ),
        (
            "postmark+api://t@default?webhook_username=u",
            "webhook_password",
        ),
        ("postmark+api://t@default?endpoint=nope", "endpoint"),
        ("postmark+api://t@default?from=nope", "from"),
        (
            "postmark+api://t@default?timeout_seconds=999",
            "timeout_seconds",
        ),
    ];
    for (input, field) in cases {
        let e = dsn(input).unwrap_err();
        assert!(e.to_string().starts_with(field), "{input}: {e}");
    }
}

#[test]
fn json_form_round_trips() {
    let c = ProviderConfig::from_json(json!({
        "type": "postmark", "server_token": "t", "account_token": "a"
    }))
    .unwrap();
    let ProviderConfig::Postmark(p) = &c else {
        panic!("not postmark")
    };
    assert_eq!(p.message_stream, "outbound");
    let round = ProviderConfig::from_json(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(round, c);
    assert!(
        ProviderConfig::from_json(json!({"type": "postmark", "server_token": "t", "x": 1}))
            .is_err()
    );
}

#[test]
fn redacted_and_debug_hide_every_secret() {
    let c = dsn("postmark+api://sekret1@default?account_token=sekret2&webhook_username=sekret3&webhook_password=sekret4").unwrap();
    let r = c.redacted();
    for k in [
        "server_token",
        "account_token",
        "webhook_username",
        "webhook_password",
    ] {
        assert_eq!(r[k], MASK, "{k}");
    }
    let p = PostmarkProvider::new(&c).unwrap();
    let shown = format!("{r} {c:?} {p:?}");
    assert!(!shown.contains("sekret"), "{shown}");
}

fn message(options: Option<serde_json::Value>) -> ClaimedMessage {
    let mb = |s: &str| Mailbox::parse(s, "t").unwrap();
    ClaimedMessage {
        id: MessageId::new(),
        environment_id: EnvironmentId::new(),
        attempt: 1,
        max_attempts: 3,
        lease_token: "l".into(),
        content: Content {
            from: mb("noreply@acme.com"),
            to: vec![mb("\"Lee, Ann\" <ann@example.net>"), mb("bo@example.net")],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: "Hi".into(),
            text: Some("t".into()),
            html: None,
            headers: vec![],
            attachments: vec![],
        },
        tags: vec!["first".into(), "second".into()],
        metadata: BTreeMap::new(),
        provider_options: options,
        idempotency_key: None,
        delivery: Default::default(),
    }
}

#[test]
fn maps_the_minimum_and_quotes_names() {
    let m = message(None);
    let (path, body) = build_request(&m, "outbound").unwrap();
    assert_eq!(path, EMAIL);
    assert_eq!(
        body,
        json!({
            "From": "noreply@acme.com",
            "To": "\"Lee, Ann\" <ann@example.net>, bo@example.net",
            "Subject": "Hi",
            "TextBody": "t",
            "Tag": "first",
            "Metadata": {"mailgate_message_id": m.id.to_string()},
            "MessageStream": "outbound",
            "TrackOpens": false,
            "TrackLinks": "None",
        })
    );
}

#[test]
fn templates_and_options() {
    let options = json!({"TemplateAlias": "welcome", "TemplateModel": {"name": "Ann"}, "TrackOpens": true, "Tag": null});
    let (path, body) = build_request(&message(Some(options)), "outbound").unwrap();
    assert_eq!(path, WITH_TEMPLATE);
    assert_eq!(body["TemplateModel"], json!({"name": "Ann"}));
    assert_eq!(body["TrackOpens"], json!(true));
    for gone in ["Subject", "TextBody", "Tag"] {
        assert!(body.get(gone).is_none(), "{gone}");
    }
    assert!(build_request(&message(Some(json!("x"))), "outbound").is_err());
}

//! Configuration and mapping tests that need no network.

use std::collections::BTreeMap;

use mailgate_core::address::Mailbox;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{Attachment, ClaimedMessage, Content, Header};
use serde_json::json;

use super::mapping::{encode_mailbox, encode_word, fill_request, SesOptions};
use super::*;
use crate::config::{ProviderConfig, MASK};

fn dsn(s: &str) -> Result<SesConfig, ConfigError> {
    SesConfig::from_dsn(Dsn::parse(s).unwrap())
}

#[test]
fn static_keys_from_dsn() {
    let c =
        dsn("ses+api://AKIDEXAMPLE:se%2Fcr%2Bet@default?region=us-east-1&configuration_set=events")
            .unwrap();
    assert_eq!(c.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
    assert_eq!(c.secret_access_key.as_deref(), Some("se/cr+et"));
    assert_eq!(c.region, "us-east-1");
    assert_eq!(c.configuration_set.as_deref(), Some("events"));
    assert!(matches!(
        ProviderConfig::from_dsn("ses://AK:S@default?region=eu-west-1").unwrap(),
        ProviderConfig::Ses(_)
    ));
}

#[test]
fn default_chain_and_assume_role() {
    let c = dsn("ses+api://default?region=eu-west-1").unwrap();
    assert_eq!(
        (c.access_key_id.clone(), c.secret_access_key.clone()),
        (None, None)
    );
    let c = dsn("ses+api://default?region=eu-west-1&role_arn=arn:aws:iam::123456789012:role/mailgate&external_id=ext-42&max_send_rate=14&from=noreply@acme.com").unwrap();
    assert_eq!(
        c.role_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/mailgate")
    );
    assert_eq!(c.external_id.as_deref(), Some("ext-42"));
    assert_eq!(c.max_send_rate, Some(14));
    assert_eq!(c.from.as_deref(), Some("noreply@acme.com"));
    assert!(dsn("ses+api://default?region=eu-west-1&external_id=x").is_err());
    assert!(dsn("ses+api://default?region=eu-west-1&role_arn=mailgate").is_err());
}

#[test]
fn refuses_bad_dsns() {
    let e = dsn("ses+api://AK:S@default").unwrap_err();
    assert!(e.to_string().starts_with("region:"), "{e}");
    let e = dsn("ses+api://AK:S@default?region=us-east-1&regoin=x").unwrap_err();
    assert!(e.to_string().contains("regoin"), "{e}");
    assert!(dsn("ses+api://AK@default?region=us-east-1").is_err());
    assert!(dsn("ses+api://AK:S@email.example.com?region=us-east-1").is_err());
    assert!(dsn("ses+api://default?region=us-east-1&endpoint=not-a-url").is_err());
    assert!(dsn("ses+api://default?region=us-east-1&max_send_rate=fast").is_err());
    assert!(dsn("ses+api://default?region=us-east-1&max_send_rate=0").is_err());
    let c = dsn("ses+api://default?region=us-east-1&endpoint=http://127.0.0.1:5000").unwrap();
    assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
}

#[test]
fn json_form_matches_the_dsn() {
    let json = ProviderConfig::from_json(json!({
        "type": "ses", "region": "us-east-1", "access_key_id": "AK", "secret_access_key": "S",
        "configuration_set": "events", "endpoint": "http://127.0.0.1:5000", "max_send_rate": 3
    }))
    .unwrap();
    let from_dsn = ProviderConfig::from_dsn(
        "ses+api://AK:S@default?region=us-east-1&configuration_set=events&endpoint=http://127.0.0.1:5000&max_send_rate=3",
    )
    .unwrap();
    assert_eq!(json, from_dsn);
    assert!(ProviderConfig::from_json(
        json!({"type": "ses", "region": "us-east-1", "secret": "x"})
    )
    .is_err());
}

#[test]
fn tenant_from_organization_option() {
    let c = dsn("ses+api://default?region=us-east-1").unwrap();
    assert!(!c.tenant_from_organization);
    assert_eq!(c.redacted()["tenant_from_organization"], false);
    assert!(
        serde_json::to_value(&c)
            .unwrap()
            .get("tenant_from_organization")
            .is_none(),
        "the default is not written, so stored configurations do not change"
    );
    let c = dsn("ses+api://default?region=us-east-1&tenant_from_organization=true").unwrap();
    assert!(c.tenant_from_organization);
    assert_eq!(c.redacted()["tenant_from_organization"], true);
    let e = dsn("ses+api://default?region=us-east-1&tenant_from_organization=yes").unwrap_err();
    assert!(
        e.to_string().starts_with("tenant_from_organization:"),
        "{e}"
    );
    let json = ProviderConfig::from_json(
        json!({"type": "ses", "region": "us-east-1", "tenant_from_organization": true}),
    )
    .unwrap();
    assert_eq!(
        json,
        ProviderConfig::from_dsn(
            "ses+api://default?region=us-east-1&tenant_from_organization=true"
        )
        .unwrap()
    );
}

#[test]
fn tenant_name_from_the_organization() {
    let tenant = |options: Option<serde_json::Value>, org: Option<&str>| {
        fill_request(client().send_email(), &message(options), None, org)
            .map(|r| r.as_input().get_tenant_name().clone())
    };
    assert_eq!(tenant(None, None).unwrap(), None);
    assert_eq!(
        tenant(None, Some("acme-eu_1")).unwrap().as_deref(),
        Some("acme-eu_1")
    );
    // An explicit TenantName wins.
    assert_eq!(
        tenant(Some(json!({"TenantName": "explicit"})), Some("acme"))
            .unwrap()
            .as_deref(),
        Some("explicit")
    );
    assert_eq!(
        tenant(Some(json!({"TenantName": "explicit"})), None)
            .unwrap()
            .as_deref(),
        Some("explicit")
    );
    // Organization names may hold '.', SES tenant names may not.
    let e = tenant(None, Some("acme.eu")).unwrap_err();
    assert!(
        matches!(e, mailgate_core::provider::SendError::Unusable { .. }),
        "{e:?}"
    );
    assert_eq!(e.code(), "tenant_name_invalid");
    assert!(tenant(Some(json!({"TenantName": "acme"})), Some("acme.eu")).is_ok());
}

#[tokio::test]
async fn build_checks_the_json_form_too() {
    let c: SesConfig = serde_json::from_value(json!({"region": ""})).unwrap();
    assert!(c.build().await.is_err());
    let c: SesConfig = serde_json::from_value(json!({"region": "us-east-1"})).unwrap();
    assert!(c.build().await.is_ok());
}

#[test]
fn secrets_never_shown() {
    let c = dsn("ses+api://AKIDEXAMPLE:hunter2secret@default?region=us-east-1").unwrap();
    let r = c.redacted();
    assert_eq!(r["secret_access_key"], MASK);
    assert_eq!(r["access_key_id"], "AKIDEXAMPLE");
    assert!(!r.to_string().contains("hunter2secret"));
    assert!(!format!("{c:?}").contains("hunter2secret"));
    let p = ProviderConfig::Ses(c);
    assert!(!format!("{p:?}").contains("hunter2secret"));
    assert_eq!(p.redacted()["type"], "ses");
}

#[test]
fn tags_are_sanitised() {
    assert_eq!(sanitize_tag("order id: 42/ü"), "order_id__42__");
    assert_eq!(sanitize_tag("ok_Name-1"), "ok_Name-1");
    assert_eq!(sanitize_tag(""), "_");
    assert_eq!(sanitize_tag(&"a".repeat(300)).len(), 256);
}

#[test]
fn display_names_are_encoded() {
    let m = Mailbox::parse("Acme Billing <billing@acme.com>", "from").unwrap();
    assert_eq!(encode_mailbox(&m), "\"Acme Billing\" <billing@acme.com>");
    let m = Mailbox::parse("Zoë Café <zoe@acme.com>", "from").unwrap();
    assert_eq!(
        encode_mailbox(&m),
        "=?UTF-8?B?Wm/DqyBDYWbDqQ==?= <zoe@acme.com>"
    );
    assert_eq!(encode_word("plain"), "plain");
    let long = encode_word(&"é".repeat(60));
    assert!(long.split(' ').all(|w| w.len() <= 75), "{long}");
}

fn message(options: Option<serde_json::Value>) -> ClaimedMessage {
    let mb = |s: &str| Mailbox::parse(s, "x").unwrap();
    ClaimedMessage {
        id: MessageId::new(),
        environment_id: EnvironmentId::new(),
        attempt: 1,
        max_attempts: 3,
        lease_token: "l".into(),
        content: Content {
            from: mb("Acme <noreply@acme.com>"),
            to: vec![mb("ann@example.net")],
            cc: vec![mb("Bo <bo@example.net>")],
            bcc: vec![mb("audit@acme.com")],
            reply_to: vec![mb("support@acme.com")],
            subject: "Your receipt".into(),
            text: Some("Thanks".into()),
            html: Some("<p>Thanks</p>".into()),
            headers: vec![Header::parse("X-Order", "42", "headers").unwrap()],
            attachments: vec![Attachment {
                filename: "r.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF".to_vec(),
                content_id: None,
            }],
        },
        tags: vec!["receipt".into(), "vip customer".into()],
        metadata: BTreeMap::from([("order".to_owned(), "42/a".to_owned())]),
        provider_options: options,
        idempotency_key: None,
        delivery: Default::default(),
    }
}

fn client() -> aws_sdk_sesv2::Client {
    aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::Config::builder()
            .behavior_version(aws_sdk_sesv2::config::BehaviorVersion::latest())
            .region(aws_sdk_sesv2::config::Region::new("us-east-1"))
            .build(),
    )
}

#[test]
fn maps_the_whole_message() {
    let msg = message(Some(
        json!({"FeedbackForwardingEmailAddress": "bounces@acme.com"}),
    ));
    let req = fill_request(client().send_email(), &msg, Some("events"), None).unwrap();
    let input = req.as_input();
    assert_eq!(
        input.get_from_email_address().as_deref(),
        Some("\"Acme\" <noreply@acme.com>")
    );
    let dest = input.get_destination().as_ref().unwrap();
    assert_eq!(dest.to_addresses(), ["ann@example.net"]);
    assert_eq!(dest.cc_addresses(), ["\"Bo\" <bo@example.net>"]);
    assert_eq!(dest.bcc_addresses(), ["audit@acme.com"]);
    assert_eq!(
        input.get_reply_to_addresses().as_deref(),
        Some(&["support@acme.com".to_owned()][..])
    );
    assert_eq!(
        input.get_configuration_set_name().as_deref(),
        Some("events")
    );
    assert_eq!(
        input.get_feedback_forwarding_email_address().as_deref(),
        Some("bounces@acme.com")
    );
    let simple = input.get_content().as_ref().unwrap().simple().unwrap();
    assert_eq!(simple.subject().unwrap().data(), "Your receipt");
    assert_eq!(simple.subject().unwrap().charset(), Some("UTF-8"));
    assert_eq!(
        simple.body().unwrap().html().unwrap().data(),
        "<p>Thanks</p>"
    );
    assert_eq!(simple.headers()[0].name(), "X-Order");
    assert_eq!(simple.attachments()[0].file_name(), "r.pdf");
    assert_eq!(simple.attachments()[0].raw_content().as_ref(), b"%PDF");
    let tags: Vec<(String, String)> = input
        .get_email_tags()
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| (t.name().to_owned(), t.value().to_owned()))
        .collect();
    assert_eq!(
        tags[0],
        ("mailgate_message_id".to_owned(), msg.id.to_string())
    );
    assert!(tags.contains(&("vip_customer".into(), "true".into())));
    assert!(tags.contains(&("order".into(), "42_a".into())));
}

#[test]
fn templates_and_provider_options() {
    let msg = message(Some(json!({
        "template": "receipt", "template_data": {"name": "Ann"}, "ConfigurationSetName": "other",
        "ListManagementOptions": {"ContactListName": "news"}
    })));
    let req = fill_request(client().send_email(), &msg, Some("events"), None).unwrap();
    let input = req.as_input();
    let t = input.get_content().as_ref().unwrap().template().unwrap();
    assert_eq!(t.template_name(), Some("receipt"));
    assert_eq!(t.template_data(), Some(r#"{"name":"Ann"}"#));
    assert_eq!(input.get_configuration_set_name().as_deref(), Some("other"));
    assert_eq!(
        input
            .get_list_management_options()
            .as_ref()
            .unwrap()
            .contact_list_name(),
        "news"
    );

    let e = SesOptions::parse(Some(&json!({"Tracking": true}))).unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("'Tracking'"), "{e}");
    assert!(SesOptions::parse(Some(&json!({"template_data": {}}))).is_err());
    assert!(SesOptions::parse(Some(&json!({"template": "t", "template_data": "[1]"}))).is_err());
    assert!(SesOptions::parse(Some(&json!([1]))).is_err());
}

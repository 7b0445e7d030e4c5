//! Configuration tests that need no network.

use serde_json::json;

use super::*;
use crate::config::{ProviderConfig, MASK};

fn dsn(s: &str) -> Result<MailgunConfig, ConfigError> {
    MailgunConfig::from_dsn(Dsn::parse(s).unwrap())
}

#[test]
fn parses_dsns_with_regions_and_options() {
    let c = dsn("mailgun+api://key-123@mg.acme.com").unwrap();
    assert_eq!(c.api_key, "key-123");
    assert_eq!(c.domain, "mg.acme.com");
    assert_eq!(c.region, MailgunRegion::Us);
    assert_eq!(c.base_url(), "https://api.mailgun.net");
    assert_eq!(c.timeout(), Duration::from_secs(30));

    let c = dsn(
        "mailgun+api://api:k%2Fy@mg.acme.com?region=EU&webhook_signing_key=whk&timeout_seconds=5",
    )
    .unwrap();
    assert_eq!(c.api_key, "k/y");
    assert_eq!(c.region, MailgunRegion::Eu);
    assert_eq!(c.base_url(), "https://api.eu.mailgun.net");
    assert_eq!(c.webhook_signing_key.as_deref(), Some("whk"));
    assert_eq!(c.timeout(), Duration::from_secs(5));

    let c = dsn("mailgun://k@mg.acme.com?region=eu&endpoint=http://127.0.0.1:9/").unwrap();
    assert_eq!(c.base_url(), "http://127.0.0.1:9", "the endpoint wins");
    assert!(matches!(
        ProviderConfig::from_dsn("mailgun+api://k@mg.acme.com").unwrap(),
        ProviderConfig::Mailgun(_)
    ));
}

#[test]
fn refuses_bad_dsns() {
    let cases = [
        ("mailgun+api://mg.acme.com", "api_key"),
        ("mailgun+api://k@default", "domain"),
        ("mailgun+api://k@localhost", "domain"),
        ("mailgun+api://k@mg.acme.com?region=ap", "region"),
        ("mailgun+api://k@mg.acme.com?regoin=eu", "regoin"),
        ("mailgun+api://k@mg.acme.com?endpoint=ftp://x", "endpoint"),
        (
            "mailgun+api://k@mg.acme.com?timeout_seconds=0",
            "timeout_seconds",
        ),
        (
            "mailgun+api://k@mg.acme.com?timeout_seconds=x",
            "timeout_seconds",
        ),
        ("mailgun+api://user:k@mg.acme.com", "api_key"),
    ];
    for (input, field) in cases {
        let e = dsn(input).unwrap_err();
        assert!(e.to_string().starts_with(field), "{input}: {e}");
    }
}

#[test]
fn json_form_has_the_same_fields() {
    let c = ProviderConfig::from_json(json!({
        "type": "mailgun", "api_key": "k", "domain": "mg.acme.com", "region": "eu",
        "webhook_signing_key": "w", "timeout_seconds": 10
    }))
    .unwrap();
    let ProviderConfig::Mailgun(m) = &c else {
        panic!("not mailgun")
    };
    assert_eq!(m.region, MailgunRegion::Eu);
    assert_eq!(m.webhook_signing_key.as_deref(), Some("w"));
    let round = ProviderConfig::from_json(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(round, c);
    assert!(ProviderConfig::from_json(
        json!({"type": "mailgun", "api_key": "k", "domain": "d.com", "extra": 1})
    )
    .is_err());
    assert!(ProviderConfig::from_json(json!({"type": "mailgun", "domain": "d.com"})).is_err());
}

#[tokio::test]
async fn build_validates_the_json_form() {
    let c = MailgunConfig {
        api_key: "k".into(),
        domain: "not a domain".into(),
        region: MailgunRegion::Us,
        endpoint: None,
        webhook_signing_key: None,
        timeout_seconds: None,
    };
    assert!(c.build().await.is_err());
}

#[test]
fn redacted_and_debug_hide_every_secret() {
    let c = dsn("mailgun+api://sekret-key@mg.acme.com?webhook_signing_key=sekret-whk").unwrap();
    let r = c.redacted();
    assert_eq!(r["api_key"], MASK);
    assert_eq!(r["webhook_signing_key"], MASK);
    assert_eq!(r["domain"], "mg.acme.com");
    assert_eq!(r["region"], "us");
    let shown = format!("{r} {c:?} {:?}", c.build_debug());
    assert!(!shown.contains("sekret"), "{shown}");
}

impl MailgunConfig {
    fn build_debug(&self) -> MailgunProvider {
        MailgunProvider::new(self).unwrap()
    }
}

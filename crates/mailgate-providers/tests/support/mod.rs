//! What several provider test files build the same way: providers from DSNs, the moto and
//! wiremock-backed ones.
#![allow(dead_code)]

use std::sync::Arc;

use mailgate_core::provider::Provider;
use mailgate_providers::ProviderConfig;
use mailgate_testkit::peers::moto::MotoPeer;
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

/// An SES provider from a DSN.
pub async fn ses(dsn: &str) -> Arc<dyn Provider> {
    let ProviderConfig::Ses(config) = ProviderConfig::from_dsn(dsn).unwrap() else {
        panic!("not an SES config");
    };
    config.build().await.unwrap()
}

/// A Mailgun provider from a DSN.
pub async fn mailgun(dsn: &str) -> Arc<dyn Provider> {
    let ProviderConfig::Mailgun(config) = ProviderConfig::from_dsn(dsn).unwrap() else {
        panic!("not a Mailgun config");
    };
    config.build().await.unwrap()
}

/// Percent-encodes a DSN credential (moto's secrets hold `/` and `+`).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An SES provider talking to moto with `secret`, plus DSN options `extra` (`&from=…`).
pub async fn moto_provider(peer: &MotoPeer, secret: &str, extra: &str) -> Arc<dyn Provider> {
    ses(&format!(
        "ses+api://{}:{}@default?region=us-east-1&endpoint={}{extra}",
        encode(&peer.access_key_id),
        encode(secret),
        peer.endpoint
    ))
    .await
}

/// A Mailgun provider for domain mg.acme.com talking to `server`, plus DSN options `extra`.
pub async fn mailgun_wiremock(server: &MockServer, extra: &str) -> Arc<dyn Provider> {
    mailgun(&format!(
        "mailgun+api://key-test@mg.acme.com?endpoint={}{extra}",
        server.uri()
    ))
    .await
}

/// An SES provider with example keys talking to `server`, plus DSN options `extra`.
pub async fn ses_wiremock(server: &MockServer, extra: &str) -> Arc<dyn Provider> {
    ses(&format!(
        "ses+api://AKIDEXAMPLE:secret@default?region=us-east-1&endpoint={}{extra}",
        server.uri()
    ))
    .await
}

/// An SES v2 error answer: `x-amzn-ErrorType` and a JSON message.
pub fn ses_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header(
            "x-amzn-ErrorType",
            format!("{code}:http://internal.amazon.com/coral/"),
        )
        .set_body_json(json!({ "message": message }))
}

//! Mailgun's `verify` against wiremock (every domain state and refusal) and against Prism
//! serving Mailgun's official OpenAPI spec.

mod support;

use std::path::PathBuf;

use mailgate_core::provider::{CheckAspect, CheckStatus, VerifyCheck, VerifyReport};
use mailgate_testkit::peers::prism::{specs_dir, PrismPeer};
use serde_json::json;
use support::{mailgun as provider, mailgun_wiremock as wiremock_provider};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The Prism-friendly copy of Mailgun's spec (see `mailgun.rs`), under its own name.
fn patched_spec() -> PathBuf {
    let out = std::env::temp_dir().join(format!(
        "mailgate-mailgun-verify-{}.json",
        std::process::id()
    ));
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

async fn verify_with(answer: ResponseTemplate) -> VerifyReport {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v4/domains/mg.acme.com"))
        .and(header("authorization", "Basic YXBpOmtleS10ZXN0"))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    wiremock_provider(&server, "").await.verify().await.unwrap()
}

/// The one check about `aspect`, or a panic naming the report.
fn only(report: &VerifyReport, aspect: CheckAspect) -> &VerifyCheck {
    let found: Vec<&VerifyCheck> = report.about(aspect).collect();
    assert_eq!(found.len(), 1, "one {aspect:?} check expected: {report:#?}");
    found[0]
}

fn has(report: &VerifyReport, aspect: CheckAspect, status: CheckStatus, text: &str) -> bool {
    report
        .about(aspect)
        .any(|c| c.status == status && c.detail.contains(text))
}

#[tokio::test]
async fn verify_reports_the_domain_state() {
    let report = verify_with(ResponseTemplate::new(200).set_body_json(json!({
        "domain": {"name": "mg.acme.com", "state": "active", "type": "custom", "is_disabled": false},
        "sending_dns_records": [{"record_type": "TXT", "name": "mg.acme.com", "valid": "valid"}]
    })))
    .await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(
        only(&report, CheckAspect::Credentials),
        &VerifyCheck::ok(CheckAspect::Credentials, "API key accepted by Mailgun")
    );
    assert_eq!(
        only(&report, CheckAspect::Sender),
        &VerifyCheck::ok(
            CheckAspect::Sender,
            "domain mg.acme.com is active in region us"
        )
    );
    assert_eq!(only(&report, CheckAspect::Quota).status, CheckStatus::Ok);
    let region = only(&report, CheckAspect::Region);
    assert_eq!(region.status, CheckStatus::Ok);
    assert!(
        region
            .detail
            .starts_with("region us, through the endpoint override 127.0.0.1:"),
        "{region:?}"
    );

    let report = verify_with(ResponseTemplate::new(200).set_body_json(json!({
        "domain": {"name": "mg.acme.com", "state": "unverified", "type": "custom"},
        "sending_dns_records": [
            {"record_type": "TXT", "name": "mg.acme.com", "valid": "unknown"},
            {"record_type": "CNAME", "name": "email.mg.acme.com", "valid": "valid"}
        ]
    })))
    .await;
    assert!(!report.ok);
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Failed,
            "domain mg.acme.com is unverified: add its DNS records"
        ),
        "{report:#?}"
    );
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Warning,
            "TXT mg.acme.com is not valid yet"
        ),
        "{report:#?}"
    );
    assert!(!report.checks.iter().any(|c| c.detail.contains("CNAME")));

    let report = verify_with(ResponseTemplate::new(200).set_body_json(json!({
        "domain": {"state": "active", "type": "sandbox", "disabled": {"code": "blacklisted", "reason": "abuse", "permanently": true}}
    })))
    .await;
    assert!(!report.ok);
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Failed,
            "disabled (abuse)"
        ),
        "{report:#?}"
    );
    assert_eq!(
        only(&report, CheckAspect::Quota).status,
        CheckStatus::Warning
    );
}

#[tokio::test]
async fn verify_reports_key_and_domain_refusals() {
    let report = verify_with(ResponseTemplate::new(401).set_body_string("Forbidden")).await;
    assert!(!report.ok);
    let credentials = only(&report, CheckAspect::Credentials);
    assert_eq!(credentials.status, CheckStatus::Failed);
    assert!(
        credentials.detail.contains("rejected the API key"),
        "{report:#?}"
    );
    assert!(!credentials.detail.contains("key-test"));
    assert_eq!(
        only(&report, CheckAspect::Sender).status,
        CheckStatus::Skipped
    );

    // A domain sending key cannot read the domain, yet it sends.
    let report = verify_with(ResponseTemplate::new(403).set_body_string("Forbidden")).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(
        only(&report, CheckAspect::Credentials).status,
        CheckStatus::Warning
    );

    let report = verify_with(
        ResponseTemplate::new(404).set_body_json(json!({"message": "Domain not found"})),
    )
    .await;
    assert!(!report.ok);
    assert!(
        has(
            &report,
            CheckAspect::Sender,
            CheckStatus::Failed,
            "domain mg.acme.com not found in region us"
        ),
        "{report:#?}"
    );
}

#[tokio::test]
async fn verify_reports_an_outage_as_a_connection_failure() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let report = wiremock_provider(&server, "").await.verify().await.unwrap();
    assert!(!report.ok);
    let c = only(&report, CheckAspect::Connection);
    assert_eq!(c.status, CheckStatus::Failed);
    assert!(c.detail.starts_with("http_503"), "{c:?}");
}

#[tokio::test]
async fn verify_against_the_official_spec() {
    // The spec's example answer to GET /v4/domains/{name} lacks properties its own schema
    // requires, so Prism (with --errors) refuses to serve it: complete the example first.
    let spec = patched_spec();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec).unwrap()).unwrap();
    let example = doc
        .pointer_mut("/paths/~1v4~1domains~1{name}/get/responses/200/content/application~1json/examples/Example/value/domain")
        .expect("the spec's example domain")
        .as_object_mut()
        .unwrap();
    for (key, value) in [
        ("is_disabled", json!(false)),
        ("skip_verification", json!(false)),
        ("wildcard", json!(false)),
        ("encrypt_incoming_message", json!(false)),
        ("message_ttl", json!(259200)),
    ] {
        example.entry(key).or_insert(value);
    }
    std::fs::write(&spec, serde_json::to_vec(&doc).unwrap()).unwrap();
    let prism = PrismPeer::start(&spec);
    let p = provider(&format!(
        "mailgun+api://key-test@mg.acme.com?region=eu&endpoint={}",
        prism.endpoint
    ))
    .await;
    let report = p.verify().await.unwrap();
    // The spec's example domain is an active sandbox domain with valid records.
    assert!(report.ok, "{report:#?}\n{}", prism.output());
    assert_eq!(
        only(&report, CheckAspect::Credentials).status,
        CheckStatus::Ok
    );
    assert_eq!(
        only(&report, CheckAspect::Sender),
        &VerifyCheck::ok(
            CheckAspect::Sender,
            "domain mg.acme.com is active in region eu"
        )
    );
    assert_eq!(
        only(&report, CheckAspect::Quota).status,
        CheckStatus::Warning
    );
    assert!(only(&report, CheckAspect::Region)
        .detail
        .starts_with("region eu"));
    let _ = std::fs::remove_file(spec);
}

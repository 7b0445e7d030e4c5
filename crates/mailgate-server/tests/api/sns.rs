//! SES events through SNS against a local HTTPS server that plays SNS: it serves the signing
//! certificate (RSA, made here) and the SubscribeURL, trusted through the test-only
//! `dangerous_sns_cert_url_prefix` and `dangerous_sns_ca_file` options.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use mailgate_testkit::app::TestApp;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::pem::LineEnding;
use x509_cert::der::EncodePem;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

use super::webhook_support::{post, scenario, set_provider, About, Hook, Kind};

pub(super) const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";

/// The fake SNS: its base URL, the CA file that trusts it, the signing key, and the
/// SubscribeURL hit count.
pub(super) struct FakeSns {
    pub(super) base: String,
    pub(super) ca_file: tempfile::NamedTempFile,
    pub(super) key: RsaPrivateKey,
    pub(super) confirmations: Arc<AtomicUsize>,
}

pub(super) async fn fake_sns() -> FakeSns {
    // The SNS signing certificate: a self-signed RSA certificate.
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    let signer = SigningKey::<sha2::Sha256>::new(key.clone());
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).unwrap();
    let cert = CertificateBuilder::new(
        Profile::Root,
        SerialNumber::from(1u32),
        Validity::from_now(Duration::from_secs(3600)).unwrap(),
        Name::from_str("CN=sns.test").unwrap(),
        spki,
        &signer,
    )
    .unwrap()
    .build::<rsa::pkcs1v15::Signature>()
    .unwrap();
    let cert_pem = cert.to_pem(LineEnding::LF).unwrap();

    // The HTTPS server: a CA and a leaf for 127.0.0.1.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca.pem()).unwrap();

    let confirmations = Arc::new(AtomicUsize::new(0));
    let hits = confirmations.clone();
    let router = axum::Router::new()
        .route("/cert.pem", get(move || async move { cert_pem }))
        .route(
            "/confirm",
            get(move || async move {
                hits.fetch_add(1, Ordering::SeqCst);
                "<ConfirmSubscriptionResponse/>"
            }),
        );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let service = TowerToHyperService::new(router);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                }
            });
        }
    });
    FakeSns {
        base,
        ca_file,
        key,
        confirmations,
    }
}

pub(super) fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Signs an SNS message the way SNS does (the string to sign, RSA PKCS#1 v1.5).
pub(super) fn sign_sns(sns: &FakeSns, mut m: Value, version: &str) -> Value {
    m["SignatureVersion"] = version.into();
    m["SigningCertURL"] = format!("{}/cert.pem", sns.base).into();
    let kind = m["Type"].as_str().unwrap().to_owned();
    let keys: &[&str] = if kind == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut text = String::new();
    for k in keys {
        if let Some(v) = m[*k].as_str() {
            text.push_str(&format!("{k}\n{v}\n"));
        }
    }
    let sig = if version == "1" {
        SigningKey::<sha1::Sha1>::new(sns.key.clone())
            .sign(text.as_bytes())
            .to_vec()
    } else {
        SigningKey::<sha2::Sha256>::new(sns.key.clone())
            .sign(text.as_bytes())
            .to_vec()
    };
    m["Signature"] = STANDARD.encode(sig).into();
    m
}

fn ses_event(kind: Kind, a: &About, identity_format: bool) -> Value {
    let mut mail = json!({"messageId": a.provider_message_id.clone().unwrap_or_else(|| "unknown-ses-id".into()),
        "timestamp": "2026-01-01T00:00:00.000Z", "destination": [a.recipient]});
    if let (Some(m), false) = (&a.message_id, identity_format) {
        mail["tags"] = json!({"mailgate_message_id": [m], "ses:configuration-set": ["cs"]});
    }
    let key = if identity_format {
        "notificationType"
    } else {
        "eventType"
    };
    match kind {
        Kind::Delivered => {
            json!({key: "Delivery", "mail": mail, "delivery": {"recipients": [a.recipient], "smtpResponse": "250 2.6.0 Message received"}})
        }
        Kind::Bounced => {
            json!({key: "Bounce", "mail": mail, "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": a.recipient, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}})
        }
        Kind::Complained => {
            json!({key: "Complaint", "mail": mail, "complaint": {"complainedRecipients": [{"emailAddress": a.recipient}], "complaintFeedbackType": "abuse"}})
        }
    }
}

async fn app_with_ses(sns: &FakeSns) -> TestApp {
    let app = TestApp::spawn().await;
    set_provider(&app, json!({"type": "ses", "region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "c2VjcmV0",
        "sns_topic_arn": format!("arn:aws:sns:us-east-1:123456789012:other, {TOPIC}"),
        "dangerous_sns_cert_url_prefix": format!("{}/", sns.base),
        "dangerous_sns_ca_file": sns.ca_file.path().to_str().unwrap()})).await;
    app
}

#[tokio::test]
async fn ses_events_through_sns() {
    let sns = fake_sns().await;
    let app = app_with_ses(&sns).await;
    let sign = |kind: Kind, a: &About, ts: i64| {
        // Both SES formats and both signature versions: mailgate-id matches use event
        // publishing (tags), provider-id matches the identity notifications (no tags).
        let identity = a.message_id.is_none();
        let m = json!({"Type": "Notification", "MessageId": a.event_id, "TopicArn": TOPIC,
            "Message": ses_event(kind, a, identity).to_string(), "Timestamp": rfc3339(ts)});
        let version = if kind == Kind::Complained { "1" } else { "2" };
        Hook {
            headers: vec![("x-amz-sns-message-type".into(), "Notification".into())],
            body: serde_json::to_vec(&sign_sns(&sns, m, version)).unwrap(),
        }
    };
    let forge = |h: Hook| {
        let mut m: Value = serde_json::from_slice(&h.body).unwrap();
        m["Message"] = m["Message"]
            .as_str()
            .unwrap()
            .replace("Permanent", "Transient")
            .into();
        m["MessageId"] = "forged".into();
        Hook {
            body: serde_json::to_vec(&m).unwrap(),
            ..h
        }
    };
    let unsign = |h: Hook| {
        let mut m: Value = serde_json::from_slice(&h.body).unwrap();
        m.as_object_mut().unwrap().remove("Signature");
        Hook {
            body: serde_json::to_vec(&m).unwrap(),
            ..h
        }
    };
    scenario(&app, "ses", sign, forge, unsign, true).await;
    app.stop().await;
}

#[tokio::test]
async fn sns_subscription_is_confirmed_and_bad_urls_are_refused() {
    let sns = fake_sns().await;
    let app = app_with_ses(&sns).await;
    let now = super::webhook_support::now_seconds();
    let confirm = |url: String, topic: &str| {
        let m = json!({"Type": "SubscriptionConfirmation", "MessageId": "c-1", "Token": "tok", "TopicArn": topic,
            "Message": "You have chosen to subscribe.", "SubscribeURL": url, "Timestamp": rfc3339(now)});
        Hook {
            headers: vec![],
            body: serde_json::to_vec(&sign_sns(&sns, m, "1")).unwrap(),
        }
    };
    let (code, out) = post(
        &app,
        "ses",
        &confirm(format!("{}/confirm?Token=tok", sns.base), TOPIC),
    )
    .await;
    assert_eq!(
        (code, out["confirmed"].as_bool()),
        (200, Some(true)),
        "{out}"
    );
    assert_eq!(sns.confirmations.load(Ordering::SeqCst), 1);
    // A SubscribeURL outside the SNS host rule (SSRF) and a topic not allowed: refused.
    let (code, _) = post(
        &app,
        "ses",
        &confirm("https://169.254.169.254/latest".into(), TOPIC),
    )
    .await;
    assert_eq!(code, 401);
    let (code, _) = post(
        &app,
        "ses",
        &confirm(
            format!("{}/confirm", sns.base),
            "arn:aws:sns:us-east-1:1:not-ours",
        ),
    )
    .await;
    assert_eq!(code, 401);
    assert_eq!(sns.confirmations.load(Ordering::SeqCst), 1);
    // A certificate URL outside the rule is never fetched.
    let mut m: Value =
        serde_json::from_slice(&confirm(format!("{}/confirm", sns.base), TOPIC).body).unwrap();
    m["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem".into();
    let (code, out) = post(
        &app,
        "ses",
        &Hook {
            headers: vec![],
            body: serde_json::to_vec(&m).unwrap(),
        },
    )
    .await;
    assert_eq!(code, 401, "{out}");
    app.stop().await;
}

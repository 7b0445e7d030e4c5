//! The SMTP provider against a real SMTP server (aiosmtpd) on loopback: MIME round trip, TLS
//! modes, AUTH, reply classification and `verify`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mailgate_core::message::{Attachment, ClaimedMessage, Content, Header};
use mailgate_core::provider::{CheckAspect, CheckStatus, Provider, SendError, VerifyCheck};
use mailgate_core::{EnvironmentId, Mailbox, MessageId};
use mailgate_providers::config::ProviderConfig;
use mailgate_testkit::peers::smtp::{SmtpPeer, SmtpPeerOptions, SmtpPeerTls};

const USER: &str = "mailer";
const PASSWORD: &str = "s3cret-Pa55";

async fn provider(dsn: &str) -> Arc<dyn Provider> {
    match ProviderConfig::from_dsn(dsn).expect("dsn parses") {
        ProviderConfig::Smtp(c) => c.build().await.expect("provider builds"),
        other => panic!("not smtp: {other:?}"),
    }
}

fn mailbox(email: &str, name: Option<&str>) -> Mailbox {
    Mailbox::from_parts(email, name, "test").unwrap()
}

fn message(to: &[&str]) -> ClaimedMessage {
    ClaimedMessage {
        id: MessageId::new(),
        environment_id: EnvironmentId::new(),
        attempt: 1,
        max_attempts: 3,
        lease_token: "lease".into(),
        content: Content {
            from: mailbox("sender@mail.example.com", Some("Sender")),
            to: to.iter().map(|a| mailbox(a, None)).collect(),
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: "Hello".into(),
            text: Some("Hello there".into()),
            html: None,
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

fn starttls_peer() -> SmtpPeer {
    SmtpPeer::start(SmtpPeerOptions {
        tls: SmtpPeerTls::StartTls,
        require_starttls: true,
        auth: Some((USER.into(), PASSWORD.into())),
        auth_require_tls: true,
        ..Default::default()
    })
}

fn ca(peer: &SmtpPeer) -> String {
    peer.ca_pem_path.as_ref().unwrap().display().to_string()
}

fn text_of(e: &SendError) -> String {
    e.to_string()
}

#[tokio::test]
async fn a_full_message_parses_back_field_by_field() {
    let peer = starttls_peer();
    let p = provider(&format!(
        "smtp://{USER}:{PASSWORD}@127.0.0.1:{}?ca_file={}&helo=gw.example.com",
        peer.port,
        ca(&peer)
    ))
    .await;
    let mut m = message(&["alice@example.org"]);
    m.content.from = mailbox("news@mail.example.com", Some("Zoë Müller"));
    m.content
        .to
        .push(mailbox("bob@example.org", Some("Bob, Jr.")));
    m.content.cc = vec![mailbox("carol@example.org", None)];
    m.content.bcc = vec![mailbox("hidden@example.org", None)];
    m.content.reply_to = vec![mailbox("replies@mail.example.com", Some("Replies"))];
    m.content.subject = "Grüße — your receipt №42 ✓".into();
    m.content.text = Some("Plain body, ünïcödé.\nSecond line.".into());
    m.content.html = Some("<p>HTML body, <b>ünïcödé</b></p><img src=\"cid:logo1\">".into());
    m.content.headers = vec![Header::parse("X-Campaign", "spring-2025", "headers").unwrap()];
    m.content.attachments = vec![
        Attachment {
            filename: "receipt.pdf".into(),
            content_type: "application/pdf".into(),
            content: b"%PDF-1.4 fake \x00\x01\x02 bytes".to_vec(),
            content_id: None,
        },
        Attachment {
            filename: "logo.png".into(),
            content_type: "image/png".into(),
            content: vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3],
            content_id: Some("logo1".into()),
        },
    ];

    let receipt = p.send(&m).await.expect("sent");
    let expected_id = format!("{}@mail.example.com", m.id);
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(expected_id.as_str())
    );
    assert!(!receipt.final_delivery);

    let mails = peer.wait_for(1, Duration::from_secs(5));
    assert_eq!(mails.len(), 1, "{}", peer.log());
    let mail = &mails[0];
    assert_eq!(mail.envelope_from, "news@mail.example.com");
    assert_eq!(
        mail.envelope_to,
        [
            "alice@example.org",
            "bob@example.org",
            "carol@example.org",
            "hidden@example.org"
        ]
    );
    let raw = String::from_utf8_lossy(&mail.raw);
    assert!(
        !raw.to_lowercase().contains("hidden@"),
        "Bcc leaked into the headers:\n{raw}"
    );
    assert!(raw.is_ascii(), "non-ASCII must be encoded");

    let parsed = MessageParser::default().parse(&mail.raw).expect("parses");
    assert_eq!(parsed.subject(), Some("Grüße — your receipt №42 ✓"));
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Zoë Müller"));
    assert_eq!(from.address(), Some("news@mail.example.com"));
    let to: Vec<_> = parsed
        .to()
        .unwrap()
        .iter()
        .map(|a| (a.name(), a.address()))
        .collect();
    assert_eq!(
        to,
        [
            (None, Some("alice@example.org")),
            (Some("Bob, Jr."), Some("bob@example.org"))
        ]
    );
    assert_eq!(
        parsed.cc().unwrap().first().unwrap().address(),
        Some("carol@example.org")
    );
    assert!(parsed.bcc().is_none());
    let reply_to = parsed.reply_to().unwrap().first().unwrap();
    assert_eq!(
        (reply_to.name(), reply_to.address()),
        (Some("Replies"), Some("replies@mail.example.com"))
    );
    assert_eq!(parsed.message_id(), Some(expected_id.as_str()));
    assert_eq!(
        parsed.header("X-Campaign").and_then(|h| h.as_text()),
        Some("spring-2025")
    );
    assert_eq!(
        parsed
            .body_text(0)
            .map(|t| t.replace("\r\n", "\n").trim_end().to_owned())
            .as_deref(),
        Some("Plain body, ünïcödé.\nSecond line.")
    );
    assert!(parsed.body_html(0).unwrap().contains("<b>ünïcödé</b>"));
    // Structure: mixed(alternative(text, related(html, logo)), receipt).
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")));
    assert!(raw.contains("multipart/alternative"));
    assert!(raw.contains("multipart/related"));
    let text_at = raw.find("text/plain").unwrap();
    assert!(text_at < raw.find("text/html").unwrap(), "text before html");
    let attachments: BTreeMap<_, _> = parsed
        .attachments()
        .map(|a| {
            (
                a.attachment_name().unwrap().to_owned(),
                a.contents().to_vec(),
            )
        })
        .collect();
    assert_eq!(attachments["receipt.pdf"], m.content.attachments[0].content);
    assert_eq!(attachments["logo.png"], m.content.attachments[1].content);
    assert!(raw.contains("Content-ID: <logo1>"), "{raw}");
}

#[tokio::test]
async fn starttls_is_required_unless_disabled() {
    let plain = SmtpPeer::start(SmtpPeerOptions::default());
    let p = provider(&format!("smtp://127.0.0.1:{}", plain.port)).await;
    let e = p.send(&message(&["a@example.org"])).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.code(), "smtp_starttls_unavailable");
    assert!(text_of(&e).contains("does not offer STARTTLS"), "{e}");
    assert!(plain.messages().is_empty());

    let p = provider(&format!(
        "smtp://127.0.0.1:{}?disable_starttls=true",
        plain.port
    ))
    .await;
    p.send(&message(&["a@example.org"]))
        .await
        .expect("plain send");
    assert_eq!(plain.wait_for(1, Duration::from_secs(5)).len(), 1);
}

#[tokio::test]
async fn starttls_without_trusting_the_ca_is_a_tls_error() {
    let peer = starttls_peer();
    let p = provider(&format!("smtp://{USER}:{PASSWORD}@127.0.0.1:{}", peer.port)).await;
    let e = p.send(&message(&["a@example.org"])).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.code(), "smtp_tls", "{e}");
    assert!(
        text_of(&e).contains("TLS handshake with 127.0.0.1 failed"),
        "{e}"
    );
}

#[tokio::test]
async fn implicit_tls_with_ca_file_or_insecure_and_fails_without() {
    let peer = SmtpPeer::start(SmtpPeerOptions {
        tls: SmtpPeerTls::Implicit,
        auth: Some((USER.into(), PASSWORD.into())),
        ..Default::default()
    });
    let base = format!("smtps://{USER}:{PASSWORD}@127.0.0.1:{}", peer.port);
    let p = provider(&format!("{base}?ca_file={}", ca(&peer))).await;
    p.send(&message(&["a@example.org"]))
        .await
        .expect("smtps with ca_file");
    let p = provider(&format!("{base}?tls_insecure=true")).await;
    p.send(&message(&["b@example.org"]))
        .await
        .expect("smtps insecure");
    assert_eq!(peer.wait_for(2, Duration::from_secs(5)).len(), 2);

    let p = provider(&base).await;
    let e = p.send(&message(&["c@example.org"])).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.code(), "smtp_tls", "{e}");
    assert!(
        text_of(&e).contains("TLS handshake with 127.0.0.1 failed"),
        "{e}"
    );
}

#[tokio::test]
async fn a_wrong_password_makes_the_provider_unusable_and_is_not_echoed() {
    let peer = starttls_peer();
    let p = provider(&format!(
        "smtp://{USER}:wrong-Hunter2@127.0.0.1:{}?ca_file={}",
        peer.port,
        ca(&peer)
    ))
    .await;
    let e = p.send(&message(&["a@example.org"])).await.unwrap_err();
    assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
    assert_eq!(e.code(), "smtp_535");
    let text = text_of(&e);
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("Hunter2"), "{text}");
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn recipient_refusals_are_classified_by_code_and_index() {
    let peer = starttls_peer();
    let p = provider(&format!(
        "smtp://{USER}:{PASSWORD}@127.0.0.1:{}?ca_file={}",
        peer.port,
        ca(&peer)
    ))
    .await;
    let e = p
        .send(&message(&["tempfail@example.org"]))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.code(), "smtp_451");

    let e = p.send(&message(&["reject@example.org"])).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert_eq!(e.code(), "smtp_550");

    let e = p
        .send(&message(&["ok@example.org", "reject-me@example.org"]))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    let text = text_of(&e);
    assert!(text.contains("recipient #2 of 2 refused: 550"), "{text}");
    assert!(!text.contains("@example.org"), "{text}");
    assert!(peer.messages().is_empty(), "no partial delivery");

    // The pooled connection was reset and still delivers.
    p.send(&message(&["ok@example.org"]))
        .await
        .expect("after refusals");
    assert_eq!(peer.wait_for(1, Duration::from_secs(5)).len(), 1);
}

#[tokio::test]
async fn sender_and_data_refusals_are_classified() {
    let peer = SmtpPeer::start(SmtpPeerOptions {
        mail_code: Some(451),
        ..Default::default()
    });
    let p = provider(&format!(
        "smtp://127.0.0.1:{}?disable_starttls=true",
        peer.port
    ))
    .await;
    let e = p.send(&message(&["a@example.org"])).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.code(), "smtp_451");
    assert!(text_of(&e).contains("refused the sender"), "{e}");

    // A refused sender is the relay's configuration: another provider may take the message.
    let peer = SmtpPeer::start(SmtpPeerOptions {
        mail_code: Some(550),
        ..Default::default()
    });
    let p = provider(&format!(
        "smtp://127.0.0.1:{}?disable_starttls=true",
        peer.port
    ))
    .await;
    let e = p.send(&message(&["a@example.org"])).await.unwrap_err();
    assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
    assert_eq!(e.code(), "smtp_550");
    assert!(text_of(&e).contains("refused the sender"), "{e}");

    let peer = SmtpPeer::start(SmtpPeerOptions {
        data_code: Some(554),
        ..Default::default()
    });
    let p = provider(&format!(
        "smtp://127.0.0.1:{}?disable_starttls=true",
        peer.port
    ))
    .await;
    let e = p.send(&message(&["a@example.org"])).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert_eq!(e.code(), "smtp_554");
    assert!(text_of(&e).contains("refused the message"), "{e}");
}

#[tokio::test]
async fn a_server_requiring_auth_without_credentials_is_unusable() {
    let peer = starttls_peer();
    let p = provider(&format!(
        "smtp://127.0.0.1:{}?ca_file={}",
        peer.port,
        ca(&peer)
    ))
    .await;
    let e = p.send(&message(&["a@example.org"])).await.unwrap_err();
    assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
    assert_eq!(e.code(), "smtp_530");
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn a_closed_port_is_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = provider(&format!("smtp://127.0.0.1:{port}?timeout_seconds=3")).await;
    let e = p.send(&message(&["a@example.org"])).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.code(), "smtp_connect");
    assert!(
        text_of(&e).contains(&format!("could not connect to 127.0.0.1:{port}")),
        "{e}"
    );
}

#[tokio::test]
async fn verify_reports_each_check() {
    let peer = starttls_peer();
    let p = provider(&format!(
        "smtp://{USER}:{PASSWORD}@127.0.0.1:{}?ca_file={}",
        peer.port,
        ca(&peer)
    ))
    .await;
    let report = p.verify().await.unwrap();
    assert!(report.ok, "{report:#?}");
    let c = &report.checks;
    assert_eq!(
        (c[0].aspect, c[0].status),
        (CheckAspect::Connection, CheckStatus::Ok)
    );
    assert!(c[0]
        .detail
        .starts_with(&format!("connected to 127.0.0.1:{}", peer.port)));
    assert_eq!(
        c[1],
        VerifyCheck::ok(CheckAspect::Connection, "STARTTLS ok")
    );
    assert_eq!(
        c[2],
        VerifyCheck::ok(CheckAspect::Credentials, format!("authenticated as {USER}"))
    );
    assert_eq!(
        (c[3].aspect, c[3].status),
        (CheckAspect::Sender, CheckStatus::Skipped)
    );

    // A wrong password: the connection is fine, the credentials fail.
    let p = provider(&format!(
        "smtp://{USER}:nope@127.0.0.1:{}?ca_file={}",
        peer.port,
        ca(&peer)
    ))
    .await;
    let report = p.verify().await.unwrap();
    assert!(!report.ok);
    assert_eq!(
        report.checks[1],
        VerifyCheck::ok(CheckAspect::Connection, "STARTTLS ok")
    );
    let auth = &report.checks[2];
    assert_eq!(
        (auth.aspect, auth.status),
        (CheckAspect::Credentials, CheckStatus::Failed)
    );
    assert!(auth.detail.contains("authentication failed"), "{report:#?}");
    assert!(!auth.detail.contains("nope"), "{auth:?}");

    // Without credentials against a server that wants them: nothing to fail at connect time.
    let p = provider(&format!(
        "smtp://127.0.0.1:{}?ca_file={}",
        peer.port,
        ca(&peer)
    ))
    .await;
    let report = p.verify().await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(
        report
            .about(CheckAspect::Credentials)
            .next()
            .map(|c| c.status),
        Some(CheckStatus::Skipped)
    );

    // A closed port: a connection failure, and AUTH not tried.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = provider(&format!("smtp://u:p@127.0.0.1:{port}?timeout_seconds=3")).await;
    let report = p.verify().await.unwrap();
    assert!(!report.ok);
    let c = &report.checks;
    assert_eq!(
        (c[0].aspect, c[0].status),
        (CheckAspect::Connection, CheckStatus::Failed)
    );
    assert!(c[0].detail.starts_with("smtp_connect"), "{c:?}");
    assert_eq!(
        (c[1].aspect, c[1].status),
        (CheckAspect::Credentials, CheckStatus::Skipped)
    );
}

#[tokio::test]
async fn ses_smtp_uses_the_message_id_from_the_reply() {
    // The ses+smtp DSN always points at AWS; the JSON form with `ses_region` plays it locally.
    let peer = SmtpPeer::start(SmtpPeerOptions {
        data_reply: Some("Ok 0100018f0000abcd-00000000-0000-0000-0000-000000000000-000000".into()),
        ..Default::default()
    });
    let config = serde_json::json!({
        "type": "smtp", "host": "127.0.0.1", "port": peer.port, "tls": "none",
        "ses_region": "us-east-1",
    });
    let ProviderConfig::Smtp(c) = ProviderConfig::from_json(config).unwrap() else {
        panic!("not smtp")
    };
    let p = c.build().await.unwrap();
    let receipt = p.send(&message(&["a@example.org"])).await.unwrap();
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("0100018f0000abcd-00000000-0000-0000-0000-000000000000-000000")
    );
}

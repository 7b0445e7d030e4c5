//! The SES provider's sends against real peers: moto_server (signature checking on) for sends
//! and auth; wiremock for what moto cannot produce (throttling, 5xx, quotas, request bodies).
//! `verify` is in `ses_verify.rs`.

mod support;

use std::collections::BTreeMap;

use mailgate_core::address::Mailbox;
use mailgate_core::environment::OrganizationName;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{Attachment, ClaimedMessage, Content, Header};
use mailgate_core::provider::SendError;
use mailgate_mock_provider::{Behavior, Faults, Latency};
use mailgate_providers::ses::SesProvider;
use mailgate_providers::ProviderConfig;
use mailgate_testkit::peers::moto::MotoPeer;
use serde_json::{json, Value};
use support::{moto_provider, ses_error, ses_wiremock as wiremock_provider};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn mailbox(s: &str) -> Mailbox {
    Mailbox::parse(s, "test").unwrap()
}

fn message(from: &str) -> ClaimedMessage {
    ClaimedMessage {
        id: MessageId::new(),
        environment_id: EnvironmentId::new(),
        attempt: 1,
        max_attempts: 3,
        lease_token: "lease".into(),
        content: Content {
            from: mailbox(from),
            to: vec![mailbox("Ann <ann@example.net>")],
            cc: vec![mailbox("bo@example.net")],
            bcc: vec![mailbox("audit@acme.com")],
            reply_to: vec![mailbox("support@acme.com")],
            subject: "Your receipt".into(),
            text: Some("Thanks for your order.".into()),
            html: Some("<p>Thanks for your order.</p>".into()),
            headers: vec![Header::parse("X-Order", "42", "headers").unwrap()],
            attachments: vec![Attachment {
                filename: "receipt.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF-1.4 test".to_vec(),
                content_id: None,
            }],
        },
        tags: vec!["receipt".into()],
        metadata: BTreeMap::from([("order id".to_owned(), "42".to_owned())]),
        provider_options: None,
        idempotency_key: None,
        delivery: Default::default(),
    }
}

#[tokio::test]
async fn moto_records_a_whole_message() {
    let peer = MotoPeer::start().await;
    peer.verify_identity("acme.com").await;
    let ses = moto_provider(&peer, &peer.secret_access_key, "").await;

    let receipt = ses
        .send(&message("Acme Billing <noreply@acme.com>"))
        .await
        .unwrap();
    let id = receipt.provider_message_id.expect("a MessageId");
    assert!(!receipt.final_delivery);

    let sent = peer.sent_messages().await;
    let m = sent
        .iter()
        .find(|m| m.id == id)
        .expect("moto recorded the send");
    assert_eq!(m.source, "\"Acme Billing\" <noreply@acme.com>");
    assert_eq!(m.subject, "Your receipt");
    assert_eq!(m.body, "<p>Thanks for your order.</p>");
    assert_eq!(
        m.destinations["ToAddresses"],
        json!(["\"Ann\" <ann@example.net>"])
    );
    assert_eq!(m.destinations["CcAddresses"], json!(["bo@example.net"]));
    assert_eq!(m.destinations["BccAddresses"], json!(["audit@acme.com"]));
}

#[tokio::test]
async fn moto_wrong_secret_makes_the_provider_unusable() {
    let peer = MotoPeer::start().await;
    peer.verify_identity("acme.com").await;
    let ses = moto_provider(&peer, "not-the-secret", "").await;
    let err = ses.send(&message("noreply@acme.com")).await.unwrap_err();
    let SendError::Unusable { code, message } = &err else {
        panic!("expected an unusable provider, got {err:?}");
    };
    assert_eq!(code, "SignatureDoesNotMatch");
    assert!(
        message.contains("SES rejected the credentials"),
        "{message}"
    );
    assert!(message.contains("us-east-1"), "{message}");
    assert!(!message.contains("not-the-secret"));
}

#[tokio::test]
async fn moto_unverified_sender_makes_the_provider_unusable_with_an_actionable_message() {
    let peer = MotoPeer::start().await;
    peer.verify_identity("acme.com").await;
    let ses = moto_provider(&peer, &peer.secret_access_key, "").await;
    let err = ses
        .send(&message("noreply@unverified.example"))
        .await
        .unwrap_err();
    let SendError::Unusable { code, message } = &err else {
        panic!("expected an unusable provider, got {err:?}");
    };
    assert_eq!(code, "MessageRejected");
    assert!(
        message.starts_with("sender address not verified in SES region us-east-1 — verify the domain or leave the SES sandbox"),
        "{message}"
    );
    assert!(
        !message.contains("unverified.example"),
        "no addresses in errors: {message}"
    );
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"MessageId": "0100018c-test-000000"}))
}

#[tokio::test]
async fn request_carries_every_field() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let ses = wiremock_provider(&server, "&configuration_set=events").await;
    let mut msg = message("Zoë <noreply@acme.com>");
    msg.provider_options = Some(json!({"FeedbackForwardingEmailAddress": "bounces@acme.com"}));
    let receipt = ses.send(&msg).await.unwrap();
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("0100018c-test-000000")
    );

    let requests = server.received_requests().await.unwrap();
    let send = requests
        .iter()
        .find(|r| r.url.path() == "/v2/email/outbound-emails")
        .unwrap();
    let auth = send.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.contains("/us-east-1/ses/aws4_request"), "{auth}");
    let body: Value = serde_json::from_slice(&send.body).unwrap();
    assert_eq!(
        body["FromEmailAddress"],
        "=?UTF-8?B?Wm/Dqw==?= <noreply@acme.com>"
    );
    assert_eq!(body["ReplyToAddresses"], json!(["support@acme.com"]));
    assert_eq!(body["ConfigurationSetName"], "events");
    assert_eq!(body["FeedbackForwardingEmailAddress"], "bounces@acme.com");
    let simple = &body["Content"]["Simple"];
    assert_eq!(simple["Body"]["Text"]["Charset"], "UTF-8");
    assert_eq!(
        simple["Headers"],
        json!([{"Name": "X-Order", "Value": "42"}])
    );
    let attachment = &simple["Attachments"][0];
    assert_eq!(attachment["FileName"], "receipt.pdf");
    assert_eq!(attachment["ContentType"], "application/pdf");
    assert_eq!(attachment["ContentDisposition"], "ATTACHMENT");
    assert_eq!(attachment["RawContent"], "JVBERi0xLjQgdGVzdA==");
    let tags = body["EmailTags"].as_array().unwrap();
    assert!(
        tags.contains(&json!({"Name": "order_id", "Value": "42"})),
        "{tags:?}"
    );
    assert!(
        tags.contains(&json!({"Name": "receipt", "Value": "true"})),
        "{tags:?}"
    );
}

/// The `TenantName` of the one `SendEmail` that `send` made, for `message` through `extra` options.
async fn tenant_sent(extra: &str, message: &ClaimedMessage) -> Option<Value> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    wiremock_provider(&server, extra)
        .await
        .send(message)
        .await
        .unwrap();
    // The first request may be GetAccount (the send-rate limit), the last is the send.
    let requests = server.received_requests().await.unwrap();
    let send = requests
        .iter()
        .find(|r| r.url.path() == "/v2/email/outbound-emails")
        .unwrap();
    let body: Value = serde_json::from_slice(&send.body).unwrap();
    body.get("TenantName").cloned()
}

#[tokio::test]
async fn tenant_name_comes_from_the_organization_when_asked() {
    let mut msg = message("noreply@acme.com");
    msg.delivery.organization = Some(OrganizationName::parse("acme-eu").unwrap());
    let on = "&tenant_from_organization=true";
    assert_eq!(tenant_sent(on, &msg).await, Some(json!("acme-eu")));
    assert_eq!(tenant_sent("", &msg).await, None, "off by default");
    msg.provider_options = Some(json!({"TenantName": "explicit"}));
    assert_eq!(
        tenant_sent(on, &msg).await,
        Some(json!("explicit")),
        "provider_options win"
    );
    let mut msg = message("noreply@acme.com");
    assert_eq!(
        tenant_sent(on, &msg).await,
        None,
        "no organization, no tenant"
    );

    // An organization name SES cannot take fails before any request.
    msg.delivery.organization = Some(OrganizationName::parse("acme.eu").unwrap());
    let server = MockServer::start().await;
    let e = wiremock_provider(&server, on)
        .await
        .send(&msg)
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
    assert_eq!(e.code(), "tenant_name_invalid");
    assert!(!server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .any(|r| r.url.path() == "/v2/email/outbound-emails"));
}

#[tokio::test]
async fn moto_accepts_a_tenant_name() {
    let peer = MotoPeer::start().await;
    peer.verify_identity("acme.com").await;
    let ses = moto_provider(
        &peer,
        &peer.secret_access_key,
        "&tenant_from_organization=true",
    )
    .await;
    let mut msg = message("noreply@acme.com");
    msg.delivery.organization = Some(OrganizationName::parse("acme").unwrap());
    // moto takes the field (the signed body carries it) but does not record it: the request
    // itself is asserted against wiremock above.
    let id = ses.send(&msg).await.unwrap().provider_message_id.unwrap();
    assert!(peer.sent_messages().await.iter().any(|m| m.id == id));
}

#[tokio::test]
async fn throttling_is_retryable_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(ses_error(
            429,
            "TooManyRequestsException",
            "Maximum sending rate exceeded.",
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(accepted())
        .mount(&server)
        .await;
    let ses = wiremock_provider(&server, "").await;
    let msg = message("noreply@acme.com");
    let err = ses.send(&msg).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.code(), "TooManyRequestsException");
    assert!(
        err.to_string().contains("Maximum sending rate exceeded"),
        "{err}"
    );
    // The SDK itself must not retry: exactly one request so far.
    let sends = |r: &[wiremock::Request]| {
        r.iter()
            .filter(|r| r.url.path() == "/v2/email/outbound-emails")
            .count()
    };
    assert_eq!(sends(&server.received_requests().await.unwrap()), 1);
    assert!(ses.send(&msg).await.is_ok());
}

#[tokio::test]
async fn server_errors_are_retryable_every_time() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(ses_error(503, "ServiceUnavailable", "Service unavailable"))
        .mount(&server)
        .await;
    let ses = wiremock_provider(&server, "").await;
    for _ in 0..3 {
        let err = ses.send(&message("noreply@acme.com")).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert_eq!(err.code(), "ServiceUnavailable");
    }
}

/// A complete 503 leaves the connection open for the next send (the SDK's default closes it
/// after every transient error: a new connection per 503); a dropped connection is replaced.
#[tokio::test]
async fn a_complete_error_answer_keeps_the_connection_and_a_reset_replaces_it() {
    let behavior = |faults: &str| Behavior {
        latency: Latency::default(),
        faults: faults.parse::<Faults>().unwrap(),
        rate_limit: None,
    };
    let mock = mailgate_mock_provider::spawn("127.0.0.1:0".parse().unwrap(), behavior("503:1"))
        .await
        .unwrap();
    let ses = support::ses(&format!(
        "ses+api://AKIDEXAMPLE:secret@default?region=us-east-1&endpoint={}",
        mock.url()
    ))
    .await;
    for _ in 0..3 {
        let err = ses.send(&message("noreply@acme.com")).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert_eq!(err.code(), "ServiceUnavailable");
    }
    mock.set_behavior(behavior("none"));
    ses.send(&message("noreply@acme.com")).await.unwrap();
    let stats = mock.stats();
    assert_eq!(stats.by_outcome.get("503"), Some(&3), "{stats:?}");
    assert_eq!(stats.unique_ids_2xx, 1, "{stats:?}");
    assert_eq!(
        stats.connections, 1,
        "every send on one connection: {stats:?}"
    );

    mock.set_behavior(behavior("reset:1"));
    let err = ses.send(&message("noreply@acme.com")).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    mock.set_behavior(behavior("none"));
    ses.send(&message("noreply@acme.com")).await.unwrap();
    let stats = mock.stats();
    assert_eq!(stats.unique_ids_2xx, 2, "{stats:?}");
    assert_eq!(
        stats.connections, 2,
        "a new connection after the reset: {stats:?}"
    );
}

#[tokio::test]
async fn rejected_message_is_permanent_and_account_problems_unusable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/email/outbound-emails"))
        .respond_with(ses_error(
            400,
            "MessageRejected",
            "Illegal address bad@example.com",
        ))
        .mount(&server)
        .await;
    let ses = wiremock_provider(&server, "").await;
    let err = ses.send(&message("noreply@acme.com")).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert_eq!(err.code(), "MessageRejected");
    assert!(
        err.to_string().contains("SES rejected the message"),
        "{err}"
    );
    assert!(!err.to_string().contains("bad@example.com"), "{err}");

    let unusable = [
        (400, "MailFromDomainNotVerifiedException", "nope", "MAIL FROM"),
        (400, "AccountSuspendedException", "nope", "suspended"),
        (400, "SendingPausedException", "nope", "paused"),
        (400, "AccountSendingPausedException", "nope", "paused"),
        (403, "AccessDeniedException", "nope", "not allowed"),
        (
            403,
            "UnrecognizedClientException",
            "nope",
            "SES rejected the credentials",
        ),
        (
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
            "SES rejected the credentials",
        ),
        (
            400,
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in region US-EAST-1: noreply@acme.com",
            "sender address not verified in SES region us-east-1",
        ),
        (
            404,
            "NotFoundException",
            "Configuration set <events> does not exist.",
            "configuration set",
        ),
        (400, "LimitExceededException", "nope", "quota increase"),
    ];
    let permanent = [
        (400, "BadRequestException", "Invalid tag", "invalid"),
        (
            404,
            "NotFoundException",
            "Template <welcome> does not exist.",
            "template",
        ),
    ];
    let cases = unusable
        .iter()
        .map(|c| (c, true))
        .chain(permanent.iter().map(|c| (c, false)));
    for (&(status, code, said, expect), provider_side) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/email/outbound-emails"))
            .respond_with(ses_error(status, code, said))
            .mount(&server)
            .await;
        let err = wiremock_provider(&server, "")
            .await
            .send(&message("noreply@acme.com"))
            .await
            .unwrap_err();
        if provider_side {
            assert!(matches!(err, SendError::Unusable { .. }), "{code}: {err:?}");
        } else {
            assert!(
                matches!(err, SendError::Permanent { .. }),
                "{code}: {err:?}"
            );
        }
        assert_eq!(err.code(), code);
        assert!(err.to_string().contains(expect), "{code}: {err}");
        assert!(!err.to_string().contains("noreply@acme.com"), "{err}");
    }
}

/// A GetAccount answer with this quota.
fn account(production: bool, daily: f64, rate: f64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ProductionAccessEnabled": production,
        "SendingEnabled": true,
        "SendQuota": {"Max24HourSend": daily, "MaxSendRate": rate, "SentLast24Hours": 3.0}
    }))
}

#[tokio::test]
async fn send_rate_comes_from_get_account_or_the_option() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email/account"))
        .respond_with(account(true, 50000.0, 14.0))
        .mount(&server)
        .await;
    let rate = |extra: &'static str| {
        let server = &server;
        async move {
            let ProviderConfig::Ses(c) = ProviderConfig::from_dsn(&format!(
                "ses+api://AK:S@default?region=us-east-1&endpoint={}{extra}",
                server.uri()
            ))
            .unwrap() else {
                unreachable!()
            };
            let p = SesProvider::new(&c).await;
            p.send_rate().await
        }
    };
    assert_eq!(rate("").await, Some(14.0));
    assert_eq!(rate("&max_send_rate=5").await, Some(5.0));

    // Without GetAccount (404 here) the option alone decides; without either there is no limit.
    let bare = MockServer::start().await;
    let ProviderConfig::Ses(c) = ProviderConfig::from_dsn(&format!(
        "ses+api://AK:S@default?region=us-east-1&endpoint={}&max_send_rate=3",
        bare.uri()
    ))
    .unwrap() else {
        unreachable!()
    };
    assert_eq!(SesProvider::new(&c).await.send_rate().await, Some(3.0));
    let mut c = c;
    c.max_send_rate = None;
    assert_eq!(SesProvider::new(&c).await.send_rate().await, None);
}

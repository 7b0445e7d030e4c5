//! Signed webhooks of Mailgun, Postmark, Resend and SendGrid through `POST /webhooks/{env}/{provider}`,
//! signed in the test with the reference vectors' keys (Appendix A) or keys made here.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use mailgate_testkit::app::TestApp;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{json, Value};
use sha2::Sha256;

use super::webhook_support::{
    event_count, post, scenario, sent_message, set_provider, status, About, Hook, Kind,
};

const MAILGUN_KEY: &str = "key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn json_hook(headers: Vec<(String, String)>, body: &Value) -> Hook {
    Hook {
        headers,
        body: serde_json::to_vec(body).unwrap(),
    }
}

fn mailgun_sign(kind: Kind, a: &About, ts: i64) -> Hook {
    let token = format!("{:0>50}", format!("{}{ts}", a.event_id.replace('-', "")));
    let sig = hex::encode(hmac(
        MAILGUN_KEY.as_bytes(),
        &[ts.to_string().as_bytes(), token.as_bytes()],
    ));
    let (event, severity) = match kind {
        Kind::Delivered => ("delivered", None),
        Kind::Bounced => ("failed", Some("permanent")),
        Kind::Complained => ("complained", None),
    };
    let mut vars = json!({});
    if let Some(m) = &a.message_id {
        vars["mailgate_message_id"] = m.clone().into();
    }
    let data = json!({"event": event, "severity": severity, "id": a.event_id, "timestamp": super::webhook_support::event_seconds() as f64 + 0.25,
        "recipient": a.recipient, "delivery-status": {"code": 550, "message": "5.1.1 user unknown"},
        "message": {"headers": {"message-id": a.provider_message_id}}, "user-variables": vars});
    json_hook(
        vec![],
        &json!({"signature": {"timestamp": ts.to_string(), "token": token, "signature": sig}, "event-data": data}),
    )
}

fn mailgun_forge(h: Hook) -> Hook {
    let mut v: Value = serde_json::from_slice(&h.body).unwrap();
    v["event-data"]["event"] = "delivered".into();
    v["signature"]["signature"] = hex::encode([7u8; 32]).into();
    json_hook(vec![], &v)
}

fn mailgun_unsign(h: Hook) -> Hook {
    let mut v: Value = serde_json::from_slice(&h.body).unwrap();
    v.as_object_mut().unwrap().remove("signature");
    json_hook(vec![], &v)
}

#[tokio::test]
async fn mailgun_webhooks() {
    let app = TestApp::spawn().await;
    let dsn = format!("mailgun+api://key-api@mg.acme.example?webhook_signing_key={MAILGUN_KEY}");
    set_provider(&app, json!({ "dsn": dsn })).await;
    scenario(
        &app,
        "mailgun",
        mailgun_sign,
        mailgun_forge,
        mailgun_unsign,
        true,
    )
    .await;
    // A replayed request (same token) is refused even within the tolerance.
    let a = About {
        event_id: "replay".into(),
        message_id: None,
        provider_message_id: None,
        recipient: "x@example.net".into(),
    };
    let hook = mailgun_sign(Kind::Delivered, &a, super::webhook_support::now_seconds());
    assert_eq!(post(&app, "mailgun", &hook).await.0, 200);
    assert_eq!(post(&app, "mailgun", &hook).await.0, 401);
    app.stop().await;
}

/// Many requests at once land in different batches of the ingest task: every message must still
/// end in its furthest state (a hard bounce after, or before, its delivery), with each event
/// recorded once. (It caught a two-stage ingest that matched a batch before the one ahead of it
/// was committed, 2 runs in 5.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_webhooks_move_each_message_to_its_furthest_state() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    set_provider(&app, json!({"dsn": "postmark+api://server-token@default?webhook_username=hook&webhook_password=s3cret"})).await;
    const N: usize = 40;
    let mut messages = Vec::new();
    for i in 0..N {
        let to = format!("user{i}@example.org");
        let id = sent_message(&app, &to, "postmark", &format!("pm-{i}")).await;
        messages.push((id, to));
    }
    let mut posts = tokio::task::JoinSet::new();
    for round in 0..3 {
        for (i, (id, to)) in messages.iter().enumerate() {
            // Half the messages see their bounce first, half their delivery; every hook is sent
            // three times (a provider retrying), from concurrent tasks.
            let kinds = if i % 2 == 0 {
                [Kind::Delivered, Kind::Bounced]
            } else {
                [Kind::Bounced, Kind::Delivered]
            };
            for kind in kinds {
                let about = About {
                    event_id: format!("ev-{i}-{kind:?}"),
                    message_id: Some(id.clone()),
                    provider_message_id: Some(format!("pm-{i}")),
                    recipient: to.clone(),
                };
                let hook = postmark_sign(kind, &about, 0);
                let app = std::sync::Arc::clone(&app);
                posts.spawn(async move { (round, post(&app, "postmark", &hook).await) });
            }
        }
    }
    let mut recorded = 0;
    while let Some(done) = posts.join_next().await {
        let (_, (code, answer)) = done.unwrap();
        assert_eq!(code, 200, "{answer}");
        recorded += answer["recorded"].as_u64().unwrap();
    }
    assert_eq!(
        recorded,
        2 * N as u64,
        "each event recorded once, its repeats as duplicates"
    );
    for (id, _) in &messages {
        assert_eq!(status(&app, id).await, "bounced", "message {id}");
        // queued, delivered, bounced (`sent_message` completes without an event)
        assert_eq!(event_count(&app, id).await, 3, "message {id}");
    }
}

fn postmark_sign(kind: Kind, a: &About, _ts: i64) -> Hook {
    let auth = format!("Basic {}", STANDARD.encode("hook:s3cret"));
    let mut meta = json!({});
    if let Some(m) = &a.message_id {
        meta["mailgate_message_id"] = m.clone().into();
    }
    let id: u64 = a
        .event_id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        >> 2;
    let body = match kind {
        Kind::Delivered => {
            json!({"RecordType": "Delivery", "MessageID": a.provider_message_id, "Recipient": a.recipient,
            "DeliveredAt": "2026-01-01T00:00:00Z", "Details": a.event_id, "Metadata": meta})
        }
        Kind::Bounced => {
            json!({"RecordType": "Bounce", "ID": id, "Type": "HardBounce", "TypeCode": 1, "MessageID": a.provider_message_id,
            "Email": a.recipient, "BouncedAt": "2026-01-01T00:00:00Z", "Details": "550 5.1.1 unknown user", "Inactive": true, "Metadata": meta})
        }
        Kind::Complained => {
            json!({"RecordType": "SpamComplaint", "ID": id, "Type": "SpamComplaint", "TypeCode": 100001,
            "MessageID": a.provider_message_id, "Email": a.recipient, "BouncedAt": "2026-01-01T00:00:00Z", "Metadata": meta})
        }
    };
    json_hook(vec![("Authorization".into(), auth)], &body)
}

#[tokio::test]
async fn postmark_webhooks() {
    let app = TestApp::spawn().await;
    set_provider(&app, json!({"dsn": "postmark+api://server-token@default?webhook_username=hook&webhook_password=s3cret"})).await;
    let forge = |h: Hook| Hook {
        headers: vec![(
            "Authorization".into(),
            format!("Basic {}", STANDARD.encode("hook:guess")),
        )],
        ..h
    };
    let unsign = |h: Hook| Hook {
        headers: vec![],
        ..h
    };
    // Postmark does not sign, so there is no timestamp to be stale.
    scenario(&app, "postmark", postmark_sign, forge, unsign, false).await;
    app.stop().await;
}

/// The webhook credentials are kept in memory between requests; a change made through the API
/// replaces them at once: the old password is refused by the very next request.
#[tokio::test]
async fn a_changed_webhook_credential_takes_effect_at_once() {
    let app = TestApp::spawn().await;
    let dsn = |password: &str| json!({"dsn": format!("postmark+api://server-token@default?webhook_username=hook&webhook_password={password}")});
    set_provider(&app, dsn("s3cret")).await;
    let about = About {
        event_id: "credential-change".into(),
        message_id: None,
        provider_message_id: Some("pm-credential-change".into()),
        recipient: "someone@example.com".into(),
    };
    let hook = postmark_sign(Kind::Delivered, &about, 0);
    assert_eq!(post(&app, "postmark", &hook).await.0, 200);
    set_provider(&app, dsn("rotated")).await;
    let (code, answer) = post(&app, "postmark", &hook).await;
    assert_eq!(code, 401, "the old password still worked: {answer}");
    let rotated = Hook {
        headers: vec![(
            "Authorization".into(),
            format!("Basic {}", STANDARD.encode("hook:rotated")),
        )],
        ..hook
    };
    assert_eq!(post(&app, "postmark", &rotated).await.0, 200);
    app.stop().await;
}

fn resend_sign(kind: Kind, a: &About, ts: i64) -> Hook {
    let kind = match kind {
        Kind::Delivered => "email.delivered",
        Kind::Bounced => "email.bounced",
        Kind::Complained => "email.complained",
    };
    let mut tags = json!({});
    if let Some(m) = &a.message_id {
        tags["mailgate_message_id"] = m.clone().into();
    }
    let body = json!({"type": kind, "created_at": "2026-01-01T00:00:00.000Z", "data": {"email_id": a.provider_message_id,
        "to": [a.recipient], "subject": "Code", "tags": tags,
        "bounce": {"type": "Permanent", "subType": "General", "diagnosticCode": ["smtp; 550 5.1.1 user unknown"]}}});
    let raw = serde_json::to_vec(&body).unwrap();
    let key = STANDARD
        .decode(RESEND_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let svix_id = format!("msg_{}", a.event_id);
    let sig = STANDARD.encode(hmac(
        &key,
        &[
            svix_id.as_bytes(),
            b".",
            ts.to_string().as_bytes(),
            b".",
            &raw,
        ],
    ));
    let headers = vec![
        ("svix-id".into(), svix_id),
        ("svix-timestamp".into(), ts.to_string()),
        (
            "svix-signature".into(),
            format!("v1,c29tZXRoaW5nIGVsc2U= v1,{sig}"),
        ),
    ];
    Hook { headers, body: raw }
}

#[tokio::test]
async fn resend_webhooks() {
    let app = TestApp::spawn().await;
    set_provider(
        &app,
        json!({"type": "resend", "api_key": "re_test", "webhook_secret": RESEND_SECRET}),
    )
    .await;
    let forge = |mut h: Hook| {
        h.body = String::from_utf8(h.body)
            .unwrap()
            .replace("email.bounced", "email.delivered")
            .into_bytes();
        h
    };
    let unsign = |mut h: Hook| {
        h.headers.retain(|(k, _)| k != "svix-signature");
        h
    };
    scenario(&app, "resend", resend_sign, forge, unsign, true).await;
    app.stop().await;
}

fn sendgrid_signer(key: &SigningKey) -> impl Fn(Kind, &About, i64) -> Hook + '_ {
    move |kind, a, ts| {
        let (event, kind_type) = match kind {
            Kind::Delivered => ("delivered", None),
            Kind::Bounced => ("bounce", Some("bounce")),
            Kind::Complained => ("spamreport", None),
        };
        let at = super::webhook_support::event_seconds();
        let mut e = json!({"email": a.recipient, "timestamp": at, "event": event, "type": kind_type,
            "sg_event_id": a.event_id, "reason": "550 5.1.1 unknown recipient", "status": "5.1.1"});
        if let Some(p) = &a.provider_message_id {
            e["sg_message_id"] =
                format!("{p}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0").into();
        }
        if let Some(m) = &a.message_id {
            e["mailgate_message_id"] = m.clone().into();
        }
        // A batch: the event and an untracked one; the body ends with CR LF like SendGrid's.
        let mut raw = serde_json::to_vec(&json!([e, {"event": "group_resubscribe", "sg_event_id": format!("{}-x", a.event_id), "timestamp": at}])).unwrap();
        raw.extend_from_slice(b"\r\n");
        let mut signed = ts.to_string().into_bytes();
        signed.extend_from_slice(&raw);
        let sig: Signature = key.sign(&signed);
        let headers = vec![
            (
                "X-Twilio-Email-Event-Webhook-Signature".into(),
                STANDARD.encode(sig.to_der().as_bytes()),
            ),
            (
                "X-Twilio-Email-Event-Webhook-Timestamp".into(),
                ts.to_string(),
            ),
        ];
        Hook { headers, body: raw }
    }
}

#[tokio::test]
async fn sendgrid_webhooks() {
    let app = TestApp::spawn().await;
    let key = SigningKey::random(&mut rand::thread_rng());
    let public = STANDARD.encode(key.verifying_key().to_public_key_der().unwrap().as_bytes());
    set_provider(
        &app,
        json!({"type": "sendgrid", "api_key": "SG.test", "webhook_public_key": public}),
    )
    .await;
    let other = SigningKey::random(&mut rand::thread_rng());
    let forge = |h: Hook| {
        let ts = h.headers[1].1.clone();
        let mut signed = ts.into_bytes();
        signed.extend_from_slice(&h.body);
        let sig: Signature = other.sign(&signed);
        Hook {
            headers: vec![
                h.headers[1].clone(),
                (
                    "X-Twilio-Email-Event-Webhook-Signature".into(),
                    STANDARD.encode(sig.to_der().as_bytes()),
                ),
            ],
            ..h
        }
    };
    let unsign = |h: Hook| Hook {
        headers: vec![h.headers[1].clone()],
        ..h
    };
    scenario(&app, "sendgrid", sendgrid_signer(&key), forge, unsign, true).await;
    app.stop().await;
}

#[tokio::test]
async fn webhooks_for_another_provider_or_unconfigured_are_refused() {
    let app = TestApp::spawn().await;
    // The default provider (capture) has no webhooks.
    let (code, out) = post(
        &app,
        "mailgun",
        &Hook {
            headers: vec![],
            body: b"{}".to_vec(),
        },
    )
    .await;
    assert_eq!(
        (code, out["error"]["code"].as_str()),
        (401, Some("webhook_not_configured"))
    );
    // Mailgun without a signing key.
    set_provider(
        &app,
        json!({"dsn": "mailgun+api://key-api@mg.acme.example"}),
    )
    .await;
    let hook = mailgun_sign(
        Kind::Delivered,
        &About {
            event_id: "e".into(),
            message_id: None,
            provider_message_id: None,
            recipient: "a@b.example".into(),
        },
        super::webhook_support::now_seconds(),
    );
    assert_eq!(post(&app, "mailgun", &hook).await.0, 401);
    assert_eq!(post(&app, "resend", &hook).await.0, 401);
    let resp = app
        .client
        .post(app.url("/webhooks/nope/mailgun"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    app.stop().await;
}

/// A chain's failover and an organization's provider get their webhooks authenticated with their
/// own credentials, like an environment's only provider.
#[tokio::test]
async fn webhooks_of_a_failover_and_of_an_organization_provider_are_authenticated() {
    let app = TestApp::spawn().await;
    let mailgun =
        format!("mailgun+api://key-api@mg.acme.example?webhook_signing_key={MAILGUN_KEY}");
    set_provider(
        &app,
        json!({
            "primary": {"dsn": "postmark+api://server-token@default?webhook_username=hook&webhook_password=s3cret"},
            "failovers": [{"dsn": mailgun}],
        }),
    )
    .await;
    scenario(
        &app,
        "mailgun",
        mailgun_sign,
        mailgun_forge,
        mailgun_unsign,
        true,
    )
    .await;

    app.stop().await;

    // Resend only as an organization's provider (a fresh app: the first scenario suppressed its
    // recipients).
    let app = TestApp::spawn().await;
    let r = app
        .put_json(
            "/v1/environments/default/organizations/acme/provider",
            &app.admin_key,
            &json!({"type": "resend", "api_key": "re_org", "webhook_secret": RESEND_SECRET}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let forge = |mut h: Hook| {
        h.body = String::from_utf8(h.body)
            .unwrap()
            .replace("email.bounced", "email.delivered")
            .into_bytes();
        h
    };
    let unsign = |mut h: Hook| {
        h.headers.retain(|(k, _)| k != "svix-signature");
        h
    };
    scenario(&app, "resend", resend_sign, forge, unsign, true).await;

    // SendGrid is in no chain of the environment.
    let (status, _) = post(
        &app,
        "sendgrid",
        &json_hook(vec![], &json!([{"event": "delivered"}])),
    )
    .await;
    assert_eq!(status, 401);
    app.stop().await;
}

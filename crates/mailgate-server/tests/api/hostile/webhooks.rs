//! Forged webhooks for every provider (and unconfigured ones).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use sha2::Sha256;

use super::super::sns::{rfc3339, sign_sns, TOPIC};
use super::super::webhook_support::now_seconds;
use super::{Case, Keys, Rng, MAILGUN_KEY, RESEND_OTHER, RESEND_SECRET};

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

pub(super) fn forged_webhooks(r: &mut Rng, keys: &Keys, out: &mut Vec<Case>) {
    const F: &str = "forged_webhook";
    let now = now_seconds();
    let resend_key = STANDARD
        .decode(RESEND_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let resend_other = STANDARD
        .decode(RESEND_OTHER.trim_start_matches("whsec_"))
        .unwrap();
    for _ in 0..520 {
        let rcpt = format!("{}@example.net", r.word());
        let eid = format!("evt-{}", r.next());
        let case = match r.below(8) {
            0 => {
                // Mailgun: the signature is inside the body.
                let ts = match r.below(5) {
                    0 => (now - r.range(301, 100_000) as i64).to_string(),
                    1 => (now + r.range(301, 100_000) as i64).to_string(),
                    2 => i64::MIN.to_string(),
                    3 => "not-a-number".to_owned(),
                    _ => now.to_string(),
                };
                let token = format!("{:0>50}", r.next());
                let good = hex::encode(hmac(
                    MAILGUN_KEY.as_bytes(),
                    &[ts.as_bytes(), token.as_bytes()],
                ));
                let stale = ts != now.to_string();
                let (sig, what): (Value, &str) = match r.below(7) {
                    0 if stale => (good.clone().into(), "fresh signature over a bad timestamp"),
                    1 => (hex::encode(r.bytes(32)).into(), "random signature"),
                    2 => (
                        hex::encode(hmac(b"wrong-key", &[ts.as_bytes(), token.as_bytes()])).into(),
                        "another key's signature",
                    ),
                    3 => (Value::Null, "no signature"),
                    4 => (json!(12345), "signature not a string"),
                    5 => (
                        good[..good.len() - 1].to_owned().into(),
                        "truncated signature",
                    ),
                    _ => (
                        hex::encode(hmac(
                            MAILGUN_KEY.as_bytes(),
                            &[ts.as_bytes(), b"other-token"],
                        ))
                        .into(),
                        "signature of another token",
                    ),
                };
                let event = json!({"event": r.pick(&["delivered", "failed", "complained"]), "severity": "permanent", "id": eid,
                    "timestamp": now, "recipient": rcpt, "user-variables": {}});
                let mut body = json!({"signature": {"timestamp": ts, "token": token, "signature": sig}, "event-data": event});
                if r.below(10) == 0 {
                    body.as_object_mut().unwrap().remove("signature");
                }
                Case::hook(F, format!("mailgun: {what} (ts {ts})"), "hooks", "mailgun").json(&body)
            }
            1 => {
                let (auth, what): (Option<Vec<u8>>, &str) = match r.below(8) {
                    0 => (None, "no Authorization"),
                    1 => (
                        Some(format!("Basic {}", STANDARD.encode("hook:guess")).into_bytes()),
                        "wrong password",
                    ),
                    2 => (
                        Some(format!("Basic {}", STANDARD.encode("HOOK:s3cret")).into_bytes()),
                        "wrong user case",
                    ),
                    3 => (
                        Some(format!("Basic {}", STANDARD.encode("hook")).into_bytes()),
                        "no colon",
                    ),
                    4 => (Some(b"Basic %%%not-base64%%%".to_vec()), "not base64"),
                    5 => (
                        Some(format!("Bearer {}", STANDARD.encode("hook:s3cret")).into_bytes()),
                        "wrong scheme",
                    ),
                    6 => (
                        Some(
                            [
                                b"Basic ".as_slice(),
                                STANDARD.encode(b"hook:s3cret\xff").as_bytes(),
                            ]
                            .concat(),
                        ),
                        "password with a trailing byte",
                    ),
                    _ => (
                        Some(format!("Basic {}", STANDARD.encode("hook:s3cre")).into_bytes()),
                        "password prefix",
                    ),
                };
                let body = json!({"RecordType": "Bounce", "ID": r.next() >> 12, "Type": "HardBounce", "Email": rcpt, "MessageID": eid, "BouncedAt": "2026-01-01T00:00:00Z"});
                let c = Case::hook(F, format!("postmark: {what}"), "hooks", "postmark").json(&body);
                match auth {
                    Some(a) => c.header("Authorization", a),
                    None => c,
                }
            }
            2 => {
                let body = serde_json::to_vec(&json!({"type": r.pick(&["email.bounced", "email.delivered", "email.complained"]), "created_at": "2026-01-01T00:00:00.000Z",
                    "data": {"email_id": eid, "to": [rcpt], "bounce": {"type": "Permanent"}}})).unwrap();
                let id = format!("msg_{}", r.next());
                let mut ts = now.to_string();
                let sign = |key: &[u8], id: &str, ts: &str, body: &[u8]| {
                    STANDARD.encode(hmac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
                };
                let (sig, what) = match r.below(8) {
                    0 => {
                        ts = (now - r.range(301, 100_000) as i64).to_string();
                        (
                            format!("v1,{}", sign(&resend_key, &id, &ts, &body)),
                            "valid signature, stale timestamp",
                        )
                    }
                    1 => {
                        ts = i64::MIN.to_string();
                        (
                            format!("v1,{}", sign(&resend_key, &id, &ts, &body)),
                            "valid signature, absurd timestamp",
                        )
                    }
                    2 => (
                        format!("v1,{}", STANDARD.encode(r.bytes(32))),
                        "random signature",
                    ),
                    3 => (
                        format!("v1,{}", sign(&resend_other, &id, &ts, &body)),
                        "another secret",
                    ),
                    4 => (
                        format!("v2,{}", sign(&resend_key, &id, &ts, &body)),
                        "wrong version",
                    ),
                    5 => (
                        format!("v1,{}", sign(&resend_key, "msg_other", &ts, &body)),
                        "signature of another id",
                    ),
                    6 => (
                        format!("v1,{}", sign(&resend_key, &id, &ts, b"{}")),
                        "signature of another body",
                    ),
                    _ => (String::new(), "no signature"),
                };
                let mut c = Case::hook(F, format!("resend: {what}"), "hooks", "resend")
                    .raw(body)
                    .header("svix-id", id)
                    .header("svix-timestamp", ts);
                if !sig.is_empty() {
                    c = c.header("svix-signature", sig);
                }
                c
            }
            3 => {
                let events = json!([{"email": rcpt, "timestamp": now, "event": r.pick(&["bounce", "delivered", "spamreport"]), "type": "bounce", "sg_event_id": eid}]);
                let body = serde_json::to_vec(&events).unwrap();
                let sign = |key: &SigningKey, ts: &str, body: &[u8]| {
                    let mut signed = ts.as_bytes().to_vec();
                    signed.extend_from_slice(body);
                    let sig: Signature = key.sign(&signed);
                    STANDARD.encode(sig.to_der().as_bytes())
                };
                let mut ts = now.to_string();
                let (sig, what) = match r.below(7) {
                    0 => {
                        ts = (now - r.range(301, 100_000) as i64).to_string();
                        (
                            Some(sign(&keys.sendgrid, &ts, &body)),
                            "valid signature, stale timestamp",
                        )
                    }
                    1 => {
                        ts = i64::MIN.to_string();
                        (
                            Some(sign(&keys.sendgrid, &ts, &body)),
                            "valid signature, absurd timestamp",
                        )
                    }
                    2 => (Some(sign(&keys.sendgrid_other, &ts, &body)), "another key"),
                    3 => (Some(STANDARD.encode(r.bytes(70))), "random bytes"),
                    4 => (Some("%%%".to_owned()), "not base64"),
                    5 => (
                        Some(sign(&keys.sendgrid, &ts, b"[]")),
                        "signature of another body",
                    ),
                    _ => (None, "no signature"),
                };
                let mut c = Case::hook(F, format!("sendgrid: {what}"), "hooks", "sendgrid")
                    .raw(body)
                    .header("X-Twilio-Email-Event-Webhook-Timestamp", ts);
                if let Some(sig) = sig {
                    c = c.header("X-Twilio-Email-Event-Webhook-Signature", sig);
                }
                c
            }
            4 | 5 => {
                let inner = json!({"eventType": "Bounce", "mail": {"messageId": eid, "destination": [rcpt]},
                    "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": rcpt}]}});
                let m = json!({"Type": "Notification", "MessageId": eid, "TopicArn": TOPIC, "Message": inner.to_string(), "Timestamp": rfc3339(now)});
                let signed = |m: Value| sign_sns(&keys.sns, m, if r_bit(&eid) { "1" } else { "2" });
                let (m, what) = match r.below(9) {
                    0 => {
                        let mut m = signed(m);
                        m["Message"] = m["Message"]
                            .as_str()
                            .unwrap()
                            .replace("Permanent", "Transient")
                            .into();
                        (m, "tampered message")
                    }
                    1 => {
                        let mut m = signed(m);
                        m.as_object_mut().unwrap().remove("Signature");
                        (m, "no signature")
                    }
                    2 => {
                        let mut m = signed(m);
                        m["Signature"] = STANDARD.encode(r.bytes(128)).into();
                        (m, "random signature")
                    }
                    3 => {
                        let mut m = m;
                        m["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:not-ours".into();
                        (signed(m), "topic not allowed")
                    }
                    4 => {
                        let mut m = m;
                        m["Timestamp"] =
                            rfc3339(now - 2 * 3600 - r.range(0, 100_000) as i64).into();
                        (signed(m), "older than an hour")
                    }
                    5 => {
                        let mut m = signed(m);
                        m["SigningCertURL"] = (*r.pick(&[
                            "http://sns.us-east-1.amazonaws.com/cert.pem",
                            "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
                            "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
                            "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
                            "https://sns.us-east-1.amazonaws.com/cert.txt",
                            "https://169.254.169.254/latest/meta-data.pem",
                            "file:///etc/passwd",
                            "not a url",
                            "",
                        ]))
                        .into();
                        (m, "certificate URL outside the SNS rule")
                    }
                    6 => {
                        let mut m = signed(m);
                        m["SigningCertUrl"] = "https://evil.example/cert.pem".into();
                        (m, "lambda-style certificate URL elsewhere")
                    }
                    7 => {
                        let c = json!({"Type": "SubscriptionConfirmation", "MessageId": eid, "Token": "tok", "TopicArn": TOPIC,
                            "Message": "subscribe", "SubscribeURL": r.pick(&["https://169.254.169.254/latest", "http://127.0.0.1:1/confirm", "https://evil.example/confirm"]).to_string(), "Timestamp": rfc3339(now)});
                        (signed(c), "SubscribeURL outside the SNS rule")
                    }
                    _ => {
                        let mut m = signed(m);
                        m["Signature"] = json!(["not", "a", "string"]);
                        (m, "signature of the wrong type")
                    }
                };
                Case::hook(F, format!("ses: {what}"), "hooks", "ses")
                    .header("x-amz-sns-message-type", "Notification")
                    .json(&m)
            }
            6 => {
                let provider = *r.pick(&[
                    "capture",
                    "smtp",
                    "foo",
                    "MAILGUN",
                    "Mailgun",
                    "mailgun+api",
                    "ses+api",
                    "",
                    "..",
                    "mailgun%00",
                ]);
                if provider.is_empty() || provider == ".." {
                    Case::hook(F, format!("provider {provider:?}"), "hooks", provider)
                        .json(&json!({}))
                        .expect(404, "not_found")
                        .expect(405, "method_not_allowed")
                } else {
                    Case::hook(
                        F,
                        format!("unconfigured provider {provider:?}"),
                        "hooks",
                        provider,
                    )
                    .json(&json!({}))
                    .expect(401, "webhook_not_configured")
                }
            }
            _ => {
                let provider = *r.pick(&["mailgun", "postmark", "resend", "sendgrid", "ses"]);
                if r.below(2) == 0 {
                    Case::hook(
                        F,
                        format!("{provider} to an environment without it"),
                        "default",
                        provider,
                    )
                    .json(&json!({}))
                    .expect(401, "webhook_not_configured")
                } else {
                    let env = *r.pick(&[
                        "nope",
                        "env_0000000000000000000000000",
                        "%FF%FE",
                        "default%0A",
                    ]);
                    Case::hook(F, format!("{provider} to environment {env}"), env, provider)
                        .json(&json!({}))
                        .expect(404, "not_found")
                        .expect(400, "bad_request")
                }
            }
        };
        let case = if case.expect.is_empty() {
            case.expect(401, "webhook_unauthorized")
        } else {
            case
        };
        out.push(case);
    }
}

fn r_bit(s: &str) -> bool {
    s.len().is_multiple_of(2)
}

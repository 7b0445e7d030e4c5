//! The full webhook path, `WebhookVerifier::handle`, with correctly configured credentials for
//! each provider: authentication of arbitrary requests (signatures, Basic credentials, timestamps,
//! the SNS certificate URL and signature), then parsing.
//!
//! Input, HTTP-like:
//!
//! ```text
//! <provider>\n            ses | mailgun | postmark | resend | sendgrid
//! <mode>\n                raw: as given; sign: the harness signs the request correctly first
//! Name: value\n ...       headers
//! \n
//! body
//! ```
//!
//! `raw` requests are checked against the configured secrets (the Appendix A vectors of
//! `providers.md` authenticate); `sign` requests get a valid signature over whatever the fuzzer
//! wrote (Mailgun `signature.signature`, Resend `svix-signature`, Postmark `Authorization`,
//! SendGrid's ECDSA signature with the harness's own key), so the code after authentication
//! (timestamp checks, token replay, parsing) is reached as well. SNS messages cannot be signed
//! (RSA, key not kept); their certificate is preloaded so nothing is fetched, and requests
//! naming another certificate URL are skipped.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use mailgate_core::{Clock, Timestamp};
use mailgate_providers::{ProviderConfig, WebhookRequest, WebhookVerifier};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::Value;
use sha2::Sha256;

const SNS_CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-fuzz.pem";
const SNS_CERT: &[u8] = include_bytes!("../keys/sns-fuzz.pem");
const MAILGUN_KEY: &str = "key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Appendix A.4's public key (the official SendGrid vector).
const SENDGRID_A4_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
/// The harness's own P-256 key pair, for `sign` mode.
const SENDGRID_OWN_KEY: &str = include_str!("../keys/sendgrid-pub.b64");
const SENDGRID_OWN_SECRET: &str = include_str!("../keys/sendgrid-priv.hex");

struct FixedClock(Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

fn pct(s: &str) -> String {
    s.trim()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// The configuration and the clock (seconds) for a provider: the clocks are those of the
/// Appendix A vectors, so that they authenticate as given.
fn setup(provider: &str, sign: bool) -> Option<(ProviderConfig, i64)> {
    let (dsn, now) = match provider {
        "ses" => (
            "ses+api://AK:S@default?region=us-east-1&sns_topic_arn=arn:aws:sns:us-east-1:123456789012:ses-events".to_owned(),
            1_735_689_600,
        ),
        "mailgun" => (
            format!("mailgun+api://api:k@mg.acme.com?webhook_signing_key={MAILGUN_KEY}"),
            1_529_006_854,
        ),
        "postmark" => (
            "postmark+api://token@default?webhook_username=hook&webhook_password=s3cret".to_owned(),
            1_735_689_600,
        ),
        "resend" => (
            format!("resend+api://re_1@default?webhook_secret={RESEND_SECRET}"),
            1_614_265_330,
        ),
        "sendgrid" => {
            let key = if sign { SENDGRID_OWN_KEY } else { SENDGRID_A4_KEY };
            (
                format!("sendgrid+api://SG.k@default?webhook_public_key={}", pct(key)),
                1_600_112_502,
            )
        }
        _ => return None,
    };
    let config = ProviderConfig::from_dsn(&dsn).expect("the harness's DSNs are valid");
    Some((config, now))
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value));
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Signs the request as the provider would.
fn sign(provider: &str, headers: &mut Vec<(String, String)>, body: &mut Vec<u8>) {
    match provider {
        "mailgun" => {
            let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
                return;
            };
            let sig = &v["signature"];
            let (Some(ts), Some(token)) = (sig["timestamp"].as_str(), sig["token"].as_str()) else {
                return;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(MAILGUN_KEY.as_bytes()).unwrap();
            mac.update(ts.as_bytes());
            mac.update(token.as_bytes());
            let hex = hex::encode(mac.finalize().into_bytes());
            v["signature"]["signature"] = Value::String(hex);
            *body = serde_json::to_vec(&v).unwrap();
        }
        "resend" => {
            let get = |a: &str, b: &str| header(headers, a).or_else(|| header(headers, b));
            let (Some(id), Some(ts)) = (
                get("svix-id", "webhook-id"),
                get("svix-timestamp", "webhook-timestamp"),
            ) else {
                return;
            };
            let key = STANDARD.decode(&RESEND_SECRET["whsec_".len()..]).unwrap();
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(ts.as_bytes());
            mac.update(b".");
            mac.update(body);
            let sig = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("webhook-signature"));
            set_header(headers, "svix-signature", sig);
        }
        "postmark" => set_header(
            headers,
            "Authorization",
            format!("Basic {}", STANDARD.encode("hook:s3cret")),
        ),
        "sendgrid" => {
            let Some(ts) = header(headers, "x-twilio-email-event-webhook-timestamp") else {
                return;
            };
            let secret = hex::decode(SENDGRID_OWN_SECRET.trim()).unwrap();
            let key = SigningKey::from_slice(&secret).unwrap();
            let mut message = ts.as_bytes().to_vec();
            message.extend_from_slice(body);
            let sig: Signature = key.sign(&message);
            let der = STANDARD.encode(sig.to_der().as_bytes());
            set_header(headers, "X-Twilio-Email-Event-Webhook-Signature", der);
        }
        _ => {}
    }
}

/// Whether an SNS request names a certificate other than the preloaded one (it would be fetched).
fn would_fetch(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let url = v.get("SigningCertUrl").or_else(|| v.get("SigningCertURL"));
    matches!(url, Some(Value::String(u)) if u != SNS_CERT_URL)
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let (Some(provider), Some(mode)) = (lines.next(), lines.next()) else {
        return;
    };
    let rest = lines.next().unwrap_or_default();
    let provider = String::from_utf8_lossy(provider).trim().to_owned();
    let signing = mode.trim_ascii() == b"sign";
    let Some((config, now)) = setup(&provider, signing) else {
        return;
    };
    // Headers up to the first empty line, then the body.
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None if rest.first() == Some(&b'\n') => (&rest[..0], &rest[1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let mut headers: Vec<(String, String)> = head
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = String::from_utf8_lossy(line);
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let mut body = body.to_vec();
    if provider == "ses" && would_fetch(&body) {
        return;
    }
    if signing {
        sign(&provider, &mut headers, &mut body);
    }
    let verifier = WebhookVerifier::new(Arc::new(FixedClock(Timestamp(now * 1000))));
    if provider == "ses" {
        verifier
            .preload_sns_certificate(SNS_CERT_URL, SNS_CERT)
            .expect("the harness's certificate is PEM X.509 RSA");
    }
    let req = WebhookRequest::new(headers, body);
    let fut = pin!(verifier.handle(&provider, &config, &req));
    // Nothing here waits on I/O (no certificate is fetched), so one poll completes it.
    let mut cx = Context::from_waker(Waker::noop());
    match fut.poll(&mut cx) {
        Poll::Ready(_) => {}
        Poll::Pending => panic!("webhook handling waited on I/O"),
    }
});

//! SES events through SNS: the SNS signature (v1 RSA-SHA1, v2 RSA-SHA256) over the exact
//! string to sign, the certificate URL checked before it is fetched (https, `.pem`, host
//! `sns.<region>.amazonaws.com`) and the certificate cached, allowed topics only, subscription
//! confirmation, and both SES formats (`notificationType` and `eventType`) fanned out per
//! recipient.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::event::EventType;
use mailgate_core::inbound::{BounceType, ProviderEvent};
use mailgate_core::Timestamp;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde_json::{json, Value};
use x509_cert::der::{DecodePem, Encode};
use x509_cert::Certificate;

use super::SesConfig;
use crate::webhook::{
    invalid, recipient, rfc3339_or, WebhookError, WebhookOutcome, WebhookRequest, WebhookVerifier,
};

/// How old an SNS message may be (SNS retries keep the original `Timestamp`).
const MAX_AGE_MS: i64 = 3600 * 1000;

/// SNS signing certificates by URL (fetched once per process).
#[derive(Default)]
pub struct SnsCertificates {
    keys: Mutex<HashMap<String, RsaPublicKey>>,
}

/// Whether `host` matches `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`.
pub(crate) fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let middle = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
    middle.is_some_and(|m| m.len() >= 3 && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// Checks a certificate or SubscribeURL URL before mailgate fetches it (SSRF guard).
pub(crate) fn check_url(config: &SesConfig, url: &str, pem: bool) -> Result<(), WebhookError> {
    if let Some(prefix) = &config.dangerous_sns_cert_url_prefix {
        if url.starts_with(prefix.as_str()) {
            return Ok(());
        }
    }
    let u =
        url::Url::parse(url).map_err(|_| WebhookError::Unauthorized("URL is not a URL".into()))?;
    let ok = u.scheme() == "https"
        && u.host_str().is_some_and(is_sns_host)
        && (!pem || u.path().ends_with(".pem"));
    if !ok {
        return Err(WebhookError::Unauthorized("URL is not an SNS URL".into()));
    }
    Ok(())
}

/// The string SNS signs: `Key\nValue\n` for each present key, in the PHP validator's order.
pub(crate) fn string_to_sign(m: &Value) -> Result<String, WebhookError> {
    let kind = m["Type"].as_str().unwrap_or_default();
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
    let mut out = String::new();
    for key in keys {
        match &m[*key] {
            Value::Null => {}
            Value::String(v) => {
                out.push_str(key);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            _ => return Err(WebhookError::Unauthorized(format!("{key} is not a string"))),
        }
    }
    Ok(out)
}

/// Verifies an SNS message's signature with the certificate's key.
pub(crate) fn verify_signature(key: &RsaPublicKey, m: &Value) -> Result<(), WebhookError> {
    let text = string_to_sign(m)?;
    let sig = m["Signature"]
        .as_str()
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|b| Signature::try_from(b.as_slice()).ok())
        .ok_or_else(|| WebhookError::Unauthorized("no signature".into()))?;
    let ok = match m["SignatureVersion"].as_str() {
        Some("1") => VerifyingKey::<sha1::Sha1>::new(key.clone())
            .verify(text.as_bytes(), &sig)
            .is_ok(),
        Some("2") => VerifyingKey::<sha2::Sha256>::new(key.clone())
            .verify(text.as_bytes(), &sig)
            .is_ok(),
        _ => {
            return Err(WebhookError::Unauthorized(
                "unsupported SignatureVersion".into(),
            ))
        }
    };
    if !ok {
        return Err(WebhookError::Unauthorized("signature mismatch".into()));
    }
    Ok(())
}

/// The RSA key of a PEM certificate.
pub(crate) fn key_from_pem(pem: &[u8]) -> Result<RsaPublicKey, WebhookError> {
    let cert = Certificate::from_pem(pem)
        .map_err(|_| WebhookError::Unavailable("SNS certificate is not PEM X.509".into()))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| WebhookError::Unavailable("SNS certificate has no usable key".into()))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|_| WebhookError::Unavailable("SNS certificate key is not RSA".into()))
}

fn http_client(config: &SesConfig) -> Result<reqwest::Client, WebhookError> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &config.dangerous_sns_ca_file {
        let pem = std::fs::read(path).map_err(|_| {
            WebhookError::NotConfigured("dangerous_sns_ca_file cannot be read".into())
        })?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|_| WebhookError::NotConfigured("dangerous_sns_ca_file is not PEM".into()))?;
        b = b.add_root_certificate(ca);
    }
    b.build()
        .map_err(|e| WebhookError::Unavailable(e.to_string()))
}

impl SnsCertificates {
    /// Caches the key of a PEM certificate for `url`, as a fetch would.
    pub(crate) fn preload(&self, url: &str, pem: &[u8]) -> Result<(), WebhookError> {
        let key = key_from_pem(pem)?;
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_owned(), key);
        Ok(())
    }

    async fn key(&self, config: &SesConfig, url: &str) -> Result<RsaPublicKey, WebhookError> {
        if let Some(k) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return Ok(k.clone());
        }
        check_url(config, url, true)?;
        let resp = http_client(config)?
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| {
                WebhookError::Unavailable("SNS certificate could not be fetched".into())
            })?;
        let pem = resp
            .bytes()
            .await
            .map_err(|_| WebhookError::Unavailable("SNS certificate could not be read".into()))?;
        let key = key_from_pem(&pem)?;
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_owned(), key.clone());
        Ok(key)
    }
}

/// Authenticates and handles one SNS request.
pub(crate) async fn handle(
    verifier: &WebhookVerifier,
    config: &SesConfig,
    req: &WebhookRequest,
    now: Timestamp,
) -> Result<WebhookOutcome, WebhookError> {
    let topics: Vec<&str> = config
        .sns_topic_arn
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if topics.is_empty() {
        return Err(WebhookError::NotConfigured("set sns_topic_arn".into()));
    }
    let mut m: Value = serde_json::from_slice(req.body())
        .map_err(|_| WebhookError::Unauthorized("body is not a signed SNS message".into()))?;
    for (lambda, canonical) in [
        ("SigningCertUrl", "SigningCertURL"),
        ("SubscribeUrl", "SubscribeURL"),
        ("UnsubscribeUrl", "UnsubscribeURL"),
    ] {
        if let Some(v) = m.get(lambda).cloned() {
            m[canonical] = v;
        }
    }
    let cert_url = m["SigningCertURL"]
        .as_str()
        .ok_or_else(|| WebhookError::Unauthorized("no SigningCertURL".into()))?;
    check_url(config, cert_url, true)?;
    let key = verifier.sns.key(config, cert_url).await?;
    verify_signature(&key, &m)?;
    if !topics.contains(&m["TopicArn"].as_str().unwrap_or_default()) {
        return Err(WebhookError::Unauthorized("topic not allowed".into()));
    }
    let sent = m["Timestamp"]
        .as_str()
        .and_then(Timestamp::parse)
        .ok_or_else(|| WebhookError::Unauthorized("no Timestamp".into()))?;
    if now.0.saturating_sub(sent.0) > MAX_AGE_MS {
        return Err(WebhookError::Unauthorized(
            "message older than an hour".into(),
        ));
    }
    match m["Type"].as_str() {
        Some("SubscriptionConfirmation") => {
            let url = m["SubscribeURL"]
                .as_str()
                .ok_or_else(|| invalid("no SubscribeURL"))?;
            check_url(config, url, false)?;
            http_client(config)?
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|_| {
                    WebhookError::Unavailable("SubscribeURL could not be confirmed".into())
                })?;
            tracing::info!("SNS subscription confirmed");
            Ok(WebhookOutcome::SubscriptionConfirmed)
        }
        // An event with no time of its own takes the notification's: the same in every retry.
        Some("Notification") => Ok(WebhookOutcome::Events(parse_notification(&m, sent)?)),
        _ => Ok(WebhookOutcome::Ignored),
    }
}

/// Parses an authenticated SNS `Notification`: its `Message` is the SES event; `fallback` is
/// the time of an event that names none.
pub(crate) fn parse_notification(
    m: &Value,
    fallback: Timestamp,
) -> Result<Vec<ProviderEvent>, WebhookError> {
    let id = m["MessageId"]
        .as_str()
        .ok_or_else(|| invalid("no MessageId"))?;
    let inner: Value =
        serde_json::from_str(m["Message"].as_str().unwrap_or_default()).map_err(invalid)?;
    parse(id, &inner, fallback)
}

/// Normalizes one SES event (either format) into one event per recipient.
pub(crate) fn parse(
    sns_id: &str,
    e: &Value,
    fallback: Timestamp,
) -> Result<Vec<ProviderEvent>, WebhookError> {
    let kind = e["eventType"]
        .as_str()
        .or(e["notificationType"].as_str())
        .ok_or_else(|| invalid("no eventType or notificationType"))?;
    let mail = &e["mail"];
    let addr = |r: &Value| r.as_str().or(r["emailAddress"].as_str()).map(str::to_owned);
    let (event_type, bounce_type, section, list) = match kind {
        "Delivery" => (EventType::Delivered, None, "delivery", "recipients"),
        "Bounce" => {
            let hard = e["bounce"]["bounceType"].as_str() == Some("Permanent");
            (
                EventType::Bounced,
                Some(if hard {
                    BounceType::Hard
                } else {
                    BounceType::Soft
                }),
                "bounce",
                "bouncedRecipients",
            )
        }
        "Complaint" => (
            EventType::Complained,
            None,
            "complaint",
            "complainedRecipients",
        ),
        "DeliveryDelay" => (
            EventType::Deferred,
            None,
            "deliveryDelay",
            "delayedRecipients",
        ),
        "Reject" => (EventType::Rejected, None, "reject", ""),
        "Rendering Failure" => (EventType::Rejected, None, "failure", ""),
        "Send" => (EventType::Sent, None, "send", ""),
        "Open" => (EventType::Opened, None, "open", ""),
        "Click" => (EventType::Clicked, None, "click", ""),
        "Subscription" => (EventType::Unsubscribed, None, "subscription", ""),
        _ => return Ok(Vec::new()),
    };
    let s = &e[section];
    let base = json!({
        "event": kind,
        "bounce_type": s.get("bounceType"),
        "bounce_sub_type": s.get("bounceSubType"),
        "feedback_type": s.get("complaintFeedbackType"),
        "delay_type": s.get("delayType"),
        "reason": s.get("reason").or(s.get("errorMessage")),
        "mta_response": s.get("smtpResponse"),
        "reporting_mta": s.get("reportingMTA"),
        "link": s.get("link"),
    });
    let make = |i: Option<usize>, r: Option<&Value>| {
        let mut detail = base.clone();
        if let Some(r) = r.filter(|r| r.is_object()) {
            detail["status"] = r["status"].clone();
            detail["diagnostic_code"] = r["diagnosticCode"].clone();
        }
        ProviderEvent {
            provider: "ses".into(),
            provider_event_id: i.map_or_else(|| sns_id.to_owned(), |i| format!("{sns_id}:{i}")),
            provider_message_id: mail["messageId"].as_str().map(str::to_owned),
            message_id: mail["tags"]["mailgate_message_id"][0]
                .as_str()
                .and_then(|s| s.parse().ok()),
            event_type,
            bounce_type,
            recipient: r.and_then(addr).as_deref().and_then(recipient),
            occurred_at: rfc3339_or(
                s["timestamp"].as_str().or(mail["timestamp"].as_str()),
                fallback,
            ),
            detail,
        }
    };
    let recipients = if list.is_empty() {
        None
    } else {
        s[list].as_array()
    };
    Ok(match recipients {
        Some(rs) if !rs.is_empty() => rs
            .iter()
            .enumerate()
            .map(|(i, r)| make(Some(i), Some(r)))
            .collect(),
        _ => vec![make(None, None)],
    })
}

#[cfg(test)]
mod tests;

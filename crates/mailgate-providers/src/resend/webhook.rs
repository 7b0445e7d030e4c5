//! Resend's webhooks, signed the Svix / Standard Webhooks way: `v1,` base64(HMAC-SHA256(secret,
//! `id.timestamp.body`)), several signatures per header, a 5-minute tolerance. One event per
//! request; the `svix-id` is the deduplication key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use mailgate_core::event::EventType;
use mailgate_core::inbound::{BounceType, ProviderEvent};
use mailgate_core::Timestamp;
use serde_json::{json, Value};
use sha2::Sha256;

use super::ResendConfig;
use crate::webhook::{
    check_fresh, ct_eq, invalid, recipient, rfc3339_or, WebhookError, WebhookOutcome,
    WebhookRequest, NO_TIME,
};

/// base64(HMAC-SHA256(decoded secret, `id.timestamp.body`)).
pub(crate) fn sign(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<String, WebhookError> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| WebhookError::NotConfigured("webhook_secret is not whsec_<base64>".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether any `v1,` entry of the signature header matches (constant time each).
pub(crate) fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> Result<bool, WebhookError> {
    let expected = sign(secret, id, timestamp, body)?;
    Ok(header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|sig| ct_eq(sig.as_bytes(), expected.as_bytes())))
}

/// Authenticates and parses one webhook.
pub(crate) fn handle(
    config: &ResendConfig,
    req: &WebhookRequest,
    now: Timestamp,
) -> Result<WebhookOutcome, WebhookError> {
    let secret = config
        .webhook_secret
        .as_deref()
        .ok_or_else(|| WebhookError::NotConfigured("set webhook_secret".into()))?;
    let get = |svix: &str, std: &str| req.header(svix).or_else(|| req.header(std));
    let (Some(id), Some(ts), Some(sig)) = (
        get("svix-id", "webhook-id"),
        get("svix-timestamp", "webhook-timestamp"),
        get("svix-signature", "webhook-signature"),
    ) else {
        return Err(WebhookError::Unauthorized(
            "no Svix signature headers".into(),
        ));
    };
    if !verify(secret, id, ts, req.body(), sig)? {
        return Err(WebhookError::Unauthorized("signature mismatch".into()));
    }
    check_fresh(ts, now)?;
    Ok(WebhookOutcome::Events(parse_body(id, req.body(), NO_TIME)?))
}

/// Parses an authenticated body (`id` is the `svix-id`); `fallback` is its time if it names
/// none.
pub(crate) fn parse_body(
    id: &str,
    body: &[u8],
    fallback: Timestamp,
) -> Result<Vec<ProviderEvent>, WebhookError> {
    let body: Value = serde_json::from_slice(body).map_err(invalid)?;
    parse(id, &body, fallback)
}

/// The `mailgate_message_id` tag, from the map form or the older `[{name, value}]` form.
fn tag<'a>(tags: &'a Value, name: &str) -> Option<&'a str> {
    match tags {
        Value::Object(m) => m.get(name).and_then(Value::as_str),
        Value::Array(a) => a
            .iter()
            .find(|t| t["name"].as_str() == Some(name))
            .and_then(|t| t["value"].as_str()),
        _ => None,
    }
}

/// Normalizes one event (empty for events mailgate does not track). A recipient is named only
/// when the email had one, since Resend does not say which of several bounced.
pub(crate) fn parse(
    id: &str,
    body: &Value,
    fallback: Timestamp,
) -> Result<Vec<ProviderEvent>, WebhookError> {
    let kind = body["type"]
        .as_str()
        .ok_or_else(|| invalid("type missing"))?;
    let data = &body["data"];
    let bounce = &data["bounce"];
    let (event_type, bounce_type) = match kind {
        "email.sent" => (EventType::Sent, None),
        "email.delivered" => (EventType::Delivered, None),
        "email.delivery_delayed" => (EventType::Deferred, None),
        "email.bounced" if bounce["type"].as_str().is_some_and(|t| t != "Permanent") => {
            (EventType::Bounced, Some(BounceType::Soft))
        }
        "email.bounced" => (EventType::Bounced, Some(BounceType::Hard)),
        "email.complained" => (EventType::Complained, None),
        "email.failed" | "email.suppressed" => (EventType::Rejected, None),
        "email.opened" => (EventType::Opened, None),
        "email.clicked" => (EventType::Clicked, None),
        _ => return Ok(Vec::new()),
    };
    let to: Vec<&str> = data["to"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let detail = json!({
        "type": kind,
        "bounce_type": bounce.get("type"),
        "bounce_sub_type": bounce.get("subType"),
        "mta_response": bounce.get("diagnosticCode").or(bounce.get("message")),
        "failed": data.get("failed"),
        "suppressed": data["suppressed"].get("reason"),
        "link": data["click"].get("link"),
    });
    Ok(vec![ProviderEvent {
        provider: "resend".into(),
        provider_event_id: id.to_owned(),
        provider_message_id: data["email_id"].as_str().map(str::to_owned),
        message_id: tag(&data["tags"], "mailgate_message_id").and_then(|s| s.parse().ok()),
        event_type,
        bounce_type,
        recipient: if to.len() == 1 {
            recipient(to[0])
        } else {
            None
        },
        occurred_at: rfc3339_or(body["created_at"].as_str(), fallback),
        detail,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendix_a2_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert_eq!(sign(secret, id, "1614265330", body).unwrap(), sig);
        let header = format!("v1,bm90IGl0 v2,xyz v1,{sig}");
        assert!(verify(secret, id, "1614265330", body, &header).unwrap());
        assert!(!verify(secret, id, "1614265331", body, &header).unwrap());
        assert!(!verify(secret, id, "1614265330", body, "v1,AAAA").unwrap());
    }

    #[test]
    fn tags_in_either_form() {
        let map = json!({"mailgate_message_id": "x"});
        let list = json!([{"name": "mailgate_message_id", "value": "x"}]);
        assert_eq!(tag(&map, "mailgate_message_id"), Some("x"));
        assert_eq!(tag(&list, "mailgate_message_id"), Some("x"));
    }
}

//! Mailgun's event webhooks: `signature` = hex(HMAC-SHA256(signing key, timestamp ‖ token)),
//! fresh timestamps only (the verifier also refuses reused tokens); one `event-data` per request.

use hmac::{Hmac, Mac};
use mailgate_core::event::EventType;
use mailgate_core::inbound::{BounceType, ProviderEvent};
use mailgate_core::Timestamp;
use serde_json::{json, Value};
use sha2::Sha256;

use super::MailgunConfig;
use crate::webhook::{
    check_fresh, ct_eq, from_seconds, invalid, recipient, WebhookError, WebhookRequest,
};

/// hex(HMAC-SHA256(key, timestamp ‖ token)).
pub(crate) fn sign(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the signature object against the key (constant time).
pub(crate) fn verify(key: &str, timestamp: &str, token: &str, signature: &str) -> bool {
    ct_eq(
        sign(key, timestamp, token).as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    )
}

/// Authenticates and parses one webhook; returns its events and the token to remember.
pub(crate) fn handle(
    config: &MailgunConfig,
    req: &WebhookRequest,
    now: Timestamp,
) -> Result<(Vec<ProviderEvent>, String), WebhookError> {
    let key = config
        .webhook_signing_key
        .as_deref()
        .ok_or_else(|| WebhookError::NotConfigured("set webhook_signing_key".into()))?;
    let body: Value = serde_json::from_slice(req.body())
        .map_err(|_| WebhookError::Unauthorized("body is not a signed JSON payload".into()))?;
    let sig = &body["signature"];
    let (Some(ts), Some(token), Some(signature)) = (
        sig["timestamp"].as_str(),
        sig["token"].as_str(),
        sig["signature"].as_str(),
    ) else {
        return Err(WebhookError::Unauthorized("no signature".into()));
    };
    if !verify(key, ts, token, signature) {
        return Err(WebhookError::Unauthorized("signature mismatch".into()));
    }
    check_fresh(ts, now)?;
    Ok((parse_payload(&body)?, token.to_owned()))
}

/// Parses an authenticated payload (the whole JSON body; its `event-data`).
pub(crate) fn parse_payload(body: &Value) -> Result<Vec<ProviderEvent>, WebhookError> {
    Ok(parse_event(&body["event-data"])?.into_iter().collect())
}

/// Normalizes one `event-data` object; `None` for events mailgate does not track.
pub(crate) fn parse_event(data: &Value) -> Result<Option<ProviderEvent>, WebhookError> {
    let kind = data["event"]
        .as_str()
        .ok_or_else(|| invalid("event-data.event missing"))?;
    let id = data["id"]
        .as_str()
        .ok_or_else(|| invalid("event-data.id missing"))?;
    let severity = data["severity"].as_str().unwrap_or("");
    let (event_type, bounce_type) = match (kind, severity) {
        ("accepted", _) => (EventType::Sent, None),
        ("delivered", _) => (EventType::Delivered, None),
        ("failed", "permanent") => (EventType::Bounced, Some(BounceType::Hard)),
        ("failed", _) => (EventType::Bounced, Some(BounceType::Soft)),
        ("rejected", _) => (EventType::Rejected, None),
        ("complained", _) => (EventType::Complained, None),
        ("opened", _) => (EventType::Opened, None),
        ("clicked", _) => (EventType::Clicked, None),
        ("unsubscribed", _) => (EventType::Unsubscribed, None),
        _ => return Ok(None),
    };
    let status = &data["delivery-status"];
    let detail = json!({
        "event": kind,
        "severity": data.get("severity"),
        "reason": data.get("reason"),
        "code": status.get("code"),
        "enhanced_code": status.get("enhanced-code"),
        "mta_response": status.get("message").or(status.get("description")),
        "url": data.get("url"),
    });
    Ok(Some(ProviderEvent {
        provider: "mailgun".into(),
        provider_event_id: id.to_owned(),
        provider_message_id: data["message"]["headers"]["message-id"]
            .as_str()
            .map(|s| s.trim_matches(['<', '>']).to_owned()),
        message_id: data["user-variables"]["mailgate_message_id"]
            .as_str()
            .and_then(|s| s.parse().ok()),
        event_type,
        bounce_type,
        recipient: data["recipient"].as_str().and_then(recipient),
        occurred_at: from_seconds(data["timestamp"].as_f64().unwrap_or(0.0)),
        detail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendix_a3_vector() {
        let key = "key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        let token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
        let sig = "f3c3c15d8e56a3199c3936bfc3657e89b7c3ce1a2bbd4eae1d941cb9a9a8031e";
        assert_eq!(sign(key, "1529006854", token), sig);
        assert!(verify(key, "1529006854", token, sig));
        assert!(!verify(key, "1529006855", token, sig));
    }

    #[test]
    fn hard_bounce_normalizes() {
        let data = json!({"event": "failed", "severity": "permanent", "id": "e1",
            "timestamp": 1529701969.818, "recipient": "Joan@Example.com",
            "delivery-status": {"code": 550, "message": "smtp; 550 5.1.1 no such user"},
            "message": {"headers": {"message-id": "2018.1@example.org"}},
            "user-variables": {"mailgate_message_id": "msg_01J0000000000000000000000Z"}});
        let e = parse_event(&data).unwrap().unwrap();
        assert_eq!(
            (e.event_type, e.bounce_type),
            (EventType::Bounced, Some(BounceType::Hard))
        );
        assert_eq!(e.provider_message_id.as_deref(), Some("2018.1@example.org"));
        assert_eq!(e.recipient.unwrap().normalized(), "joan@example.com");
        assert_eq!(e.occurred_at, Timestamp(1_529_701_969_818));
        assert_eq!(e.detail["code"], 550);
    }
}

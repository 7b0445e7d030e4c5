//! Postmark's webhooks. Postmark does not sign them: the request must carry the configured HTTP
//! Basic credentials (`https://user:pass@host/webhooks/{env}/postmark`), compared in constant
//! time. One record per request.

use base64::Engine as _;
use mailgate_core::event::EventType;
use mailgate_core::inbound::{BounceType, ProviderEvent};
use mailgate_core::Timestamp;
use serde_json::{json, Value};

use super::PostmarkConfig;
use crate::webhook::{
    ct_eq, invalid, recipient, rfc3339_or, WebhookError, WebhookOutcome, WebhookRequest, NO_TIME,
};

/// Checks the `Authorization: Basic …` header against the configured credentials.
pub(crate) fn authenticate(
    config: &PostmarkConfig,
    req: &WebhookRequest,
) -> Result<(), WebhookError> {
    let (Some(user), Some(pass)) = (&config.webhook_username, &config.webhook_password) else {
        return Err(WebhookError::NotConfigured(
            "set webhook_username and webhook_password".into(),
        ));
    };
    let given = req
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .ok_or_else(|| WebhookError::Unauthorized("no Basic credentials".into()))?;
    let expected = format!("{user}:{pass}");
    if !ct_eq(&given, expected.as_bytes()) {
        return Err(WebhookError::Unauthorized("wrong credentials".into()));
    }
    Ok(())
}

/// Authenticates and parses one webhook.
pub(crate) fn handle(
    config: &PostmarkConfig,
    req: &WebhookRequest,
    _now: Timestamp,
) -> Result<WebhookOutcome, WebhookError> {
    authenticate(config, req)?;
    Ok(WebhookOutcome::Events(parse_body(req.body(), NO_TIME)?))
}

/// Parses an authenticated body (one record); `fallback` is its time if it names none.
pub(crate) fn parse_body(
    body: &[u8],
    fallback: Timestamp,
) -> Result<Vec<ProviderEvent>, WebhookError> {
    let body: Value = serde_json::from_slice(body).map_err(invalid)?;
    Ok(parse(&body, fallback)?.into_iter().collect())
}

/// Normalizes one record; `None` for records mailgate does not track.
pub(crate) fn parse(r: &Value, fallback: Timestamp) -> Result<Option<ProviderEvent>, WebhookError> {
    let kind = r["RecordType"]
        .as_str()
        .ok_or_else(|| invalid("RecordType missing"))?;
    let message = r["MessageID"].as_str().unwrap_or_default();
    let code = r["TypeCode"].as_i64().unwrap_or(0);
    let inactive = r["Inactive"].as_bool().unwrap_or(false);
    let id_or = |fallback: &str| match &r["ID"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => fallback.to_owned(),
    };
    let (event_type, bounce_type, id, at) = match kind {
        "Delivery" => (
            EventType::Delivered,
            None,
            format!("{message}:{}", r["Recipient"].as_str().unwrap_or("")),
            "DeliveredAt",
        ),
        "Bounce" => {
            let hard = code == 1 || inactive;
            let b = if hard {
                BounceType::Hard
            } else {
                BounceType::Soft
            };
            (EventType::Bounced, Some(b), id_or(message), "BouncedAt")
        }
        "SpamComplaint" => (EventType::Complained, None, id_or(message), "BouncedAt"),
        "Open" => (
            EventType::Opened,
            None,
            format!("{message}:{}", r["ReceivedAt"].as_str().unwrap_or("")),
            "ReceivedAt",
        ),
        "Click" => (
            EventType::Clicked,
            None,
            format!(
                "{message}:{}:{}",
                r["ReceivedAt"].as_str().unwrap_or(""),
                r["OriginalLink"].as_str().unwrap_or("")
            ),
            "ReceivedAt",
        ),
        "SubscriptionChange" if r["SuppressSending"].as_bool() == Some(true) => (
            EventType::Unsubscribed,
            None,
            format!("{message}:{}", r["ChangedAt"].as_str().unwrap_or("")),
            "ChangedAt",
        ),
        _ => return Ok(None),
    };
    let detail = json!({
        "record_type": kind,
        "type": r.get("Type"),
        "type_code": r.get("TypeCode"),
        "description": r.get("Description"),
        "mta_response": r.get("Details"),
        "inactive": r.get("Inactive"),
        "message_stream": r.get("MessageStream"),
        "suppression_reason": r.get("SuppressionReason"),
    });
    Ok(Some(ProviderEvent {
        provider: "postmark".into(),
        provider_event_id: format!("{kind}:{id}"),
        provider_message_id: (!message.is_empty()).then(|| message.to_owned()),
        message_id: r["Metadata"]["mailgate_message_id"]
            .as_str()
            .and_then(|s| s.parse().ok()),
        event_type,
        bounce_type,
        recipient: r["Recipient"]
            .as_str()
            .or(r["Email"].as_str())
            .and_then(recipient),
        occurred_at: rfc3339_or(r[at].as_str(), fallback),
        detail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PostmarkConfig {
        let dsn = "postmark+api://token@default?webhook_username=hook&webhook_password=s3cret";
        match crate::ProviderConfig::from_dsn(dsn).unwrap() {
            crate::ProviderConfig::Postmark(c) => c,
            _ => unreachable!(),
        }
    }

    fn req(auth: Option<&str>) -> WebhookRequest {
        let headers = auth.map(|a| ("Authorization".to_owned(), a.to_owned()));
        WebhookRequest::new(
            headers,
            br#"{"RecordType":"Delivery","MessageID":"m"}"#.to_vec(),
        )
    }

    #[test]
    fn basic_credentials_are_required() {
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("hook:s3cret")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("hook:wrong")
        );
        assert!(authenticate(&config(), &req(Some(&good))).is_ok());
        assert!(matches!(
            authenticate(&config(), &req(Some(&bad))),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(matches!(
            authenticate(&config(), &req(None)),
            Err(WebhookError::Unauthorized(_))
        ));
    }

    /// An event's time is part of its deduplication key: a record that names none gets the
    /// epoch, the same in every retry, never the time it arrived.
    #[test]
    fn a_record_without_a_time_gets_the_same_time_in_every_retry() {
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("hook:s3cret")
        );
        let times: Vec<Timestamp> = [Timestamp(1_000), Timestamp(9_000_000)]
            .into_iter()
            .map(
                |now| match handle(&config(), &req(Some(&good)), now).unwrap() {
                    WebhookOutcome::Events(events) => events[0].occurred_at,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(times, [NO_TIME, NO_TIME]);
    }

    #[test]
    fn bounces_are_hard_by_type_code_or_inactive() {
        let hard = json!({"RecordType": "Bounce", "ID": 4323372036854775807_i64, "TypeCode": 1,
            "MessageID": "883953f4", "Email": "john@example.com", "BouncedAt": "2019-11-05T16:33:54.907Z"});
        let e = parse(&hard, Timestamp(0)).unwrap().unwrap();
        assert_eq!(e.bounce_type, Some(BounceType::Hard));
        assert_eq!(e.provider_event_id, "Bounce:4323372036854775807");
        let soft = json!({"RecordType": "Bounce", "ID": 5, "TypeCode": 4096, "MessageID": "m"});
        assert_eq!(
            parse(&soft, Timestamp(0)).unwrap().unwrap().bounce_type,
            Some(BounceType::Soft)
        );
    }
}

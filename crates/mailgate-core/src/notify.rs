//! Failure notifications: an environment's targets, what triggers a notification, and the
//! payloads sent. Payloads carry ids, counts and reasons — never addresses, template data or
//! bodies.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::event::{Event, EventType};
use crate::ids::EnvironmentId;
use crate::reputation::Report;
use crate::time::Timestamp;

/// A URL with its signing secret, as stored (the secret sealed by the composition root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTarget {
    /// Where to POST.
    pub url: String,
    /// The sealed `whsec_…` secret.
    pub sealed_secret: String,
}

/// An environment's notification targets and event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationSettings {
    /// The environment.
    pub environment_id: EnvironmentId,
    /// A URL that receives failure notifications, signed with Standard Webhooks.
    pub webhook: Option<SignedTarget>,
    /// A Slack incoming-webhook URL, sealed (it is a credential).
    pub sealed_slack_url: Option<String>,
    /// A URL that receives every event, signed with Standard Webhooks.
    pub stream: Option<SignedTarget>,
    /// An address that receives failure notifications by email.
    pub email: Option<EmailTarget>,
    /// When the settings last changed.
    pub updated_at: Timestamp,
}

impl NotificationSettings {
    /// Whether any failure-notification target is set.
    pub fn has_targets(&self) -> bool {
        self.webhook.is_some() || self.sealed_slack_url.is_some() || self.email.is_some()
    }
}

/// The tag on notification emails: their own failures never trigger further notifications.
pub const NOTIFICATION_TAG: &str = "mailgate-notification";

/// Failure notifications by email, sent through the environment's own pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailTarget {
    /// The recipient (checked when set).
    pub to: String,
    /// The sender; the environment's default sender when `None`.
    pub from: Option<String>,
}

/// Provider error codes that mean the provider refused mailgate's credentials.
const AUTH_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "InvalidClientTokenId",
    "MissingAuthenticationTokenException",
    "ExpiredToken",
    "AccessDenied",
    "smtp_535",
    "smtp_530",
    "unauthorized",
    "forbidden",
    "http_401",
    "http_403",
    "missing_api_key",
    "invalid_api_key",
    "restricted_api_key",
    "postmark_10",
];

/// Whether a provider failure code is an authentication failure (bad, expired or unauthorized
/// credentials).
pub fn is_auth_failure(code: &str) -> bool {
    AUTH_CODES.iter().any(|c| {
        code == *c || (code.starts_with(c) && !code[c.len()..].starts_with(char::is_alphanumeric))
    }) || code.starts_with("AccessDenied")
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Messages failed permanently.
    MessageFailed,
    /// The provider refused the credentials.
    ProviderAuthFailed,
    /// The reputation level changed.
    ReputationChanged,
}

/// One notification, ready to send to every target.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Unique id (`webhook-id` of the delivery; lets receivers deduplicate).
    pub id: String,
    /// What it is about.
    pub kind: NotificationKind,
    /// The JSON payload.
    pub payload: Value,
    /// One line for humans (Slack).
    pub text: String,
}

/// Replaces anything that looks like an email address in `s`, so that provider messages quoted
/// in a reason cannot leak recipients.
pub fn scrub(s: &str) -> String {
    s.split(' ')
        .map(|w| if w.contains('@') { "[address]" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

const MAX_IDS: usize = 20;

/// The notifications a batch of events triggers: one per kind, naming up to 20 messages.
pub fn from_events(env_name: &str, env: &EnvironmentId, events: &[Event]) -> Vec<Notification> {
    let mut out = Vec::new();
    for kind in [
        NotificationKind::ProviderAuthFailed,
        NotificationKind::MessageFailed,
    ] {
        let hits: Vec<&Event> = events
            .iter()
            .filter(|e| e.event_type == EventType::Failed)
            .filter(|e| {
                let code = e.data.get("code").and_then(Value::as_str).unwrap_or("");
                is_auth_failure(code) == (kind == NotificationKind::ProviderAuthFailed)
            })
            .collect();
        let Some(first) = hits.first() else { continue };
        let items: Vec<Value> = hits
            .iter()
            .take(MAX_IDS)
            .map(|e| {
                json!({
                    "event_id": e.id.to_string(),
                    "message_id": e.message_id.map(|m| m.to_string()),
                    "provider": e.data.get("provider"),
                    "code": e.data.get("code"),
                    "reason": e.data.get("reason").and_then(Value::as_str).map(scrub),
                    "created_at": e.created_at.to_rfc3339(),
                })
            })
            .collect();
        let text = match kind {
            NotificationKind::ProviderAuthFailed => format!(
                "mailgate [{env_name}]: the provider refused its credentials ({} message(s) failed); check the provider configuration",
                hits.len()
            ),
            _ => format!(
                "mailgate [{env_name}]: {} message(s) failed permanently, e.g. {}",
                hits.len(),
                first.message_id.map(|m| m.to_string()).unwrap_or_default()
            ),
        };
        out.push(Notification {
            id: format!("ntf_{}_{}", first.id, kind_name(kind)),
            kind,
            payload: json!({
                "type": kind_name(kind),
                "environment": env_name,
                "environment_id": env.to_string(),
                "count": hits.len(),
                "failures": items,
            }),
            text,
        });
    }
    out
}

/// The notification of a reputation level change (`crossing` distinguishes repeated crossings).
pub fn reputation_changed(
    env_name: &str,
    env: &EnvironmentId,
    from: crate::reputation::Level,
    report: &Report,
    now: Timestamp,
) -> Notification {
    let providers: Vec<Value> = report
        .providers
        .iter()
        .map(|(name, r)| json!({"provider": name, "level": r.level, "bounce_rate": r.bounce_rate, "complaint_rate": r.complaint_rate, "sent": r.sent}))
        .collect();
    Notification {
        id: format!("ntf_{env}_reputation_{}", now.millis()),
        kind: NotificationKind::ReputationChanged,
        payload: json!({
            "type": kind_name(NotificationKind::ReputationChanged),
            "environment": env_name,
            "environment_id": env.to_string(),
            "from": from,
            "level": report.level,
            "paused": report.paused,
            "bounce_rate": report.overall.bounce_rate,
            "complaint_rate": report.overall.complaint_rate,
            "sent": report.overall.sent,
            "providers": providers,
        }),
        text: format!(
            "mailgate [{env_name}]: reputation {} → {} (bounces {:.2}%, complaints {:.3}% of {} sends){}",
            from.as_str(),
            report.level.as_str(),
            report.overall.bounce_rate * 100.0,
            report.overall.complaint_rate * 100.0,
            report.overall.sent,
            if report.paused { "; sending is paused" } else { "" }
        ),
    }
}

impl NotificationKind {
    /// The stable name (`message.failed`, …), as in payloads.
    pub fn as_str(self) -> &'static str {
        kind_name(self)
    }
}

fn kind_name(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::MessageFailed => "message.failed",
        NotificationKind::ProviderAuthFailed => "provider.auth_failed",
        NotificationKind::ReputationChanged => "reputation.changed",
    }
}

/// The event-stream representation of an event.
pub fn event_payload(event: &Event) -> Value {
    json!({
        "id": event.id.to_string(),
        "type": event.event_type,
        "message_id": event.message_id.map(|m| m.to_string()),
        "created_at": event.created_at.to_rfc3339(),
        "data": event.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_credential_failures() {
        for code in [
            "UnrecognizedClientException",
            "smtp_535",
            "http_401",
            "unauthorized",
            "AccessDeniedException",
            "postmark_10",
        ] {
            assert!(is_auth_failure(code), "{code}");
        }
        for code in [
            "MessageRejected",
            "smtp_550",
            "http_422",
            "postmark_100",
            "timeout",
        ] {
            assert!(!is_auth_failure(code), "{code}");
        }
    }

    #[test]
    fn scrubs_addresses() {
        assert_eq!(
            scrub("550 <bob@example.com> unknown"),
            "550 [address] unknown"
        );
    }
}

//! Inbound event webhooks: the request as the server received it, the common checks, and the
//! dispatch to each provider's module, which authenticates the request before parsing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailgate_core::address::EmailAddress;
use mailgate_core::inbound::ProviderEvent;
use mailgate_core::{Clock, Timestamp};
use subtle::ConstantTimeEq;

use crate::config::ProviderConfig;
use crate::ses::webhook::SnsCertificates;

/// How far a signed timestamp may be from now (Mailgun, Resend, SendGrid), in seconds.
pub const TOLERANCE_SECONDS: i64 = 300;

/// A webhook request: header names in lower case, the exact body bytes.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl WebhookRequest {
    /// A request from its headers (any case) and its raw body.
    pub fn new(headers: impl IntoIterator<Item = (String, String)>, body: Vec<u8>) -> Self {
        Self {
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body,
        }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// What an authenticated webhook carried.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookOutcome {
    /// Events to record (a batch fans out into several).
    Events(Vec<ProviderEvent>),
    /// An SNS subscription was confirmed.
    SubscriptionConfirmed,
    /// Authenticated, but nothing to record (e.g. an unsubscribe confirmation).
    Ignored,
}

/// Why a webhook was refused. Messages never contain secrets or addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Authentication failed (missing, forged or stale signature, wrong credentials).
    #[error("webhook authentication failed: {0}")]
    Unauthorized(String),
    /// The environment's provider has no webhook credentials, or is another provider.
    #[error("webhooks are not configured: {0}")]
    NotConfigured(String),
    /// Authenticated, but the payload could not be understood.
    #[error("invalid webhook payload: {0}")]
    Invalid(String),
    /// A peer the check depends on (the SNS certificate host) could not be reached.
    #[error("webhook check could not complete: {0}")]
    Unavailable(String),
}

impl WebhookError {
    /// A stable snake_case code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "webhook_unauthorized",
            Self::NotConfigured(_) => "webhook_not_configured",
            Self::Invalid(_) => "invalid_webhook",
            Self::Unavailable(_) => "webhook_peer_unavailable",
        }
    }
}

/// Authenticates and parses provider webhooks; holds what must outlive one request (SNS
/// certificates, recently seen Mailgun tokens).
pub struct WebhookVerifier {
    clock: Arc<dyn Clock>,
    pub(crate) sns: SnsCertificates,
    tokens: Mutex<HashMap<String, i64>>,
}

impl WebhookVerifier {
    /// A verifier using `clock` for timestamp checks.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            sns: SnsCertificates::default(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates `req` against the environment's provider configuration (which must be of
    /// the provider named in the URL), then parses it into normalized events.
    pub async fn handle(
        &self,
        provider: &str,
        config: &ProviderConfig,
        req: &WebhookRequest,
    ) -> Result<WebhookOutcome, WebhookError> {
        if config.type_name() != provider {
            return Err(WebhookError::NotConfigured(format!(
                "this environment delivers through '{}', not '{provider}'",
                config.type_name()
            )));
        }
        let now = self.clock.now();
        match config {
            ProviderConfig::Ses(c) => crate::ses::webhook::handle(self, c, req, now).await,
            ProviderConfig::Mailgun(c) => {
                let (events, token) = crate::mailgun::webhook::handle(c, req, now)?;
                self.remember_token(&token, now)?;
                Ok(WebhookOutcome::Events(events))
            }
            ProviderConfig::Postmark(c) => crate::postmark::webhook::handle(c, req, now),
            ProviderConfig::Resend(c) => crate::resend::webhook::handle(c, req, now),
            ProviderConfig::Sendgrid(c) => crate::sendgrid::webhook::handle(c, req, now),
            _ => Err(WebhookError::NotConfigured(format!(
                "'{provider}' sends no event webhooks"
            ))),
        }
    }

    /// Refuses a Mailgun token seen within the tolerance window (a replay). Tokens are kept per
    /// process; across processes, event-id deduplication makes a replay change nothing.
    fn remember_token(&self, token: &str, now: Timestamp) -> Result<(), WebhookError> {
        let mut seen = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let horizon = now.0 - 2 * TOLERANCE_SECONDS * 1000;
        seen.retain(|_, at| *at > horizon);
        if seen.insert(token.to_owned(), now.0).is_some() {
            return Err(WebhookError::Unauthorized("token already used".into()));
        }
        Ok(())
    }
}

/// Compares two byte strings in constant time (for equal lengths).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Refuses a signed timestamp (Unix seconds) further than the tolerance from `now`.
pub(crate) fn check_fresh(seconds: &str, now: Timestamp) -> Result<(), WebhookError> {
    let ts: i64 = seconds
        .trim()
        .parse()
        .map_err(|_| WebhookError::Unauthorized("timestamp is not a number".into()))?;
    // `abs_diff`: a timestamp near i64::MIN must not overflow (a panic with overflow checks, and
    // without them a wrapped difference of i64::MIN whose `abs()` stays negative, i.e. "fresh").
    if (now.0 / 1000).abs_diff(ts) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(WebhookError::Unauthorized(
            "timestamp outside the 5-minute tolerance".into(),
        ));
    }
    Ok(())
}

/// Parses a recipient as providers give it (`ann@example.com` or `Ann <ann@example.com>`).
pub(crate) fn recipient(s: &str) -> Option<EmailAddress> {
    let s = s.trim();
    let inner = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    EmailAddress::parse(inner.trim()).ok()
}

/// An instant from RFC 3339 text, falling back to `fallback`.
pub(crate) fn rfc3339_or(s: Option<&str>, fallback: Timestamp) -> Timestamp {
    s.and_then(Timestamp::parse).unwrap_or(fallback)
}

/// The time of an event whose payload names none: the epoch. An event's time is part of its
/// deduplication key (the store orders provider events by it), so it must be the same in every
/// retry of the event — never the time it arrived.
pub(crate) const NO_TIME: Timestamp = Timestamp(0);

/// An instant from (fractional) Unix seconds.
pub(crate) fn from_seconds(s: f64) -> Timestamp {
    Timestamp((s * 1000.0) as i64)
}

/// An invalid-payload error from a JSON error.
pub(crate) fn invalid(e: impl std::fmt::Display) -> WebhookError {
    WebhookError::Invalid(e.to_string())
}

impl WebhookVerifier {
    /// Caches the SNS signing certificate at `url` (PEM) as if it had been fetched, so that
    /// [`WebhookVerifier::handle`] checks SNS signatures without a network (fuzzing, tests).
    #[doc(hidden)]
    pub fn preload_sns_certificate(&self, url: &str, pem: &[u8]) -> Result<(), WebhookError> {
        self.sns.preload(url, pem)
    }
}

/// Entry points into the part of each provider's webhook handling that runs after
/// authentication: a body (as the provider sends it) into normalized events. The same functions
/// [`WebhookVerifier::handle`] calls once a request is authenticated; public for the fuzz targets
/// (`fuzz/`) only.
#[doc(hidden)]
pub mod parse_authenticated {
    use mailgate_core::inbound::ProviderEvent;
    use mailgate_core::Timestamp;
    use serde_json::Value;

    use super::{invalid, WebhookError};

    /// SES through SNS: the SNS `Notification` envelope (JSON) whose `Message` is the SES event.
    pub fn ses(body: &[u8], now: Timestamp) -> Result<Vec<ProviderEvent>, WebhookError> {
        let m: Value = serde_json::from_slice(body).map_err(invalid)?;
        crate::ses::webhook::parse_notification(&m, now)
    }

    /// Mailgun: the JSON body (`signature` and `event-data`).
    pub fn mailgun(body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        let body: Value = serde_json::from_slice(body).map_err(invalid)?;
        crate::mailgun::webhook::parse_payload(&body)
    }

    /// Postmark: one JSON record.
    pub fn postmark(body: &[u8], now: Timestamp) -> Result<Vec<ProviderEvent>, WebhookError> {
        crate::postmark::webhook::parse_body(body, now)
    }

    /// Resend: one JSON event; `id` is the `svix-id` header.
    pub fn resend(
        id: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Vec<ProviderEvent>, WebhookError> {
        crate::resend::webhook::parse_body(id, body, now)
    }

    /// SendGrid: a JSON array of events.
    pub fn sendgrid(body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        crate::sendgrid::webhook::parse_body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_is_checked_without_overflow() {
        let now = Timestamp(1_700_000_000_000);
        assert!(check_fresh("1700000000", now).is_ok());
        assert!(check_fresh("1700000300", now).is_ok());
        assert!(check_fresh("1699999700", now).is_ok());
        assert!(check_fresh("1700000301", now).is_err());
        assert!(check_fresh("1699999699", now).is_err());
        // Extreme timestamps used to overflow `now - ts`; the one at i64::MIN + now passed as fresh
        // when overflow wrapped.
        for ts in [i64::MIN, i64::MIN + 1_700_000_000, i64::MAX, -1_700_000_000] {
            assert!(
                matches!(
                    check_fresh(&ts.to_string(), now),
                    Err(WebhookError::Unauthorized(_))
                ),
                "{ts}"
            );
        }
    }
}

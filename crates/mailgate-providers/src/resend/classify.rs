//! Classifies Resend's error responses (`{"statusCode", "name", "message"}`) into retryable,
//! unusable and permanent `SendError`s whose code is Resend's `name`. The three kinds of 429 are
//! told apart: the rate limit is retried when the headers say, the daily quota after a day (or
//! the `retry-after` header), the monthly quota makes the account unusable. What stops every
//! send until the account's operator acts is unusable: a missing, invalid, restricted or
//! suspended key, a missing permission, an unverified From domain, a test-only account, a
//! wrong endpoint. A refused message is permanent. Addresses Resend quotes back are scrubbed.

use std::time::Duration;

use mailgate_core::provider::SendError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::http::{classify_status, retry_after};

/// How long to wait after `daily_quota_exceeded` when no `retry-after` header says otherwise.
pub(crate) const DAILY_QUOTA_WAIT: Duration = Duration::from_secs(24 * 60 * 60);
/// How long to wait after a 409 that asks for a short delay, unless a header says otherwise.
pub(crate) const CONFLICT_WAIT: Duration = Duration::from_secs(2);
/// Resend's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

pub(crate) use crate::reply_text::safe as scrub;

/// Classifies a non-2xx answer to any Resend request.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let name = parsed
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let said = parsed
        .message
        .map(|m| scrub(&m))
        .unwrap_or_else(|| "no details given".into());
    let retryable = |message: String, wait: Option<Duration>| SendError::Retryable {
        code: name.clone(),
        message,
        retry_after: wait,
    };
    let permanent = |message: String| SendError::Permanent {
        code: name.clone(),
        message,
    };
    let unusable = |message: String| SendError::Unusable {
        code: name.clone(),
        message,
    };
    let lower = said.to_ascii_lowercase();
    match (status.as_u16(), name.as_str()) {
        (429, "rate_limit_exceeded") => retryable(
            format!("Resend's request rate limit was reached: {said}"),
            retry_after(headers),
        ),
        (429, "daily_quota_exceeded") => retryable(
            format!("the Resend account's daily sending quota is used up; retrying when it resets: {said}"),
            // `ratelimit-reset` describes the per-second window, not the quota: only an
            // explicit `retry-after` shortens the day.
            if headers.contains_key("retry-after") {
                retry_after(headers).or(Some(DAILY_QUOTA_WAIT))
            } else {
                Some(DAILY_QUOTA_WAIT)
            },
        ),
        (429, "monthly_quota_exceeded") => unusable(format!(
            "the Resend account's monthly sending quota is used up; upgrade the plan or wait for the next month: {said}"
        )),
        (409, "concurrent_idempotent_requests") => retryable(
            "Resend is still processing an earlier attempt of this message (same Idempotency-Key)"
                .into(),
            retry_after(headers).or(Some(CONFLICT_WAIT)),
        ),
        (409, "resource_locked") => retryable(
            format!("Resend reported a locked resource: {said}"),
            retry_after(headers).or(Some(CONFLICT_WAIT)),
        ),
        (409, "invalid_idempotent_request") => permanent(
            "Resend already took this message's Idempotency-Key with a different request body in the last 24 hours"
                .into(),
        ),
        (401, "restricted_api_key") => unusable(
            "the Resend API key is restricted (sending access only) and cannot call this endpoint".into(),
        ),
        (401, _) => unusable(format!(
            "Resend did not accept the request's credentials: check the API key in the provider configuration ({said})"
        )),
        (403, "invalid_api_key") => unusable(
            "Resend rejected the API key: it is invalid or was deleted; configure a current key".into(),
        ),
        (403, "suspended_api_key") => unusable(
            "the Resend API key (or its account) is suspended".into(),
        ),
        (403, "invalid_permission") => unusable(format!(
            "the Resend API key lacks the permission this request needs: {said}"
        )),
        (403, "email_above_quota") => unusable(format!(
            "the message exceeds the Resend account's quota: {said}"
        )),
        (403, _) if lower.contains("domain") && lower.contains("not verified") => unusable(format!(
            "the From domain is not verified in Resend: add and verify it at resend.com/domains ({said})"
        )),
        (403, _) if lower.contains("testing emails") => unusable(format!(
            "Resend only sends test emails to the account's own address until a domain is verified ({said})"
        )),
        (404, _) => unusable(format!(
            "Resend answered 404: check the endpoint option ({said})"
        )),
        (405, _) => unusable(format!(
            "Resend answered 405 (method not allowed): check the endpoint option ({said})"
        )),
        (400 | 403 | 422, _) => permanent(format!("Resend refused the message: {said}")),
        (s, _) if (500..600).contains(&s) => retryable(
            format!("Resend had a server error ({s}): {said}"),
            retry_after(headers),
        ),
        _ => classify_status(
            status,
            headers,
            name.clone(),
            format!("Resend answered {}: {said}", status.as_u16()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_addresses_and_shortens() {
        assert_eq!(
            scrub("only to your own email address (ann@example.com)."),
            "only to your own email address <address>"
        );
        let long = "x".repeat(400);
        assert_eq!(
            scrub(&long).chars().count(),
            crate::reply_text::MAX_CHARS + 1
        );
    }

    #[test]
    fn non_json_bodies_get_a_status_code() {
        let e = classify(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
        );
        assert!(e.is_retryable());
        assert_eq!(e.code(), "http_502");
    }

    fn error(status: u16, name: &str, message: &str) -> SendError {
        let body = serde_json::json!({"statusCode": status, "name": name, "message": message});
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn the_key_the_domain_and_the_plan_make_the_provider_unusable() {
        for (status, name, message) in [
            (401, "missing_api_key", "Missing API key in the authorization header"),
            (401, "restricted_api_key", "This API key is restricted to only send emails"),
            (403, "invalid_api_key", "API key is invalid"),
            (403, "suspended_api_key", "This API key is suspended"),
            (403, "invalid_permission", "No permission"),
            (
                403,
                "validation_error",
                "The acme.com domain is not verified. Please, add and verify your domain on https://resend.com/domains",
            ),
            (
                403,
                "validation_error",
                "You can only send testing emails to your own email address (me@acme.com).",
            ),
            (429, "monthly_quota_exceeded", "You have reached your monthly email sending quota."),
            (404, "not_found", "The requested endpoint does not exist."),
        ] {
            let e = error(status, name, message);
            assert!(matches!(e, SendError::Unusable { .. }), "{name}: {e:?}");
            assert_eq!(e.code(), name);
            assert!(!e.to_string().contains("me@acme.com"), "{e}");
        }
    }

    #[test]
    fn a_refused_message_is_permanent() {
        for (status, name) in [
            (422, "invalid_parameter"),
            (422, "missing_required_field"),
            (400, "validation_error"),
            (403, "validation_error"),
            (409, "invalid_idempotent_request"),
        ] {
            let e = error(status, name, "The `to` field is invalid.");
            assert!(matches!(e, SendError::Permanent { .. }), "{name}: {e:?}");
            assert_eq!(e.code(), name);
        }
    }
}

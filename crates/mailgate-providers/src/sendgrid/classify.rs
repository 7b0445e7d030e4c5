//! Classifies SendGrid's error responses (`{"errors": [{"message", "field", "help"}]}`) into
//! retryable and permanent `SendError`s: 429 (until `X-RateLimit-Reset`) and 5xx retry;
//! 400, 401, 403, 404, 405 and 413 are permanent with an actionable message. SendGrid has no
//! error names, so the code is derived from the status (`bad_request`, `unauthorized`,
//! `sender_not_verified`, …). Addresses SendGrid quotes back are scrubbed.

use mailgate_core::provider::SendError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::http::{classify_status, retry_after};

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    field: Option<String>,
}

pub(crate) use crate::reply_text::safe as scrub;

/// SendGrid's errors as one line: `field: message; …` (fields `null` left out).
fn describe(body: &[u8]) -> String {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let parts: Vec<String> = parsed
        .errors
        .iter()
        .filter_map(|e| {
            let message = e.message.as_deref()?;
            Some(match e.field.as_deref() {
                Some(f) if !f.is_empty() && f != "null" => format!("{f}: {message}"),
                _ => message.to_owned(),
            })
        })
        .collect();
    if parts.is_empty() {
        "no details given".into()
    } else {
        scrub(&parts.join("; "))
    }
}

/// Classifies a non-2xx answer to any SendGrid request.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let said = describe(body);
    let lower = said.to_ascii_lowercase();
    let permanent = |code: &str, message: String| SendError::permanent(code, message);
    match status.as_u16() {
        429 => SendError::Retryable {
            code: "rate_limited".into(),
            message: format!("SendGrid's rate limit was reached: {said}"),
            retry_after: retry_after(headers),
        },
        s @ 500..=599 => SendError::Retryable {
            code: format!("http_{s}"),
            message: format!("SendGrid had a server error ({s}): {said}"),
            retry_after: retry_after(headers),
        },
        400 => permanent(
            "bad_request",
            format!("SendGrid rejected the request: {said}"),
        ),
        401 => permanent(
            "unauthorized",
            format!("SendGrid did not accept the API key: check it in the provider configuration ({said})"),
        ),
        403 if lower.contains("sender identity") || lower.contains("not verified") => permanent(
            "sender_not_verified",
            format!("sender identity not verified: the From address is neither a verified Single Sender nor on an authenticated domain in SendGrid ({said})"),
        ),
        403 => permanent(
            "forbidden",
            format!("SendGrid refused the request: the API key may lack the needed permission (mail.send), or the account is restricted ({said})"),
        ),
        404 => permanent(
            "not_found",
            format!("SendGrid answered 404: check the endpoint and region options ({said})"),
        ),
        405 => permanent(
            "method_not_allowed",
            format!("SendGrid answered 405: check the endpoint option ({said})"),
        ),
        413 => permanent(
            "payload_too_large",
            format!("the message is too large for SendGrid (30 MB in all, attachments included): {said}"),
        ),
        s => classify_status(
            status,
            headers,
            format!("http_{s}"),
            format!("SendGrid answered {s}: {said}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_errors_with_their_fields() {
        let body = br#"{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email","help":null},{"message":"bad","field":null}]}"#;
        assert_eq!(
            describe(body),
            "from.email: The from email does not contain a valid address.; bad"
        );
        assert_eq!(describe(b"<html>"), "no details given");
        assert_eq!(
            scrub("Invalid recipient ann@example.com here"),
            "Invalid recipient <address> here"
        );
    }
}

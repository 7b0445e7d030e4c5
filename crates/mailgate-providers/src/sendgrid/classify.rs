//! Classifies SendGrid's error responses (`{"errors": [{"message", "field", "help"}]}`) into
//! `SendError`s with an actionable message: 429 (until `X-RateLimit-Reset`) and 5xx retry; 401
//! (a bad key, or the plan's credits used up), 403 (an unverified sender identity, a key without
//! `mail.send`, a restricted account), 404 and 405 (a wrong endpoint or region) make the provider
//! unusable; 400 and 413 refuse the message for good. SendGrid has no error names, so the code
//! is derived from the status (`bad_request`, `unauthorized`, `sender_not_verified`, …).
//! Addresses SendGrid quotes back are scrubbed.

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
    let unusable = |code: &str, message: String| SendError::unusable(code, message);
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
        401 if lower.contains("credits") => unusable(
            "unauthorized",
            format!("the SendGrid account's email credits are used up — upgrade the plan or wait for the next period ({said})"),
        ),
        401 => unusable(
            "unauthorized",
            format!("SendGrid did not accept the API key: check it in the provider configuration ({said})"),
        ),
        403 if lower.contains("sender identity") || lower.contains("not verified") => unusable(
            "sender_not_verified",
            format!("sender identity not verified: the From address is neither a verified Single Sender nor on an authenticated domain in SendGrid ({said})"),
        ),
        403 => unusable(
            "forbidden",
            format!("SendGrid refused the request: the API key may lack the needed permission (mail.send), or the account is restricted ({said})"),
        ),
        404 => unusable(
            "not_found",
            format!("SendGrid answered 404: check the endpoint and region options ({said})"),
        ),
        405 => unusable(
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

    fn classified(status: u16, body: &str) -> SendError {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn provider_side_refusals_are_unusable() {
        let e = classified(
            403,
            r#"{"errors":[{"message":"The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.","field":"from","help":null}]}"#,
        );
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        assert_eq!(e.code(), "sender_not_verified");
        let e = classified(
            401,
            r#"{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]}"#,
        );
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        assert_eq!(e.code(), "unauthorized");
        let e = classified(
            401,
            r#"{"errors":[{"message":"Maximum credits exceeded","field":null}]}"#,
        );
        assert!(e.to_string().contains("credits are used up"), "{e}");
        let e = classified(
            403,
            r#"{"errors":[{"message":"access forbidden","field":null}]}"#,
        );
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        assert_eq!(e.code(), "forbidden");
        for s in [404, 405] {
            assert!(
                matches!(classified(s, "{}"), SendError::Unusable { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn message_refusals_are_permanent() {
        let e = classified(
            400,
            r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}]}"#,
        );
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert_eq!(e.code(), "bad_request");
        let e = classified(413, "");
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert_eq!(e.code(), "payload_too_large");
    }

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

//! Classifies Postmark's answers into retryable, unusable and permanent `SendError`s. Postmark
//! reports errors as `{"ErrorCode": n, "Message": "…"}` (HTTP 422, or even HTTP 200); the code
//! becomes `postmark_<n>` and known codes get an actionable message. What stops the server from
//! sending anything is unusable: a bad token (HTTP 401, ErrorCode 10), a From address without a
//! confirmed sender signature (400, 401), an account out of credits, pending or barred (405, 412,
//! 413), a blocked or wrong endpoint (HTTP 403, 404). A refused message or recipient (300, 406,
//! 411, …) is permanent. Addresses Postmark quotes back are scrubbed.

use mailgate_core::provider::SendError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// Postmark's error answer, when the body is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// `ErrorCode`.
    pub code: i64,
    /// `Message`, scrubbed and shortened.
    pub message: String,
}

/// Reads `ErrorCode` and `Message` from a body.
pub(crate) fn api_error(body: &[u8]) -> Option<ApiError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let code = value.get("ErrorCode")?.as_i64()?;
    let message = value.get("Message").and_then(Value::as_str).unwrap_or("");
    Some(ApiError {
        code,
        message: crate::reply_text::safe(message),
    })
}

/// Classifies a non-2xx answer, or a 2xx answer whose `ErrorCode` is not 0.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let retry_after = crate::http::retry_after(headers);
    if let Some(error) = api_error(body).filter(|e| e.code != 0) {
        if matches!(status.as_u16(), 429 | 500..=599) {
            return SendError::Retryable {
                code: format!("postmark_{}", error.code),
                message: format!(
                    "Postmark answered HTTP {}: {}",
                    status.as_u16(),
                    error.message
                ),
                retry_after,
            };
        }
        return by_error_code(&error, retry_after);
    }
    let code = format!("http_{}", status.as_u16());
    let detail = crate::reply_text::safe(&String::from_utf8_lossy(body));
    match status.as_u16() {
        401 => SendError::unusable(code, BAD_TOKEN),
        403 => SendError::unusable(
            code,
            "Postmark's network security layer blocked the request (HTTP 403 without an ErrorCode) — check the endpoint and contact Postmark support",
        ),
        404 => SendError::unusable(
            code,
            "Postmark answered 404 — check the endpoint override, or the template id or alias",
        ),
        413 => SendError::permanent(
            code,
            "the message is too large for Postmark (10 MB at most, attachments included after base64)",
        ),
        429 | 500..=599 => SendError::Retryable {
            code,
            message: format!("Postmark answered HTTP {}: {detail}", status.as_u16()),
            retry_after,
        },
        other => crate::http::classify_status(
            status,
            headers,
            code,
            format!("Postmark answered HTTP {other}: {detail}"),
        ),
    }
}

const BAD_TOKEN: &str =
    "Postmark rejected the server token (check it: the server's API token sends, the account token cannot)";

/// The meaning of Postmark's documented `ErrorCode`s.
fn by_error_code(error: &ApiError, retry_after: Option<std::time::Duration>) -> SendError {
    let code = format!("postmark_{}", error.code);
    let said = &error.message;
    let permanent = |message: String| SendError::permanent(code.clone(), message);
    let unusable = |message: String| SendError::unusable(code.clone(), message);
    match error.code {
        10 => unusable(BAD_TOKEN.into()),
        100 => SendError::Retryable {
            code: code.clone(),
            message: "Postmark is down for maintenance; retrying later".into(),
            retry_after,
        },
        300 => permanent(format!("Postmark refused the message as invalid: {said}")),
        400 => unusable(
            "the From address has no sender signature in Postmark — add a sender signature or verify its domain".into(),
        ),
        401 => unusable(
            "the From address's sender signature is not confirmed in Postmark — confirm it from the email Postmark sent, or verify the domain".into(),
        ),
        402 | 403 | 409 => permanent(format!(
            "Postmark could not read the request (ErrorCode {}): {said}",
            error.code
        )),
        405 => unusable(
            "Postmark does not allow this account to send (out of credits?) — check the account's billing".into(),
        ),
        406 => permanent(
            "recipient is marked inactive in Postmark (hard bounce or spam complaint) — reactivate it in Postmark's suppressions if it should receive mail".into(),
        ),
        410 => permanent(format!("too many messages in one batch: {said}")),
        411 => permanent(format!("Postmark forbids an attachment's file type: {said}")),
        412 => unusable(
            "the Postmark account is pending approval: until it is approved it can only send to addresses on its own domain".into(),
        ),
        413 => unusable(
            "the Postmark account may not send (suspended?) — contact Postmark support".into(),
        ),
        429 => SendError::Retryable {
            code: code.clone(),
            message: format!("Postmark rate limit reached: {said}"),
            retry_after,
        },
        _ => permanent(format!(
            "Postmark refused the request (ErrorCode {}): {said}",
            error.code
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i64, message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"ErrorCode": code, "Message": message})).unwrap()
    }

    #[test]
    fn error_codes_are_permanent_with_their_meaning() {
        let h = HeaderMap::new();
        let s = StatusCode::UNPROCESSABLE_ENTITY;
        let e = classify(
            s,
            &h,
            &body(406, "Found inactive addresses: ann@example.net."),
        );
        assert_eq!(e.code(), "postmark_406");
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert!(e.to_string().contains("marked inactive"), "{e}");
        assert!(!e.to_string().contains("ann@"), "{e}");
        for code in [300, 402, 403, 406, 409, 410, 411, 1101, 1234] {
            let e = classify(s, &h, &body(code, "x"));
            assert!(matches!(e, SendError::Permanent { .. }), "{code}: {e:?}");
        }
        for code in [10, 400, 401, 405, 412, 413] {
            let e = classify(s, &h, &body(code, "x"));
            assert!(matches!(e, SendError::Unusable { .. }), "{code}: {e:?}");
            assert_eq!(e.code(), format!("postmark_{code}"));
        }
        assert!(classify(s, &h, &body(100, "maintenance")).is_retryable());
        assert!(classify(StatusCode::OK, &h, &body(300, "bad"))
            .to_string()
            .contains("invalid"));
    }

    #[test]
    fn statuses_without_error_codes() {
        let h = HeaderMap::new();
        for s in [429, 500, 503] {
            assert!(classify(StatusCode::from_u16(s).unwrap(), &h, b"").is_retryable());
        }
        for s in [401, 403, 404] {
            let e = classify(StatusCode::from_u16(s).unwrap(), &h, b"<html>");
            assert!(matches!(e, SendError::Unusable { .. }), "{s}: {e:?}");
        }
        let e = classify(StatusCode::PAYLOAD_TOO_LARGE, &h, b"<html>");
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        let e = classify(StatusCode::UNAUTHORIZED, &h, &body(10, "Bad token"));
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        assert!(e.to_string().contains("server token"), "{e}");
    }
}

//! Classifies Mailgun's HTTP answers into retryable and permanent `SendError`s with actionable
//! messages. Codes are `http_<status>` (Mailgun has no error codes of its own); addresses that
//! Mailgun quotes back are scrubbed.

use mailgate_core::provider::SendError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::MailgunRegion;

/// What the failed request was about, for the messages.
pub(crate) struct Context<'a> {
    /// The sending domain.
    pub domain: &'a str,
    /// Its configured region.
    pub region: MailgunRegion,
}

/// Classifies a non-2xx answer to a send or verify request.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    ctx: &Context<'_>,
) -> SendError {
    let code = format!("http_{}", status.as_u16());
    let detail = detail(body);
    let region = ctx.region.as_str();
    match status.as_u16() {
        400 => SendError::permanent(code, format!("Mailgun refused the message: {detail}")),
        401 => SendError::permanent(
            code,
            "Mailgun rejected the API key (check the key and the region: EU domains need region=eu)",
        ),
        402 => SendError::permanent(
            code,
            format!("Mailgun refused the request (payment required): {detail} — check the account's plan and billing"),
        ),
        403 => SendError::permanent(
            code,
            format!("Mailgun denied access: {detail} — the key may lack this permission (sending keys can only send) or the domain {} may be disabled", ctx.domain),
        ),
        404 => SendError::permanent(
            code,
            format!(
                "domain {} not found in region {region} — check the domain and region{}",
                ctx.domain,
                match ctx.region {
                    MailgunRegion::Us => " (EU domains need region=eu)",
                    MailgunRegion::Eu => " (US domains need region=us)",
                }
            ),
        ),
        413 => SendError::permanent(
            code,
            "the message is too large for Mailgun (25 MB at most, attachments included)",
        ),
        429 => SendError::Retryable {
            code,
            message: format!("Mailgun rate limit reached: {detail}"),
            retry_after: crate::http::retry_after(headers),
        },
        500..=599 => SendError::Retryable {
            code,
            message: format!("Mailgun answered HTTP {}: {detail}", status.as_u16()),
            retry_after: crate::http::retry_after(headers),
        },
        other => crate::http::classify_status(
            status,
            headers,
            code,
            format!("Mailgun answered HTTP {other}: {detail}"),
        ),
    }
}

/// Mailgun's explanation: the JSON `message`, else the text body, scrubbed and shortened.
pub(crate) fn detail(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| match v {
            serde_json::Value::String(s) => Some(s),
            v => v.get("message").and_then(|m| m.as_str()).map(str::to_owned),
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    crate::reply_text::safe(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            domain: "mg.acme.com",
            region: MailgunRegion::Us,
        }
    }

    #[test]
    fn classifies_every_documented_status() {
        let h = HeaderMap::new();
        for s in [429, 500, 502, 503, 504] {
            let e = classify(StatusCode::from_u16(s).unwrap(), &h, b"{}", &ctx());
            assert!(e.is_retryable(), "{s}");
        }
        for s in [400, 401, 402, 403, 404, 413, 418] {
            let e = classify(StatusCode::from_u16(s).unwrap(), &h, b"{}", &ctx());
            assert!(!e.is_retryable(), "{s}");
            assert_eq!(e.code(), format!("http_{s}"));
        }
    }

    #[test]
    fn details_are_scrubbed_and_short() {
        assert_eq!(
            detail(br#"{"message":"'bob@example.com' parameter is not a valid address"}"#),
            "<address> parameter is not a valid address"
        );
        assert_eq!(detail(b"Forbidden"), "Forbidden");
        assert_eq!(detail(b"\"Forbidden\""), "Forbidden");
        assert_eq!(detail(b""), "no details given");
        assert!(
            detail("x".repeat(1000).as_bytes()).chars().count() <= crate::reply_text::MAX_CHARS + 1
        );
    }
}

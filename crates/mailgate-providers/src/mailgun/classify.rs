//! Classifies Mailgun's HTTP answers into `SendError`s with actionable messages: retryable
//! (429, 5xx), unusable (the key, the account's plan or the domain stops every send: 401, 402,
//! 403, 404, and a 400 saying the domain is not allowed to send) or permanent (the message was
//! refused: other 400s, 413). Codes are `http_<status>` (Mailgun has no error codes of its own);
//! addresses that Mailgun quotes back are scrubbed.

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
        400 if domain_may_not_send(&detail) => SendError::unusable(
            code,
            format!("Mailgun does not let domain {} send: {detail} — verify the domain's DNS records, or add the recipient to a sandbox domain's authorized recipients", ctx.domain),
        ),
        400 => SendError::permanent(code, format!("Mailgun refused the message: {detail}")),
        401 => SendError::unusable(
            code,
            "Mailgun rejected the API key (check the key and the region: EU domains need region=eu)",
        ),
        402 => SendError::unusable(
            code,
            format!("Mailgun refused the request (payment required): {detail} — check the account's plan and billing"),
        ),
        403 => SendError::unusable(
            code,
            format!("Mailgun denied access: {detail} — the key may lack this permission (sending keys can only send) or the domain {} may be disabled", ctx.domain),
        ),
        404 => SendError::unusable(
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

/// Whether a 400's explanation says the domain itself may not send (unverified, disabled, a
/// sandbox domain writing to an unauthorized recipient) rather than that the message is invalid.
fn domain_may_not_send(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    lower.contains("not allowed to send")
        || lower.contains("sandbox subdomains are for test purposes")
        || lower.contains("free accounts are for test purposes")
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
        for s in [400, 413, 418] {
            let e = classify(StatusCode::from_u16(s).unwrap(), &h, b"{}", &ctx());
            assert!(matches!(e, SendError::Permanent { .. }), "{s}: {e:?}");
            assert_eq!(e.code(), format!("http_{s}"));
        }
        for s in [401, 402, 403, 404] {
            let e = classify(StatusCode::from_u16(s).unwrap(), &h, b"{}", &ctx());
            assert!(matches!(e, SendError::Unusable { .. }), "{s}: {e:?}");
            assert_eq!(e.code(), format!("http_{s}"));
        }
    }

    #[test]
    fn a_domain_that_may_not_send_is_unusable_and_a_bad_parameter_permanent() {
        let h = HeaderMap::new();
        let s = StatusCode::BAD_REQUEST;
        let e = classify(
            s,
            &h,
            br#"{"message":"Domain mg.acme.com is not allowed to send: The domain is unverified and requires DNS configuration. Log in to your control panel to view required DNS records."}"#,
            &ctx(),
        );
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        assert_eq!(e.code(), "http_400");
        assert!(
            e.to_string()
                .contains("does not let domain mg.acme.com send"),
            "{e}"
        );
        let e = classify(
            s,
            &h,
            br#"{"message":"Sandbox subdomains are for test purposes only. Please add your own domain or add the address to authorized recipients in Account Settings."}"#,
            &ctx(),
        );
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        let e = classify(
            s,
            &h,
            br#"{"message":"to parameter is not a valid address. please check documentation"}"#,
            &ctx(),
        );
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert!(e.to_string().contains("Mailgun refused the message"), "{e}");
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

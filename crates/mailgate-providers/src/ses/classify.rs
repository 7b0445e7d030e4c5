//! Classifies SES and AWS SDK failures into `SendError`s with the SES error code and an
//! actionable message: throttling, 5xx and transport failures are retryable; what stops the
//! account from sending anything until its operator acts is unusable (refused credentials,
//! AccessDenied, sending paused, a suspended account, an unverified sender or MAIL FROM domain,
//! a missing configuration set, an account limit); a refused message is permanent. Messages
//! never carry secrets, and addresses that SES quotes back are scrubbed.

use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_sesv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use mailgate_core::provider::SendError;

/// The raw HTTP response the SDK hands back with an error.
type Raw = aws_sdk_sesv2::config::http::HttpResponse;

/// Error codes that mean the credentials themselves were refused.
const CREDENTIAL_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
];

/// Error codes (of operations without a typed variant for them) that mean the account cannot
/// send until its operator acts.
const UNUSABLE_CODES: &[&str] = &[
    "AccountSendingPausedException",
    "ConfigurationSetSendingPausedException",
    "SendingPausedException",
    "AccountSuspendedException",
    "MailFromDomainNotVerifiedException",
];

/// Error codes that mean "slow down".
const THROTTLE_CODES: &[&str] = &[
    "TooManyRequestsException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "SlowDown",
];

/// What an SES error response said, gathered from the typed error and the raw response.
struct Reply<'a> {
    code: String,
    message: String,
    status: u16,
    retry_after: Option<Duration>,
    region: &'a str,
}

impl<'a> Reply<'a> {
    fn new(code: Option<&str>, message: Option<&str>, raw: &Raw, region: &'a str) -> Self {
        let status = raw.status().as_u16();
        let body = raw
            .body()
            .bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        // Services that answer in XML (or HTML) leave the SDK without a code: read it ourselves.
        let code = code
            .map(str::to_owned)
            .or_else(|| between(&body, "<Code>", "</Code>"));
        let message = message
            .map(str::to_owned)
            .or_else(|| between(&body, "<Message>", "</Message>"))
            .unwrap_or_default();
        let retry_after = raw
            .headers()
            .get("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Self {
            code: code.unwrap_or_else(|| format!("http_{status}")),
            message: crate::reply_text::safe(&message),
            status,
            retry_after,
            region,
        }
    }

    fn permanent(&self, message: String) -> SendError {
        SendError::permanent(self.code.clone(), message)
    }

    fn unusable(&self, message: String) -> SendError {
        SendError::unusable(self.code.clone(), message)
    }

    fn throttled(&self) -> SendError {
        let daily = self.message.to_ascii_lowercase().contains("daily");
        let (message, fallback) = if daily {
            (
                format!(
                    "SES daily sending quota exhausted in region {} — wait for the 24-hour window or request a higher quota",
                    self.region
                ),
                Some(Duration::from_secs(15 * 60)),
            )
        } else {
            (
                format!(
                    "SES throttled the request ({}); slowing down and retrying",
                    self.message.trim_end_matches('.')
                ),
                None,
            )
        };
        SendError::Retryable {
            code: self.code.clone(),
            message,
            retry_after: self.retry_after.or(fallback),
        }
    }

    fn rejected(&self) -> SendError {
        let lower = self.message.to_ascii_lowercase();
        // "Email address is not verified. The following identities failed the check in region
        // …": the sender (or, in the sandbox, a recipient) is not a verified identity — the
        // account's to fix, and another provider may well send the message.
        if lower.contains("not verified") {
            return self.unusable(format!(
                "sender address not verified in SES region {} — verify the domain or leave the SES sandbox (in the sandbox every recipient must be verified too; if the identity is verified in another region, fix the region)",
                self.region
            ));
        }
        self.permanent(format!("SES rejected the message: {}", self.message))
    }

    fn paused(&self) -> SendError {
        self.unusable(format!(
            "sending is paused for this SES account or its configuration set in region {} — resume sending in the SES console",
            self.region
        ))
    }

    fn suspended(&self) -> SendError {
        self.unusable(format!(
            "the SES account is suspended in region {} — contact AWS support; nothing will send until it is reinstated",
            self.region
        ))
    }

    fn mail_from_unverified(&self) -> SendError {
        self.unusable(format!(
            "the custom MAIL FROM domain is not verified in SES region {} — publish its MX and SPF records, or turn the custom MAIL FROM off",
            self.region
        ))
    }

    fn credentials(&self) -> SendError {
        self.unusable(format!(
            "SES rejected the credentials (check the access key and secret, and the region {})",
            self.region
        ))
    }

    /// Classification by code and status, for errors without a typed variant.
    fn by_code(&self) -> SendError {
        let code = self.code.as_str();
        if THROTTLE_CODES.contains(&code) || self.status == 429 {
            return self.throttled();
        }
        if CREDENTIAL_CODES.contains(&code) {
            return self.credentials();
        }
        if UNUSABLE_CODES.contains(&code) {
            return match code {
                "AccountSuspendedException" => self.suspended(),
                "MailFromDomainNotVerifiedException" => self.mail_from_unverified(),
                _ => self.paused(),
            };
        }
        if code == "MessageRejected" {
            return self.rejected();
        }
        if code.starts_with("AccessDenied") || self.status == 403 {
            return self.unusable(format!(
                "the credentials are not allowed to do this in SES region {} (AccessDenied) — grant ses:SendEmail on the identity (and check the assumed role's policy)",
                self.region
            ));
        }
        if code == "RequestExpired" || code == "RequestTimeTooSkewed" {
            return SendError::retryable(
                self.code.clone(),
                "SES refused the request's timestamp — check this host's clock",
            );
        }
        if self.status >= 500 || code == "InternalFailure" || code == "ServiceUnavailable" {
            return SendError::Retryable {
                code: self.code.clone(),
                message: format!("SES answered HTTP {}: {}", self.status, self.message),
                retry_after: self.retry_after,
            };
        }
        self.permanent(format!(
            "SES refused the request (HTTP {}): {}",
            self.status, self.message
        ))
    }
}

fn between(s: &str, open: &str, close: &str) -> Option<String> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(s[start..end].to_owned())
}

/// Classifies a failed `SendEmail`.
pub(crate) fn classify_send(err: SdkError<SendEmailError>, region: &str) -> SendError {
    let ctx = match err {
        SdkError::ServiceError(ctx) => ctx,
        other => return transport(other, region),
    };
    let raw = ctx.raw();
    let e = ctx.err();
    let reply = Reply::new(e.code(), e.message(), raw, region);
    match e {
        SendEmailError::TooManyRequestsException(_) => reply.throttled(),
        SendEmailError::MessageRejected(_) => reply.rejected(),
        SendEmailError::MailFromDomainNotVerifiedException(_) => reply.mail_from_unverified(),
        SendEmailError::AccountSuspendedException(_) => reply.suspended(),
        SendEmailError::SendingPausedException(_) => reply.paused(),
        SendEmailError::BadRequestException(_) => reply.permanent(format!(
            "SES refused the request as invalid: {}",
            reply.message
        )),
        // A missing template is this message's (its provider_options name it); a missing
        // configuration set or identity is the account's configuration.
        SendEmailError::NotFoundException(_) => {
            let message = format!(
                "SES could not find a resource the request names (configuration set or template?) in region {region}: {}",
                reply.message
            );
            if reply.message.to_ascii_lowercase().contains("template") {
                reply.permanent(message)
            } else {
                reply.unusable(message)
            }
        }
        SendEmailError::LimitExceededException(_) => reply.unusable(format!(
            "an SES limit was exceeded in region {region}: {} — request a quota increase",
            reply.message
        )),
        // `Unhandled` and variants added by newer SDKs: decided by code and HTTP status.
        _ => reply.by_code(),
    }
}

/// Classifies a failed call of any other SES operation (`GetAccount`, identities).
pub(crate) fn classify_other<E>(err: SdkError<E>, region: &str) -> SendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            Reply::new(ctx.err().code(), ctx.err().message(), ctx.raw(), region).by_code()
        }
        other => transport(other, region),
    }
}

/// Failures before or around the HTTP exchange: timeouts, connections, credentials.
fn transport<E>(err: SdkError<E>, region: &str) -> SendError
where
    E: StdError + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    if detail.to_ascii_lowercase().contains("credential") {
        return SendError::retryable(
            "credentials_unavailable",
            format!(
                "could not obtain AWS credentials for SES region {region} — configure static keys, or make the default credential chain (environment, profile, instance or task role) or role_arn work: {detail}"
            ),
        );
    }
    match err {
        SdkError::TimeoutError(_) => SendError::retryable(
            "timeout",
            format!("SES did not answer in time (region {region})"),
        ),
        SdkError::DispatchFailure(f) if f.is_timeout() => SendError::retryable(
            "timeout",
            format!("SES did not answer in time (region {region})"),
        ),
        SdkError::DispatchFailure(f) if f.is_user() => SendError::permanent(
            "request_invalid",
            format!("the SES request could not be sent: {detail}"),
        ),
        SdkError::DispatchFailure(_) => SendError::retryable(
            "connection",
            format!("could not reach SES in region {region}: {detail}"),
        ),
        SdkError::ResponseError(_) => SendError::retryable(
            "invalid_response",
            format!("SES sent a response that could not be read: {detail}"),
        ),
        SdkError::ConstructionFailure(_) => SendError::permanent(
            "request_invalid",
            format!("the SES request could not be built: {detail}"),
        ),
        // `ServiceError` is handled by the callers; newer SDK variants are treated as transient.
        _ => SendError::retryable("sdk_error", detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_addresses_and_reads_xml_codes() {
        assert_eq!(
            crate::reply_text::safe("Email address is not verified: bob@example.com, x"),
            "Email address is not verified: <address> x"
        );
        assert_eq!(
            between(
                "<Error><Code>SignatureDoesNotMatch</Code></Error>",
                "<Code>",
                "</Code>"
            )
            .as_deref(),
            Some("SignatureDoesNotMatch")
        );
    }

    fn reply(code: &str, status: u16, message: &str) -> SendError {
        Reply {
            code: code.into(),
            message: message.into(),
            status,
            retry_after: None,
            region: "eu-west-1",
        }
        .by_code()
    }

    #[test]
    fn codes_without_a_typed_variant_are_classified_by_name() {
        for (code, status, words) in [
            ("AccountSendingPausedException", 400, "paused"),
            ("ConfigurationSetSendingPausedException", 400, "paused"),
            ("AccountSuspendedException", 400, "suspended"),
            ("MailFromDomainNotVerifiedException", 400, "MAIL FROM"),
            ("InvalidClientTokenId", 403, "rejected the credentials"),
            ("SignatureDoesNotMatch", 403, "rejected the credentials"),
            ("AccessDeniedException", 403, "not allowed"),
            (
                "MessageRejected",
                400,
                "not verified in SES region eu-west-1",
            ),
        ] {
            let e = reply(code, status, "Email address is not verified.");
            assert!(matches!(e, SendError::Unusable { .. }), "{code}: {e:?}");
            assert_eq!(e.code(), code);
            assert!(e.to_string().contains(words), "{code}: {e}");
        }
        let e = reply("MessageRejected", 400, "Illegal header");
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        let e = reply("BadRequestException", 400, "Invalid tag");
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        let e = reply("ThrottlingException", 400, "Rate exceeded");
        assert!(e.is_retryable(), "{e:?}");
        let e = reply("InternalFailure", 500, "");
        assert!(e.is_retryable(), "{e:?}");
    }
}

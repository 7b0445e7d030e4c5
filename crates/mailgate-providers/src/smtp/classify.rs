//! Classifies SMTP failures with the reply code and an actionable message: transport failures
//! and 4xx replies are retryable; 5xx replies that say the server will not take anything from
//! us (a refused greeting or STARTTLS, failed or required authentication — 530, 535 — a refused
//! sender, relaying denied, an unverified sender identity) make the provider unusable; other
//! 5xx replies refuse the message or a recipient for good. Messages never contain the password,
//! and addresses are replaced by "recipient #n".
//!
//! lettre keeps its error kind private, so it is first read into [`Failure`] through lettre's
//! predicates; the classification is then an exhaustive `match` on (step, failure).

use std::time::Duration;

use lettre::transport::smtp::Error as SmtpError;
use mailgate_core::provider::SendError;

/// Where in the SMTP conversation a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// TCP connect, the TLS handshake in implicit mode, the greeting and EHLO.
    Connect,
    /// STARTTLS, its handshake and the second EHLO.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// DATA.
    Data,
    /// The message body and the reply to its end.
    EndOfData,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::Connect => "the connection greeting",
            Step::StartTls => "STARTTLS",
            Step::Auth => "AUTH",
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::EndOfData => "the end of the message",
        }
    }
}

/// What lettre reported, read through its public predicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A negative reply: code and text.
    Reply(u16, String),
    /// The TLS layer (configuration or handshake).
    Tls(String),
    /// An I/O timeout.
    Timeout,
    /// Connecting or the connection itself failed.
    Network(String),
    /// The server's reply could not be parsed.
    Protocol(String),
    /// lettre refused locally (no AUTH mechanism, SMTPUTF8 unsupported, …).
    Client(String),
}

/// Reads a lettre error.
pub(crate) fn failure_of(e: &SmtpError) -> Failure {
    let detail = source_text(e);
    if let Some(code) = e.status() {
        Failure::Reply(u16::from(code), detail)
    } else if e.is_tls() {
        Failure::Tls(detail)
    } else if e.is_timeout() {
        Failure::Timeout
    } else if e.is_client() {
        Failure::Client(detail)
    } else if e.is_response() {
        Failure::Protocol(detail)
    } else if is_tls_io(e) {
        // lettre reports a failed TLS handshake as a connection error wrapping rustls's error.
        Failure::Tls(detail)
    } else {
        // Connection, network I/O and transport-shutdown errors.
        Failure::Network(detail)
    }
}

fn source_text(e: &SmtpError) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}

fn is_tls_io(e: &SmtpError) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) && io.get_ref().is_some();
        }
        source = err.source();
    }
    false
}

/// What the classifier needs to word its messages.
pub(crate) struct Context<'a> {
    /// The server's host.
    pub host: &'a str,
    /// The server's port.
    pub port: u16,
    /// Whether the TLS step is implicit (SMTPS) rather than STARTTLS.
    pub implicit_tls: bool,
    /// The SES region for `ses+smtp`.
    pub ses_region: Option<&'a str>,
    /// The command timeout.
    pub timeout: Duration,
    /// Addresses to hide from server replies, each with what to say instead.
    pub scrub: &'a [(String, String)],
}

impl Context<'_> {
    fn scrub(&self, text: &str) -> String {
        let mut out = text.trim().to_owned();
        for (address, replacement) in self.scrub {
            out = replace_ignore_case(&out, address, replacement);
        }
        out
    }

    /// A step that did not answer in time.
    pub(crate) fn timed_out(&self, step: Step) -> SendError {
        SendError::retryable(
            "smtp_timeout",
            format!(
                "{}:{} did not answer {} within {} s",
                self.host,
                self.port,
                step.describe(),
                self.timeout.as_secs()
            ),
        )
    }

    /// The server does not offer STARTTLS although it is required.
    pub(crate) fn starttls_unavailable(&self) -> SendError {
        SendError::retryable(
            "smtp_starttls_unavailable",
            format!(
                "{}:{} does not offer STARTTLS; refusing to send in plain text \
                 (use smtps:// if it speaks TLS from the start, or disable_starttls=true only for \
                 a trusted relay)",
                self.host, self.port
            ),
        )
    }

    /// Classifies a failure at `step`.
    pub(crate) fn classify(&self, step: Step, failure: Failure) -> SendError {
        let (host, port) = (self.host, self.port);
        match (step, failure) {
            (Step::Auth, Failure::Reply(code, text)) if code >= 500 => {
                let advice = match self.ses_region {
                    Some(region) => format!(
                        "SES SMTP authentication failed — use SMTP credentials derived for region \
                         {region}: the access key id as user and the secret access key in the \
                         ses+smtp:// DSN (mailgate derives the SMTP password)"
                    ),
                    None => "SMTP authentication failed — check the username and password".into(),
                };
                SendError::unusable(
                    format!("smtp_{code}"),
                    format!("{advice} (server said: {code} {})", self.scrub(&text)),
                )
            }
            (Step::Auth, Failure::Client(_)) => SendError::unusable(
                "smtp_auth_unavailable",
                format!(
                    "{host}:{port} offers neither AUTH PLAIN nor AUTH LOGIN{}",
                    if self.implicit_tls {
                        ""
                    } else {
                        " (some servers offer AUTH only after STARTTLS)"
                    }
                ),
            ),
            (Step::MailFrom, Failure::Client(text)) => {
                SendError::permanent("smtp_unsupported", format!("cannot send: {text}"))
            }
            (step, Failure::Reply(code, text)) => {
                let what = match step {
                    Step::MailFrom => "refused the sender",
                    Step::RcptTo => "refused a recipient",
                    Step::Data | Step::EndOfData => "refused the message",
                    Step::Connect => "refused the connection",
                    Step::StartTls => "refused STARTTLS",
                    Step::Auth => "refused AUTH",
                };
                let message = format!("server {what}: {code} {}", self.scrub(&text));
                reply_error(code, message, provider_side(step, code, &text))
            }
            (Step::StartTls | Step::Connect, Failure::Tls(text))
                if step == Step::StartTls || self.implicit_tls =>
            {
                let hint = if text.contains("UnknownIssuer") || text.contains("certificate") {
                    " (trust the server's CA with ca_file=PATH)"
                } else {
                    ""
                };
                SendError::retryable(
                    "smtp_tls",
                    format!("TLS handshake with {host} failed: {text}{hint}"),
                )
            }
            (step, Failure::Tls(text)) => SendError::retryable(
                "smtp_tls",
                format!("TLS error with {host} during {}: {text}", step.describe()),
            ),
            (step, Failure::Timeout) => self.timed_out(step),
            (Step::Connect, Failure::Network(text)) => SendError::retryable(
                "smtp_connect",
                format!("could not connect to {host}:{port}: {text}"),
            ),
            (step, Failure::Network(text)) => SendError::retryable(
                "smtp_connection",
                format!(
                    "connection to {host}:{port} failed during {}: {text}",
                    step.describe()
                ),
            ),
            (step, Failure::Protocol(text)) => SendError::retryable(
                "smtp_protocol",
                format!(
                    "unexpected reply from {host}:{port} to {}: {}",
                    step.describe(),
                    self.scrub(&text)
                ),
            ),
            (step, Failure::Client(text)) => SendError::retryable(
                "smtp_client",
                format!("SMTP client error during {}: {text}", step.describe()),
            ),
        }
    }

    /// Classifies refused recipients (1-based index, code, text): permanent if any refusal is
    /// permanent, and the code is that of the first such refusal.
    pub(crate) fn recipients_refused(
        &self,
        total: usize,
        refused: &[(usize, u16, String)],
    ) -> SendError {
        let first = refused
            .iter()
            .find(|(_, code, _)| *code >= 500)
            .or_else(|| refused.first());
        let code = first.map(|(_, code, _)| *code).unwrap_or(550);
        let provider_side =
            first.is_some_and(|(_, code, text)| provider_side(Step::RcptTo, *code, text));
        let detail: Vec<String> = refused
            .iter()
            .map(|(i, code, text)| {
                format!(
                    "recipient #{i} of {total} refused: {code} {}",
                    self.scrub(text)
                )
            })
            .collect();
        reply_error(code, detail.join("; "), provider_side)
    }
}

/// Whether a 5xx reply at `step` says the server takes nothing from us until its operator (or
/// ours) acts, rather than refusing this message or one of its recipients.
fn provider_side(step: Step, code: u16, text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let relay_denied = [
        "relay access denied",
        "relaying denied",
        "relay not permitted",
    ]
    .iter()
    .any(|w| lower.contains(w));
    match step {
        // The greeting, STARTTLS and AUTH are not about the message at all.
        Step::Connect | Step::StartTls | Step::Auth => true,
        // 530: authentication required; 535: credentials refused.
        _ if matches!(code, 530 | 535) => true,
        // A refused sender (550, 553, 554; not 552 "too large" or a syntax complaint); SES
        // SMTP's "554 Message rejected: Email address is not verified" at the end of DATA.
        Step::MailFrom => matches!(code, 550 | 553 | 554) || relay_denied,
        Step::RcptTo => relay_denied,
        Step::Data | Step::EndOfData => lower.contains("not verified"),
    }
}

fn reply_error(code: u16, message: String, provider_side: bool) -> SendError {
    if (400..500).contains(&code) {
        SendError::retryable(format!("smtp_{code}"), message)
    } else if provider_side {
        SendError::unusable(format!("smtp_{code}"), message)
    } else {
        SendError::permanent(format!("smtp_{code}"), message)
    }
}

fn replace_ignore_case(text: &str, needle: &str, replacement: &str) -> String {
    if needle.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(&needle) {
        out.push_str(&text[last..at]);
        out.push_str(replacement);
        last = at + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(scrub: &[(String, String)]) -> Context<'_> {
        Context {
            host: "mx.example.com",
            port: 587,
            implicit_tls: false,
            ses_region: None,
            timeout: Duration::from_secs(5),
            scrub,
        }
    }

    #[test]
    fn codes_split_into_retryable_and_permanent() {
        let scrub = [("bob@example.org".to_owned(), "recipient #2".to_owned())];
        let c = ctx(&scrub);
        let e = c.classify(Step::MailFrom, Failure::Reply(451, "try later".into()));
        assert!(e.is_retryable());
        assert_eq!(e.code(), "smtp_451");
        let e = c.classify(
            Step::EndOfData,
            Failure::Reply(554, "Message rejected".into()),
        );
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        let e = c.classify(
            Step::EndOfData,
            Failure::Reply(552, "5.3.4 Message size exceeds fixed limit".into()),
        );
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        let e = c.recipients_refused(
            3,
            &[
                (2, 451, "<BOB@example.org> busy".into()),
                (3, 550, "no such user".into()),
            ],
        );
        assert_eq!(e.code(), "smtp_550");
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("recipient #2 of 3 refused: 451 <recipient #2> busy"),
            "{text}"
        );
        assert!(!text.to_lowercase().contains("bob@"), "{text}");
    }

    #[test]
    fn provider_side_refusals_are_unusable() {
        let c = ctx(&[]);
        for (step, code, text) in [
            (Step::Connect, 554, "5.7.1 no SMTP service for you"),
            (Step::StartTls, 554, "5.7.3 TLS not available"),
            (Step::MailFrom, 530, "5.7.0 Authentication required"),
            (Step::MailFrom, 535, "5.7.8 Authentication credentials invalid"),
            (Step::MailFrom, 553, "5.7.1 Sender address rejected: not owned by user"),
            (Step::MailFrom, 550, "5.7.1 Sender address rejected: access denied"),
            (
                Step::EndOfData,
                554,
                "Message rejected: Email address is not verified. The following identities failed the check in region EU-WEST-1: a@b.example",
            ),
        ] {
            let e = c.classify(step, Failure::Reply(code, text.into()));
            assert!(matches!(e, SendError::Unusable { .. }), "{step:?} {code}: {e:?}");
            assert_eq!(e.code(), format!("smtp_{code}"));
        }
        let e = c.recipients_refused(
            2,
            &[
                (
                    1,
                    554,
                    "5.7.1 <ann@example.org>: Relay access denied".into(),
                ),
                (2, 554, "5.7.1 <bo@example.org>: Relay access denied".into()),
            ],
        );
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        // A recipient or message refusal stays the message's.
        let e = c.classify(Step::MailFrom, Failure::Reply(552, "5.3.4 too big".into()));
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        let e = c.classify(
            Step::RcptTo,
            Failure::Reply(550, "5.1.1 no such user".into()),
        );
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    }

    #[test]
    fn auth_failures_make_the_provider_unusable_and_say_what_to_do() {
        let c = ctx(&[]);
        let e = c.classify(
            Step::Auth,
            Failure::Reply(535, "5.7.8 bad credentials".into()),
        );
        assert_eq!(e.code(), "smtp_535");
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        assert!(e.to_string().contains("check the username and password"));
        let e = c.classify(Step::Auth, Failure::Client("no mechanism".into()));
        assert!(matches!(e, SendError::Unusable { .. }), "{e:?}");
        assert_eq!(e.code(), "smtp_auth_unavailable");
        let e = c.classify(Step::Auth, Failure::Reply(454, "4.7.0 try later".into()));
        assert!(e.is_retryable());
        let ses = Context {
            ses_region: Some("eu-west-1"),
            ..ctx(&[])
        };
        let e = ses.classify(
            Step::Auth,
            Failure::Reply(535, "Authentication Credentials Invalid".into()),
        );
        assert!(
            e.to_string().contains("derived for region eu-west-1"),
            "{e}"
        );
    }

    #[test]
    fn transport_failures_are_retryable() {
        let c = ctx(&[]);
        for (step, f) in [
            (Step::Connect, Failure::Network("Connection refused".into())),
            (
                Step::StartTls,
                Failure::Tls("invalid peer certificate: UnknownIssuer".into()),
            ),
            (Step::Data, Failure::Timeout),
            (Step::MailFrom, Failure::Protocol("garbage".into())),
        ] {
            assert!(c.classify(step, f).is_retryable());
        }
        let e = c.classify(
            Step::StartTls,
            Failure::Tls("invalid peer certificate: UnknownIssuer".into()),
        );
        assert!(
            e.to_string()
                .contains("TLS handshake with mx.example.com failed"),
            "{e}"
        );
        assert!(c
            .starttls_unavailable()
            .to_string()
            .contains("does not offer STARTTLS"));
    }
}

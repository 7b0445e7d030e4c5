//! The SendGrid provider: sends with `POST /v3/mail/send` (the message id comes back in the
//! `X-Message-Id` header) and verifies the key and the sender with `GET /v3/verified_senders`
//! and `GET /v3/whitelabel/domains`.

use async_trait::async_trait;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, CheckStatus, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
};
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing::instrument;

use super::classify::classify;
use super::mapping::send_request;
use super::SendgridConfig;
use crate::config::ConfigError;
use crate::http::{client, transport_error};

/// The most pages `verify` reads from each list.
const MAX_PAGES: usize = 10;
/// Items per page.
const PAGE: usize = 100;

/// Twilio SendGrid over its v3 HTTP API.
pub struct SendgridProvider {
    http: reqwest::Client,
    base: String,
    api_key: String,
    from: Option<Mailbox>,
}

impl std::fmt::Debug for SendgridProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendgridProvider")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Senders {
    #[serde(default)]
    results: Vec<Sender>,
}

#[derive(Deserialize)]
struct Sender {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    from_email: String,
    #[serde(default)]
    verified: bool,
}

#[derive(Deserialize)]
struct AuthDomain {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    valid: bool,
}

/// The message id SendGrid returns in `X-Message-Id`, if any.
pub fn message_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-message-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl SendgridProvider {
    /// Builds the HTTP client; no network call happens here.
    pub fn new(config: &SendgridConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            http: client(config.timeout())?,
            base: config.base_url()?,
            api_key: config.api_key.clone(),
            from: config
                .from
                .as_deref()
                .and_then(|f| Mailbox::parse(f, "from").ok()),
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET {path}` with `query`, parsed as `T`; non-2xx answers classified.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, SendError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .query(query)
            .send()
            .await
            .map_err(|e| transport_error("SendGrid", &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error("SendGrid", &e))?;
        if !status.is_success() {
            return Err(classify(status, &headers, &body));
        }
        serde_json::from_slice(&body).map_err(|_| {
            SendError::retryable(
                "invalid_response",
                format!("SendGrid answered GET {path} with an unreadable body"),
            )
        })
    }

    async fn verified_senders(&self) -> Result<Vec<Sender>, SendError> {
        let mut all: Vec<Sender> = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut query = vec![("limit", PAGE.to_string())];
            if let Some(id) = all.last().and_then(|s| s.id) {
                query.push(("lastSeenID", id.to_string()));
            }
            let page: Senders = self.get("/v3/verified_senders", &query).await?;
            let n = page.results.len();
            all.extend(page.results);
            if n < PAGE {
                break;
            }
        }
        Ok(all)
    }

    async fn authenticated_domains(&self) -> Result<Vec<AuthDomain>, SendError> {
        let mut all = Vec::new();
        for page in 0..MAX_PAGES {
            let query = [
                ("limit", PAGE.to_string()),
                ("offset", (page * PAGE).to_string()),
            ];
            let list: Vec<AuthDomain> = self.get("/v3/whitelabel/domains", &query).await?;
            let n = list.len();
            all.extend(list);
            if n < PAGE {
                break;
            }
        }
        Ok(all)
    }
}

/// Whether `domain` is `parent` or one of its subdomains.
fn covered_by(domain: &str, parent: &str) -> bool {
    domain.eq_ignore_ascii_case(parent)
        || domain
            .to_ascii_lowercase()
            .ends_with(&format!(".{}", parent.to_ascii_lowercase()))
}

/// What one verify listing gave: the items, or why they could not be read.
enum Listing<T> {
    Read(Vec<T>),
    Refused(String),
}

/// Turns a listing's failure into a finding; retryable failures stop `verify`.
fn listing<T>(result: Result<Vec<T>, SendError>) -> Result<Listing<T>, SendError> {
    match result {
        Ok(items) => Ok(Listing::Read(items)),
        Err(SendError::Permanent { code, message }) => {
            Ok(Listing::Refused(format!("{code}: {message}")))
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Provider for SendgridProvider {
    fn name(&self) -> &str {
        "sendgrid"
    }

    #[instrument(skip_all, fields(message.id = %message.id))]
    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        let body = send_request(message)?;
        let response = self
            .http
            .post(format!("{}/v3/mail/send", self.base))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error("SendGrid", &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| transport_error("SendGrid", &e))?;
            let e = classify(status, &headers, &bytes);
            tracing::debug!(
                code = e.code(),
                retryable = e.is_retryable(),
                "SendGrid send failed"
            );
            return Err(e);
        }
        let id = message_id(&headers);
        if id.is_none() {
            tracing::warn!(
                status = status.as_u16(),
                "SendGrid accepted the message without an X-Message-Id header"
            );
        }
        Ok(SendReceipt {
            provider_message_id: id,
            final_delivery: false,
        })
    }

    async fn verify(&self) -> Result<VerifyReport, SendError> {
        let mut report = VerifyReport {
            ok: true,
            checks: Vec::new(),
        };
        let senders = listing(self.verified_senders().await)?;
        let domains = listing(self.authenticated_domains().await)?;
        if let (Listing::Refused(a), Listing::Refused(b)) = (&senders, &domains) {
            if a.starts_with("unauthorized") || b.starts_with("unauthorized") {
                report.ok = false;
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Credentials,
                    CheckStatus::Failed,
                    "SendGrid rejected the API key: it is invalid or was deleted",
                ));
            } else {
                report.checks.push(VerifyCheck::new(CheckAspect::Credentials, CheckStatus::Ok, format!(
                    "the API key cannot read senders or authenticated domains (a mail.send-only key?), so the sender was not checked: {a}; {b}"
                )));
            }
            return Ok(report);
        }
        report.checks.push(VerifyCheck::new(
            CheckAspect::Credentials,
            CheckStatus::Ok,
            "API key accepted by SendGrid",
        ));
        let (senders, domains) = match (senders, domains) {
            (Listing::Read(s), Listing::Read(d)) => (Some(s), Some(d)),
            (Listing::Read(s), Listing::Refused(why)) => {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Credentials,
                    CheckStatus::Ok,
                    format!("authenticated domains not readable ({why})"),
                ));
                (Some(s), None)
            }
            (Listing::Refused(why), Listing::Read(d)) => {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Ok,
                    format!("verified senders not readable ({why})"),
                ));
                (None, Some(d))
            }
            (Listing::Refused(_), Listing::Refused(_)) => (None, None),
        };
        let valid: Vec<&str> = domains
            .iter()
            .flatten()
            .filter(|d| d.valid)
            .map(|d| d.domain.as_str())
            .collect();
        if let Some(from) = &self.from {
            let address = from.email.normalized();
            let domain = from.email.domain();
            let sender = senders
                .iter()
                .flatten()
                .find(|s| s.from_email.eq_ignore_ascii_case(&address));
            let covering = valid.iter().find(|d| covered_by(domain, d));
            match (sender, covering) {
                (_, Some(d)) => report.checks.push(VerifyCheck::new(
                    CheckAspect::Credentials,
                    CheckStatus::Ok,
                    format!("From {address}: domain {d} is authenticated in SendGrid"),
                )),
                (Some(s), None) if s.verified => report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Ok,
                    format!("From {address}: verified Single Sender in SendGrid"),
                )),
                (Some(_), None) => {
                    report.ok = false;
                    report.checks.push(VerifyCheck::new(CheckAspect::Credentials, CheckStatus::Failed, format!(
                        "From {address}: a Single Sender exists but is not verified yet — click the link SendGrid emailed, or authenticate {domain}"
                    )));
                }
                (None, None) => {
                    report.ok = false;
                    report.checks.push(VerifyCheck::new(CheckAspect::Credentials, CheckStatus::Failed, format!(
                        "From {address}: not a verified sender identity in SendGrid — authenticate the domain {domain} or verify the address as a Single Sender"
                    )));
                }
            }
        }
        if let Some(domains) = &domains {
            report.checks.push(VerifyCheck::new(
                CheckAspect::Credentials,
                CheckStatus::Ok,
                if valid.is_empty() {
                    "no authenticated (valid) domain in SendGrid".into()
                } else {
                    format!("authenticated domains: {}", valid.join(", "))
                },
            ));
            let invalid: Vec<&str> = domains
                .iter()
                .filter(|d| !d.valid)
                .map(|d| d.domain.as_str())
                .collect();
            if !invalid.is_empty() {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Ok,
                    format!(
                        "domains whose DNS records do not validate: {}",
                        invalid.join(", ")
                    ),
                ));
            }
        }
        let verified_senders = senders
            .as_ref()
            .map(|s| s.iter().filter(|s| s.verified).count());
        if let Some(n) = verified_senders {
            report.checks.push(VerifyCheck::new(
                CheckAspect::Sender,
                CheckStatus::Ok,
                format!("{n} verified Single Sender(s)"),
            ));
        }
        if self.from.is_none() && valid.is_empty() && verified_senders == Some(0) {
            report.ok = false;
            report.checks.push(VerifyCheck::new(
                CheckAspect::Credentials,
                CheckStatus::Failed,
                "nothing can be sent yet: authenticate a domain or verify a Single Sender",
            ));
        }
        Ok(report)
    }
}

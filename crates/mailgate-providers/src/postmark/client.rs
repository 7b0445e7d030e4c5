//! The Postmark provider: sends with the server token, verifies the server token and message
//! stream, and (with the account token) the sender signatures and domains.

use async_trait::async_trait;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, CheckStatus, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
};
use reqwest::header::{HeaderMap, ACCEPT};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;
use tracing::instrument;

use super::classify::{api_error, classify};
use super::mapping::build_request;
use super::PostmarkConfig;
use crate::config::ConfigError;
use crate::http::transport_error;

/// The header carrying the server token.
const SERVER_TOKEN: &str = "X-Postmark-Server-Token";
/// The header carrying the account token.
const ACCOUNT_TOKEN: &str = "X-Postmark-Account-Token";

/// Postmark's HTTP API for one server and message stream.
pub struct PostmarkProvider {
    client: reqwest::Client,
    base: String,
    server_token: String,
    account_token: Option<String>,
    message_stream: String,
    from: Option<Mailbox>,
}

impl std::fmt::Debug for PostmarkProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostmarkProvider")
            .field("base", &self.base)
            .field("message_stream", &self.message_stream)
            .finish_non_exhaustive()
    }
}

/// A finished exchange: status, headers, body.
type Answer = (StatusCode, HeaderMap, Vec<u8>);

impl PostmarkProvider {
    /// Builds the HTTP client; no network call happens here.
    pub fn new(config: &PostmarkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            client: crate::http::client(config.timeout())?,
            base: config.base_url(),
            server_token: config.server_token.clone(),
            account_token: config.account_token.clone(),
            message_stream: config.message_stream.clone(),
            from: config
                .from
                .as_deref()
                .and_then(|f| Mailbox::parse(f, "from").ok()),
        })
    }

    async fn call(&self, request: RequestBuilder) -> Result<Answer, SendError> {
        let response = request
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| transport_error("Postmark", &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error("Postmark", &e))?;
        Ok((status, headers, body.to_vec()))
    }

    /// A GET with the given token header; a permanent failure comes back as `Ok(Err(message))`.
    async fn get(
        &self,
        path: &str,
        header: &str,
        token: &str,
    ) -> Result<Result<Value, String>, SendError> {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(header, token);
        let (status, headers, body) = self.call(request).await?;
        if status.is_success() {
            return Ok(Ok(serde_json::from_slice(&body).unwrap_or_default()));
        }
        match classify(status, &headers, &body) {
            SendError::Permanent { code, message } | SendError::Unusable { code, message } => {
                Ok(Err(format!("{code}: {message}")))
            }
            retryable @ SendError::Retryable { .. } => Err(retryable),
        }
    }

    /// Checks the sender signatures and domains with the account token.
    async fn check_senders(&self, token: &str, report: &mut VerifyReport) -> Result<(), SendError> {
        let senders = match self
            .get("/senders?count=500&offset=0", ACCOUNT_TOKEN, token)
            .await?
        {
            Ok(v) => v,
            Err(e) => {
                report.ok = false;
                report.checks.push(VerifyCheck::new(CheckAspect::Credentials, CheckStatus::Failed, if e.starts_with("http_401") || e.starts_with("postmark_10:") {
                    "Postmark rejected the account token (account_token must be the account's API token, not a server token)".into()
                } else {
                    format!("could not list sender signatures: {e}")
                }));
                return Ok(());
            }
        };
        let domains = match self
            .get("/domains?count=500&offset=0", ACCOUNT_TOKEN, token)
            .await?
        {
            Ok(v) => v,
            Err(e) => {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Ok,
                    format!("could not list domains: {e}"),
                ));
                Value::Null
            }
        };
        let list = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let senders = list(&senders, "SenderSignatures");
        let domains = list(&domains, "Domains");
        let flag = |v: &Value, key: &str| v.get(key).and_then(Value::as_bool) == Some(true);
        let text =
            |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();

        let Some(from) = &self.from else {
            for s in &senders {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Ok,
                    format!(
                        "sender signature {}: {}",
                        text(s, "EmailAddress"),
                        if flag(s, "Confirmed") {
                            "confirmed"
                        } else {
                            "NOT confirmed — confirm it from Postmark's email"
                        }
                    ),
                ));
            }
            for d in &domains {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Ok,
                    domain_line(
                        &text(d, "Name"),
                        flag(d, "DKIMVerified"),
                        flag(d, "ReturnPathDomainVerified"),
                    ),
                ));
            }
            let usable = senders.iter().any(|s| flag(s, "Confirmed"))
                || domains.iter().any(|d| flag(d, "DKIMVerified"));
            if !usable {
                report.ok = false;
                report.checks.push(VerifyCheck::new(CheckAspect::Sender, CheckStatus::Failed, "no confirmed sender signature and no DKIM-verified domain: Postmark will refuse every From address"));
            }
            return Ok(());
        };
        let address = from.email.to_string();
        let domain = from.email.domain();
        let signature = senders
            .iter()
            .find(|s| text(s, "EmailAddress").eq_ignore_ascii_case(&address));
        let verified_domain = domains
            .iter()
            .find(|d| text(d, "Name").eq_ignore_ascii_case(domain));
        match (signature, verified_domain) {
            (Some(s), _) if flag(s, "Confirmed") => {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Ok,
                    format!("sender {address}: sender signature confirmed"),
                ));
            }
            (_, Some(d)) if flag(d, "DKIMVerified") => {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Ok,
                    format!(
                        "sender {address}: {}",
                        domain_line(domain, true, flag(d, "ReturnPathDomainVerified"))
                    ),
                ));
            }
            (Some(_), _) => {
                report.ok = false;
                report.checks.push(VerifyCheck::new(CheckAspect::Sender, CheckStatus::Failed, format!("sender {address}: its sender signature is not confirmed — confirm it from the email Postmark sent")));
            }
            (None, Some(_)) => {
                report.ok = false;
                report.checks.push(VerifyCheck::new(CheckAspect::Sender, CheckStatus::Failed, format!("sender {address}: domain {domain} is in Postmark but its DKIM record is not verified — publish the DKIM TXT record")));
            }
            (None, None) => {
                report.ok = false;
                report.checks.push(VerifyCheck::new(CheckAspect::Sender, CheckStatus::Failed, format!("sender {address}: no sender signature or domain covers it — add one in Postmark")));
            }
        }
        Ok(())
    }
}

fn domain_line(name: &str, dkim: bool, return_path: bool) -> String {
    match (dkim, return_path) {
        (true, true) => format!("domain {name}: DKIM and Return-Path verified"),
        (true, false) => format!("domain {name}: DKIM verified; Return-Path not verified (recommended for DMARC alignment)"),
        (false, _) => format!("domain {name}: DKIM NOT verified — publish its DKIM TXT record"),
    }
}

#[async_trait]
impl Provider for PostmarkProvider {
    fn name(&self) -> &str {
        "postmark"
    }

    #[instrument(skip_all, fields(message.id = %message.id))]
    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        let (path, body) = build_request(message, &self.message_stream)?;
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(SERVER_TOKEN, &self.server_token)
            .json(&body);
        let (status, headers, body) = self.call(request).await?;
        let failed = !status.is_success() || api_error(&body).is_some_and(|e| e.code != 0);
        if failed {
            let e = classify(status, &headers, &body);
            tracing::debug!(
                code = e.code(),
                retryable = e.is_retryable(),
                "Postmark send failed"
            );
            return Err(e);
        }
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("MessageID")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|id| !id.is_empty());
        if id.is_none() {
            tracing::warn!("Postmark accepted the message but returned no MessageID");
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
        match self
            .get("/server", SERVER_TOKEN, &self.server_token)
            .await?
        {
            Ok(server) => report.checks.push(VerifyCheck::new(
                CheckAspect::Credentials,
                CheckStatus::Ok,
                match server.get("Name").and_then(Value::as_str) {
                    Some(name) => format!("server token accepted (server '{name}')"),
                    None => "server token accepted".into(),
                },
            )),
            Err(e) => {
                report.ok = false;
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Sender,
                    CheckStatus::Failed,
                    e,
                ));
                return Ok(report);
            }
        }
        let stream = &self.message_stream;
        match self
            .get(
                &format!("/message-streams/{stream}"),
                SERVER_TOKEN,
                &self.server_token,
            )
            .await?
        {
            Ok(s) => {
                let kind = s
                    .get("MessageStreamType")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown type");
                if s.get("ArchivedAt").is_some_and(|a| !a.is_null()) {
                    report.ok = false;
                    report.checks.push(VerifyCheck::new(
                        CheckAspect::Sender,
                        CheckStatus::Failed,
                        format!(
                            "message stream '{stream}' is archived — unarchive it or pick another"
                        ),
                    ));
                } else {
                    report.checks.push(VerifyCheck::new(
                        CheckAspect::Sender,
                        CheckStatus::Ok,
                        format!("message stream '{stream}' exists ({kind})"),
                    ));
                }
            }
            Err(e) => {
                report.ok = false;
                report.checks.push(VerifyCheck::new(CheckAspect::Sender, CheckStatus::Failed, format!("message stream '{stream}' not found on this server ({e}) — create it or fix message_stream")));
            }
        }
        match &self.account_token {
            Some(token) => self.check_senders(token, &mut report).await?,
            None => report.checks.push(VerifyCheck::new(CheckAspect::Credentials, CheckStatus::Ok,
                "sender signatures and domains not checked: verifying them needs the account token (account_token=…)",)),
        }
        Ok(report)
    }
}

//! The Postmark provider: sends with the server token, verifies the server token and message
//! stream, and (with the account token) the sender signatures and domains.

use async_trait::async_trait;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
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
use crate::verify::{not_checked, request_failed};

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

    /// A GET with the given token header: the parsed body, or the classified failure.
    async fn get(&self, path: &str, header: &str, token: &str) -> Result<Value, SendError> {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(header, token);
        let (status, headers, body) = self.call(request).await?;
        if status.is_success() {
            return Ok(serde_json::from_slice(&body).unwrap_or_default());
        }
        Err(classify(status, &headers, &body))
    }

    /// Checks the message stream: it exists, is not archived, and is transactional.
    async fn check_stream(&self, checks: &mut Vec<VerifyCheck>) {
        let stream = &self.message_stream;
        let path = format!("/message-streams/{stream}");
        checks.push(
            match self.get(&path, SERVER_TOKEN, &self.server_token).await {
                Ok(s) => {
                    let kind = s
                        .get("MessageStreamType")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown type");
                    if s.get("ArchivedAt").is_some_and(|a| !a.is_null()) {
                        VerifyCheck::failed(
                            CheckAspect::Sender,
                            format!("message stream '{stream}' is archived — unarchive it or pick another"),
                        )
                    } else if kind.starts_with("Broadcast") {
                        VerifyCheck::warning(
                            CheckAspect::Sender,
                            format!("message stream '{stream}' is a broadcast stream: transactional mail belongs in a transactional stream"),
                        )
                    } else {
                        VerifyCheck::ok(
                            CheckAspect::Sender,
                            format!("message stream '{stream}' exists ({kind})"),
                        )
                    }
                }
                Err(e @ SendError::Retryable { .. }) => {
                    request_failed(CheckAspect::Connection, &e)
                }
                Err(e) => VerifyCheck::failed(
                    CheckAspect::Sender,
                    format!("message stream '{stream}' not found on this server ({e}) — create it or fix message_stream"),
                ),
            },
        );
    }

    /// Checks the sender signatures and domains with the account token.
    async fn check_senders(&self, token: &str, checks: &mut Vec<VerifyCheck>) {
        let senders = match self
            .get("/senders?count=500&offset=0", ACCOUNT_TOKEN, token)
            .await
        {
            Ok(v) => v,
            Err(e @ SendError::Retryable { .. }) => {
                checks.push(request_failed(CheckAspect::Connection, &e));
                return;
            }
            // Sending needs only the server token: a wrong account token is worth fixing, but
            // it does not stop sending.
            Err(e) if matches!(e.code(), "http_401" | "postmark_10") => {
                checks.push(VerifyCheck::warning(
                    CheckAspect::Credentials,
                    "Postmark rejected the account token (account_token must be the account's API token, not a server token)",
                ));
                checks.push(not_checked(
                    CheckAspect::Sender,
                    "the account token was refused, so sender signatures and domains cannot be read",
                ));
                return;
            }
            Err(e) => {
                checks.push(VerifyCheck::skipped(
                    CheckAspect::Sender,
                    format!("could not list sender signatures: {e}"),
                ));
                return;
            }
        };
        checks.push(VerifyCheck::ok(
            CheckAspect::Credentials,
            "account token accepted",
        ));
        let domains = match self
            .get("/domains?count=500&offset=0", ACCOUNT_TOKEN, token)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                checks.push(VerifyCheck::skipped(
                    CheckAspect::Sender,
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
        match &self.from {
            Some(from) => checks.push(sender_check(from, &senders, &domains)),
            None => account_checks(&senders, &domains, checks),
        }
    }
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool) == Some(true)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// Whether the configured sender may send: a confirmed signature for the address, or a
/// DKIM-verified domain.
fn sender_check(from: &Mailbox, senders: &[Value], domains: &[Value]) -> VerifyCheck {
    let address = from.email.to_string();
    let domain = from.email.domain();
    let signature = senders
        .iter()
        .find(|s| text(s, "EmailAddress").eq_ignore_ascii_case(&address));
    let verified_domain = domains
        .iter()
        .find(|d| text(d, "Name").eq_ignore_ascii_case(domain));
    match (signature, verified_domain) {
        (Some(s), _) if flag(s, "Confirmed") => VerifyCheck::ok(
            CheckAspect::Sender,
            format!("sender {address}: sender signature confirmed"),
        ),
        (_, Some(d)) if flag(d, "DKIMVerified") => {
            let mut check = domain_check(domain, true, flag(d, "ReturnPathDomainVerified"));
            check.detail = format!("sender {address}: {}", check.detail);
            check
        }
        (Some(_), _) => VerifyCheck::failed(
            CheckAspect::Sender,
            format!("sender {address}: its sender signature is not confirmed — confirm it from the email Postmark sent"),
        ),
        (None, Some(_)) => VerifyCheck::failed(
            CheckAspect::Sender,
            format!("sender {address}: domain {domain} is in Postmark but its DKIM record is not verified — publish the DKIM TXT record"),
        ),
        (None, None) => VerifyCheck::failed(
            CheckAspect::Sender,
            format!("sender {address}: no sender signature or domain covers it — add one in Postmark"),
        ),
    }
}

/// Without a configured sender: how many signatures are confirmed (counted, never listed: they
/// are addresses) and each domain's state.
fn account_checks(senders: &[Value], domains: &[Value], checks: &mut Vec<VerifyCheck>) {
    let confirmed = senders.iter().filter(|s| flag(s, "Confirmed")).count();
    if !senders.is_empty() {
        let detail = format!(
            "{} sender signature(s), {confirmed} confirmed",
            senders.len()
        );
        checks.push(if confirmed < senders.len() {
            VerifyCheck::warning(
                CheckAspect::Sender,
                format!("{detail} — confirm the others from Postmark's email"),
            )
        } else {
            VerifyCheck::ok(CheckAspect::Sender, detail)
        });
    }
    for d in domains {
        checks.push(domain_check(
            &text(d, "Name"),
            flag(d, "DKIMVerified"),
            flag(d, "ReturnPathDomainVerified"),
        ));
    }
    if confirmed == 0 && !domains.iter().any(|d| flag(d, "DKIMVerified")) {
        checks.push(VerifyCheck::failed(
            CheckAspect::Sender,
            "no confirmed sender signature and no DKIM-verified domain: Postmark will refuse every From address",
        ));
    }
}

fn domain_check(name: &str, dkim: bool, return_path: bool) -> VerifyCheck {
    match (dkim, return_path) {
        (true, true) => VerifyCheck::ok(
            CheckAspect::Sender,
            format!("domain {name}: DKIM and Return-Path verified"),
        ),
        (true, false) => VerifyCheck::warning(
            CheckAspect::Sender,
            format!("domain {name}: DKIM verified; Return-Path not verified (recommended for DMARC alignment)"),
        ),
        (false, _) => VerifyCheck::failed(
            CheckAspect::Sender,
            format!("domain {name}: DKIM NOT verified — publish its DKIM TXT record"),
        ),
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
        let mut checks = Vec::new();
        match self.get("/server", SERVER_TOKEN, &self.server_token).await {
            Ok(server) => checks.push(VerifyCheck::ok(
                CheckAspect::Credentials,
                match server.get("Name").and_then(Value::as_str) {
                    Some(name) => format!("server token accepted (server '{name}')"),
                    None => "server token accepted".into(),
                },
            )),
            Err(e) => {
                let why = if e.is_retryable() {
                    "Postmark could not be reached"
                } else {
                    "the server token was refused"
                };
                checks.push(request_failed(CheckAspect::Credentials, &e));
                checks.push(not_checked(CheckAspect::Sender, why));
                return Ok(VerifyReport::from_checks(checks));
            }
        }
        self.check_stream(&mut checks).await;
        match &self.account_token {
            Some(token) => self.check_senders(token, &mut checks).await,
            None => checks.push(VerifyCheck::skipped(
                CheckAspect::Sender,
                "sender signatures and domains not checked: verifying them needs the account token (account_token=…)",
            )),
        }
        checks.push(VerifyCheck::skipped(
            CheckAspect::Quota,
            "Postmark's API does not report credits or account approval; a send that meets them fails with ErrorCode 405 or 412",
        ));
        Ok(VerifyReport::from_checks(checks))
    }
}

//! The Resend provider: sends with `POST /emails` (Bearer key, `Idempotency-Key`) and verifies
//! the key and the From domain with `GET /domains`.

use async_trait::async_trait;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
};
use serde::Deserialize;
use tracing::instrument;

use super::classify::classify;
use super::mapping::{idempotency_key, send_request};
use super::ResendConfig;
use crate::config::ConfigError;
use crate::http::{client, transport_error};
use crate::verify::{list, not_checked, request_failed};

/// The most pages of domains `verify` reads (100 per page).
const MAX_DOMAIN_PAGES: usize = 10;
/// The most domain names one check lists.
const MAX_LISTED: usize = 20;

/// Resend over its HTTP API.
pub struct ResendProvider {
    http: reqwest::Client,
    base: String,
    api_key: String,
    from: Option<Mailbox>,
}

impl std::fmt::Debug for ResendProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResendProvider")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct DomainList {
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    data: Vec<Domain>,
}

#[derive(Deserialize)]
struct Domain {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    open_tracking: Option<bool>,
    #[serde(default)]
    click_tracking: Option<bool>,
    #[serde(default)]
    capabilities: Option<Capabilities>,
}

#[derive(Deserialize)]
struct Capabilities {
    #[serde(default)]
    sending: Option<String>,
}

impl ResendProvider {
    /// Builds the HTTP client; no network call happens here.
    pub fn new(config: &ResendConfig) -> Result<Self, ConfigError> {
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

    /// Every domain of the account, or the error that stopped the listing.
    async fn domains(&self) -> Result<Vec<Domain>, SendError> {
        let mut all: Vec<Domain> = Vec::new();
        for _ in 0..MAX_DOMAIN_PAGES {
            let mut request = self
                .http
                .get(format!("{}/domains", self.base))
                .bearer_auth(&self.api_key)
                .query(&[("limit", "100")]);
            if let Some(last) = all.last() {
                request = request.query(&[("after", last.id.as_str())]);
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport_error("Resend", &e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_error("Resend", &e))?;
            if !status.is_success() {
                return Err(classify(status, &headers, &body));
            }
            let page: DomainList = serde_json::from_slice(&body).map_err(|_| {
                SendError::retryable(
                    "invalid_response",
                    "Resend answered GET /domains with an unreadable body",
                )
            })?;
            let more = page.has_more && !page.data.is_empty();
            all.extend(page.data);
            if !more {
                break;
            }
        }
        Ok(all)
    }

    /// Whether the configured From domain is verified for sending (`Sender`), its tracking
    /// settings, and the region it sends from (`Region`).
    fn check_from(&self, from: &Mailbox, domains: &[Domain], checks: &mut Vec<VerifyCheck>) {
        let wanted = from.email.domain().to_ascii_lowercase();
        let Some(d) = domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(&wanted))
        else {
            checks.push(VerifyCheck::failed(
                CheckAspect::Sender,
                format!("From domain {wanted} is not in this Resend account: add it at resend.com/domains and verify its DNS records"),
            ));
            return;
        };
        let sending = d
            .capabilities
            .as_ref()
            .and_then(|c| c.sending.as_deref())
            .unwrap_or("enabled");
        let region = d.region.as_deref().unwrap_or("unknown region");
        checks.push(if d.status == "verified" && sending == "enabled" {
            VerifyCheck::ok(
                CheckAspect::Sender,
                format!("From domain {wanted} is verified in Resend ({region})"),
            )
        } else if d.status == "verified" {
            VerifyCheck::failed(
                CheckAspect::Sender,
                format!("From domain {wanted} is verified in Resend but sending is {sending} for it"),
            )
        } else {
            VerifyCheck::failed(
                CheckAspect::Sender,
                format!("From domain {wanted} is {} in Resend, not verified: finish its DNS records (SPF, DKIM) and re-run the verification", d.status),
            )
        });
        let onoff = |b: Option<bool>| match b {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        };
        checks.push(VerifyCheck::ok(
            CheckAspect::Sender,
            format!(
                "tracking for {wanted} (a per-domain setting in Resend): opens {}, clicks {}",
                onoff(d.open_tracking),
                onoff(d.click_tracking)
            ),
        ));
        if let Some(region) = &d.region {
            checks.push(VerifyCheck::ok(
                CheckAspect::Region,
                format!("From domain {wanted} sends from region {region}"),
            ));
        }
    }
}

/// The account's domains: the verified ones (`Sender` failed when there is none) and those
/// still waiting for their DNS records.
fn domain_checks(domains: &[Domain], checks: &mut Vec<VerifyCheck>) {
    let verified: Vec<&str> = domains
        .iter()
        .filter(|d| d.status == "verified")
        .map(|d| d.name.as_str())
        .collect();
    checks.push(if verified.is_empty() {
        VerifyCheck::failed(
            CheckAspect::Sender,
            "no verified domain in this Resend account: add and verify one before sending",
        )
    } else {
        VerifyCheck::ok(
            CheckAspect::Sender,
            format!("verified domains: {}", list(&verified, MAX_LISTED)),
        )
    });
    let pending: Vec<String> = domains
        .iter()
        .filter(|d| d.status != "verified")
        .map(|d| format!("{} ({})", d.name, d.status))
        .collect();
    if !pending.is_empty() {
        checks.push(VerifyCheck::warning(
            CheckAspect::Sender,
            format!("domains not verified: {}", list(&pending, MAX_LISTED)),
        ));
    }
}

#[async_trait]
impl Provider for ResendProvider {
    fn name(&self) -> &str {
        "resend"
    }

    #[instrument(skip_all, fields(message.id = %message.id))]
    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        let body = send_request(message)?;
        let response = self
            .http
            .post(format!("{}/emails", self.base))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", idempotency_key(message))
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error("Resend", &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error("Resend", &e))?;
        if !status.is_success() {
            let e = classify(status, &headers, &bytes);
            tracing::debug!(
                code = e.code(),
                retryable = e.is_retryable(),
                "Resend send failed"
            );
            return Err(e);
        }
        // The message is accepted; an unreadable body only loses the id.
        let id = serde_json::from_slice::<SendResponse>(&bytes)
            .ok()
            .and_then(|r| r.id)
            .filter(|id| !id.is_empty());
        if id.is_none() {
            tracing::warn!("Resend accepted the message without returning an id");
        }
        Ok(SendReceipt {
            provider_message_id: id,
            final_delivery: false,
        })
    }

    async fn verify(&self) -> Result<VerifyReport, SendError> {
        let mut checks = Vec::new();
        let quota = VerifyCheck::skipped(
            CheckAspect::Quota,
            "Resend's API does not report the account's quotas; a send past them fails with daily_quota_exceeded or monthly_quota_exceeded",
        );
        match self.domains().await {
            Ok(domains) => {
                checks.push(VerifyCheck::ok(
                    CheckAspect::Credentials,
                    "API key accepted by Resend",
                ));
                if let Some(from) = &self.from {
                    self.check_from(from, &domains, &mut checks);
                }
                domain_checks(&domains, &mut checks);
            }
            Err(e) if e.code() == "restricted_api_key" => {
                checks.push(VerifyCheck::ok(
                    CheckAspect::Credentials,
                    "the API key is valid and has sending access only",
                ));
                checks.push(not_checked(
                    CheckAspect::Sender,
                    "a sending-only key cannot list domains, so the From domain was not checked (use a full-access key to verify, or check resend.com/domains)",
                ));
            }
            Err(e) => {
                let aspect = match e.code() {
                    "not_found" | "method_not_allowed" | "http_404" | "http_405" => {
                        CheckAspect::Connection
                    }
                    _ => CheckAspect::Credentials,
                };
                checks.push(request_failed(aspect, &e));
                checks.push(not_checked(
                    CheckAspect::Sender,
                    "the account's domains could not be read",
                ));
            }
        }
        checks.push(quota);
        Ok(VerifyReport::from_checks(checks))
    }
}

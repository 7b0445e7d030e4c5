//! The Mailgun provider: sends the multipart form with HTTP Basic auth (`api:KEY`) and verifies
//! the key and the sending domain's state.

use async_trait::async_trait;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;
use tracing::instrument;

use super::classify::{classify, Context};
use super::mapping::build_form;
use super::{MailgunConfig, MailgunRegion};
use crate::config::ConfigError;
use crate::http::transport_error;
use crate::verify::{not_checked, region_check, request_failed};

/// Mailgun's HTTP API for one sending domain.
pub struct MailgunProvider {
    client: reqwest::Client,
    base: String,
    domain: String,
    region: MailgunRegion,
    api_key: String,
}

impl std::fmt::Debug for MailgunProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailgunProvider")
            .field("base", &self.base)
            .field("domain", &self.domain)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MailgunProvider {
    /// Builds the HTTP client; no network call happens here.
    pub fn new(config: &MailgunConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            client: crate::http::client(config.timeout())?,
            base: config.base_url(),
            domain: config.domain.clone(),
            region: config.region,
            api_key: config.api_key.clone(),
        })
    }

    fn context(&self) -> Context<'_> {
        Context {
            domain: &self.domain,
            region: self.region,
        }
    }

    /// Sends a request; returns the status, headers and body, or a transport failure.
    async fn call(
        &self,
        request: RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), SendError> {
        let response = request
            .basic_auth("api", Some(&self.api_key))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| transport_error("Mailgun", &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error("Mailgun", &e))?;
        Ok((status, headers, body.to_vec()))
    }

    /// Where requests go: the region, and the host when an endpoint override replaces it.
    fn region_check(&self) -> VerifyCheck {
        region_check(self.region.as_str(), &self.base, self.region.base_url())
    }

    /// Reads the domain: its state and DNS records (`Sender`), its type (`Quota`: a sandbox
    /// domain delivers only to authorized recipients).
    fn describe_domain(&self, body: &[u8], checks: &mut Vec<VerifyCheck>) {
        let value: Value = serde_json::from_slice(body).unwrap_or_default();
        let domain = value.get("domain").unwrap_or(&Value::Null);
        let state = domain
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let disabled = domain.get("is_disabled").and_then(Value::as_bool) == Some(true)
            || domain.get("disabled").is_some_and(|d| !d.is_null());
        let region = self.region.as_str();
        let name = &self.domain;
        checks.push(if disabled {
            let reason = domain
                .pointer("/disabled/reason")
                .and_then(Value::as_str)
                .map(|r| format!(" ({})", crate::reply_text::safe(r)))
                .unwrap_or_default();
            VerifyCheck::failed(
                CheckAspect::Sender,
                format!("domain {name} is disabled{reason}: Mailgun will not send from it — contact Mailgun support"),
            )
        } else if state.eq_ignore_ascii_case("active") {
            VerifyCheck::ok(
                CheckAspect::Sender,
                format!("domain {name} is active in region {region}"),
            )
        } else if state.eq_ignore_ascii_case("unverified") {
            VerifyCheck::failed(
                CheckAspect::Sender,
                format!("domain {name} is unverified: add its DNS records"),
            )
        } else {
            VerifyCheck::failed(
                CheckAspect::Sender,
                format!("domain {name} is in state '{state}', not active — it cannot send yet"),
            )
        });
        let records = value
            .get("sending_dns_records")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for record in records {
            let valid = record.get("valid").and_then(Value::as_str).unwrap_or("");
            if !valid.eq_ignore_ascii_case("valid") {
                let get = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("?");
                checks.push(VerifyCheck::warning(
                    CheckAspect::Sender,
                    format!(
                        "DNS record {} {} is not valid yet ({})",
                        get("record_type"),
                        get("name"),
                        if valid.is_empty() { "unknown" } else { valid }
                    ),
                ));
            }
        }
        checks.push(match domain.get("type").and_then(Value::as_str) {
            Some("sandbox") => VerifyCheck::warning(
                CheckAspect::Quota,
                format!("domain {name} is a sandbox domain: Mailgun delivers only to authorized recipients"),
            ),
            Some("custom") => VerifyCheck::ok(
                CheckAspect::Quota,
                format!("domain {name} is a custom domain, not a sandbox"),
            ),
            _ => VerifyCheck::skipped(
                CheckAspect::Quota,
                "Mailgun did not say whether the domain is a sandbox",
            ),
        });
    }

    /// The checks for a refused `GET /v4/domains/{domain}`.
    fn refused(&self, status: StatusCode, error: &SendError) -> Vec<VerifyCheck> {
        let skipped = |why: &str| not_checked(CheckAspect::Sender, why);
        match status.as_u16() {
            401 => vec![
                request_failed(CheckAspect::Credentials, error),
                skipped("Mailgun refused the API key"),
            ],
            // A domain sending key may only send; a disabled domain is refused too.
            403 => vec![
                VerifyCheck::warning(
                    CheckAspect::Credentials,
                    format!(
                        "the API key may not read the domain (a domain sending key can only send): {error}"
                    ),
                ),
                skipped("the API key may not read the domain"),
            ],
            402 => vec![request_failed(CheckAspect::Quota, error)],
            _ => vec![request_failed(CheckAspect::Sender, error)],
        }
    }
}

/// Mailgun's message id without the angle brackets that the send answer puts around it
/// (events and webhooks carry it bare).
pub(crate) fn bare_id(id: &str) -> String {
    let id = id.trim();
    id.strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id)
        .to_owned()
}

#[async_trait]
impl Provider for MailgunProvider {
    fn name(&self) -> &str {
        "mailgun"
    }

    #[instrument(skip_all, fields(message.id = %message.id))]
    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        let (content_type, body) = build_form(message)?.encode();
        let url = format!("{}/v3/{}/messages", self.base, self.domain);
        let request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        let (status, headers, body) = self.call(request).await?;
        if !status.is_success() {
            let e = classify(status, &headers, &body, &self.context());
            tracing::debug!(
                code = e.code(),
                retryable = e.is_retryable(),
                "Mailgun send failed"
            );
            return Err(e);
        }
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(bare_id))
            .filter(|id| !id.is_empty());
        if id.is_none() {
            tracing::warn!("Mailgun accepted the message but returned no id");
        }
        Ok(SendReceipt {
            provider_message_id: id,
            final_delivery: false,
        })
    }

    async fn verify(&self) -> Result<VerifyReport, SendError> {
        let mut checks = vec![self.region_check()];
        let url = format!("{}/v4/domains/{}", self.base, self.domain);
        match self.call(self.client.get(url)).await {
            Ok((status, _, body)) if status.is_success() => {
                checks.push(VerifyCheck::ok(
                    CheckAspect::Credentials,
                    "API key accepted by Mailgun",
                ));
                self.describe_domain(&body, &mut checks);
            }
            Ok((status, headers, body)) => {
                let e = classify(status, &headers, &body, &self.context());
                checks.extend(self.refused(status, &e));
            }
            Err(e) => checks.push(request_failed(CheckAspect::Connection, &e)),
        }
        Ok(VerifyReport::from_checks(checks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_angle_brackets() {
        assert_eq!(
            bare_id("<20111114174239.25659.5817@samples.mailgun.org>"),
            "20111114174239.25659.5817@samples.mailgun.org"
        );
        assert_eq!(bare_id("message-id"), "message-id");
    }
}

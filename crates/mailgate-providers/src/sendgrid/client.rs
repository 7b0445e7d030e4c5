//! The SendGrid provider: sends with `POST /v3/mail/send` (the message id comes back in the
//! `X-Message-Id` header) and verifies the key's permissions with `GET /v3/scopes` and the
//! sender with `GET /v3/verified_senders` and `GET /v3/whitelabel/domains` (see `verify`).

use async_trait::async_trait;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
};
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use tracing::instrument;

use super::classify::classify;
use super::mapping::send_request;
use super::verify::{scopes_check, sender_checks, AuthDomain, Listing, Scopes, Sender, Senders};
use super::{SendgridConfig, EU_ENDPOINT, GLOBAL_ENDPOINT};
use crate::config::ConfigError;
use crate::http::{client, transport_error};
use crate::verify::{not_checked, region_check, request_failed};

/// The most pages `verify` reads from each list.
const MAX_PAGES: usize = 10;
/// Items per page.
const PAGE: usize = 100;

/// Twilio SendGrid over its v3 HTTP API.
pub struct SendgridProvider {
    http: reqwest::Client,
    base: String,
    region: String,
    region_base: &'static str,
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
        let region = config.region.clone().unwrap_or_else(|| "global".into());
        Ok(Self {
            http: client(config.timeout())?,
            base: config.base_url()?,
            region_base: if region == "eu" {
                EU_ENDPOINT
            } else {
                GLOBAL_ENDPOINT
            },
            region,
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

/// A listing's refusal becomes a finding; a retryable failure stops `verify`.
fn listing<T>(result: Result<Vec<T>, SendError>) -> Result<Listing<T>, SendError> {
    match result {
        Ok(items) => Ok(Listing::Read(items)),
        Err(e @ SendError::Retryable { .. }) => Err(e),
        Err(e) => Ok(Listing::Refused(e.to_string())),
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
        let mut checks = vec![region_check(&self.region, &self.base, self.region_base)];
        match self.get::<Scopes>("/v3/scopes", &[]).await {
            Ok(scopes) => checks.push(scopes_check(&scopes)),
            Err(e @ SendError::Retryable { .. }) => {
                checks.push(request_failed(CheckAspect::Connection, &e));
                return Ok(VerifyReport::from_checks(checks));
            }
            // 401 also says the plan's credits are used up: the key itself may be fine.
            Err(e) if e.code() == "unauthorized" && e.message().contains("credits") => {
                checks.push(request_failed(CheckAspect::Quota, &e));
                return Ok(VerifyReport::from_checks(checks));
            }
            Err(e) if e.code() == "unauthorized" => {
                checks.push(VerifyCheck::failed(
                    CheckAspect::Credentials,
                    "SendGrid rejected the API key: it is invalid or was deleted",
                ));
                checks.push(not_checked(
                    CheckAspect::Sender,
                    "SendGrid refused the API key",
                ));
                return Ok(VerifyReport::from_checks(checks));
            }
            Err(e) => checks.push(VerifyCheck::skipped(
                CheckAspect::Credentials,
                format!("could not read the API key's scopes ({e})"),
            )),
        }
        let listings = async {
            Ok::<_, SendError>((
                listing(self.verified_senders().await)?,
                listing(self.authenticated_domains().await)?,
            ))
        };
        match listings.await {
            Ok((senders, domains)) => {
                sender_checks(self.from.as_ref(), &senders, &domains, &mut checks)
            }
            Err(e) => checks.push(request_failed(CheckAspect::Connection, &e)),
        }
        checks.push(VerifyCheck::skipped(
            CheckAspect::Quota,
            "the plan's email credits are not checked; a send past them fails with 401 'Maximum credits exceeded'",
        ));
        Ok(VerifyReport::from_checks(checks))
    }
}

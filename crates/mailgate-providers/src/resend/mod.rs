//! Resend (`POST /emails`): configuration, message mapping, failure classification and verify.
//!
//! DSN: `resend+api://API_KEY@default` with the options `endpoint=URL` (tests, proxies),
//! `webhook_secret=whsec_…` (Svix signing secret for Resend's webhooks), `timeout_seconds=N`
//! (default 30) and `from=ADDRESS` (the sender `verify` checks). The JSON form takes the same
//! fields: `{"type": "resend", "api_key": "re_…", …}`.

mod classify;
mod client;
mod mapping;
pub(crate) mod webhook;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::provider::Provider;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{mask, ConfigError};
use crate::dsn::Dsn;

pub use client::ResendProvider;
pub use mapping::{idempotency_key, sanitize_tag, send_request};

/// Resend's API.
pub const DEFAULT_ENDPOINT: &str = "https://api.resend.com";
/// How long one request may take unless `timeout_seconds` says otherwise.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// The Resend provider's configuration; build it from a DSN or JSON, show it only via `redacted()`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResendConfig {
    /// The API key (`re_…`); a full-access key lets `verify` list domains.
    pub api_key: String,
    /// An endpoint override (tests, proxies); `https://api.resend.com` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The webhook signing secret (`whsec_…`) that authenticates Resend's event webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// The per-request timeout in seconds (1–300, default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The usual sender, whose domain `verify` checks (`noreply@acme.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl std::fmt::Debug for ResendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResendConfig({})", self.redacted())
    }
}

impl ResendConfig {
    /// Parses `resend+api://API_KEY@default?…`; unknown options are refused.
    pub fn from_dsn(mut dsn: Dsn) -> Result<Self, ConfigError> {
        if let Some(host) = &dsn.host {
            return Err(ConfigError::invalid(
                "host",
                format!("use 'default' as the host, not '{host}'; override the endpoint with ?endpoint=URL"),
            ));
        }
        if dsn.password.is_some() {
            return Err(ConfigError::invalid(
                "api_key",
                "give the API key as the DSN user only: resend+api://API_KEY@default",
            ));
        }
        let config = Self {
            api_key: dsn.user.take().unwrap_or_default(),
            endpoint: dsn.take("endpoint"),
            webhook_secret: dsn.take("webhook_secret"),
            timeout_seconds: dsn
                .take_parsed::<u64>("timeout_seconds", "a whole number of seconds")?,
            from: dsn.take("from"),
        };
        dsn.finish()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields together; `build` calls it too, so the JSON form gets the same checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.api_key.trim().is_empty() {
            return Err(ConfigError::invalid(
                "api_key",
                "required: resend+api://API_KEY@default",
            ));
        }
        if !self.api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                "api_key",
                "must be printable ASCII without spaces",
            ));
        }
        if let Some(e) = &self.endpoint {
            crate::http::endpoint(e)?;
        }
        if let Some(secret) = &self.webhook_secret {
            let ok = secret
                .strip_prefix("whsec_")
                .is_some_and(|b64| !b64.is_empty() && STANDARD.decode(b64).is_ok());
            if !ok {
                return Err(ConfigError::invalid(
                    "webhook_secret",
                    "must be the whsec_… signing secret shown in Resend's webhook settings",
                ));
            }
        }
        check_timeout(self.timeout_seconds)?;
        if let Some(from) = &self.from {
            mailgate_core::address::Mailbox::parse(from, "from")
                .map_err(|e| ConfigError::invalid("from", e.to_string()))?;
        }
        Ok(())
    }

    /// The base URL requests go to, without a trailing slash.
    pub fn base_url(&self) -> Result<String, ConfigError> {
        match &self.endpoint {
            Some(e) => crate::http::endpoint(e),
            None => Ok(DEFAULT_ENDPOINT.to_owned()),
        }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// The configuration as JSON with the API key and the webhook secret masked.
    pub fn redacted(&self) -> Value {
        json!({
            "api_key": mask(&Some(self.api_key.clone())),
            "endpoint": self.endpoint,
            "webhook_secret": mask(&self.webhook_secret),
            "timeout_seconds": self.timeout_seconds,
            "from": self.from,
        })
    }

    /// Builds the provider; makes no network call.
    pub async fn build(&self) -> Result<Arc<dyn Provider>, ConfigError> {
        self.validate()?;
        Ok(Arc::new(ResendProvider::new(self)?))
    }
}

/// Refuses a timeout outside 1–300 seconds.
fn check_timeout(value: Option<u64>) -> Result<(), ConfigError> {
    match value {
        Some(t) if !(1..=300).contains(&t) => Err(ConfigError::invalid(
            "timeout_seconds",
            "must be between 1 and 300",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;

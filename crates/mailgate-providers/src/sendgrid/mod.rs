//! Twilio SendGrid (`POST /v3/mail/send`): configuration, message mapping, failure
//! classification and verify.
//!
//! DSN: `sendgrid+api://API_KEY@default` with the options `region=global|eu` (EU regional
//! subusers use `https://api.eu.sendgrid.com`), `endpoint=URL` (tests, proxies; wins over the
//! region), `webhook_public_key=BASE64_DER` (the Signed Event Webhook's verification key),
//! `timeout_seconds=N` (default 30) and `from=ADDRESS` (the sender `verify` checks). The JSON
//! form takes the same fields: `{"type": "sendgrid", "api_key": "SG.…", …}`.

mod classify;
mod client;
mod mapping;
mod verify;
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

pub use client::{message_id, SendgridProvider};
pub use mapping::{category, send_request, RESERVED_HEADERS};

/// SendGrid's global API.
pub const GLOBAL_ENDPOINT: &str = "https://api.sendgrid.com";
/// SendGrid's API for EU regional subusers.
pub const EU_ENDPOINT: &str = "https://api.eu.sendgrid.com";
/// How long one request may take unless `timeout_seconds` says otherwise.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// The SendGrid provider's configuration; build it from a DSN or JSON, show it only via
/// `redacted()`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridConfig {
    /// The API key (`SG.…`); `mail.send` is enough to send, `verify` also reads senders.
    pub api_key: String,
    /// `global` (the default) or `eu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An endpoint override (tests, proxies); wins over `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The Signed Event Webhook's public key (base64 DER); public, kept for webhook checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_public_key: Option<String>,
    /// The per-request timeout in seconds (1–300, default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The usual sender, which `verify` checks (`noreply@acme.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl std::fmt::Debug for SendgridConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SendgridConfig({})", self.redacted())
    }
}

impl SendgridConfig {
    /// Parses `sendgrid+api://API_KEY@default?…`; unknown options are refused.
    pub fn from_dsn(mut dsn: Dsn) -> Result<Self, ConfigError> {
        if let Some(host) = &dsn.host {
            return Err(ConfigError::invalid(
                "host",
                format!("use 'default' as the host, not '{host}'; choose ?region=eu or override the endpoint with ?endpoint=URL"),
            ));
        }
        if dsn.password.is_some() {
            return Err(ConfigError::invalid(
                "api_key",
                "give the API key as the DSN user only: sendgrid+api://API_KEY@default",
            ));
        }
        let timeout_seconds =
            dsn.take_parsed::<u64>("timeout_seconds", "a whole number of seconds")?;
        let config = Self {
            api_key: dsn.user.take().unwrap_or_default(),
            region: dsn.take("region"),
            endpoint: dsn.take("endpoint"),
            webhook_public_key: dsn.take("webhook_public_key"),
            timeout_seconds,
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
                "required: sendgrid+api://API_KEY@default",
            ));
        }
        if !self.api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                "api_key",
                "must be printable ASCII without spaces",
            ));
        }
        self.base_url()?;
        if let Some(key) = &self.webhook_public_key {
            if key.is_empty() || STANDARD.decode(key.trim()).is_err() {
                return Err(ConfigError::invalid(
                    "webhook_public_key",
                    "must be the base64 public key shown in SendGrid's Signed Event Webhook settings",
                ));
            }
        }
        if matches!(self.timeout_seconds, Some(t) if !(1..=300).contains(&t)) {
            return Err(ConfigError::invalid(
                "timeout_seconds",
                "must be between 1 and 300",
            ));
        }
        if let Some(from) = &self.from {
            mailgate_core::address::Mailbox::parse(from, "from")
                .map_err(|e| ConfigError::invalid("from", e.to_string()))?;
        }
        Ok(())
    }

    /// The base URL requests go to: the endpoint override, else the region's API.
    pub fn base_url(&self) -> Result<String, ConfigError> {
        if let Some(e) = &self.endpoint {
            return crate::http::endpoint(e);
        }
        match self.region.as_deref() {
            None | Some("global") => Ok(GLOBAL_ENDPOINT.to_owned()),
            Some("eu") => Ok(EU_ENDPOINT.to_owned()),
            Some(other) => Err(ConfigError::invalid(
                "region",
                format!("unknown SendGrid region '{other}' (use global or eu)"),
            )),
        }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// The configuration as JSON with the API key masked (the webhook key is public).
    pub fn redacted(&self) -> Value {
        json!({
            "api_key": mask(&Some(self.api_key.clone())),
            "region": self.region,
            "endpoint": self.endpoint,
            "webhook_public_key": self.webhook_public_key,
            "timeout_seconds": self.timeout_seconds,
            "from": self.from,
        })
    }

    /// Builds the provider; makes no network call.
    pub async fn build(&self) -> Result<Arc<dyn Provider>, ConfigError> {
        self.validate()?;
        Ok(Arc::new(SendgridProvider::new(self)?))
    }
}

#[cfg(test)]
mod tests;

//! Mailgun through its HTTP API (`POST /v3/{domain}/messages`, multipart form): configuration,
//! the client, message mapping and failure classification.
//!
//! DSN: `mailgun+api://API_KEY@DOMAIN?region=eu` (`api:API_KEY@DOMAIN` works too), with the
//! options `region` (`us`, the default, or `eu`), `endpoint`, `webhook_signing_key` and
//! `timeout_seconds`. The JSON form has the same fields plus `api_key` and `domain`.
//!
//! `provider_options` (a JSON object) become form fields, replacing the mapped fields of the same
//! name: strings verbatim, numbers and booleans as text, objects as JSON text (so
//! `{"template": "welcome", "t:variables": {"name": "Ann"}}` sends a stored template with its
//! variables), arrays as repeated fields, `null` removes a field. Open and click tracking:
//! `o:tracking-opens`, `o:tracking-clicks`. With `template`, the message's text and HTML bodies
//! are left out: the template renders them.

mod classify;
mod client;
mod form;
mod mapping;
pub(crate) mod webhook;

use std::sync::Arc;
use std::time::Duration;

use mailgate_core::provider::Provider;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{mask, ConfigError};
use crate::dsn::Dsn;

pub use client::MailgunProvider;

/// The default request timeout in seconds.
const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// The Mailgun region a domain lives in; each has its own API host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailgunRegion {
    /// `https://api.mailgun.net`.
    #[default]
    Us,
    /// `https://api.eu.mailgun.net`.
    Eu,
}

impl MailgunRegion {
    /// The region's name as written in configuration (`us`, `eu`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Us => "us",
            Self::Eu => "eu",
        }
    }

    /// The region's API base URL.
    pub fn base_url(self) -> &'static str {
        match self {
            Self::Us => "https://api.mailgun.net",
            Self::Eu => "https://api.eu.mailgun.net",
        }
    }

    fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "us" => Ok(Self::Us),
            "eu" => Ok(Self::Eu),
            _ => Err(ConfigError::invalid("region", "must be 'us' or 'eu'")),
        }
    }
}

/// The Mailgun provider's configuration; build it from a DSN or JSON, show it only via
/// `redacted()`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunConfig {
    /// The account API key or the domain's sending key (secret).
    pub api_key: String,
    /// The sending domain, as registered in Mailgun (`mg.acme.com`).
    pub domain: String,
    /// The region the domain lives in.
    #[serde(default)]
    pub region: MailgunRegion,
    /// A base URL replacing the region's (tests, proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The key Mailgun signs its webhooks with (secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_signing_key: Option<String>,
    /// How long one request may take, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl std::fmt::Debug for MailgunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MailgunConfig({})", self.redacted())
    }
}

impl MailgunConfig {
    /// Parses `mailgun+api://API_KEY@DOMAIN?region=…&…`; unknown options are refused.
    pub fn from_dsn(mut dsn: Dsn) -> Result<Self, ConfigError> {
        let api_key = match (dsn.user.take(), dsn.password.take()) {
            (Some(user), Some(key)) if user == "api" => key,
            (Some(_), Some(_)) => return Err(ConfigError::invalid(
                "api_key",
                "give the API key as the DSN user (mailgun+api://KEY@DOMAIN) or as api:KEY@DOMAIN",
            )),
            (Some(key), None) => key,
            (None, _) => String::new(),
        };
        let domain = dsn.host.take().unwrap_or_default();
        let region = dsn
            .take("region")
            .map(|r| MailgunRegion::parse(&r))
            .transpose()?
            .unwrap_or_default();
        let timeout_seconds =
            dsn.take_parsed::<u64>("timeout_seconds", "a whole number of seconds")?;
        let config = Self {
            api_key,
            domain,
            region,
            endpoint: dsn.take("endpoint"),
            webhook_signing_key: dsn.take("webhook_signing_key"),
            timeout_seconds,
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
                "required: mailgun+api://API_KEY@DOMAIN",
            ));
        }
        if self.domain.is_empty() {
            return Err(ConfigError::invalid(
                "domain",
                "required: the sending domain as the DSN host (mailgun+api://API_KEY@mg.acme.com)",
            ));
        }
        let domain_ok = self.domain.contains('.')
            && self
                .domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !domain_ok {
            return Err(ConfigError::invalid(
                "domain",
                "not a domain name (e.g. mg.acme.com)",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            crate::http::endpoint(endpoint)?;
        }
        if matches!(self.webhook_signing_key.as_deref(), Some("")) {
            return Err(ConfigError::invalid(
                "webhook_signing_key",
                "must not be empty",
            ));
        }
        if let Some(t) = self.timeout_seconds {
            if !(1..=300).contains(&t) {
                return Err(ConfigError::invalid(
                    "timeout_seconds",
                    "must be between 1 and 300",
                ));
            }
        }
        Ok(())
    }

    /// The base URL requests go to: the endpoint override, else the region's.
    pub fn base_url(&self) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => self.region.base_url().to_owned(),
        }
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// The configuration as JSON with the API key and webhook signing key masked.
    pub fn redacted(&self) -> Value {
        json!({
            "api_key": mask(&Some(self.api_key.clone())),
            "domain": self.domain,
            "region": self.region.as_str(),
            "endpoint": self.endpoint,
            "webhook_signing_key": mask(&self.webhook_signing_key),
            "timeout_seconds": self.timeout_seconds,
        })
    }

    /// Builds the provider; makes no network call.
    pub async fn build(&self) -> Result<Arc<dyn Provider>, ConfigError> {
        self.validate()?;
        Ok(Arc::new(MailgunProvider::new(self)?))
    }
}

#[cfg(test)]
mod tests;

//! Postmark through its HTTP API (`POST /email`, `POST /email/withTemplate`): configuration, the
//! client, message mapping and failure classification.
//!
//! DSN: `postmark+api://SERVER_TOKEN@default?message_stream=outbound`, with the options
//! `account_token` (used only by `verify`, to check sender signatures and domains), `from` (the
//! usual sender, checked by `verify`), `endpoint`, `webhook_username`, `webhook_password` and
//! `timeout_seconds`. The JSON form has the same fields plus `server_token`.
//!
//! `provider_options` (a JSON object of Postmark's PascalCase fields) are merged into the request
//! body (`TrackOpens: true`, `TrackLinks: "HtmlAndText"`, `InlineCss`, …); a `null` removes a
//! field. With `TemplateAlias` or `TemplateId` (and `TemplateModel`) the message goes to
//! `/email/withTemplate` without `Subject`, `TextBody` or `HtmlBody`: the template renders them.
//! Postmark takes one `Tag`: the message's first tag is sent, the others are dropped.

mod classify;
mod client;
mod mapping;
pub(crate) mod webhook;

use std::sync::Arc;
use std::time::Duration;

use mailgate_core::provider::Provider;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{mask, ConfigError};
use crate::dsn::Dsn;

pub use client::PostmarkProvider;

/// Postmark's API base URL.
pub const DEFAULT_ENDPOINT: &str = "https://api.postmarkapp.com";
/// The default request timeout in seconds.
const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

fn default_stream() -> String {
    "outbound".into()
}

/// The Postmark provider's configuration; build it from a DSN or JSON, show it only via
/// `redacted()`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostmarkConfig {
    /// The server API token that sends (secret).
    pub server_token: String,
    /// The message stream messages are sent on (default `outbound`).
    #[serde(default = "default_stream")]
    pub message_stream: String,
    /// The account API token, used only to verify sender signatures and domains (secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_token: Option<String>,
    /// The usual sender, whose signature or domain `verify` checks (`noreply@acme.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A base URL replacing Postmark's (tests, proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The user name Postmark's webhooks authenticate with (secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_username: Option<String>,
    /// The password Postmark's webhooks authenticate with (secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_password: Option<String>,
    /// How long one request may take, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl std::fmt::Debug for PostmarkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostmarkConfig({})", self.redacted())
    }
}

impl PostmarkConfig {
    /// Parses `postmark+api://SERVER_TOKEN@default?…`; unknown options are refused.
    pub fn from_dsn(mut dsn: Dsn) -> Result<Self, ConfigError> {
        if let Some(host) = &dsn.host {
            return Err(ConfigError::invalid(
                "host",
                format!("use 'default' as the host, not '{host}'; override the endpoint with ?endpoint=URL"),
            ));
        }
        if dsn.password.is_some() {
            return Err(ConfigError::invalid(
                "server_token",
                "give the server token as the DSN user: postmark+api://SERVER_TOKEN@default",
            ));
        }
        let timeout_seconds =
            dsn.take_parsed::<u64>("timeout_seconds", "a whole number of seconds")?;
        let config = Self {
            server_token: dsn.user.take().unwrap_or_default(),
            message_stream: dsn.take("message_stream").unwrap_or_else(default_stream),
            account_token: dsn.take("account_token"),
            from: dsn.take("from"),
            endpoint: dsn.take("endpoint"),
            webhook_username: dsn.take("webhook_username"),
            webhook_password: dsn.take("webhook_password"),
            timeout_seconds,
        };
        dsn.finish()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields together; `build` calls it too, so the JSON form gets the same checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server_token.trim().is_empty() {
            return Err(ConfigError::invalid(
                "server_token",
                "required: postmark+api://SERVER_TOKEN@default",
            ));
        }
        let stream_ok = !self.message_stream.is_empty()
            && self
                .message_stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !stream_ok {
            return Err(ConfigError::invalid(
                "message_stream",
                "a message stream id: letters, digits, '-' and '_' (e.g. outbound)",
            ));
        }
        for (field, value) in [
            ("account_token", &self.account_token),
            ("webhook_username", &self.webhook_username),
            ("webhook_password", &self.webhook_password),
        ] {
            if matches!(value.as_deref(), Some("")) {
                return Err(ConfigError::invalid(field, "must not be empty"));
            }
        }
        if self.webhook_username.is_some() != self.webhook_password.is_some() {
            return Err(ConfigError::invalid(
                "webhook_password",
                "give both webhook_username and webhook_password, or neither",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            crate::http::endpoint(endpoint)?;
        }
        if let Some(from) = &self.from {
            mailgate_core::address::Mailbox::parse(from, "from")
                .map_err(|e| ConfigError::invalid("from", e.to_string()))?;
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

    /// The base URL requests go to.
    pub fn base_url(&self) -> String {
        self.endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_owned()
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// The configuration as JSON with the tokens and webhook credentials masked.
    pub fn redacted(&self) -> Value {
        json!({
            "server_token": mask(&Some(self.server_token.clone())),
            "message_stream": self.message_stream,
            "account_token": mask(&self.account_token),
            "from": self.from,
            "endpoint": self.endpoint,
            "webhook_username": mask(&self.webhook_username),
            "webhook_password": mask(&self.webhook_password),
            "timeout_seconds": self.timeout_seconds,
        })
    }

    /// Builds the provider; makes no network call.
    pub async fn build(&self) -> Result<Arc<dyn Provider>, ConfigError> {
        self.validate()?;
        Ok(Arc::new(PostmarkProvider::new(self)?))
    }
}

#[cfg(test)]
mod tests;

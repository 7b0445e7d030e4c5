//! Amazon SES through the v2 API (`aws-sdk-sesv2`): configuration, the AWS client, message
//! mapping, failure classification and the send-rate limit.
//!
//! DSN: `ses+api://ACCESS_KEY:SECRET@default?region=us-east-1` (static keys) or
//! `ses+api://default?region=…` (the default AWS credential chain), with the options
//! `role_arn`, `external_id`, `configuration_set`, `endpoint`, `max_send_rate`, `from` and
//! `tenant_from_organization` (`true`: a message for an organization is sent with the
//! organization's name as SES `TenantName`, unless its `provider_options` name one).

mod classify;
mod client;
mod mapping;
mod rate;
mod verify;
pub(crate) mod webhook;

use std::sync::Arc;

use mailgate_core::provider::Provider;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{mask, ConfigError};
use crate::dsn::Dsn;

pub use client::SesProvider;
pub use mapping::sanitize_tag;

/// The SES provider's configuration; build it from a DSN or JSON, show it only via `redacted()`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesConfig {
    /// The AWS region whose SES endpoint and identities are used (required).
    pub region: String,
    /// A static access key id; without one the default AWS credential chain is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The static secret access key that goes with `access_key_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// A role to assume (with the base credentials) before calling SES; session name `mailgate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The SES configuration set named on every send (event publishing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_set: Option<String>,
    /// An endpoint override (tests, SES-compatible services), e.g. `http://127.0.0.1:5000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A per-second send cap used when `GetAccount` is not allowed (the lower of both wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_send_rate: Option<u32>,
    /// The usual sender, checked by `verify` (`noreply@acme.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Send a message for an organization with `TenantName` = the organization's name (an
    /// explicit `provider_options.TenantName` wins). SES tenants isolate reputation per
    /// customer; every resource a send names must belong to the tenant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tenant_from_organization: bool,
    /// The SNS topic ARNs (comma-separated) whose notifications the event webhook accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns_topic_arn: Option<String>,
    /// TESTS ONLY, never in production: SNS certificate and SubscribeURL URLs starting with this
    /// prefix are trusted in place of the `sns.<region>.amazonaws.com` host rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dangerous_sns_cert_url_prefix: Option<String>,
    /// TESTS ONLY, never in production: a PEM CA trusted when fetching SNS certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dangerous_sns_ca_file: Option<String>,
}

impl std::fmt::Debug for SesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SesConfig({})", self.redacted())
    }
}

impl SesConfig {
    /// Parses `ses+api://[KEY:SECRET@]default?region=…&…`; unknown options are refused.
    pub fn from_dsn(mut dsn: Dsn) -> Result<Self, ConfigError> {
        if let Some(host) = &dsn.host {
            return Err(ConfigError::invalid(
                "host",
                format!("use 'default' as the host, not '{host}'; override the endpoint with ?endpoint=URL"),
            ));
        }
        let max_send_rate =
            dsn.take_parsed::<u32>("max_send_rate", "a whole number of messages per second")?;
        let tenant_from_organization = dsn
            .take_parsed::<bool>("tenant_from_organization", "true or false")?
            .unwrap_or(false);
        let config = Self {
            region: dsn.take("region").unwrap_or_default(),
            access_key_id: dsn.user.take(),
            secret_access_key: dsn.password.take(),
            role_arn: dsn.take("role_arn"),
            external_id: dsn.take("external_id"),
            configuration_set: dsn.take("configuration_set"),
            endpoint: dsn.take("endpoint"),
            max_send_rate,
            from: dsn.take("from"),
            tenant_from_organization,
            sns_topic_arn: dsn.take("sns_topic_arn"),
            dangerous_sns_cert_url_prefix: dsn.take("dangerous_sns_cert_url_prefix"),
            dangerous_sns_ca_file: dsn.take("dangerous_sns_ca_file"),
        };
        dsn.finish()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields together; `build` calls it too, so the JSON form gets the same checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.region.trim().is_empty() {
            return Err(ConfigError::invalid(
                "region",
                "required: the AWS region of your SES identities, e.g. region=us-east-1",
            ));
        }
        if !self
            .region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ConfigError::invalid(
                "region",
                "not an AWS region name (e.g. eu-west-1)",
            ));
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) | (None, Some(_)) => return Err(ConfigError::invalid(
                "secret_access_key",
                "give both the access key id and the secret, or neither (default credential chain)",
            )),
            (Some(k), Some(s)) if k.is_empty() || s.is_empty() => {
                return Err(ConfigError::invalid("access_key_id", "must not be empty"))
            }
            _ => {}
        }
        if self.external_id.is_some() && self.role_arn.is_none() {
            return Err(ConfigError::invalid(
                "external_id",
                "only meaningful with role_arn",
            ));
        }
        if let Some(arn) = &self.role_arn {
            if !arn.starts_with("arn:") {
                return Err(ConfigError::invalid(
                    "role_arn",
                    "must be an IAM role ARN (arn:aws:iam::…:role/…)",
                ));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            let ok = url::Url::parse(endpoint)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .unwrap_or(false);
            if !ok {
                return Err(ConfigError::invalid("endpoint", "must be an http(s) URL"));
            }
        }
        if self.dangerous_sns_cert_url_prefix.is_some() || self.dangerous_sns_ca_file.is_some() {
            tracing::warn!(
                "SES webhook: dangerous_sns_* test options are set; never use them in production"
            );
        }
        if self.max_send_rate == Some(0) {
            return Err(ConfigError::invalid("max_send_rate", "must be at least 1"));
        }
        if let Some(from) = &self.from {
            mailgate_core::address::Mailbox::parse(from, "from")
                .map_err(|e| ConfigError::invalid("from", e.to_string()))?;
        }
        Ok(())
    }

    /// The configuration as JSON with the secret access key masked.
    pub fn redacted(&self) -> Value {
        json!({
            "region": self.region,
            "access_key_id": self.access_key_id,
            "secret_access_key": mask(&self.secret_access_key),
            "role_arn": self.role_arn,
            "external_id": self.external_id,
            "configuration_set": self.configuration_set,
            "endpoint": self.endpoint,
            "max_send_rate": self.max_send_rate,
            "from": self.from,
            "tenant_from_organization": self.tenant_from_organization,
            "sns_topic_arn": self.sns_topic_arn,
            "dangerous_sns_cert_url_prefix": self.dangerous_sns_cert_url_prefix,
            "dangerous_sns_ca_file": self.dangerous_sns_ca_file,
        })
    }

    /// Builds the provider; makes no network call (credentials and the send rate are resolved
    /// lazily).
    pub async fn build(&self) -> Result<Arc<dyn Provider>, ConfigError> {
        self.validate()?;
        Ok(Arc::new(SesProvider::new(self).await))
    }
}

#[cfg(test)]
mod tests;

//! Provider configuration: one tagged enum whose variants each provider module defines. Built from
//! a DSN (`ProviderConfig::from_dsn`) or from JSON (`{"type": "ses", …}` or `{"dsn": "…"}`),
//! stored encrypted, shown only through `redacted()`.

use std::sync::Arc;

use mailgate_core::provider::Provider;
use mailgate_core::store::CaptureStore;
use mailgate_core::Clock;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capture::CaptureConfig;
use crate::dsn::Dsn;
use crate::mailgun::MailgunConfig;
use crate::postmark::PostmarkConfig;
use crate::resend::ResendConfig;
use crate::sendgrid::SendgridConfig;
use crate::ses::SesConfig;
use crate::smtp::SmtpConfig;

/// A refused provider configuration. Messages name the field, never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A provider type this build does not know.
    #[error("unknown provider type '{0}' (known: capture, smtp, smtps, ses+smtp, ses+api, mailgun+api, postmark+api, resend+api, sendgrid+api)")]
    UnknownType(String),
    /// A field is missing or wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field or DSN option.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A refused field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What building a provider may need from the process.
#[derive(Clone)]
pub struct BuildContext {
    /// Where `capture` stores messages.
    pub capture_store: Arc<dyn CaptureStore>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// A provider's whole configuration, secrets included. Never log it; show `redacted()`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderConfig {
    /// The built-in capture provider.
    Capture(CaptureConfig),
    /// Any SMTP server (SES SMTP included).
    Smtp(SmtpConfig),
    /// Amazon SES through the v2 API.
    Ses(SesConfig),
    /// Mailgun (US or EU).
    Mailgun(MailgunConfig),
    /// Postmark.
    Postmark(PostmarkConfig),
    /// Resend.
    Resend(ResendConfig),
    /// Twilio SendGrid (global or EU).
    Sendgrid(SendgridConfig),
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderConfig({})", self.redacted())
    }
}

impl ProviderConfig {
    /// Parses a DSN.
    pub fn from_dsn(s: &str) -> Result<Self, ConfigError> {
        Self::from_parsed_dsn(Dsn::parse(s)?)
    }

    /// Builds from a parsed DSN (whose chain options the caller may have taken out).
    pub fn from_parsed_dsn(dsn: Dsn) -> Result<Self, ConfigError> {
        match dsn.scheme.as_str() {
            "capture" => CaptureConfig::from_dsn(dsn).map(Self::Capture),
            "smtp" | "smtps" | "ses+smtp" => SmtpConfig::from_dsn(dsn).map(Self::Smtp),
            "ses" | "ses+api" => SesConfig::from_dsn(dsn).map(Self::Ses),
            "mailgun" | "mailgun+api" => MailgunConfig::from_dsn(dsn).map(Self::Mailgun),
            "postmark" | "postmark+api" => PostmarkConfig::from_dsn(dsn).map(Self::Postmark),
            "resend" | "resend+api" => ResendConfig::from_dsn(dsn).map(Self::Resend),
            "sendgrid" | "sendgrid+api" => SendgridConfig::from_dsn(dsn).map(Self::Sendgrid),
            other => Err(ConfigError::UnknownType(other.to_owned())),
        }
    }

    /// Parses the JSON form: `{"dsn": "…"}` or `{"type": "…", …fields}`.
    pub fn from_json(value: Value) -> Result<Self, ConfigError> {
        if let Some(obj) = value.as_object() {
            if let Some(dsn) = obj.get("dsn") {
                if obj.len() > 1 {
                    return Err(ConfigError::invalid(
                        "dsn",
                        "give either a dsn or typed fields, not both",
                    ));
                }
                let dsn = dsn
                    .as_str()
                    .ok_or_else(|| ConfigError::invalid("dsn", "must be a string"))?;
                return Self::from_dsn(dsn);
            }
            match obj.get("type").and_then(Value::as_str) {
                None => {
                    return Err(ConfigError::invalid(
                        "type",
                        "a provider needs a type or a dsn",
                    ))
                }
                Some(t)
                    if !matches!(
                        t,
                        "capture" | "smtp" | "ses" | "mailgun" | "postmark" | "resend" | "sendgrid"
                    ) =>
                {
                    return Err(ConfigError::UnknownType(t.to_owned()))
                }
                Some(_) => {}
            }
        }
        serde_json::from_value(value).map_err(|e| ConfigError::invalid("provider", e.to_string()))
    }

    /// The provider's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Capture(_) => "capture",
            Self::Smtp(_) => "smtp",
            Self::Ses(_) => "ses",
            Self::Mailgun(_) => "mailgun",
            Self::Postmark(_) => "postmark",
            Self::Resend(_) => "resend",
            Self::Sendgrid(_) => "sendgrid",
        }
    }

    /// The configuration as JSON with every secret masked; safe to show and log.
    pub fn redacted(&self) -> Value {
        let mut v = match self {
            Self::Capture(c) => c.redacted(),
            Self::Smtp(c) => c.redacted(),
            Self::Ses(c) => c.redacted(),
            Self::Mailgun(c) => c.redacted(),
            Self::Postmark(c) => c.redacted(),
            Self::Resend(c) => c.redacted(),
            Self::Sendgrid(c) => c.redacted(),
        };
        if let Some(obj) = v.as_object_mut() {
            obj.insert("type".into(), Value::from(self.type_name()));
        }
        v
    }

    /// Builds the provider.
    pub async fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ConfigError> {
        match self {
            Self::Capture(c) => Ok(c.build(ctx)),
            Self::Smtp(c) => c.build().await,
            Self::Ses(c) => c.build().await,
            Self::Mailgun(c) => c.build().await,
            Self::Postmark(c) => c.build().await,
            Self::Resend(c) => c.build().await,
            Self::Sendgrid(c) => c.build().await,
        }
    }
}

/// The mask shown in place of a secret.
pub const MASK: &str = "********";

/// Masks a secret for display, keeping nothing of it.
pub fn mask(secret: &Option<String>) -> Value {
    match secret {
        Some(_) => Value::from(MASK),
        None => Value::Null,
    }
}

//! The `Provider` trait every delivery backend implements, and the classification of its
//! failures into retryable and permanent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::environment::OrganizationName;
use crate::ids::EnvironmentId;
use crate::message::ClaimedMessage;
use crate::routing::Route;

/// What a provider said when it took a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The provider's own id for the message, used to match its webhooks later.
    pub provider_message_id: Option<String>,
    /// True when the provider itself is the final destination (`capture`): the message is
    /// delivered, not merely sent.
    pub final_delivery: bool,
}

/// A failed attempt, classified at the provider boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later: throttling, 5xx, timeouts, connection errors.
    #[error("{code}: {message}")]
    Retryable {
        /// The provider's own code (or a mailgate code such as `timeout`).
        code: String,
        /// What happened, actionable where possible.
        message: String,
        /// The earliest moment the provider asked us to retry.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the message or a recipient was refused (invalid content, a
    /// hard-bounced address). Another provider would refuse it too, so a chain never fails over
    /// on it.
    #[error("{code}: {message}")]
    Permanent {
        /// The provider's own code.
        code: String,
        /// What happened, actionable where possible.
        message: String,
    },
    /// The provider cannot send anything until its operator acts: bad credentials, sending
    /// paused, an unverified sender or domain, an exhausted plan. Not the message's fault: a
    /// chain moves on to its next provider; a provider alone fails the message like `Permanent`.
    #[error("{code}: {message}")]
    Unusable {
        /// The provider's own code.
        code: String,
        /// What happened, actionable where possible.
        message: String,
    },
}

impl SendError {
    /// A retryable failure without a retry-after hint.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Retryable {
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Permanent {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A provider-side permanent failure (see [`SendError::Unusable`]).
    pub fn unusable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unusable {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The failure's code.
    pub fn code(&self) -> &str {
        match self {
            Self::Retryable { code, .. }
            | Self::Permanent { code, .. }
            | Self::Unusable { code, .. } => code,
        }
    }

    /// The failure's message.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable { message, .. }
            | Self::Permanent { message, .. }
            | Self::Unusable { message, .. } => message,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// Whether the failure is the provider's rather than the message's: an outage, throttling,
    /// a timeout, bad credentials, paused sending. Only these move a message to the next
    /// provider of a chain and count against the provider's circuit breaker.
    pub fn is_provider_fault(&self) -> bool {
        matches!(self, Self::Retryable { .. } | Self::Unusable { .. })
    }
}

/// What a verification check looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckAspect {
    /// Reaching the provider at all (DNS, TLS, the endpoint).
    Connection,
    /// The credentials are accepted and allowed to send.
    Credentials,
    /// The sender address or its domain is verified with the provider.
    Sender,
    /// Sandbox, quota, sending paused, plan limits.
    Quota,
    /// The region or endpoint in use.
    Region,
    /// The inbound webhook's verification settings.
    Webhook,
}

/// How a verification check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Sending works, but something needs attention (sandbox, a quota nearly used).
    Warning,
    /// Sending cannot work until this is fixed.
    Failed,
    /// Not checked (the provider offers no way, or the credentials do not allow it).
    Skipped,
}

/// One finding of a verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyCheck {
    /// What was checked.
    pub aspect: CheckAspect,
    /// How it came out.
    pub status: CheckStatus,
    /// What was found, in plain words (never a secret).
    pub detail: String,
}

impl VerifyCheck {
    /// A check that passed.
    pub fn ok(aspect: CheckAspect, detail: impl Into<String>) -> Self {
        Self::new(aspect, CheckStatus::Ok, detail)
    }

    /// A check that passed with a caveat.
    pub fn warning(aspect: CheckAspect, detail: impl Into<String>) -> Self {
        Self::new(aspect, CheckStatus::Warning, detail)
    }

    /// A check that failed.
    pub fn failed(aspect: CheckAspect, detail: impl Into<String>) -> Self {
        Self::new(aspect, CheckStatus::Failed, detail)
    }

    /// A check that was not made.
    pub fn skipped(aspect: CheckAspect, detail: impl Into<String>) -> Self {
        Self::new(aspect, CheckStatus::Skipped, detail)
    }

    /// A check.
    pub fn new(aspect: CheckAspect, status: CheckStatus, detail: impl Into<String>) -> Self {
        Self {
            aspect,
            status,
            detail: detail.into(),
        }
    }
}

/// The result of checking a provider's configuration against the provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    /// Whether sending can work: no check failed.
    pub ok: bool,
    /// The findings.
    pub checks: Vec<VerifyCheck>,
}

impl VerifyReport {
    /// A report of these checks; `ok` unless one failed.
    pub fn from_checks(checks: Vec<VerifyCheck>) -> Self {
        Self {
            ok: !checks.iter().any(|c| c.status == CheckStatus::Failed),
            checks,
        }
    }

    /// The checks about one aspect.
    pub fn about(&self, aspect: CheckAspect) -> impl Iterator<Item = &VerifyCheck> {
        self.checks.iter().filter(move |c| c.aspect == aspect)
    }
}

/// A delivery backend: capture, SMTP, SES, Mailgun, … or a test double.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's type name (`capture`, `smtp`, `ses`, …), recorded on each attempt.
    fn name(&self) -> &str;

    /// Delivers one message. Implementations must not retry; the dispatcher does.
    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError>;

    /// Checks the configuration against the provider.
    async fn verify(&self) -> Result<VerifyReport, SendError> {
        Ok(VerifyReport::from_checks(vec![VerifyCheck::skipped(
            CheckAspect::Credentials,
            "this provider has nothing to verify",
        )]))
    }
}

/// Finds the providers that deliver an environment's messages.
#[async_trait]
pub trait ProviderResolver: Send + Sync + 'static {
    /// The route for `environment`, or for one of its organizations (the organization's own
    /// route where one is set, else the environment's).
    async fn route(
        &self,
        environment: &EnvironmentId,
        organization: Option<&OrganizationName>,
    ) -> Result<Arc<Route>, SendError>;
}

/// A resolver that gives every environment the same provider.
pub struct SingleProvider(pub Arc<dyn Provider>);

#[async_trait]
impl ProviderResolver for SingleProvider {
    async fn route(
        &self,
        _environment: &EnvironmentId,
        _organization: Option<&OrganizationName>,
    ) -> Result<Arc<Route>, SendError> {
        Ok(Arc::new(Route::single(self.0.clone())))
    }
}

//! The `Provider` trait every delivery backend implements, and the classification of its
//! failures into retryable and permanent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::EnvironmentId;
use crate::message::ClaimedMessage;

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
    /// Retrying cannot help: rejected message, unverified sender, bad credentials.
    #[error("{code}: {message}")]
    Permanent {
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

    /// The failure's code.
    pub fn code(&self) -> &str {
        match self {
            Self::Retryable { code, .. } | Self::Permanent { code, .. } => code,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }
}

/// The result of checking a provider's configuration against the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Whether sending can work.
    pub ok: bool,
    /// Findings, in plain words.
    pub checks: Vec<String>,
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
        Ok(VerifyReport {
            ok: true,
            checks: vec!["nothing to verify".into()],
        })
    }
}

/// Finds the provider that delivers an environment's messages.
#[async_trait]
pub trait ProviderResolver: Send + Sync + 'static {
    /// The provider for `environment`.
    async fn resolve(&self, environment: &EnvironmentId) -> Result<Arc<dyn Provider>, SendError>;
}

/// A resolver that gives every environment the same provider.
pub struct SingleProvider(pub Arc<dyn Provider>);

#[async_trait]
impl ProviderResolver for SingleProvider {
    async fn resolve(&self, _environment: &EnvironmentId) -> Result<Arc<dyn Provider>, SendError> {
        Ok(self.0.clone())
    }
}

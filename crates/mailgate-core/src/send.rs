//! The send service: turns a validated request into a durably queued message.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::environment::Environment;
use crate::ids::MessageId;
use crate::message::{Content, EnqueueOutcome, Idempotency, Limits, NewMessage};
use crate::retry::RetryPolicy;
use crate::store::{MessageStore, StoreError};
use crate::time::Clock;
use crate::validation::FieldError;

/// A send whose parts are each valid; `validate` checks the whole against the limits.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// What to deliver.
    pub content: Content,
    /// Labels.
    pub tags: Vec<String>,
    /// Caller's metadata.
    pub metadata: BTreeMap<String, String>,
    /// Provider overrides (a JSON object).
    pub provider_options: Option<serde_json::Value>,
}

impl SendRequest {
    /// Checks the rules that span fields: a recipient, a body, and the size limits.
    pub fn validate(&self, limits: &Limits) -> Result<(), FieldError> {
        let c = &self.content;
        let recipients = c.recipients().count();
        if recipients == 0 {
            return Err(FieldError::new(
                "missing_recipient",
                "to",
                "at least one recipient is required in to, cc or bcc",
            ));
        }
        if recipients > limits.max_recipients {
            return Err(FieldError::new(
                "too_many_recipients",
                "to",
                format!(
                    "at most {} recipients across to, cc and bcc",
                    limits.max_recipients
                ),
            ));
        }
        if c.subject.trim().is_empty() {
            return Err(FieldError::new(
                "missing_subject",
                "subject",
                "a subject is required",
            ));
        }
        if c.text.as_deref().is_none_or(str::is_empty)
            && c.html.as_deref().is_none_or(str::is_empty)
        {
            return Err(FieldError::new(
                "missing_content",
                "text",
                "text or html content is required",
            ));
        }
        if c.body_bytes() > limits.max_body_bytes {
            return Err(FieldError::new(
                "body_too_large",
                "html",
                format!("subject and bodies exceed {} bytes", limits.max_body_bytes),
            ));
        }
        if c.attachments.len() > limits.max_attachments {
            return Err(FieldError::new(
                "too_many_attachments",
                "attachments",
                format!("at most {} attachments", limits.max_attachments),
            ));
        }
        if c.attachment_bytes() > limits.max_attachment_bytes {
            return Err(FieldError::new(
                "attachments_too_large",
                "attachments",
                format!("attachments exceed {} bytes", limits.max_attachment_bytes),
            ));
        }
        if self.tags.len() > limits.max_tags {
            return Err(FieldError::new(
                "too_many_tags",
                "tags",
                format!("at most {} tags", limits.max_tags),
            ));
        }
        if self.metadata.len() > limits.max_metadata {
            return Err(FieldError::new(
                "too_many_metadata",
                "metadata",
                format!("at most {} metadata entries", limits.max_metadata),
            ));
        }
        Ok(())
    }
}

/// The result of an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Newly queued.
    Accepted(MessageId),
    /// The idempotency key matched an earlier identical send: the original message.
    Replayed(MessageId),
}

/// Why a send was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendServiceError {
    /// The request breaks a rule.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The idempotency key was used with another request.
    #[error("idempotency key already used with a different request for {0}")]
    IdempotencyConflict(MessageId),
    /// The store failed; nothing was accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Accepts sends: validate, store durably, wake the dispatcher.
#[derive(Clone)]
pub struct SendService {
    store: Arc<dyn MessageStore>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    retry: RetryPolicy,
    wake: Arc<Notify>,
}

impl SendService {
    /// A send service; `wake` is shared with the in-process dispatcher.
    pub fn new(
        store: Arc<dyn MessageStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        retry: RetryPolicy,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            clock,
            limits,
            retry,
            wake,
        }
    }

    /// The limits requests are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Accepts a send for `env`. Returns only after the message is committed.
    #[tracing::instrument(skip_all, fields(environment.id = %env.id))]
    pub async fn send(
        &self,
        env: &Environment,
        request: SendRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<SendOutcome, SendServiceError> {
        request.validate(&self.limits)?;
        let message = NewMessage {
            id: MessageId::new(),
            environment_id: env.id,
            content: request.content,
            tags: request.tags,
            metadata: request.metadata,
            provider_options: request.provider_options,
            idempotency,
            max_attempts: self.retry.max_attempts,
            created_at: self.clock.now(),
        };
        match self.store.enqueue(message).await? {
            EnqueueOutcome::Created(id) => {
                tracing::debug!(message.id = %id, "message queued");
                self.wake.notify_one();
                Ok(SendOutcome::Accepted(id))
            }
            EnqueueOutcome::Replayed(id) => Ok(SendOutcome::Replayed(id)),
            EnqueueOutcome::Conflict(id) => Err(SendServiceError::IdempotencyConflict(id)),
        }
    }
}

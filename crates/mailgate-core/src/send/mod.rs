//! The send service: turns a validated request into a durably queued message — resolving and
//! rendering its template, applying the environment's defaults, tracking and expiry, and
//! noting which data values are secrets.

mod request;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::address::Mailbox;
use crate::environment::{Environment, OrganizationName};
use crate::ids::MessageId;
use crate::message::{
    Content, Delivery, EnqueueOutcome, Idempotency, Limits, NewMessage, TemplateChoice,
};
use crate::redact::secret_values;
use crate::retry::RetryPolicy;
use crate::settings::{EnvironmentSettings, RecipientRateLimit, Tracking};
use crate::store::{Storage, StoreError};
use crate::suppression::Suppression;
use crate::template::{resolve, Rendered, Resolved};
use crate::time::{Clock, Timestamp};
use crate::validation::FieldError;

pub use request::{Draft, Expiry, SendRequest, TemplateUse};

/// The result of an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Newly queued.
    Accepted(MessageId),
    /// The idempotency key matched an earlier identical send: the original message.
    Replayed(MessageId),
}

impl SendOutcome {
    /// The message's id either way.
    pub fn id(self) -> MessageId {
        match self {
            Self::Accepted(id) | Self::Replayed(id) => id,
        }
    }
}

/// Something the caller should know about an accepted send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable snake_case code.
    pub code: &'static str,
    /// Why it matters, in words.
    pub message: String,
}

/// An accepted send with what the service noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Queued or replayed.
    pub outcome: SendOutcome,
    /// Warnings for the caller (e.g. tracking on a magic link).
    pub warnings: Vec<Warning>,
}

/// Why a send was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendServiceError {
    /// The request breaks a rule (including a template that cannot render).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The idempotency key was used with another request.
    #[error("idempotency key already used with a different request for {0}")]
    IdempotencyConflict(MessageId),
    /// A recipient is on the environment's suppression list; nothing was accepted.
    #[error("recipient {field} is suppressed")]
    Suppressed {
        /// The recipient's field (`to[0]`, `cc[1]`, …).
        field: String,
        /// The suppression (reason and date).
        suppression: Box<Suppression>,
    },
    /// A recipient got as many messages as the environment's per-recipient cap allows in its
    /// window; nothing was accepted.
    #[error("recipient {field} has reached the environment's message limit")]
    RecipientRateLimited {
        /// The recipient's field (`to[0]`, …).
        field: String,
        /// When a message to it will be accepted again.
        retry_after: Duration,
    },
    /// The store failed; nothing was accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Accepts sends: render, validate, store durably, wake the dispatcher.
#[derive(Clone)]
pub struct SendService {
    store: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    retry: RetryPolicy,
    wake: Arc<Notify>,
}

/// A request turned into content, with the template it came from.
struct Prepared {
    content: Content,
    provider_options: Option<Value>,
    template: Option<TemplateChoice>,
    data: Map<String, Value>,
    auth: bool,
    magic_link: bool,
}

impl SendService {
    /// A send service; `wake` is shared with the in-process dispatcher.
    pub fn new(
        store: Arc<dyn Storage>,
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
    pub async fn send(
        &self,
        env: &Environment,
        request: SendRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<SendOutcome, SendServiceError> {
        Ok(self.send_detailed(env, request, idempotency).await?.outcome)
    }

    /// Like [`SendService::send`], with the warnings for the caller.
    #[tracing::instrument(skip_all, fields(environment.id = %env.id))]
    pub async fn send_detailed(
        &self,
        env: &Environment,
        request: SendRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Accepted, SendServiceError> {
        let settings = self.store.get_settings(&env.id).await?;
        let now = self.clock.now();
        let expires_at = expiry(request.expiry, now)?;
        let (track_opens, track_links) = (request.track_opens, request.track_links);
        let (tags, metadata) = (request.tags.clone(), request.metadata.clone());
        let organization = request.organization.clone();
        let mut request = request;
        if request.draft.from.is_none() {
            if let Some(org) = &organization {
                request.draft.from = self.organization_sender(env, org).await?;
            }
        }
        let p = self.prepare(env, &settings, request).await?;
        request::check(
            &p.content,
            tags.len(),
            metadata.len(),
            &self.limits,
            p.template.is_some() && p.content.text.is_none() && p.content.html.is_none(),
        )?;
        // Auth mail: tracking is off unless the caller turns it on; otherwise the environment's.
        let default = if p.auth {
            Tracking::default()
        } else {
            settings.tracking
        };
        let tracking = Tracking {
            opens: track_opens.unwrap_or(default.opens),
            links: track_links.unwrap_or(default.links),
        };
        if let Some(limit) = &settings.recipient_rate_limit {
            let usage = limit
                .per_usage
                .then(|| p.template.as_ref().map_or("", |t| t.requested.as_str()));
            self.check_recipient_rate(env, &p.content, limit, usage, now)
                .await?;
        }
        let fields: Vec<(String, String)> = recipients(&p.content).collect();
        let sandboxed = settings
            .sandbox
            .holds(fields.iter().map(|(_, a)| a.as_str()));
        let mut warnings = Vec::new();
        if p.auth && (tracking.opens || tracking.links) {
            warnings.push(tracking_warning(p.magic_link, tracking));
        }
        let message = NewMessage {
            id: MessageId::new(),
            environment_id: env.id,
            content: p.content,
            tags,
            metadata,
            provider_options: p.provider_options,
            idempotency,
            max_attempts: self.retry.max_attempts,
            created_at: now,
            delivery: Delivery {
                expires_at,
                tracking,
                organization,
                sandboxed,
            },
            secrets: secret_values(&p.data, &settings.secret_fields),
            template: p.template,
        };
        let outcome = match self.store.enqueue(message).await? {
            EnqueueOutcome::Created(id) => {
                tracing::debug!(message.id = %id, "message queued");
                self.wake.notify_one();
                SendOutcome::Accepted(id)
            }
            EnqueueOutcome::Replayed(id) => SendOutcome::Replayed(id),
            EnqueueOutcome::Conflict(id) => return Err(SendServiceError::IdempotencyConflict(id)),
            EnqueueOutcome::Suppressed(found) => return Err(suppressed(fields, found)),
        };
        Ok(Accepted { outcome, warnings })
    }

    /// Refuses the send if a recipient already got `limit.max` messages in the window (of this
    /// usage type when `usage` is given); the error says when it will be accepted again.
    async fn check_recipient_rate(
        &self,
        env: &Environment,
        content: &Content,
        limit: &RecipientRateLimit,
        usage: Option<&str>,
        now: Timestamp,
    ) -> Result<(), SendServiceError> {
        let window = Duration::from_secs(u64::from(limit.window_seconds));
        let since = now.minus(window);
        for (field, address) in recipients(content) {
            let recent = self
                .store
                .recent_sends_to(&env.id, &address, usage, since, limit.max)
                .await?;
            if recent.len() >= limit.max as usize {
                // A suppressed recipient is the lasting reason: say so rather than "retry later".
                // (Suppressions are otherwise checked in the enqueue transaction; this read only
                // happens on the refusal path.)
                let fields: Vec<(String, String)> = recipients(content).collect();
                let addresses: Vec<String> = fields.iter().map(|(_, a)| a.clone()).collect();
                let found = self
                    .store
                    .find_suppressions(&env.id, &addresses, now)
                    .await?;
                if !found.is_empty() {
                    return Err(suppressed(fields, found));
                }
                // Accepted again once the oldest of the newest `max` leaves the window.
                let oldest = recent.iter().min().copied().unwrap_or(now);
                let free_at = oldest.plus(window);
                let retry_after =
                    Duration::from_millis(u64::try_from(free_at.0 - now.0).unwrap_or(0).max(1000));
                tracing::info!(field = %field, "send refused: recipient rate limit");
                return Err(SendServiceError::RecipientRateLimited { field, retry_after });
            }
        }
        Ok(())
    }

    /// The sender set for an organization (`sender` of its provider chain), if any.
    async fn organization_sender(
        &self,
        env: &Environment,
        org: &OrganizationName,
    ) -> Result<Option<Mailbox>, SendServiceError> {
        let Some(config) = self
            .store
            .get_provider_config(&env.id, org.as_str())
            .await?
        else {
            return Ok(None);
        };
        match config.redacted.get("sender").and_then(Value::as_str) {
            Some(sender) => Ok(Some(Mailbox::parse(sender, "organization.sender")?)),
            None => Ok(None),
        }
    }

    /// Resolves and renders the template (if any) and composes the content.
    async fn prepare(
        &self,
        env: &Environment,
        settings: &EnvironmentSettings,
        request: SendRequest,
    ) -> Result<Prepared, SendServiceError> {
        let Some(tu) = request.template else {
            let content = request::compose(request.draft, None, &settings.defaults)?;
            return Ok(Prepared {
                content,
                provider_options: request.provider_options,
                template: None,
                data: Map::new(),
                auth: false,
                magic_link: false,
            });
        };
        let resolved = self
            .resolve(env, settings, &tu)
            .await?
            .ok_or_else(|| not_found(&tu))?;
        let rendered = resolved.template.render(&tu.data)?;
        let content = request::compose(request.draft, Some(&rendered), &settings.defaults)?;
        let provider_options = with_provider_template(request.provider_options, &rendered);
        Ok(Prepared {
            content,
            provider_options,
            template: Some(TemplateChoice {
                requested: tu.usage.to_string(),
                usage: resolved.usage.to_string(),
                locale: resolved.locale.to_string(),
                source: resolved.source.as_str(),
            }),
            data: tu.data,
            auth: tu.usage.is_auth(),
            magic_link: tu.usage.as_str() == "MagicLink",
        })
    }

    /// The template a (usage, locale) resolves to in `env`, if any.
    pub async fn resolve(
        &self,
        env: &Environment,
        settings: &EnvironmentSettings,
        tu: &TemplateUse,
    ) -> Result<Option<Resolved>, StoreError> {
        resolve(
            self.store.as_ref(),
            &env.id,
            settings,
            &tu.usage,
            tu.locale.as_ref(),
        )
        .await
    }
}

/// Every recipient (to, cc, bcc) with its field name and normalized address.
fn recipients(content: &Content) -> impl Iterator<Item = (String, String)> + '_ {
    [
        ("to", &content.to),
        ("cc", &content.cc),
        ("bcc", &content.bcc),
    ]
    .into_iter()
    .flat_map(|(name, list)| {
        list.iter()
            .enumerate()
            .map(move |(i, m)| (format!("{name}[{i}]"), m.email.normalized()))
    })
}

/// The refusal of a send whose recipients include suppressed addresses: it names the first such
/// recipient (to, then cc, then bcc).
fn suppressed(fields: Vec<(String, String)>, found: Vec<Suppression>) -> SendServiceError {
    let found_first = fields
        .into_iter()
        .find_map(|(field, address)| {
            let s = found.iter().find(|s| s.address == address)?;
            Some((field, s.clone()))
        })
        .or_else(|| {
            // The store matched an address this list does not hold: not expected, but the send
            // was refused all the same.
            found.first().map(|s| ("to".to_owned(), s.clone()))
        });
    let Some((field, suppression)) = found_first else {
        return SendServiceError::Store(StoreError::Corrupt(
            "a suppressed enqueue named no suppression".into(),
        ));
    };
    tracing::info!(reason = suppression.reason.as_str(), field = %field, "send refused: recipient suppressed");
    SendServiceError::Suppressed {
        field,
        suppression: Box::new(suppression),
    }
}

/// 422 `template_not_found`.
pub fn not_found(tu: &TemplateUse) -> FieldError {
    FieldError::new(
        "template_not_found",
        "usage",
        format!(
            "no template for usage '{}' (nor for Generic) in this environment",
            tu.usage
        ),
    )
}

fn expiry(expiry: Option<Expiry>, now: Timestamp) -> Result<Option<Timestamp>, FieldError> {
    let (at, field) = match expiry {
        None => return Ok(None),
        Some(Expiry::At(at)) => (at, "expires_at"),
        Some(Expiry::Ttl(ttl)) => (now.plus(ttl), "ttl"),
    };
    if at <= now {
        return Err(FieldError::new(
            "already_expired",
            field,
            "the message would expire before it could be delivered",
        ));
    }
    Ok(Some(at))
}

/// A provider template goes to providers as `template` and `template_data` in
/// `provider_options`, unless the caller set those keys.
fn with_provider_template(options: Option<Value>, rendered: &Rendered) -> Option<Value> {
    let Some((name, vars)) = &rendered.provider_template else {
        return options;
    };
    let mut map = match options {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    map.entry("template")
        .or_insert_with(|| Value::from(name.clone()));
    map.entry("template_data")
        .or_insert_with(|| Value::Object(vars.clone()));
    Some(Value::Object(map))
}

fn tracking_warning(magic_link: bool, tracking: Tracking) -> Warning {
    let what = match (tracking.opens, tracking.links) {
        (true, true) => "open and click tracking are",
        (true, false) => "open tracking is",
        _ => "click tracking is",
    };
    let why = if magic_link && tracking.links {
        "click tracking rewrites the magic link through a redirect, and link scanners that follow it can consume the one-time link before the recipient does"
    } else {
        "tracking redirects and pixels are fetched by link scanners and expose when sign-in mail is read; codes and one-time links should not be tracked"
    };
    Warning {
        code: "tracking_on_auth_email",
        message: format!("{what} on for an authentication email: {why}"),
    }
}

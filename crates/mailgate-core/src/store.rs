//! The storage traits. `mailgate-store` implements them on SQLite and PostgreSQL; both pass the
//! same contract suite. Every query about messages or events is scoped to an environment where
//! the caller is scoped to one.

use std::time::Duration;

use async_trait::async_trait;

use crate::apikey::{ApiKeyRecord, KeyHash, NewApiKey};
use crate::environment::{Environment, EnvironmentName};
use crate::event::{Event, EventQuery, NewEvent};
use crate::ids::{ApiKeyId, EnvironmentId, MessageId};
use crate::inbound::ProviderEvent;
use crate::message::{
    ClaimedMessage, Content, EnqueueOutcome, MessageRecord, MessageStatus, NewMessage,
};
use crate::settings::EnvironmentSettings;
use crate::suppression::{Suppression, SuppressionQuery};
use crate::template::{Locale, TemplateRecord, UsageType};
use crate::time::Timestamp;

/// A storage failure. The source chain is kept for logs; callers see only the kind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. an environment name taken).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The database could not be reached or refused the operation.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be read back (a bug or a manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Environments.
#[async_trait]
pub trait EnvironmentStore: Send + Sync {
    /// Creates an environment; `Conflict` if the name is taken.
    async fn create_environment(&self, env: &Environment) -> Result<(), StoreError>;
    /// All environments, by name.
    async fn list_environments(&self) -> Result<Vec<Environment>, StoreError>;
    /// The environment with this name or id.
    async fn find_environment(&self, name_or_id: &str) -> Result<Option<Environment>, StoreError>;
    /// Deletes an environment and everything in it; false if there was none.
    async fn delete_environment(&self, id: &EnvironmentId) -> Result<bool, StoreError>;
    /// Creates the environment `name` unless it exists; returns it either way.
    async fn ensure_environment(
        &self,
        name: &EnvironmentName,
        now: Timestamp,
    ) -> Result<Environment, StoreError> {
        if let Some(env) = self.find_environment(name.as_str()).await? {
            return Ok(env);
        }
        let env = Environment {
            id: EnvironmentId::new(),
            name: name.clone(),
            created_at: now,
        };
        match self.create_environment(&env).await {
            Ok(()) => Ok(env),
            Err(StoreError::Conflict(_)) => self
                .find_environment(name.as_str())
                .await?
                .ok_or_else(|| StoreError::Corrupt("environment vanished after conflict".into())),
            Err(e) => Err(e),
        }
    }
}

/// API keys (hashes only).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a key.
    async fn insert_api_key(&self, key: &NewApiKey) -> Result<(), StoreError>;
    /// The key with this hash, if it exists and is not revoked.
    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// An environment's keys.
    async fn list_api_keys(&self, env: &EnvironmentId) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Deletes one of an environment's keys; false if there was none.
    async fn delete_api_key(&self, env: &EnvironmentId, id: &ApiKeyId) -> Result<bool, StoreError>;
    /// Whether any admin key exists.
    async fn has_admin_key(&self) -> Result<bool, StoreError>;
}

/// The stored content of a message, while retained.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredContent {
    /// The content as accepted.
    Retained(Box<Content>),
    /// Purged after the retention period.
    Purged,
}

/// Accepting and reading messages.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores a message and its `queued` event, durably, before returning. Concurrent calls are
    /// committed together (group commit). A recipient on the environment's suppression list (in
    /// force at the message's `created_at`, read in the storing transaction) yields `Suppressed`
    /// and stores nothing; this comes before the idempotency check. An idempotency key already
    /// used in the environment yields `Replayed` (same fingerprint) or `Conflict` (another
    /// fingerprint) and stores nothing.
    async fn enqueue(&self, message: NewMessage) -> Result<EnqueueOutcome, StoreError>;
    /// A message, if it exists in `env` (or anywhere when `env` is `None`).
    async fn get_message(
        &self,
        env: Option<&EnvironmentId>,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// A message's content, if the message exists in `env`.
    async fn get_content(
        &self,
        env: Option<&EnvironmentId>,
        id: &MessageId,
    ) -> Result<Option<StoredContent>, StoreError>;
}

/// The outcome of one attempt, as the dispatcher decided it; the store applies it atomically
/// and only if the lease is still the claimer's. `None` in `next_attempt_at`, `provider` or
/// `provider_message_id` leaves the stored value unchanged; `last_error` is always written, so a
/// successful attempt clears the previous failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The message.
    pub message_id: MessageId,
    /// The claim's fencing token.
    pub lease_token: String,
    /// The new status (`queued` for a retry).
    pub status: MessageStatus,
    /// When the next attempt is due (retries only).
    pub next_attempt_at: Option<Timestamp>,
    /// The provider that handled the attempt.
    pub provider: Option<String>,
    /// The provider's message id, when sent.
    pub provider_message_id: Option<String>,
    /// The failure reason, when the attempt failed.
    pub last_error: Option<String>,
    /// Events to append with the change.
    pub events: Vec<NewEvent>,
}

/// The delivery queue.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Claims up to `limit` due messages — queued and due, or sending with an expired lease —
    /// marks them `sending` under a fresh lease until `now + lease`, and counts the attempt.
    /// Concurrent claimers never receive the same message while its lease holds.
    async fn claim(
        &self,
        limit: u32,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;
    /// Applies completions in one transaction; a completion whose lease was lost is skipped.
    /// Returns how many were applied.
    async fn complete(
        &self,
        completions: &[Completion],
        now: Timestamp,
    ) -> Result<usize, StoreError>;
    /// Erases the content of messages in a final state that changed before `before`; returns
    /// how many.
    async fn purge_content(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// The earliest `next_attempt_at` of a queued message, to sleep until it.
    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError>;
}

/// Reading events.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events matching `query`, oldest first.
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError>;
}

/// A message stored by the `capture` provider.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedMessage {
    /// The message.
    pub message_id: MessageId,
    /// Its environment.
    pub environment_id: EnvironmentId,
    /// What was delivered.
    pub content: Content,
    /// When it was captured.
    pub captured_at: Timestamp,
}

/// The capture provider's mailbox.
#[async_trait]
pub trait CaptureStore: Send + Sync {
    /// Stores a delivered copy. Every delivery is stored, so duplicates stay visible.
    async fn capture(&self, message: &CapturedMessage) -> Result<(), StoreError>;
    /// The newest captured messages of an environment.
    async fn list_captured(
        &self,
        env: &EnvironmentId,
        limit: u32,
    ) -> Result<Vec<CapturedMessage>, StoreError>;
}

/// An environment's provider configuration as stored: sealed (encrypted) by the provider
/// registry, with a redacted copy that is safe to show. The store never sees a secret in clear.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProviderConfig {
    /// The environment.
    pub environment_id: EnvironmentId,
    /// `""` for the environment itself; an organization's name for its own provider.
    pub scope: String,
    /// The encrypted configuration (opaque to the store).
    pub sealed: String,
    /// The configuration with secrets masked.
    pub redacted: serde_json::Value,
    /// When it was last set; also tells cached providers they are stale.
    pub updated_at: Timestamp,
}

/// Per-environment provider configurations.
#[async_trait]
pub trait ProviderConfigStore: Send + Sync {
    /// Creates or replaces the configuration for (environment, scope).
    async fn put_provider_config(&self, config: &StoredProviderConfig) -> Result<(), StoreError>;
    /// The configuration for (environment, scope), if set.
    async fn get_provider_config(
        &self,
        env: &EnvironmentId,
        scope: &str,
    ) -> Result<Option<StoredProviderConfig>, StoreError>;
    /// When the configuration for (environment, scope) last changed, if set (a cheap staleness check).
    async fn provider_config_version(
        &self,
        env: &EnvironmentId,
        scope: &str,
    ) -> Result<Option<Timestamp>, StoreError>;
    /// Removes the configuration; false if there was none.
    async fn delete_provider_config(
        &self,
        env: &EnvironmentId,
        scope: &str,
    ) -> Result<bool, StoreError>;
    /// Every stored configuration (for re-encryption under a new key).
    async fn list_provider_configs(&self) -> Result<Vec<StoredProviderConfig>, StoreError>;
}

/// Per-environment templates, keyed by (usage, locale).
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Creates or replaces a template.
    async fn put_template(&self, record: &TemplateRecord) -> Result<(), StoreError>;
    /// One template, if stored.
    async fn get_template(
        &self,
        env: &EnvironmentId,
        usage: &UsageType,
        locale: &Locale,
    ) -> Result<Option<TemplateRecord>, StoreError>;
    /// Every template of an environment, by usage then locale.
    async fn list_templates(&self, env: &EnvironmentId) -> Result<Vec<TemplateRecord>, StoreError>;
    /// The environment's templates for any of `usages`, every locale (the resolution's one query).
    async fn templates_for(
        &self,
        env: &EnvironmentId,
        usages: &[UsageType],
    ) -> Result<Vec<TemplateRecord>, StoreError>;
    /// Removes a template; false if there was none.
    async fn delete_template(
        &self,
        env: &EnvironmentId,
        usage: &UsageType,
        locale: &Locale,
    ) -> Result<bool, StoreError>;
}

/// Per-environment settings.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The environment's settings (the defaults when never set).
    async fn get_settings(&self, env: &EnvironmentId) -> Result<EnvironmentSettings, StoreError>;
    /// Replaces the environment's settings; false if the environment does not exist.
    async fn put_settings(
        &self,
        env: &EnvironmentId,
        settings: &EnvironmentSettings,
    ) -> Result<bool, StoreError>;
}

/// A provider event ready to record. If it is new, it moves its matched message's status as
/// `ProviderEvent::advance` says, from the status the message has when it is recorded.
#[derive(Debug, Clone)]
pub struct InboundRecord<'a> {
    /// The authenticated, normalized event (its provider event id is the deduplication key).
    pub event: &'a ProviderEvent,
    /// The event to append to the log (its `message_id` is the matched message, if any).
    pub new_event: &'a NewEvent,
}

/// Whether a provider event was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Recorded now.
    Recorded,
    /// Already recorded (same environment, provider and provider event id); nothing changed.
    Duplicate,
}

/// A message to one address, with its events, for the recipient view.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientMessage {
    /// The message.
    pub message: MessageRecord,
    /// Its events, oldest first.
    pub events: Vec<Event>,
}

/// What a provider event names its message by, within one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchKey<'a> {
    /// The environment the webhook came to.
    pub env: EnvironmentId,
    /// The provider's id for the message, as its send call returned it.
    pub provider_message_id: Option<&'a str>,
    /// mailgate's own id, from the provider's metadata.
    pub message_id: Option<MessageId>,
}

/// The message a provider event matched: its id and its status when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedMessage {
    /// The message.
    pub id: MessageId,
    /// Its status when matched.
    pub status: MessageStatus,
}

/// Provider events coming in through webhooks.
#[async_trait]
pub trait InboundStore: Send + Sync {
    /// The message each key is about, in the keys' order: by mailgate's own id (exact, and it
    /// wins), else by the provider's message id (the newest such message); always within the
    /// key's environment.
    async fn match_messages(
        &self,
        keys: &[MatchKey<'_>],
    ) -> Result<Vec<Option<MatchedMessage>>, StoreError>;
    /// Records a batch of provider events in one transaction: per event its deduplication row
    /// and its log event, and the status changes of those recorded. A duplicate (an event
    /// recorded before, or earlier in the batch) changes nothing. Several changes of one message
    /// in a batch are applied as one, from the first `from` to the last `to`. Outcomes come in
    /// the records' order.
    async fn record_inbound(
        &self,
        records: &[InboundRecord<'_>],
        now: Timestamp,
    ) -> Result<Vec<RecordOutcome>, StoreError>;
    /// Soft bounces recorded for an address of `env` that occurred at or after `since`.
    async fn count_soft_bounces(
        &self,
        env: &EnvironmentId,
        address: &str,
        since: Timestamp,
    ) -> Result<u64, StoreError>;
    /// The newest messages sent to an address (normalized) in `env`, with their events.
    async fn recipient_messages(
        &self,
        env: &EnvironmentId,
        address: &str,
        limit: u32,
    ) -> Result<Vec<RecipientMessage>, StoreError>;
}

/// Per-environment suppression lists.
#[async_trait]
pub trait SuppressionStore: Send + Sync {
    /// Adds a suppression; an existing one for the address is kept unless `replace`. Returns
    /// whether anything was written.
    async fn add_suppression(&self, s: &Suppression, replace: bool) -> Result<bool, StoreError>;
    /// The suppression of an address (normalized), if any and not expired at `now`.
    async fn get_suppression(
        &self,
        env: &EnvironmentId,
        address: &str,
        now: Timestamp,
    ) -> Result<Option<Suppression>, StoreError>;
    /// The suppressions among these addresses (normalized) that are in force at `now`.
    async fn find_suppressions(
        &self,
        env: &EnvironmentId,
        addresses: &[String],
        now: Timestamp,
    ) -> Result<Vec<Suppression>, StoreError>;
    /// A filtered page of suppressions, by address.
    async fn list_suppressions(
        &self,
        query: &SuppressionQuery,
    ) -> Result<Vec<Suppression>, StoreError>;
    /// Removes a suppression; false if there was none.
    async fn delete_suppression(
        &self,
        env: &EnvironmentId,
        address: &str,
    ) -> Result<bool, StoreError>;
}

/// Health of the storage backend.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Succeeds when the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Everything a backend provides.
pub trait Storage:
    EnvironmentStore
    + KeyStore
    + MessageStore
    + QueueStore
    + EventStore
    + CaptureStore
    + ProviderConfigStore
    + TemplateStore
    + SettingsStore
    + crate::feeds::FeedStore
    + crate::reputation::ReputationStore
    + InboundStore
    + SuppressionStore
    + crate::limits::LimitStore
    + HealthCheck
{
}

impl<T> Storage for T where
    T: EnvironmentStore
        + KeyStore
        + MessageStore
        + QueueStore
        + EventStore
        + CaptureStore
        + ProviderConfigStore
        + TemplateStore
        + SettingsStore
        + crate::feeds::FeedStore
        + crate::reputation::ReputationStore
        + InboundStore
        + SuppressionStore
        + crate::limits::LimitStore
        + HealthCheck
{
}

//! Feeds: per-environment consumers of the event log — the event stream (every event, in order,
//! to the application's URL) and the notifier (failure and reputation notifications to the
//! operator's targets). Each feed is a cursor row with a lease: whichever worker, in whichever
//! process, holds the lease delivers the next batch and advances the cursor, fenced by its lease
//! token, so that several processes on one database deliver each event once (at-least-once
//! only when a lease expires mid-batch).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::address::Mailbox;
use crate::event::{Event, EventType};
use crate::ids::EnvironmentId;
use crate::notify::{self, EmailTarget, Notification, NotificationSettings, SignedTarget};
use crate::reputation;
use crate::send::{Draft, SendRequest, SendService, SendServiceError};
use crate::store::{Storage, StoreError};
use crate::time::{Clock, Timestamp};

/// Which consumer a feed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedKind {
    /// Every event to the event-stream URL.
    Stream,
    /// Notifications to the failure-notification targets.
    Notify,
}

impl FeedKind {
    /// The stable name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Notify => "notify",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Stream, Self::Notify]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A position in the event log in commit order: on PostgreSQL `(transaction id, seq)`, since
/// `seq` values are handed out before commit and can become visible out of order; on SQLite,
/// whose writers are serialized, `(0, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FeedCursor {
    /// The writing transaction (0 on SQLite).
    pub tx: i64,
    /// The event's `seq`.
    pub seq: i64,
}

/// An event with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// Its position.
    pub cursor: FeedCursor,
    /// The event.
    pub event: Event,
}

/// A feed's stored state.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedState {
    /// The environment.
    pub environment_id: EnvironmentId,
    /// The consumer.
    pub kind: FeedKind,
    /// The last event delivered.
    pub cursor: FeedCursor,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// No attempt before this instant.
    pub next_attempt_at: Timestamp,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// When an event or notification was last delivered.
    pub last_delivered_at: Option<Timestamp>,
}

/// What a lease holder writes back when it releases a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedUpdate {
    /// The new cursor.
    pub cursor: FeedCursor,
    /// Whether something was delivered (sets `last_delivered_at`).
    pub delivered: bool,
    /// Consecutive failures after this attempt.
    pub failures: u32,
    /// The failure of this attempt, if any.
    pub last_error: Option<String>,
    /// No attempt before this instant.
    pub next_attempt_at: Timestamp,
}

/// Storage of notification settings and feeds.
#[async_trait]
pub trait FeedStore: Send + Sync {
    /// The environment's notification settings, if set.
    async fn notification_settings(
        &self,
        env: &EnvironmentId,
    ) -> Result<Option<NotificationSettings>, StoreError>;
    /// Replaces the settings; creates a feed at the head of the log for each newly configured
    /// consumer and removes the feeds of consumers no longer configured.
    async fn put_notification_settings(
        &self,
        settings: &NotificationSettings,
    ) -> Result<(), StoreError>;
    /// Environments with at least one feed.
    async fn feed_environments(&self) -> Result<Vec<EnvironmentId>, StoreError>;
    /// The feeds of an environment.
    async fn feed_states(&self, env: &EnvironmentId) -> Result<Vec<FeedState>, StoreError>;
    /// Leases a feed that is due and not leased; `None` if it is busy, not due or absent.
    async fn acquire_feed(
        &self,
        env: &EnvironmentId,
        kind: FeedKind,
        token: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<FeedState>, StoreError>;
    /// Up to `limit` of the environment's events after `after`, in commit order, stopping before
    /// any event whose transaction might still be in progress.
    async fn feed_events(
        &self,
        env: &EnvironmentId,
        after: FeedCursor,
        limit: u32,
    ) -> Result<Vec<FeedEvent>, StoreError>;
    /// Writes `update` and releases the lease, if `token` still holds it.
    async fn release_feed(
        &self,
        env: &EnvironmentId,
        kind: FeedKind,
        token: &str,
        update: &FeedUpdate,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// Why a POST to a target failed (a short reason without secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Delivers signed webhooks and Slack messages (HTTP lives outside core).
#[async_trait]
pub trait WebhookSink: Send + Sync + 'static {
    /// POSTs `body` to `target`, signed with Standard Webhooks (`webhook-id` = `id`).
    async fn post_signed(
        &self,
        env: &EnvironmentId,
        target: &SignedTarget,
        id: &str,
        timestamp: Timestamp,
        body: &[u8],
    ) -> Result<(), SinkError>;
    /// POSTs `{"text": text}` to a sealed Slack incoming-webhook URL.
    async fn post_slack(
        &self,
        env: &EnvironmentId,
        sealed_url: &str,
        text: &str,
    ) -> Result<(), SinkError>;
}

/// How feed workers behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedConfig {
    /// How often idle feeds are polled.
    pub poll_interval: Duration,
    /// How long a worker holds a feed.
    pub lease: Duration,
    /// Events read per batch.
    pub batch: u32,
    /// The delay after the first failure; doubled after each further one.
    pub retry_base: Duration,
    /// The longest delay between attempts.
    pub retry_max: Duration,
    /// Attempts at one batch of notifications before it is given up (the stream never gives up).
    pub notify_max_attempts: u32,
    /// How often the reputation is re-checked when no events arrive (it falls as the window rolls).
    pub reputation_interval: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            batch: 100,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            notify_max_attempts: 8,
            reputation_interval: Duration::from_secs(60),
        }
    }
}

/// Runs every environment's feeds. Any number may run, in one process or many.
pub struct FeedWorker {
    storage: Arc<dyn Storage>,
    sink: Arc<dyn WebhookSink>,
    clock: Arc<dyn Clock>,
    config: FeedConfig,
    last_reputation: Mutex<HashMap<EnvironmentId, Instant>>,
    mailer: Option<SendService>,
}

impl FeedWorker {
    /// A worker.
    pub fn new(
        storage: Arc<dyn Storage>,
        sink: Arc<dyn WebhookSink>,
        clock: Arc<dyn Clock>,
        config: FeedConfig,
    ) -> Self {
        Self {
            storage,
            sink,
            clock,
            config,
            last_reputation: Mutex::new(HashMap::new()),
            mailer: None,
        }
    }

    /// Sends email notifications through `send` (the environment's own pipeline). Without it,
    /// email targets are skipped with a warning.
    pub fn with_mailer(mut self, send: SendService) -> Self {
        self.mailer = Some(send);
        self
    }

    /// Polls and delivers until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let busy = match self.round().await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "feed round failed");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    () = shutdown.cancelled() => return,
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// One pass over every feed; true when a full batch was read (more may be waiting).
    async fn round(&self) -> Result<bool, StoreError> {
        let mut busy = false;
        for env in self.storage.feed_environments().await? {
            for kind in [FeedKind::Stream, FeedKind::Notify] {
                busy |= self.step(&env, kind).await?;
            }
        }
        Ok(busy)
    }

    #[tracing::instrument(skip_all, fields(environment.id = %env, feed = kind.as_str()))]
    async fn step(&self, env: &EnvironmentId, kind: FeedKind) -> Result<bool, StoreError> {
        let token = hex::encode(rand::random::<[u8; 16]>());
        let now = self.clock.now();
        let Some(state) = self
            .storage
            .acquire_feed(env, kind, &token, now, self.config.lease)
            .await?
        else {
            return Ok(false);
        };
        let (update, busy, error) = match self.deliver(env, kind, &state).await {
            Ok((update, busy)) => (update, busy, None),
            Err(e) => (idle(&state, now), false, Some(e)),
        };
        let kept = self
            .storage
            .release_feed(env, kind, &token, &update, self.clock.now())
            .await?;
        if !kept {
            tracing::info!("feed lease lost before release; another worker continues");
        }
        match error {
            Some(e) => Err(e),
            None => Ok(busy && update.last_error.is_none()),
        }
    }

    /// Reads a batch and delivers it; the update to write and whether the batch was full.
    async fn deliver(
        &self,
        env: &EnvironmentId,
        kind: FeedKind,
        state: &FeedState,
    ) -> Result<(FeedUpdate, bool), StoreError> {
        let events = self
            .storage
            .feed_events(env, state.cursor, self.config.batch)
            .await?;
        let full = events.len() as u32 >= self.config.batch;
        let Some(settings) = self.storage.notification_settings(env).await? else {
            return Ok((idle(state, self.clock.now()), false));
        };
        let update = match kind {
            FeedKind::Stream => self.stream(env, &settings, state, &events).await,
            FeedKind::Notify => self.notify(env, &settings, state, &events).await,
        };
        Ok((update, full))
    }

    fn failed(&self, state: &FeedState, cursor: FeedCursor, error: String) -> FeedUpdate {
        let failures = state.failures + 1;
        let delay = self
            .config
            .retry_base
            .saturating_mul(1 << (failures - 1).min(16))
            .min(self.config.retry_max);
        FeedUpdate {
            cursor,
            delivered: cursor != state.cursor,
            failures,
            last_error: Some(error),
            next_attempt_at: self.clock.now().plus(delay),
        }
    }

    async fn stream(
        &self,
        env: &EnvironmentId,
        settings: &NotificationSettings,
        state: &FeedState,
        events: &[FeedEvent],
    ) -> FeedUpdate {
        let Some(target) = &settings.stream else {
            return idle(state, self.clock.now());
        };
        let started = Instant::now();
        let mut cursor = state.cursor;
        for fe in events {
            if started.elapsed() > self.config.lease / 2 {
                break;
            }
            let body = notify::event_payload(&fe.event).to_string();
            let id = fe.event.id.to_string();
            if let Err(e) = self
                .sink
                .post_signed(env, target, &id, self.clock.now(), body.as_bytes())
                .await
            {
                tracing::info!(error = %e, failures = state.failures + 1, "event stream delivery failed; will retry");
                return self.failed(state, cursor, e.0);
            }
            cursor = fe.cursor;
        }
        FeedUpdate {
            cursor,
            delivered: cursor != state.cursor,
            failures: 0,
            last_error: None,
            next_attempt_at: self.clock.now(),
        }
    }

    async fn notify(
        &self,
        env: &EnvironmentId,
        settings: &NotificationSettings,
        state: &FeedState,
        events: &[FeedEvent],
    ) -> FeedUpdate {
        let now = self.clock.now();
        let cursor = events.last().map_or(state.cursor, |e| e.cursor);
        if !settings.has_targets() {
            return FeedUpdate {
                cursor,
                ..idle(state, now)
            };
        }
        let name = match self.storage.find_environment(&env.to_string()).await {
            Ok(Some(e)) => e.name.to_string(),
            Ok(None) => return idle(state, now),
            Err(e) => return self.failed(state, state.cursor, e.to_string()),
        };
        let list = match self.without_own_notifications(env, events).await {
            Ok(list) => list,
            Err(e) => return self.failed(state, state.cursor, e.to_string()),
        };
        let mut out = notify::from_events(&name, env, &list);
        let reputation = match self.reputation_change(env, &name, &list, now).await {
            Ok(r) => r,
            Err(e) => return self.failed(state, state.cursor, e.to_string()),
        };
        out.extend(reputation.as_ref().map(|(n, _, _)| n.clone()));
        for n in &out {
            if let Err(e) = self.send_everywhere(env, settings, n).await {
                if state.failures + 1 >= self.config.notify_max_attempts {
                    tracing::warn!(error = %e, "notifications given up after the last attempt");
                    let mut update = self.failed(state, cursor, format!("given up: {e}"));
                    update.failures = 0;
                    return update;
                }
                tracing::info!(error = %e, "notification delivery failed; will retry");
                return self.failed(state, state.cursor, e.0);
            }
        }
        if let Some((_, from, to)) = reputation {
            // The feed's lease serializes this; the swap also guards against a lost lease.
            if let Err(e) = self.storage.swap_notified_level(env, from, to, now).await {
                tracing::warn!(error = %e, "could not record the notified reputation level");
            }
        }
        FeedUpdate {
            cursor,
            delivered: !out.is_empty(),
            failures: 0,
            last_error: None,
            next_attempt_at: now,
        }
    }

    /// The reputation notification due now, if the level moved since the last one.
    async fn reputation_change(
        &self,
        env: &EnvironmentId,
        name: &str,
        events: &[Event],
        now: Timestamp,
    ) -> Result<Option<(Notification, reputation::Level, reputation::Level)>, StoreError> {
        let relevant = events.iter().any(|e| {
            matches!(
                e.event_type,
                EventType::Sent | EventType::Bounced | EventType::Complained
            )
        });
        {
            let mut last = self
                .last_reputation
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last
                .get(env)
                .is_none_or(|t| t.elapsed() >= self.config.reputation_interval);
            if !relevant && !due {
                return Ok(None);
            }
            last.insert(*env, Instant::now());
        }
        let report = reputation::report(self.storage.as_ref(), env, now).await?;
        let notified = self.storage.notified_level(env).await?;
        if report.level == notified {
            return Ok(None);
        }
        let n = notify::reputation_changed(name, env, notified, &report, now);
        Ok(Some((n, notified, report.level)))
    }

    async fn send_everywhere(
        &self,
        env: &EnvironmentId,
        settings: &NotificationSettings,
        n: &Notification,
    ) -> Result<(), SinkError> {
        if let Some(target) = &settings.webhook {
            let body = n.payload.to_string();
            self.sink
                .post_signed(env, target, &n.id, self.clock.now(), body.as_bytes())
                .await?;
        }
        if let Some(url) = &settings.sealed_slack_url {
            self.sink.post_slack(env, url, &n.text).await?;
        }
        if let Some(target) = &settings.email {
            self.email(env, target, n).await?;
        }
        Ok(())
    }

    /// The events, without the failures of notification emails themselves: a notification
    /// email that fails must not notify again (and again).
    async fn without_own_notifications(
        &self,
        env: &EnvironmentId,
        events: &[FeedEvent],
    ) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            if let (EventType::Failed, Some(id)) = (e.event.event_type, e.event.message_id) {
                let own = self.storage.get_message(Some(env), &id).await?;
                if own.is_some_and(|m| m.tags.iter().any(|t| t == notify::NOTIFICATION_TAG)) {
                    continue;
                }
            }
            out.push(e.event.clone());
        }
        Ok(out)
    }

    /// Queues one notification email through the environment's own pipeline.
    async fn email(
        &self,
        env: &EnvironmentId,
        target: &EmailTarget,
        n: &Notification,
    ) -> Result<(), SinkError> {
        let Some(mailer) = &self.mailer else {
            tracing::warn!(environment.id = %env, "an email notification target is set, but this process cannot send email");
            return Ok(());
        };
        let environment = match self.storage.find_environment(&env.to_string()).await {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(()),
            Err(e) => return Err(SinkError(e.to_string())),
        };
        let to = Mailbox::parse(&target.to, "email.to").map_err(|e| SinkError(e.to_string()))?;
        let from = target
            .from
            .as_deref()
            .map(|f| Mailbox::parse(f, "email.from"))
            .transpose()
            .map_err(|e| SinkError(e.to_string()))?;
        let draft = Draft {
            from,
            to: vec![to],
            subject: Some(format!("[mailgate] {}", n.kind.as_str())),
            text: Some(format!(
                "{}\n\n{}\n",
                n.text,
                serde_json::to_string_pretty(&n.payload).unwrap_or_default()
            )),
            ..Draft::default()
        };
        let request = SendRequest {
            draft,
            tags: vec![notify::NOTIFICATION_TAG.into()],
            ..SendRequest::default()
        };
        match mailer.send(&environment, request, None).await {
            Ok(_) => Ok(()),
            // A refusal (no sender configured, a suppressed address) will not change on retry.
            Err(SendServiceError::Invalid(e)) => {
                tracing::warn!(code = e.code, "email notification refused");
                Ok(())
            }
            Err(e) => Err(SinkError(e.to_string())),
        }
    }
}

/// An update that changes nothing but releases the lease.
fn idle(state: &FeedState, now: Timestamp) -> FeedUpdate {
    FeedUpdate {
        cursor: state.cursor,
        delivered: false,
        failures: state.failures,
        last_error: state.last_error.clone(),
        next_attempt_at: now,
    }
}

//! The dispatcher: claims due messages under a lease, delivers them through their environment's
//! provider with bounded concurrency, and records each outcome. It never holds a transaction
//! across a provider call: claim and completion are separate short transactions, and completion
//! is fenced by the lease token so that a worker that lost its lease cannot overwrite another's
//! result.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::event::{EventType, NewEvent};
use crate::limits::LimitStore;
use crate::message::{ClaimedMessage, MessageStatus};
use crate::provider::{Provider, ProviderResolver, SendError, SendReceipt};
use crate::reputation::{ReputationStore, SendingGate};
use crate::retry::RetryPolicy;
use crate::routing::{Circuits, RouteContext, Tried};
use crate::store::{Completion, QueueStore};
use crate::time::Clock;

/// How a dispatcher works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Messages in flight at once.
    pub concurrency: usize,
    /// Messages claimed per query at most.
    pub claim_batch: u32,
    /// How long a claim holds a message; must exceed `send_timeout`.
    pub lease: Duration,
    /// How long to wait for new work when the queue looks empty.
    pub poll_interval: Duration,
    /// Longest a provider call may take before it counts as a retryable timeout.
    pub send_timeout: Duration,
    /// How long content is kept after a final state (`None`: forever).
    pub content_retention: Option<Duration>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            claim_batch: 64,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_millis(200),
            send_timeout: Duration::from_secs(60),
            content_retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// The delivery loop. Many dispatchers, in one process or many, may share one queue.
pub struct Dispatcher {
    queue: Arc<dyn QueueStore>,
    providers: Arc<dyn ProviderResolver>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    config: DispatcherConfig,
    wake: Arc<Notify>,
    gate: Option<(Arc<dyn SendingGate>, Arc<dyn ReputationStore>)>,
    circuits: Circuits,
    limits: Option<Arc<dyn LimitStore>>,
    sandbox: Option<Arc<dyn Provider>>,
}

const COMPLETION_BATCH: usize = 256;

/// How long a message held by a reputation pause waits before it is looked at again.
const PAUSE_RECHECK: Duration = Duration::from_secs(60);

impl Dispatcher {
    /// A dispatcher; `wake` lets an in-process send service signal new work.
    pub fn new(
        queue: Arc<dyn QueueStore>,
        providers: Arc<dyn ProviderResolver>,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
        config: DispatcherConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            queue,
            providers,
            clock,
            retry,
            config,
            wake,
            gate: None,
            circuits: Circuits::default(),
            limits: None,
            sandbox: None,
        }
    }

    /// Keeps the providers' rate limits in `limits` (shared by every process on the database).
    /// Without it, rate limits are not applied.
    pub fn with_limits(mut self, limits: Arc<dyn LimitStore>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Where messages held by an environment's sandbox go (the capture provider): they end
    /// `sandboxed` there instead of reaching the environment's providers.
    pub fn with_sandbox(mut self, capture: Arc<dyn Provider>) -> Self {
        self.sandbox = Some(capture);
        self
    }

    /// This dispatcher's circuit breakers (for tests and reports).
    pub fn circuits(&self) -> &Circuits {
        &self.circuits
    }

    /// Holds an environment's messages while `gate` says its sending is paused: they go back to
    /// the queue (attempt not counted) with a `deferred` event coded `paused_reputation`.
    pub fn with_gate(
        mut self,
        gate: Arc<dyn SendingGate>,
        store: Arc<dyn ReputationStore>,
    ) -> Self {
        self.gate = Some((gate, store));
        self
    }

    /// Runs until `shutdown` is cancelled, then lets in-flight deliveries finish (up to the
    /// send timeout) and records their outcomes. What is not finished stays leased and is taken
    /// again by a dispatcher when the lease expires.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let concurrency = this.config.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        // A delivery keeps its permit until its outcome is committed, so the messages a crash
        // can deliver twice never exceed `concurrency`.
        let (done_tx, done_rx) = mpsc::channel::<(Completion, OwnedSemaphorePermit)>(concurrency);
        let completer = tokio::spawn(Arc::clone(&this).complete_loop(done_rx));
        let purger = this
            .config
            .content_retention
            .map(|keep| tokio::spawn(Arc::clone(&this).purge_loop(keep, shutdown.clone())));

        let mut backoff = this.config.poll_interval;
        loop {
            let first = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = shutdown.cancelled() => break,
            };
            let limit = (permits.available_permits() + 1)
                .min(this.config.claim_batch.max(1) as usize) as u32;
            let claimed = match this
                .queue
                .claim(limit, this.clock.now(), this.config.lease)
                .await
            {
                Ok(c) => {
                    backoff = this.config.poll_interval;
                    c
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming messages failed; backing off");
                    drop(first);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    tokio::select! { () = tokio::time::sleep(backoff) => {}, () = shutdown.cancelled() => break }
                    continue;
                }
            };
            if claimed.is_empty() {
                drop(first);
                tokio::select! {
                    () = this.wake.notified() => {}
                    () = tokio::time::sleep(this.config.poll_interval) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            let mut first = Some(first);
            for message in claimed {
                let permit = match first.take() {
                    Some(p) => p,
                    None => match Arc::clone(&permits).acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let this = Arc::clone(&this);
                let done = done_tx.clone();
                tokio::spawn(async move {
                    if this.hold_if_paused(&message).await {
                        drop(permit);
                        return;
                    }
                    let Some(completion) = this.deliver(message).await else {
                        // Held without an attempt: nothing to complete.
                        drop(permit);
                        return;
                    };
                    // The completer outlives every delivery task, so this only fails at exit;
                    // it releases the permit once the outcome is committed.
                    let _ = done.send((completion, permit)).await;
                });
            }
        }

        // Drain: wait for in-flight deliveries, then for their completions to be written.
        let grace = this.config.send_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, permits.acquire_many(concurrency as u32)).await;
        drop(done_tx);
        let _ = completer.await;
        if let Some(p) = purger {
            let _ = p.await;
        }
    }

    async fn complete_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(Completion, OwnedSemaphorePermit)>,
    ) {
        let mut received = Vec::with_capacity(COMPLETION_BATCH);
        while rx.recv_many(&mut received, COMPLETION_BATCH).await > 0 {
            let (batch, permits): (Vec<Completion>, Vec<OwnedSemaphorePermit>) =
                received.drain(..).unzip();
            let mut delay = Duration::from_millis(50);
            for attempt in 1..=5 {
                match self.queue.complete(&batch, self.clock.now()).await {
                    Ok(applied) => {
                        if applied < batch.len() {
                            tracing::info!(
                                skipped = batch.len() - applied,
                                "completions skipped: lease lost to another worker"
                            );
                        }
                        break;
                    }
                    Err(e) if attempt < 5 => {
                        tracing::warn!(error = %e, attempt, "recording delivery outcomes failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => {
                        // The leases will expire and the messages will be delivered again:
                        // at-least-once, never lost.
                        tracing::error!(error = %e, count = batch.len(), "could not record delivery outcomes; messages will be retried after their lease");
                    }
                }
            }
            drop(permits);
        }
    }

    async fn purge_loop(self: Arc<Self>, keep: Duration, shutdown: CancellationToken) {
        let every = Duration::from_secs(3600).min(keep.max(Duration::from_secs(1)));
        loop {
            match self.queue.purge_content(self.clock.now().minus(keep)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "message content purged after retention"),
                Err(e) => tracing::warn!(error = %e, "purging content failed"),
            }
            tokio::select! { () = tokio::time::sleep(every) => {}, () = shutdown.cancelled() => return }
        }
    }

    /// Puts the message back in the queue if its environment's sending is paused; true if it
    /// did (or the lease was lost meanwhile).
    async fn hold_if_paused(&self, message: &ClaimedMessage) -> bool {
        let Some((gate, _)) = &self.gate else {
            return false;
        };
        if !gate.paused(&message.environment_id).await {
            return false;
        }
        self.hold(
            message,
            PAUSE_RECHECK,
            "paused_reputation",
            "sending is paused: the environment's reputation is critical and pause_on_critical is set",
            &[],
        )
        .await
    }

    /// Puts the message back in the queue for `wait` without counting the attempt, with a
    /// `deferred` event; false when there is no store to hold it with (the caller then records
    /// a normal outcome).
    async fn hold(
        &self,
        message: &ClaimedMessage,
        wait: Duration,
        code: &str,
        reason: &str,
        tried: &[Tried],
    ) -> bool {
        let Some((_, store)) = &self.gate else {
            return false;
        };
        let now = self.clock.now();
        let until = now.plus(wait);
        let mut data = json!({
            "attempt": message.attempt - 1,
            "code": code,
            "retryable": true,
            "reason": reason,
            "next_attempt_at": until.to_rfc3339(),
        });
        if !tried.is_empty() {
            data["failovers"] = json!(tried);
        }
        let event = NewEvent::for_message(
            message.environment_id,
            message.id,
            EventType::Deferred,
            now,
            data,
        );
        match store
            .hold_message(&message.id, &message.lease_token, until, &event)
            .await
        {
            Ok(_) => {
                tracing::info!(message.id = %message.id, code, "held without an attempt");
                true
            }
            Err(e) => {
                // The lease expires and the message is claimed again.
                tracing::warn!(error = %e, "could not hold a message");
                true
            }
        }
    }

    /// Delivers one claimed message and decides its next state.
    /// `None` when the message went back to the queue without an attempt (every provider of its
    /// route was cooling down or out of rate-limit tokens).
    #[tracing::instrument(skip_all, fields(message.id = %message.id, attempt = message.attempt))]
    async fn deliver(&self, message: ClaimedMessage) -> Option<Completion> {
        if let Some(at) = message.delivery.expires_at {
            if self.clock.now() >= at {
                return Some(self.expired(
                    &message,
                    None,
                    "the message expired before this attempt",
                ));
            }
        }
        if message.attempt > message.max_attempts {
            let err = SendError::permanent(
                "lease_expired",
                "the worker delivering the last attempt stopped before recording its outcome",
            );
            return Some(self.failure(&message, None, &[], err));
        }
        if message.delivery.sandboxed {
            return Some(self.sandboxed(&message).await);
        }
        let route = match self
            .providers
            .route(
                &message.environment_id,
                message.delivery.organization.as_ref(),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return Some(self.failure(&message, None, &[], e)),
        };
        let ctx = RouteContext {
            circuits: &self.circuits,
            limits: self.limits.as_deref(),
            clock: self.clock.as_ref(),
            send_timeout: self.config.send_timeout,
            max_rate_wait: self.config.lease / 4,
        };
        let outcome = route.deliver(&message, &ctx).await;
        match outcome.result {
            Ok(receipt) => {
                let handled = outcome.handled_by.expect("a receipt comes from a provider");
                Some(self.success(&message, handled, &outcome.tried, receipt))
            }
            Err(SendError::Retryable {
                code,
                message: reason,
                retry_after,
            }) if outcome.handled_by.is_none() => {
                // No provider was called: the attempt is not spent.
                let wait = retry_after
                    .unwrap_or(self.config.poll_interval)
                    .max(Duration::from_millis(100));
                if self
                    .hold(&message, wait, &code, &reason, &outcome.tried)
                    .await
                {
                    return None;
                }
                let err = SendError::Retryable {
                    code,
                    message: reason,
                    retry_after,
                };
                Some(self.failure(&message, None, &outcome.tried, err))
            }
            Err(err) => Some(self.failure(&message, outcome.handled_by, &outcome.tried, err)),
        }
    }

    fn success(
        &self,
        message: &ClaimedMessage,
        (name, label): (String, String),
        tried: &[Tried],
        receipt: SendReceipt,
    ) -> Completion {
        let now = self.clock.now();
        let mut data = json!({
            "attempt": message.attempt,
            "provider": name,
            "route": label,
            "provider_message_id": receipt.provider_message_id,
        });
        if !tried.is_empty() {
            data["failovers"] = json!(tried);
        }
        let mut events = vec![NewEvent::for_message(
            message.environment_id,
            message.id,
            EventType::Sent,
            now,
            data.clone(),
        )];
        let status = if receipt.final_delivery {
            events.push(NewEvent::for_message(
                message.environment_id,
                message.id,
                EventType::Delivered,
                now,
                data,
            ));
            MessageStatus::Delivered
        } else {
            MessageStatus::Sent
        };
        tracing::debug!(provider = %name, route = %label, failovers = tried.len(), status = %status, "attempt succeeded");
        Completion {
            message_id: message.id,
            lease_token: message.lease_token.clone(),
            status,
            next_attempt_at: None,
            provider: Some(name),
            provider_message_id: receipt.provider_message_id,
            last_error: None,
            events,
        }
    }

    /// A message held by its environment's sandbox: captured, never given to a provider.
    async fn sandboxed(&self, message: &ClaimedMessage) -> Completion {
        let captured = match &self.sandbox {
            Some(capture) => match capture.send(message).await {
                Ok(r) => Some((capture.name().to_owned(), r)),
                Err(e) => {
                    // Capturing is local; a failure is the store's, and worth a retry.
                    let provider = Some((capture.name().to_owned(), "sandbox".to_owned()));
                    return self.failure(message, provider, &[], e);
                }
            },
            None => None,
        };
        let now = self.clock.now();
        tracing::info!(
            status = "sandboxed",
            "message held by the environment's sandbox"
        );
        let provider = captured.as_ref().map(|(n, _)| n.clone());
        Completion {
            message_id: message.id,
            lease_token: message.lease_token.clone(),
            status: MessageStatus::Sandboxed,
            next_attempt_at: None,
            provider: provider.clone(),
            provider_message_id: captured.and_then(|(_, r)| r.provider_message_id),
            last_error: None,
            events: vec![NewEvent::for_message(
                message.environment_id,
                message.id,
                EventType::Sandboxed,
                now,
                json!({
                    "attempt": message.attempt,
                    "provider": provider,
                    "reason": "the environment's sandbox is on and a recipient is not on its allow list; the message was captured instead",
                }),
            )],
        }
    }

    /// The message outlived its `expires_at`: it ends `expired`, never delivered.
    fn expired(
        &self,
        message: &ClaimedMessage,
        provider: Option<String>,
        reason: &str,
    ) -> Completion {
        let now = self.clock.now();
        tracing::info!(status = "expired", "message expired before delivery");
        let data = json!({
            "attempt": message.attempt,
            "provider": provider,
            "expires_at": message.delivery.expires_at.map(|t| t.to_rfc3339()),
            "reason": reason,
        });
        Completion {
            message_id: message.id,
            lease_token: message.lease_token.clone(),
            status: MessageStatus::Expired,
            next_attempt_at: None,
            provider,
            provider_message_id: None,
            last_error: Some(format!("expired: {reason}")),
            events: vec![NewEvent::for_message(
                message.environment_id,
                message.id,
                EventType::Expired,
                now,
                data,
            )],
        }
    }

    fn failure(
        &self,
        message: &ClaimedMessage,
        handled_by: Option<(String, String)>,
        tried: &[Tried],
        err: SendError,
    ) -> Completion {
        let (provider, route) = match handled_by {
            Some((p, r)) => (Some(p), Some(r)),
            None => (None, None),
        };
        let now = self.clock.now();
        let reason = err.to_string();
        let (status, next, event) = match &err {
            SendError::Retryable { retry_after, .. } if message.attempt < message.max_attempts => {
                let next = now.plus(self.retry.delay(message.attempt, *retry_after));
                if message.delivery.expires_at.is_some_and(|at| next >= at) {
                    let why = format!("{reason}; the next attempt would fall after the expiry");
                    return self.expired(message, provider, &why);
                }
                (MessageStatus::Queued, Some(next), EventType::Deferred)
            }
            SendError::Retryable { .. }
            | SendError::Permanent { .. }
            | SendError::Unusable { .. } => (MessageStatus::Failed, None, EventType::Failed),
        };
        tracing::info!(code = err.code(), retryable = err.is_retryable(), status = %status, "attempt failed");
        let mut data = json!({
            "attempt": message.attempt,
            "max_attempts": message.max_attempts,
            "provider": provider,
            "route": route,
            "code": err.code(),
            "retryable": err.is_retryable(),
            "reason": reason,
            "next_attempt_at": next.map(|t| t.to_rfc3339()),
        });
        if !tried.is_empty() {
            data["failovers"] = json!(tried);
        }
        Completion {
            message_id: message.id,
            lease_token: message.lease_token.clone(),
            status,
            next_attempt_at: next,
            provider,
            provider_message_id: None,
            last_error: Some(reason),
            events: vec![NewEvent::for_message(
                message.environment_id,
                message.id,
                event,
                now,
                data,
            )],
        }
    }
}

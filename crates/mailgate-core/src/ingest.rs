//! The ingest service: records authenticated provider events — deduplicated, matched to their
//! messages, moving statuses forward — and suppresses the addresses they call for.
//!
//! Webhook requests hand their events to one batching task per process, which records what
//! has gathered while the previous batch was being written in a single transaction (group
//! commit, as the send path's enqueue): one SQLite commit serves many requests, so single-event
//! webhooks are not bound by one fsync each, and a provider's array of events costs one match
//! query and one commit instead of a round trip per event. Two batches are in flight at most:
//! one is matched while the other is written. A request is answered once its batch is
//! committed.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::event::{EventType, NewEvent};
use crate::ids::{EnvironmentId, EventId};
use crate::inbound::{IngestSummary, ProviderEvent};
use crate::store::{
    InboundRecord, InboundStore, MatchKey, MatchedMessage, RecordOutcome, StoreError,
    SuppressionStore,
};
use crate::suppression::{SoftBouncePolicy, Suppression, SuppressionReason};
use crate::time::{Clock, Timestamp};

/// A batch stops gathering requests once it holds this many events.
const MAX_BATCH_EVENTS: usize = 2_000;
/// Requests waiting for the batching task; a full inbox makes webhook requests wait.
const INBOX: usize = 4_096;

/// Records authenticated provider events: deduplicates, matches them to messages, moves message
/// statuses forward, and suppresses addresses after hard bounces, complaints and repeated soft
/// bounces. Events that match no message are recorded without one.
#[derive(Clone)]
pub struct IngestService {
    inner: Arc<Inner>,
    /// The batching task's inbox, started by the first request (inside the runtime), and again
    /// by the next one if the task ever stopped (its runtime went away).
    inbox: Arc<Mutex<Option<mpsc::Sender<Job>>>>,
}

struct Inner {
    store: Arc<dyn InboundStore>,
    suppressions: Arc<dyn SuppressionStore>,
    clock: Arc<dyn Clock>,
    policy: SoftBouncePolicy,
}

/// One request's events and where its summary goes.
struct Job {
    env: EnvironmentId,
    events: Vec<ProviderEvent>,
    reply: oneshot::Sender<Result<IngestSummary, StoreError>>,
}

impl IngestService {
    /// An ingest service with the given soft-bounce rule.
    pub fn new(
        store: Arc<dyn InboundStore>,
        suppressions: Arc<dyn SuppressionStore>,
        clock: Arc<dyn Clock>,
        policy: SoftBouncePolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                suppressions,
                clock,
                policy,
            }),
            inbox: Arc::new(Mutex::new(None)),
        }
    }

    /// Records the events of one webhook request of `env`; answers when they are committed.
    pub async fn ingest(
        &self,
        env: &EnvironmentId,
        events: Vec<ProviderEvent>,
    ) -> Result<IngestSummary, StoreError> {
        // A provider's own "accepted" events add nothing to the worker's `sent` event and would
        // count the volume twice in reputation; they are acknowledged and skipped.
        let events: Vec<ProviderEvent> = events
            .into_iter()
            .filter(|e| e.event_type != EventType::Sent)
            .collect();
        if events.is_empty() {
            return Ok(IngestSummary::default());
        }
        let inbox = {
            let mut inbox = self
                .inbox
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match inbox.as_ref().filter(|tx| !tx.is_closed()) {
                Some(tx) => tx.clone(),
                None => {
                    let (tx, rx) = mpsc::channel(INBOX);
                    tokio::spawn(run(Arc::clone(&self.inner), rx));
                    inbox.insert(tx).clone()
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the provider events were not recorded".into());
        inbox
            .send(Job {
                env: *env,
                events,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Batches being recorded at once: while one is written, the next is matched and prepared, so
/// that the writer does not wait for the match nor the match for the writer.
const IN_FLIGHT: usize = 2;

/// The batching task: once a batch may start (fewer than `IN_FLIGHT` are being recorded), takes
/// the first waiting request and every other one already waiting (up to `MAX_BATCH_EVENTS`),
/// and records them together in a task of its own, which answers each; ends when every sender
/// is gone. A panic while recording (a bug) fails that batch's requests only: their answers
/// are dropped with it (an error, which the provider retries), and the next batch is taken as
/// usual.
async fn run(inner: Arc<Inner>, mut inbox: mpsc::Receiver<Job>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // The slot first: the requests that arrive while every batch is busy make the next one.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let Some(first) = inbox.recv().await else {
            break;
        };
        let mut size = first.events.len();
        let mut jobs = vec![first];
        while size < MAX_BATCH_EVENTS {
            match inbox.try_recv() {
                Ok(job) => {
                    size += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let _slot = slot;
            let requests = jobs.len();
            let recorded = tokio::spawn(async move {
                let result = inner.ingest_batch(&mut jobs).await;
                (jobs, result)
            })
            .await;
            answer(recorded, requests);
        });
    }
}

/// A batch's requests and what recording them did; `Err` if the task recording them panicked.
type Recorded = Result<(Vec<Job>, Result<Vec<IngestSummary>, StoreError>), tokio::task::JoinError>;

/// Answers the requests of a batch with its outcome.
fn answer(recorded: Recorded, requests: usize) {
    match recorded {
        Ok((jobs, Ok(summaries))) => {
            for (job, summary) in jobs.into_iter().zip(summaries) {
                // Err: the request went away; its events are recorded all the same.
                let _ = job.reply.send(Ok(summary));
            }
        }
        Ok((jobs, Err(e))) => {
            tracing::error!(error = %e, requests = jobs.len(), "provider events not recorded");
            for job in jobs {
                let _ = job.reply.send(Err(copy_error(&e)));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests, "provider events not recorded: the batch failed");
        }
    }
}

/// The same failure for every request of a failed batch (the source is logged once).
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict(s) => StoreError::Conflict(s.clone()),
        StoreError::Corrupt(s) => StoreError::Corrupt(s.clone()),
        StoreError::Unavailable(_) => StoreError::Unavailable(e.to_string().into()),
    }
}

impl Inner {
    /// Records the events of `jobs` in one transaction, then suppresses what the recorded ones
    /// call for; returns each job's summary. The events' details move into their log events.
    async fn ingest_batch(&self, jobs: &mut [Job]) -> Result<Vec<IngestSummary>, StoreError> {
        let now = self.clock.now();
        let mut details: Vec<serde_json::Value> = jobs
            .iter_mut()
            .flat_map(|job| job.events.iter_mut())
            .map(|e| std::mem::take(&mut e.detail))
            .collect();
        let jobs: &[Job] = jobs;
        let events: Vec<(usize, &EnvironmentId, &ProviderEvent)> = jobs
            .iter()
            .enumerate()
            .flat_map(|(j, job)| job.events.iter().map(move |e| (j, &job.env, e)))
            .collect();
        let keys: Vec<MatchKey<'_>> = events
            .iter()
            .map(|(_, env, e)| MatchKey {
                env: **env,
                provider_message_id: e.provider_message_id.as_deref(),
                message_id: e.message_id,
            })
            .collect();
        let matched = self.store.match_messages(&keys).await?;
        let logged: Vec<NewEvent> = events
            .iter()
            .zip(&matched)
            .zip(details.iter_mut())
            .map(|(((_, env, event), message), detail)| {
                log_event(**env, event, std::mem::take(detail), message.as_ref(), now)
            })
            .collect();
        // The statuses move as the store records the events, from the statuses the messages
        // have then: a batch matched while another is being recorded moves them on from there.
        let records: Vec<InboundRecord<'_>> = events
            .iter()
            .zip(&logged)
            .map(|((_, _, event), new_event)| InboundRecord { event, new_event })
            .collect();
        let outcomes = self.store.record_inbound(&records, now).await?;
        let mut summaries = vec![IngestSummary::default(); jobs.len()];
        for (i, outcome) in outcomes.iter().enumerate() {
            let (job, env, event) = events[i];
            let summary = &mut summaries[job];
            if *outcome == RecordOutcome::Duplicate {
                summary.duplicates += 1;
                continue;
            }
            summary.recorded += 1;
            if matched[i].is_none() {
                summary.unmatched += 1;
            }
            if self.suppress(env, event, &logged[i], now).await? {
                summary.suppressed += 1;
            }
        }
        let total = summaries
            .iter()
            .fold(IngestSummary::default(), |a, s| IngestSummary {
                recorded: a.recorded + s.recorded,
                duplicates: a.duplicates + s.duplicates,
                unmatched: a.unmatched + s.unmatched,
                suppressed: a.suppressed + s.suppressed,
            });
        tracing::info!(
            requests = jobs.len(),
            recorded = total.recorded,
            duplicates = total.duplicates,
            unmatched = total.unmatched,
            suppressed = total.suppressed,
            "provider events ingested"
        );
        Ok(summaries)
    }

    /// Suppresses the recipient of a recorded event if it calls for it (a hard bounce, a
    /// complaint, or the soft bounce that completes the rule); true if that added a suppression.
    async fn suppress(
        &self,
        env: &EnvironmentId,
        event: &ProviderEvent,
        logged: &NewEvent,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(recipient) = &event.recipient else {
            return Ok(false);
        };
        let address = recipient.normalized();
        let reason = if event.suppresses() {
            if event.event_type == EventType::Complained {
                SuppressionReason::Complaint
            } else {
                SuppressionReason::HardBounce
            }
        } else if event.is_soft_bounce() && self.policy.count > 0 {
            let since = now.minus(self.policy.window);
            let n = self.store.count_soft_bounces(env, &address, since).await?;
            if n < u64::from(self.policy.count) {
                return Ok(false);
            }
            SuppressionReason::SoftBounces
        } else {
            return Ok(false);
        };
        let suppression = Suppression {
            environment_id: *env,
            address,
            reason,
            source_event_id: Some(logged.id),
            provider: Some(event.provider.clone()),
            note: None,
            created_at: now,
            expires_at: None,
        };
        let added = self
            .suppressions
            .add_suppression(&suppression, false)
            .await?;
        if added {
            tracing::info!(reason = reason.as_str(), event.id = %logged.id, "address suppressed");
        }
        Ok(added)
    }
}

/// The log event of a provider event: its provider, ids, time and `detail` (the event's, taken
/// out of it; no addresses).
fn log_event(
    env: EnvironmentId,
    event: &ProviderEvent,
    detail: serde_json::Value,
    message: Option<&MatchedMessage>,
    now: Timestamp,
) -> NewEvent {
    let mut data = serde_json::json!({
        "provider": event.provider,
        "provider_event_id": event.provider_event_id,
        "occurred_at": event.occurred_at.to_rfc3339(),
        "detail": detail,
    });
    if let Some(b) = event.bounce_type {
        data["bounce_type"] = b.as_str().into();
    }
    if let Some(pmid) = &event.provider_message_id {
        data["provider_message_id"] = pmid.clone().into();
    }
    NewEvent {
        id: EventId::new(),
        environment_id: env,
        message_id: message.map(|m| m.id),
        event_type: event.event_type,
        created_at: now,
        data,
    }
}

//! The enqueue path: serializing a message, handing it to the group-commit writer, and the
//! batch transaction the writer runs.

use mailgate_core::event::{EventType, NewEvent};
use mailgate_core::message::{EnqueueOutcome, NewMessage};
use mailgate_core::store::StoreError;
use mailgate_core::suppression::Suppression;

use super::suppressions::select_suppressed;
use super::{insert_event, SqlStore};
use crate::group_commit::{Job, Request};
use crate::pools::{with_connection, BeginWriteOn, WriteConnection};
use crate::rows::{parse_id, to_json, value_text};

mod direct;
#[cfg(test)]
pub(crate) use direct::tests::{message, migrated, prepare, prepared};
pub use direct::DeferredRecipients;
pub(crate) use direct::{pending_recipients, write_batch_on, DirectWriter, INSERT_EVENT};

/// A message with its columns already in the form they are bound in (ids as text, JSON
/// serialized), so the batch can only fail in SQL, and the writer, which serves every send in
/// turn, spends none of its time formatting.
pub(crate) struct PreparedMessage {
    message: NewMessage,
    /// `messages.id`.
    id: String,
    /// `messages.environment_id`.
    env: String,
    /// `messages.organization`.
    organization: Option<String>,
    /// `message_recipients.usage_type`: the usage type the template was asked for.
    usage_type: Option<String>,
    /// The `queued` event's `id`.
    event_id: String,
    /// The `queued` event's `data`.
    event_data: String,
    content: String,
    tags: String,
    metadata: String,
    provider_options: Option<String>,
    secrets: Option<String>,
    queued_event: NewEvent,
    /// Every recipient, normalized and deduplicated, for the recipient index.
    recipients: Vec<String>,
}

impl PreparedMessage {
    fn new(message: NewMessage) -> Result<Self, StoreError> {
        let recipients = message.content.recipients().count();
        let mut data = serde_json::json!({ "recipients": recipients });
        if let Some(t) = &message.template {
            data["usage"] = t.usage.clone().into();
            data["locale"] = t.locale.clone().into();
            data["template"] = t.source.into();
            if t.requested != t.usage {
                data["requested_usage"] = t.requested.clone().into();
            }
        }
        if let Some(at) = message.delivery.expires_at {
            data["expires_at"] = at.to_rfc3339().into();
        }
        let queued_event = NewEvent::for_message(
            message.environment_id,
            message.id,
            EventType::Queued,
            message.created_at,
            data,
        );
        let mut addresses: Vec<String> = message
            .content
            .recipients()
            .map(|m| m.email.normalized())
            .collect();
        addresses.sort();
        addresses.dedup();
        Ok(Self {
            id: message.id.to_string(),
            env: message.environment_id.to_string(),
            organization: message
                .delivery
                .organization
                .as_ref()
                .map(|o| o.as_str().to_owned()),
            usage_type: message.template.as_ref().map(|t| t.requested.clone()),
            event_id: queued_event.id.to_string(),
            event_data: value_text(&queued_event.data),
            recipients: addresses,
            content: to_json("messages.content", &message.content)?,
            tags: to_json("messages.tags", &message.tags)?,
            metadata: to_json("messages.metadata", &message.metadata)?,
            provider_options: message
                .provider_options
                .as_ref()
                .map(|v| to_json("messages.provider_options", v))
                .transpose()?,
            secrets: (!message.secrets.is_empty())
                .then(|| to_json("messages.secrets", &message.secrets))
                .transpose()?,
            queued_event,
            message,
        })
    }

    /// The message's id.
    #[cfg(test)]
    pub(crate) fn id(&self) -> mailgate_core::ids::MessageId {
        self.message.id
    }
}

impl SqlStore {
    /// Enqueues through the writer and waits for its commit.
    pub(super) async fn enqueue_grouped(
        &self,
        message: NewMessage,
    ) -> Result<EnqueueOutcome, StoreError> {
        let message = PreparedMessage::new(message)?;
        self.on_writer(|reply| Job::Enqueue(Request { message, reply }))
            .await
    }
}

const INSERT_MESSAGE: &str = "INSERT INTO messages (id, environment_id, status, content, tags, metadata, \
     provider_options, idempotency_key, idempotency_fingerprint, attempts, max_attempts, next_attempt_at, \
     created_at, updated_at, expires_at, track_opens, track_links, secrets, organization, sandboxed) \
     VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, 0, $9, $10, $10, $10, $11, $12, $13, $14, $15, $16) \
     ON CONFLICT (environment_id, idempotency_key) DO NOTHING RETURNING id";

const INSERT_RECIPIENT: &str =
    "INSERT INTO message_recipients (message_id, environment_id, address, created_at, usage_type) \
     VALUES ($1, $2, $3, $4, $5)";

const FIND_IDEMPOTENT: &str =
    "SELECT id, idempotency_fingerprint FROM messages WHERE environment_id = $1 AND idempotency_key = $2";

/// Rows per multi-row statement: 16 parameters a message stays well under every backend's
/// parameter limit.
const ROWS_PER_STATEMENT: usize = 64;

const INSERT_MESSAGES_HEAD: &str =
    "INSERT INTO messages (id, environment_id, status, content, tags, \
     metadata, provider_options, idempotency_key, idempotency_fingerprint, attempts, max_attempts, \
     next_attempt_at, created_at, updated_at, expires_at, track_opens, track_links, secrets, \
     organization, sandboxed) ";

const INSERT_EVENTS_HEAD: &str =
    "INSERT INTO events (id, environment_id, message_id, type, created_at, data) ";

const INSERT_RECIPIENTS_HEAD: &str =
    "INSERT INTO message_recipients (message_id, environment_id, address, created_at, usage_type) ";

/// Executes the statement being built in `$q` on `$tx` and starts the next with `$head`.
macro_rules! next_statement {
    ($q:ident, $tx:expr, $head:expr) => {
        $q.build().execute($tx).await?;
        $q.reset();
        $q.push($head);
    };
}

/// Addresses per suppression lookup.
const ADDRESSES_PER_LOOKUP: usize = 1000;

/// Each environment of the batch (its id as text) with the distinct recipients of its messages,
/// and the earliest creation time among them (a suppression lapsing later still counts).
fn lookups(batch: &[&PreparedMessage]) -> Vec<(String, Vec<String>, i64)> {
    let mut by_env: Vec<(String, Vec<String>, i64)> = Vec::new();
    for p in batch {
        let at = p.message.created_at.0;
        let i = match by_env.iter().position(|(e, _, _)| *e == p.env) {
            Some(i) => i,
            None => {
                by_env.push((p.env.clone(), Vec::new(), at));
                by_env.len() - 1
            }
        };
        let entry = &mut by_env[i];
        entry.1.extend(p.recipients.iter().cloned());
        entry.2 = entry.2.min(at);
    }
    for (_, addresses, _) in &mut by_env {
        addresses.sort();
        addresses.dedup();
    }
    by_env
}

/// For each message of the batch, the suppressions that refuse it: those of its environment for
/// one of its recipients, in force when it was created.
fn refusals(batch: &[&PreparedMessage], found: &[Suppression]) -> Vec<Vec<Suppression>> {
    batch
        .iter()
        .map(|p| {
            let m = &p.message;
            found
                .iter()
                .filter(|s| {
                    s.environment_id == m.environment_id
                        && s.expires_at.is_none_or(|at| at > m.created_at)
                        && p.recipients.binary_search(&s.address).is_ok()
                })
                .cloned()
                .collect()
        })
        .collect()
}

/// Stores a batch and the `queued` event of each new message in one transaction. A message
/// with a suppressed recipient stores nothing and yields `Suppressed`. An idempotency key
/// already used (before or earlier in this batch) stores nothing and yields `Replayed` or
/// `Conflict`.
///
/// The form for PostgreSQL (and SQLite in memory); a SQLite file is written by `DirectWriter`.
/// Messages without an idempotency key cannot conflict, so they are written with multi-row
/// statements (messages, then events, then recipients): a statement costs a round trip to the
/// database, and one per row was what capped the accept rate. Messages with a key go one by
/// one, to learn their outcome.
pub(crate) async fn write_batch(
    held: &mut WriteConnection,
    batch: &[&PreparedMessage],
) -> Result<Vec<EnqueueOutcome>, sqlx::Error> {
    with_connection!(held, conn => {
        let mut tx = conn.begin_write_on().await?;
        // Suppressions are read in the transaction that stores the messages, so a suppression
        // committed before it refuses them; one query per environment (and chunk) for the batch.
        let mut found = Vec::new();
        for (env, addresses, at) in lookups(batch) {
            for chunk in addresses.chunks(ADDRESSES_PER_LOOKUP) {
                for row in select_suppressed!(&mut *tx, &env, chunk, at)? {
                    found.push(row.into_domain().map_err(|e| sqlx::Error::Decode(Box::new(e)))?);
                }
            }
        }
        let refused = refusals(batch, &found);
        let mut outcomes = Vec::with_capacity(batch.len());
        let plain: Vec<&PreparedMessage> = batch
            .iter()
            .zip(&refused)
            .filter(|(p, r)| p.message.idempotency.is_none() && r.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for chunk in plain.chunks(ROWS_PER_STATEMENT) {
            // Started empty: `reset` (in `next_statement!`) goes back to the initial text.
            let mut q = sqlx::QueryBuilder::new("");
            q.push(INSERT_MESSAGES_HEAD);
            q.push_values(chunk, |mut row, p| {
                let m = &p.message;
                row.push_bind(p.id.as_str())
                    .push_bind(p.env.as_str())
                    .push("'queued'")
                    .push_bind(p.content.as_str())
                    .push_bind(p.tags.as_str())
                    .push_bind(p.metadata.as_str())
                    .push_bind(p.provider_options.as_deref())
                    .push("NULL")
                    .push("NULL")
                    .push("0")
                    .push_bind(i64::from(m.max_attempts))
                    .push_bind(m.created_at.0)
                    .push_bind(m.created_at.0)
                    .push_bind(m.created_at.0)
                    .push_bind(m.delivery.expires_at.map(|t| t.0))
                    .push_bind(m.delivery.tracking.opens)
                    .push_bind(m.delivery.tracking.links)
                    .push_bind(p.secrets.as_deref())
                    .push_bind(p.organization.as_deref())
                    .push_bind(m.delivery.sandboxed);
            });
            next_statement!(q, &mut *tx, INSERT_EVENTS_HEAD);
            q.push_values(chunk, |mut row, p| {
                let e = &p.queued_event;
                row.push_bind(p.event_id.as_str())
                    .push_bind(p.env.as_str())
                    .push_bind(p.id.as_str())
                    .push_bind(e.event_type.as_str())
                    .push_bind(e.created_at.0)
                    .push_bind(p.event_data.as_str());
            });
            let recipients: Vec<(&PreparedMessage, &String)> =
                chunk.iter().flat_map(|p| p.recipients.iter().map(move |a| (*p, a))).collect();
            for rows in recipients.chunks(ROWS_PER_STATEMENT * 4) {
                next_statement!(q, &mut *tx, INSERT_RECIPIENTS_HEAD);
                q.push_values(rows, |mut row, (p, address)| {
                    row.push_bind(p.id.as_str())
                        .push_bind(p.env.as_str())
                        .push_bind(address.as_str())
                        .push_bind(p.message.created_at.0)
                        .push_bind(p.usage_type.as_deref());
                });
            }
            q.build().execute(&mut *tx).await?;
        }
        for (p, refused) in batch.iter().zip(refused) {
            if !refused.is_empty() {
                outcomes.push(EnqueueOutcome::Suppressed(refused));
                continue;
            }
            if p.message.idempotency.is_none() {
                outcomes.push(EnqueueOutcome::Created(p.message.id));
                continue;
            }
            let m = &p.message;
            let key = m.idempotency.as_ref().map(|i| i.key.as_str());
            let inserted: Option<String> = sqlx::query_scalar(INSERT_MESSAGE)
                .bind(p.id.as_str())
                .bind(p.env.as_str())
                .bind(&p.content)
                .bind(&p.tags)
                .bind(&p.metadata)
                .bind(p.provider_options.as_deref())
                .bind(key)
                .bind(m.idempotency.as_ref().map(|i| i.fingerprint.as_str()))
                .bind(i64::from(m.max_attempts))
                .bind(m.created_at.0)
                .bind(m.delivery.expires_at.map(|t| t.0))
                .bind(m.delivery.tracking.opens)
                .bind(m.delivery.tracking.links)
                .bind(p.secrets.as_deref())
                .bind(p.organization.as_deref())
                .bind(m.delivery.sandboxed)
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = if inserted.is_some() {
                insert_event!(&mut *tx, &p.queued_event)?;
                for address in &p.recipients {
                    sqlx::query(INSERT_RECIPIENT)
                        .bind(p.id.as_str())
                        .bind(p.env.as_str())
                        .bind(address)
                        .bind(m.created_at.0)
                        .bind(p.usage_type.as_deref())
                        .execute(&mut *tx)
                        .await?;
                }
                EnqueueOutcome::Created(m.id)
            } else {
                let (id, fingerprint): (String, Option<String>) = sqlx::query_as(FIND_IDEMPOTENT)
                    .bind(p.env.as_str())
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                let id = parse_id("messages.id", &id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                let same = m.idempotency.as_ref().map(|i| i.fingerprint.as_str()) == fingerprint.as_deref();
                if same { EnqueueOutcome::Replayed(id) } else { EnqueueOutcome::Conflict(id) }
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    })
}

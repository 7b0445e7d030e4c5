//! `InboundStore`: provider events from webhooks (deduplicated by provider event id), matched to
//! messages, moving their status forward, a batch per statement; and the recipient view.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use mailgate_core::event::{Event, EventQuery, NewEvent};
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::inbound::status_moves;
use mailgate_core::message::MessageStatus;
use mailgate_core::store::{
    EventStore, InboundRecord, InboundStore, MatchKey, MatchedMessage, RecipientMessage,
    RecordOutcome, StoreError,
};
use mailgate_core::Timestamp;

use super::events::{append_events, json_rows, VALUES_CHUNK};
use super::SqlStore;
use crate::error::db_error;
use crate::group_commit::Job;
use crate::pools::{with_pool, with_writer, BeginWrite, Pools};
use crate::rows::{MessageRow, MESSAGE_COLUMNS};

pub(crate) mod direct;
pub(crate) mod keys;

/// Inserts provider events (`&[InboundRecord]`) by multi-row `VALUES`, skipping those recorded
/// before (or earlier in the batch); evaluates to how many it inserted. Keyed by the provider's
/// time before its id (migration 0015); the bounce type and address are kept for soft bounces
/// only, which the soft-bounce rule counts.
macro_rules! insert_provider_events {
    ($tx:expr, $records:expr) => {{
        let records: &[InboundRecord<'_>] = $records;
        let mut inserted = 0u64;
        for chunk in records.chunks(VALUES_CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO provider_events (environment_id, provider, occurred_at, \
                 provider_event_id, event_id, bounce_type, address) ",
            );
            qb.push_values(chunk, |mut row, r| {
                let (e, ev) = (r.event, r.new_event);
                let soft = e.is_soft_bounce();
                row.push_bind(ev.environment_id.to_string())
                    .push_bind(e.provider.as_str())
                    .push_bind(e.occurred_at.0)
                    .push_bind(e.provider_event_id.as_str())
                    .push_bind(ev.id.to_string())
                    .push_bind(soft.then_some("soft"))
                    .push_bind(
                        e.recipient
                            .as_ref()
                            .filter(|_| soft)
                            .map(|a| a.normalized()),
                    );
            });
            qb.push(
                " ON CONFLICT (environment_id, provider, occurred_at, provider_event_id) \
                 DO NOTHING",
            );
            inserted += qb
                .build()
                .persistent(chunk.len() == VALUES_CHUNK)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
        }
        inserted
    }};
}

/// SQLite's form of `insert_provider_events!` (migration 0017): each event's hashed key, one
/// statement per event as the direct writer's (`direct::record_on`), and the soft bounces among
/// the new ones; evaluates to the log event ids of the events that were new.
macro_rules! insert_hashed_keys {
    ($tx:expr, $records:expr) => {{
        let records: &[InboundRecord<'_>] = $records;
        let mut recorded = HashSet::with_capacity(records.len());
        for r in records {
            let (e, ev) = (r.event, r.new_event);
            let env = ev.environment_id.to_string();
            let key = keys::event_key(&env, &e.provider, &e.provider_event_id);
            let stored = sqlx::query(keys::INSERT_KEY)
                .bind(e.occurred_at.0)
                .bind(&key[..])
                .execute(&mut *$tx)
                .await?;
            if stored.rows_affected() == 0 {
                continue;
            }
            if let Some(address) = e.recipient.as_ref().filter(|_| e.is_soft_bounce()) {
                sqlx::query(keys::INSERT_SOFT_BOUNCE)
                    .bind(&env)
                    .bind(address.normalized())
                    .bind(e.occurred_at.0)
                    .execute(&mut *$tx)
                    .await?;
            }
            recorded.insert(ev.id.to_string());
        }
        recorded
    }};
}

/// After `insert_provider_events!` in the same transaction, when it skipped some: the log event
/// id now stored for each provider event of the JSON array `$1` (see `provider_event_keys`), as
/// one JSON array. A record whose own id is there was
/// inserted; any other was there before, or came first from another transaction (whose commit
/// the insert waited for), or earlier in the array.
fn stored_event_ids_sql(pools: &Pools) -> String {
    let occurred_at = match pools {
        Pools::Sqlite { .. } => "j.value ->> 'occurred_at'",
        Pools::Postgres(_) => "(j.value ->> 'occurred_at')::bigint",
    };
    format!(
        "SELECT {} FROM {} JOIN provider_events AS p \
             ON p.environment_id = j.value ->> 'environment_id' \
             AND p.provider = j.value ->> 'provider' \
             AND p.occurred_at = {occurred_at} \
             AND p.provider_event_id = j.value ->> 'provider_event_id'",
        json_agg(pools, "p.event_id"),
        json_rows(pools)
    )
}

/// The aggregate that folds a query's rows into one JSON array text, so that a batch's answer
/// is one row: sqlx's SQLite worker hands each result row to the caller's thread on its own.
fn json_agg(pools: &Pools, expr: &str) -> String {
    match pools {
        Pools::Sqlite { .. } => format!("json_group_array({expr})"),
        Pools::Postgres(_) => format!("COALESCE(json_agg({expr}), '[]')::text"),
    }
}

/// Moves each message of a JSON array (`$1`: `id`, and `moves`, an object from each status the
/// message may be moved from to where it goes) on from the status it has, at `$2`. One row per
/// message, not one per status it may have: PostgreSQL re-checks an update that waited for
/// another transaction's on the row it joined, with the message's new status, and does not look
/// for another row — a message moved meanwhile from `sent` to `delivered` would have skipped
/// its `delivered` → `bounced` row (seen in the API test
/// `concurrent_webhooks_move_each_message_to_its_furthest_state`).
fn advance_sql(pools: &Pools) -> String {
    format!(
        "UPDATE messages SET status = (j.value -> 'moves') ->> messages.status, updated_at = $2 \
         FROM {} WHERE messages.id = j.value ->> 'id' \
         AND ((j.value -> 'moves') ->> messages.status) IS NOT NULL",
        json_rows(pools)
    )
}

/// Messages by id, from a JSON array of ids (`$1`).
fn messages_by_id_sql(pools: &Pools) -> String {
    let ids = match pools {
        Pools::Sqlite { .. } => "SELECT value FROM json_each($1)",
        Pools::Postgres(_) => "SELECT jsonb_array_elements_text($1::jsonb)",
    };
    format!(
        "SELECT {} FROM messages WHERE id IN ({ids})",
        json_agg(pools, &json_array(pools, "id, environment_id, status"))
    )
}

/// Messages by (environment, provider message id), from a JSON array (`$1`: `e`, `p`), newest
/// first within a pair.
fn messages_by_provider_id_sql(pools: &Pools) -> String {
    format!(
        "SELECT {} FROM (SELECT id, environment_id, provider_message_id, status FROM messages \
             WHERE provider_message_id IS NOT NULL AND (environment_id, provider_message_id) IN \
                 (SELECT j.value ->> 'e', j.value ->> 'p' FROM {}) \
             ORDER BY created_at DESC) AS m",
        json_agg(
            pools,
            &json_array(
                pools,
                "m.id, m.environment_id, m.provider_message_id, m.status"
            )
        ),
        json_rows(pools)
    )
}

/// A JSON array of the columns `cols`.
fn json_array(pools: &Pools, cols: &str) -> String {
    match pools {
        Pools::Sqlite { .. } => format!("json_array({cols})"),
        Pools::Postgres(_) => format!("json_build_array({cols})"),
    }
}

/// Decodes the one-row JSON answer of an aggregated query.
fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("aggregated rows: {e}")))
}

/// The records' deduplication keys as the JSON array `stored_event_ids_sql` reads.
fn provider_event_keys(records: &[InboundRecord<'_>]) -> String {
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "environment_id": r.new_event.environment_id.to_string(),
                "provider": r.event.provider,
                "occurred_at": r.event.occurred_at.0,
                "provider_event_id": r.event.provider_event_id,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// The status moves of the recorded records as the JSON array `advance_sql` reads.
fn advance_rows(records: &[InboundRecord<'_>], recorded: &HashSet<String>) -> Option<String> {
    let moves = message_moves(records.iter().filter_map(|r| {
        let id = r.new_event.message_id?;
        let target = r.event.target()?;
        recorded
            .contains(&r.new_event.id.to_string())
            .then_some((id, target))
    }));
    (!moves.is_empty()).then(|| {
        // `message_moves` keeps a message's moves together.
        let mut rows: Vec<serde_json::Value> = Vec::new();
        let mut last: Option<MessageId> = None;
        for (id, from, to) in moves {
            if last != Some(id) {
                rows.push(serde_json::json!({"id": id.to_string(), "moves": {}}));
                last = Some(id);
            }
            if let Some(row) = rows.last_mut() {
                row["moves"][from.as_str()] = to.as_str().into();
            }
        }
        serde_json::Value::Array(rows).to_string()
    })
}

/// The status moves of a batch's recorded events (each its message and the status it moves
/// the message towards), as `(message, from, to)`: per message, in the order of its first
/// event, the pairs `status_moves` composes from its events in the batch's order. They are
/// applied as updates fenced by `from`, so that they act on the status the message has then.
fn message_moves<K: Eq + std::hash::Hash + Copy>(
    events: impl Iterator<Item = (K, MessageStatus)>,
) -> Vec<(K, MessageStatus, MessageStatus)> {
    let mut targets: Vec<(K, Vec<MessageStatus>)> = Vec::new();
    let mut at: HashMap<K, usize> = HashMap::new();
    for (id, target) in events {
        match at.entry(id) {
            Entry::Occupied(i) => targets[*i.get()].1.push(target),
            Entry::Vacant(v) => {
                v.insert(targets.len());
                targets.push((id, vec![target]));
            }
        }
    }
    targets
        .iter()
        .flat_map(|(id, targets)| {
            status_moves(targets)
                .into_iter()
                .map(|(from, to)| (*id, from, to))
        })
        .collect()
}

fn parse_id(id: &str) -> Result<MessageId, StoreError> {
    id.parse()
        .map_err(|_| StoreError::Corrupt(format!("message id {id:?}")))
}

fn parse_status(status: &str) -> Result<MessageStatus, StoreError> {
    MessageStatus::parse(status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))
}

#[async_trait::async_trait]
impl InboundStore for SqlStore {
    async fn match_messages(
        &self,
        keys: &[MatchKey<'_>],
    ) -> Result<Vec<Option<MatchedMessage>>, StoreError> {
        let mut out = vec![None; keys.len()];
        // mailgate's own id (from the provider's metadata) is exact and wins.
        let ids: Vec<String> = keys
            .iter()
            .filter_map(|k| k.message_id.map(|m| m.to_string()))
            .collect();
        if !ids.is_empty() {
            let sql = messages_by_id_sql(&self.pools);
            let json = serde_json::Value::from(ids).to_string();
            let rows: String = with_pool!(&self.pools, pool => {
                sqlx::query_scalar(&sql).bind(&json).fetch_one(pool).await
            })
            .map_err(db_error)?;
            let rows: Vec<(String, String, String)> = decode(&rows)?;
            let mut found = HashMap::with_capacity(rows.len());
            for (id, env, status) in rows {
                found.insert(id, (env, parse_status(&status)?));
            }
            for (key, slot) in keys.iter().zip(out.iter_mut()) {
                let Some(id) = key.message_id else { continue };
                if let Some((env, status)) = found.get(&id.to_string()) {
                    if *env == key.env.to_string() {
                        *slot = Some(MatchedMessage {
                            id,
                            status: *status,
                        });
                    }
                }
            }
        }
        // The provider's id is the fallback, for events that carry no metadata (SES identity
        // notifications) or name a message of another environment.
        let pairs: Vec<serde_json::Value> = keys
            .iter()
            .zip(&out)
            .filter(|(_, slot)| slot.is_none())
            .filter_map(|(k, _)| {
                let p = k.provider_message_id.filter(|p| !p.is_empty())?;
                Some(serde_json::json!({"e": k.env.to_string(), "p": p}))
            })
            .collect();
        if !pairs.is_empty() {
            let sql = messages_by_provider_id_sql(&self.pools);
            let json = serde_json::Value::Array(pairs).to_string();
            let rows: String = with_pool!(&self.pools, pool => {
                sqlx::query_scalar(&sql).bind(&json).fetch_one(pool).await
            })
            .map_err(db_error)?;
            let rows: Vec<(String, String, String, String)> = decode(&rows)?;
            // Newest first: the first row of a pair is the one it matches.
            let mut found: HashMap<(String, String), MatchedMessage> = HashMap::new();
            for (id, env, pmid, status) in rows {
                if let Entry::Vacant(v) = found.entry((env, pmid)) {
                    v.insert(MatchedMessage {
                        id: parse_id(&id)?,
                        status: parse_status(&status)?,
                    });
                }
            }
            for (key, slot) in keys.iter().zip(out.iter_mut()) {
                if slot.is_some() {
                    continue;
                }
                if let Some(p) = key.provider_message_id {
                    *slot = found.get(&(key.env.to_string(), p.to_owned())).copied();
                }
            }
        }
        Ok(out)
    }

    async fn record_inbound(
        &self,
        records: &[InboundRecord<'_>],
        now: Timestamp,
    ) -> Result<Vec<RecordOutcome>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let outcome = |recorded: bool| {
            if recorded {
                RecordOutcome::Recorded
            } else {
                RecordOutcome::Duplicate
            }
        };
        if self.direct_writes() {
            let job = direct::RecordJob::new(records, now);
            let recorded = self.on_writer(|reply| Job::Record(job, reply)).await?;
            return Ok(recorded.into_iter().map(outcome).collect());
        }
        let stored = stored_event_ids_sql(&self.pools);
        let advance = advance_sql(&self.pools);
        // SQLite keeps hashed keys (migration 0017), stored one statement per event as the
        // direct writer does; PostgreSQL the columns themselves, a multi-row statement per chunk.
        let hashed = matches!(self.pools, Pools::Sqlite { .. });
        let recorded = with_writer!(&self.pools, pool => async {
            let mut tx = pool.begin_write().await?;
            let recorded: HashSet<String> = if hashed {
                insert_hashed_keys!(tx, records)
            } else {
                let inserted = insert_provider_events!(tx, records);
                // Usually every event is new; only when some were skipped does it ask which.
                if inserted == records.len() as u64 {
                    records.iter().map(|r| r.new_event.id.to_string()).collect()
                } else {
                    let keys = provider_event_keys(records);
                    let stored: String =
                        sqlx::query_scalar(&stored).bind(&keys).fetch_one(&mut *tx).await?;
                    serde_json::from_str::<Vec<String>>(&stored)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?
                        .into_iter()
                        .collect()
                }
            };
            if let Some(changes) = advance_rows(records, &recorded) {
                sqlx::query(&advance).bind(changes).bind(now.0).execute(&mut *tx).await?;
            }
            let events: Vec<&NewEvent> = records
                .iter()
                .map(|r| r.new_event)
                .filter(|e| recorded.contains(&e.id.to_string()))
                .collect();
            append_events!(tx, &events);
            tx.commit().await?;
            Ok::<_, sqlx::Error>(recorded)
        }
        .await)
        .map_err(db_error)?;
        Ok(records
            .iter()
            .map(|r| outcome(recorded.contains(&r.new_event.id.to_string())))
            .collect())
    }

    async fn count_soft_bounces(
        &self,
        env: &EnvironmentId,
        address: &str,
        since: Timestamp,
    ) -> Result<u64, StoreError> {
        let sql = match self.pools {
            // Migration 0017.
            Pools::Sqlite { .. } => {
                "SELECT COUNT(*) FROM soft_bounces WHERE environment_id = $1 AND address = $2 \
                 AND occurred_at >= $3"
            }
            Pools::Postgres(_) => {
                "SELECT COUNT(*) FROM provider_events WHERE environment_id = $1 AND address = $2 \
                 AND bounce_type = 'soft' AND occurred_at >= $3"
            }
        };
        let n: i64 = with_pool!(&self.pools, pool => {
            sqlx::query_scalar(sql)
            .bind(env.to_string())
            .bind(address)
            .bind(since.0)
            .fetch_one(pool)
            .await
        })
        .map_err(db_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn recipient_messages(
        &self,
        env: &EnvironmentId,
        address: &str,
        limit: u32,
    ) -> Result<Vec<RecipientMessage>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT message_id FROM \
             recipient_sends WHERE environment_id = $1 AND address = $2 \
             ORDER BY created_at DESC LIMIT $3) ORDER BY created_at DESC"
        );
        let rows: Vec<MessageRow> = with_pool!(&self.pools, pool => {
            sqlx::query_as(&sql)
                .bind(env.to_string())
                .bind(address)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .map_err(db_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let message = row.into_domain()?;
            let events: Vec<Event> = self
                .list_events(&EventQuery {
                    environment_id: Some(*env),
                    message_id: Some(message.id),
                    types: Vec::new(),
                    since: None,
                    after_seq: None,
                    limit: 200,
                })
                .await?;
            out.push(RecipientMessage { message, events });
        }
        Ok(out)
    }
}

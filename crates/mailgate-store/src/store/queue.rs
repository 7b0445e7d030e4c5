//! `QueueStore`: the leased claim, fenced completion, retention purge and next due time.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mailgate_core::event::NewEvent;
use mailgate_core::message::{ClaimedMessage, MessageStatus};
use mailgate_core::store::{Completion, QueueStore, StoreError};
use mailgate_core::Timestamp;

use super::events::{append_events, json_rows};
use super::SqlStore;
use crate::error::db_error;
use crate::group_commit::Job;
use crate::pools::{with_pool, with_writer, BeginWrite, Pools};
use crate::rows::{ClaimRow, CLAIM_COLUMNS};

pub(crate) mod direct;

/// The claim's lanes, in the order they are served: expired leases, due retries, due first
/// attempts. A retry keeps its place in line: once its backoff has passed it goes ahead of the
/// messages accepted after it, instead of waiting behind the whole backlog again after each
/// failure (migration 0016). Each lane is one scan of a partial index (`messages_leases`,
/// `messages_retry_due`, `messages_due`), rather than one `OR` a planner would scan
/// sequentially.
///
/// PostgreSQL: lock the candidates with `SKIP LOCKED` so concurrent claimers (in this process or
/// another) split the work. `$1` now, `$2` limit, `$3` lease end, `$4` lease token.
fn postgres_claim_sql() -> String {
    format!(
        "WITH expired AS ( \
             SELECT id FROM messages WHERE status = 'sending' AND locked_until < $1 \
             ORDER BY locked_until LIMIT $2 FOR UPDATE SKIP LOCKED \
         ), retry AS ( \
             SELECT id FROM messages WHERE status = 'queued' AND attempts > 0 \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED \
         ), due AS ( \
             SELECT id FROM messages WHERE status = 'queued' AND attempts = 0 \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED \
         ), picked AS ( \
             SELECT id FROM expired UNION ALL SELECT id FROM retry UNION ALL SELECT id FROM due \
             LIMIT $2 \
         ) \
         UPDATE messages AS m SET status = 'sending', locked_until = $3, lease_token = $4, \
             attempts = m.attempts + 1, updated_at = $1 \
         FROM picked WHERE m.id = picked.id \
         RETURNING {}",
        CLAIM_COLUMNS
            .split(", ")
            .map(|c| format!("m.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// SQLite: one `UPDATE` statement takes the single write lock for itself, so the selection and
/// the update are atomic. The same lanes and parameters as the PostgreSQL form.
/// The limits are written `+$2`: SQLite (3.54) plans a `LIMIT` of a bare parameter with the
/// value bound, so binding it again — every claim — compiled the statement again. The retry
/// lane names its index: `messages_due` (every queued message) serves its terms too, and without
/// statistics SQLite took either, from one run to the next.
fn sqlite_claim_sql() -> String {
    format!(
        "UPDATE messages SET status = 'sending', locked_until = $3, lease_token = $4, \
             attempts = attempts + 1, updated_at = $1 \
         WHERE id IN ( \
             SELECT id FROM (SELECT id FROM messages WHERE status = 'sending' AND locked_until < $1 \
                             ORDER BY locked_until LIMIT +$2) \
             UNION ALL \
             SELECT id FROM (SELECT id FROM messages INDEXED BY messages_retry_due \
                             WHERE status = 'queued' AND attempts > 0 \
                             AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT +$2) \
             UNION ALL \
             SELECT id FROM (SELECT id FROM messages WHERE status = 'queued' AND attempts = 0 \
                             AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT +$2) \
             LIMIT +$2) \
         RETURNING {CLAIM_COLUMNS}"
    )
}

/// Applies a batch of completions given as a JSON array (`$1`, see `completion_rows`), each
/// fenced by its lease token, at `$2`; returns the id and secrets of each message it changed.
/// One statement for the whole batch: per completion, SQLite paid a round trip to its
/// connection's thread, and PostgreSQL one over the network.
/// The completion update, reading its rows from the JSON array `$1` as `rows` (`json_rows`).
fn complete_sql(rows: &str) -> String {
    format!(
        "UPDATE messages SET status = j.value ->> 'status', \
             next_attempt_at = COALESCE(CAST(j.value ->> 'next_attempt_at' AS BIGINT), next_attempt_at), \
             provider = COALESCE(j.value ->> 'provider', provider), \
             provider_message_id = COALESCE(j.value ->> 'provider_message_id', provider_message_id), \
             last_error = j.value ->> 'last_error', locked_until = NULL, lease_token = NULL, \
             updated_at = $2 \
         FROM {} \
         WHERE messages.id = j.value ->> 'id' AND messages.lease_token = j.value ->> 'lease_token' \
         RETURNING messages.id, messages.secrets",
        rows
    )
}

/// The completions as the JSON array `complete_sql` reads.
fn completion_rows(completions: &[Completion]) -> String {
    let rows: Vec<serde_json::Value> = completions
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.message_id.to_string(),
                "lease_token": c.lease_token,
                "status": c.status.as_str(),
                "next_attempt_at": c.next_attempt_at.map(|t| t.0),
                "provider": c.provider,
                "provider_message_id": c.provider_message_id,
                "last_error": c.last_error,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Redacts a final message's secrets from its stored content and from its captured copies, and
/// forgets them — in the completion's transaction (ARCHITECTURE.md, "secrets").
macro_rules! redact_secrets {
    ($tx:expr, $id:expr, $secrets:expr) => {{
        let secrets: Vec<String> =
            serde_json::from_str($secrets).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let content: Option<String> =
            sqlx::query_scalar("SELECT content FROM messages WHERE id = $1")
                .bind($id)
                .fetch_one(&mut *$tx)
                .await?;
        let content = content.map(|c| redacted(&c, &secrets)).transpose()?;
        sqlx::query("UPDATE messages SET content = $1, secrets = NULL WHERE id = $2")
            .bind(content)
            .bind($id)
            .execute(&mut *$tx)
            .await?;
        let captured: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, content FROM captured_messages WHERE message_id = $1")
                .bind($id)
                .fetch_all(&mut *$tx)
                .await?;
        for (seq, c) in captured {
            sqlx::query("UPDATE captured_messages SET content = $1 WHERE seq = $2")
                .bind(redacted(&c, &secrets)?)
                .bind(seq)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// The JSON `content` with every secret replaced.
fn redacted(content: &str, secrets: &[String]) -> Result<String, sqlx::Error> {
    let mut value: serde_json::Value =
        serde_json::from_str(content).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    mailgate_core::redact::redact(&mut value, secrets);
    Ok(value.to_string())
}

#[async_trait::async_trait]
impl QueueStore for SqlStore {
    async fn claim(
        &self,
        limit: u32,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // One fresh token per claim: 80 random bits, so a re-claim never reuses a token.
        let token = ulid::Ulid::new().to_string();
        if self.direct_writes() {
            let job = direct::ClaimJob::new(limit, now, now.plus(lease), token);
            let rows = self.on_writer(|reply| Job::Claim(job, reply)).await?;
            return rows.into_iter().map(ClaimRow::into_domain).collect();
        }
        let sql = match &self.pools {
            Pools::Sqlite { .. } => sqlite_claim_sql(),
            Pools::Postgres(_) => postgres_claim_sql(),
        };
        let rows: Vec<ClaimRow> = with_writer!(&self.pools, pool => {
            sqlx::query_as(&sql)
                .bind(now.0)
                .bind(i64::from(limit))
                .bind(now.plus(lease).0)
                .bind(&token)
                .fetch_all(pool)
                .await
        })
        .map_err(db_error)?;
        rows.into_iter().map(ClaimRow::into_domain).collect()
    }

    async fn complete(
        &self,
        completions: &[Completion],
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        if completions.is_empty() {
            return Ok(0);
        }
        let status: HashMap<String, MessageStatus> = completions
            .iter()
            .map(|c| (c.message_id.to_string(), c.status))
            .collect();
        if self.direct_writes() {
            let job = direct::CompleteJob::new(completions, now);
            return self.on_writer(|reply| Job::Complete(job, reply)).await;
        }
        let update = complete_sql(json_rows(&self.pools));
        let rows = completion_rows(completions);
        with_writer!(&self.pools, pool => async {
            let mut tx = pool.begin_write().await?;
            let changed: Vec<(String, Option<String>)> = sqlx::query_as(&update)
                .bind(&rows)
                .bind(now.0)
                .fetch_all(&mut *tx)
                .await?;
            // A completion that changed nothing lost its lease: another claimer owns the
            // message now, and its outcome wins.
            let mut applied = HashSet::with_capacity(changed.len());
            for (id, secrets) in changed {
                let done = status.get(&id).is_some_and(|s| s.is_final_for_queue());
                if let (Some(secrets), true) = (secrets, done) {
                    redact_secrets!(tx, &id, &secrets);
                }
                applied.insert(id);
            }
            // The events of the completions applied, in the batch's order.
            let mut events: Vec<&NewEvent> = Vec::new();
            for c in completions {
                if applied.contains(&c.message_id.to_string()) {
                    events.extend(&c.events);
                }
            }
            if !events.is_empty() {
                append_events!(tx, &events);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(applied.len())
        }
        .await)
        .map_err(db_error)
    }

    async fn purge_content(&self, before: Timestamp) -> Result<u64, StoreError> {
        with_writer!(&self.pools, pool => {
            sqlx::query(
                "UPDATE messages SET content = NULL \
                 WHERE content IS NOT NULL AND updated_at < $1 AND status NOT IN ('queued', 'sending')",
            )
            .bind(before.0)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(db_error)
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let due: Option<i64> = with_pool!(&self.pools, pool => {
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM messages WHERE status = 'queued'")
                .fetch_one(pool)
                .await
        })
        .map_err(db_error)?;
        Ok(due.map(Timestamp))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mailgate_core::address::EmailAddress;
    use mailgate_core::environment::{Environment, EnvironmentName};
    use mailgate_core::event::{EventType, NewEvent};
    use mailgate_core::ids::{EnvironmentId, EventId};
    use mailgate_core::inbound::{BounceType, ProviderEvent};
    use mailgate_core::message::{EnqueueOutcome, MessageStatus};
    use mailgate_core::store::{Completion, InboundRecord, RecordOutcome};
    use mailgate_core::Timestamp;

    use crate::pools::Pools;
    use crate::store::enqueue::message;
    use crate::test_file::{assert_searches, migrated_file, query_plan};
    use crate::{Database, StoreOptions};

    /// A SQLite database without a file path of its own (a `file:` URI) has no direct writer:
    /// its pool claims, completes and records provider events, with the same statements.
    #[tokio::test]
    async fn without_a_direct_writer_the_pool_claims_completes_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:file:{}?mode=rwc", dir.path().join("m.db").display());
        let db = Database::connect(&url, &StoreOptions::default())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        assert!(!db.store.direct_writes(), "the pool's path");
        let store = db.storage();
        let env = Environment {
            id: EnvironmentId::new(),
            name: EnvironmentName::parse("default").unwrap(),
            created_at: Timestamp(0),
        };
        store.create_environment(&env).await.unwrap();
        let m = message(env.id, 1_000, &["a@example.com"]);
        let id = m.id;
        assert!(matches!(store.enqueue(m).await.unwrap(), EnqueueOutcome::Created(c) if c == id));
        let lease = Duration::from_secs(60);
        let claimed = store.claim(8, Timestamp(1_000), lease).await.unwrap();
        let [c] = &claimed[..] else {
            panic!("one message claimed: {claimed:?}")
        };
        assert_eq!((c.id, c.attempt), (id, 1));
        let done = Completion {
            message_id: id,
            lease_token: c.lease_token.clone(),
            status: MessageStatus::Sent,
            next_attempt_at: None,
            provider: Some("capture".into()),
            provider_message_id: Some("p-1".into()),
            last_error: None,
            events: Vec::new(),
        };
        assert_eq!(store.complete(&[done], Timestamp(2_000)).await.unwrap(), 1);
        assert!(store
            .claim(8, Timestamp(3_000), lease)
            .await
            .unwrap()
            .is_empty());
        let record = store
            .get_message(Some(&env.id), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, MessageStatus::Sent);
        // A provider event and its retry in one batch: the first moves the message on.
        let delivered = ProviderEvent {
            provider: "ses".into(),
            provider_event_id: "pe-1".into(),
            provider_message_id: Some("p-1".into()),
            message_id: Some(id),
            event_type: EventType::Delivered,
            bounce_type: None,
            recipient: None,
            occurred_at: Timestamp(2_500),
            detail: serde_json::json!({}),
        };
        let logs: Vec<NewEvent> = (0..2)
            .map(|_| NewEvent {
                id: EventId::new(),
                environment_id: env.id,
                message_id: Some(id),
                event_type: EventType::Delivered,
                created_at: Timestamp(3_000),
                data: serde_json::json!({}),
            })
            .collect();
        let records: Vec<InboundRecord<'_>> = logs
            .iter()
            .map(|new_event| InboundRecord {
                event: &delivered,
                new_event,
            })
            .collect();
        assert_eq!(
            store
                .record_inbound(&records, Timestamp(3_000))
                .await
                .unwrap(),
            [RecordOutcome::Recorded, RecordOutcome::Duplicate]
        );
        let record = store
            .get_message(Some(&env.id), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, MessageStatus::Delivered);
        // A soft bounce is kept for the soft-bounce rule, which counts it.
        let soft = ProviderEvent {
            provider_event_id: "pe-2".into(),
            event_type: EventType::Bounced,
            bounce_type: Some(BounceType::Soft),
            recipient: Some(EmailAddress::parse("a@example.com").unwrap()),
            ..delivered.clone()
        };
        let log = NewEvent {
            id: EventId::new(),
            event_type: EventType::Bounced,
            ..logs[0].clone()
        };
        let record = [InboundRecord {
            event: &soft,
            new_event: &log,
        }];
        let outcome = store.record_inbound(&record, Timestamp(3_000)).await;
        assert_eq!(outcome.unwrap(), [RecordOutcome::Recorded]);
        let soft_bounces = store.count_soft_bounces(&env.id, "a@example.com", Timestamp(0));
        assert_eq!(soft_bounces.await.unwrap(), 1);
        db.close().await;
    }

    /// Each lane of the SQLite claim is a search of its own partial index: neither a backlog
    /// of first attempts nor one of retries is walked to find the other lane's messages.
    #[tokio::test]
    async fn each_claim_lane_searches_its_index() {
        let (_dir, _, db, _) = migrated_file(&StoreOptions::default()).await;
        let Pools::Sqlite { read, .. } = db.store.pools() else {
            unreachable!("a SQLite file")
        };
        let plan = query_plan(read, &super::sqlite_claim_sql(), 4).await;
        for index in ["messages_leases", "messages_retry_due", "messages_due"] {
            assert_searches(&plan, "messages", &format!("INDEX {index} ("));
        }
    }
}

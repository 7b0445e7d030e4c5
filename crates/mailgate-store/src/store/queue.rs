//! `QueueStore`: the leased claim, fenced completion, retention purge and next due time.

use std::time::Duration;

use mailgate_core::message::ClaimedMessage;
use mailgate_core::store::{Completion, QueueStore, StoreError};
use mailgate_core::Timestamp;

use super::{insert_event, SqlStore};
use crate::error::db_error;
use crate::pools::{with_pool, with_writer, BeginWrite, Pools};
use crate::rows::{ClaimRow, CLAIM_COLUMNS};

/// PostgreSQL: lock the candidates with `SKIP LOCKED` so concurrent claimers (in this process or
/// another) split the work. Expired leases and due messages are found by two index scans (the
/// partial indexes `messages_leases` and `messages_due`) instead of one `OR` the planner would
/// scan sequentially. `$1` now, `$2` limit, `$3` lease end, `$4` lease token.
fn postgres_claim_sql() -> String {
    format!(
        "WITH expired AS ( \
             SELECT id FROM messages WHERE status = 'sending' AND locked_until < $1 \
             ORDER BY locked_until LIMIT $2 FOR UPDATE SKIP LOCKED \
         ), due AS ( \
             SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED \
         ), picked AS ( \
             SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT $2 \
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
/// the update are atomic. Same parameters as the PostgreSQL form.
fn sqlite_claim_sql() -> String {
    format!(
        "UPDATE messages SET status = 'sending', locked_until = $3, lease_token = $4, \
             attempts = attempts + 1, updated_at = $1 \
         WHERE id IN ( \
             SELECT id FROM (SELECT id FROM messages WHERE status = 'sending' AND locked_until < $1 \
                             ORDER BY locked_until LIMIT $2) \
             UNION ALL \
             SELECT id FROM (SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= $1 \
                             ORDER BY next_attempt_at LIMIT $2) \
             LIMIT $2) \
         RETURNING {CLAIM_COLUMNS}"
    )
}

const COMPLETE: &str =
    "UPDATE messages SET status = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
     provider = COALESCE($3, provider), provider_message_id = COALESCE($4, provider_message_id), \
     last_error = $5, locked_until = NULL, lease_token = NULL, updated_at = $6 \
     WHERE id = $7 AND lease_token = $8 RETURNING secrets";

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
        with_writer!(&self.pools, pool => async {
            let mut tx = pool.begin_write().await?;
            let mut applied = 0;
            for c in completions {
                let id = c.message_id.to_string();
                let changed: Option<Option<String>> = sqlx::query_scalar(COMPLETE)
                    .bind(c.status.as_str())
                    .bind(c.next_attempt_at.map(|t| t.0))
                    .bind(c.provider.as_deref())
                    .bind(c.provider_message_id.as_deref())
                    .bind(c.last_error.as_deref())
                    .bind(now.0)
                    .bind(&id)
                    .bind(&c.lease_token)
                    .fetch_optional(&mut *tx)
                    .await?;
                // Lease lost: another claimer owns the message now; its outcome wins.
                if let Some(secrets) = changed {
                    if let (Some(secrets), true) = (secrets, c.status.is_final_for_queue()) {
                        redact_secrets!(tx, &id, &secrets);
                    }
                    for event in &c.events {
                        insert_event!(&mut *tx, event)?;
                    }
                    applied += 1;
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(applied)
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

//! `InboundStore`: provider events from webhooks (deduplicated by provider event id), matched to
//! messages, moving their status forward; and the recipient view.

use mailgate_core::event::{Event, EventQuery};
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::MessageRecord;
use mailgate_core::store::{
    EventStore, InboundRecord, InboundStore, RecipientMessage, RecordOutcome, StoreError,
};
use mailgate_core::Timestamp;

use super::{insert_event, SqlStore};
use crate::error::db_error;
use crate::pools::{with_pool, with_writer, BeginWrite};
use crate::rows::{MessageRow, MESSAGE_COLUMNS};

const INSERT_PROVIDER_EVENT: &str = "INSERT INTO provider_events (environment_id, provider, \
     provider_event_id, event_id, message_id, type, bounce_type, address, occurred_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (environment_id, provider, provider_event_id) DO NOTHING";

const ADVANCE: &str =
    "UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4";

impl SqlStore {
    async fn message_where(
        &self,
        clause: &str,
        env: &EnvironmentId,
        value: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE environment_id = $1 AND {clause} \
             ORDER BY created_at DESC LIMIT 1"
        );
        let row: Option<MessageRow> = with_pool!(&self.pools, pool => {
            sqlx::query_as(&sql).bind(env.to_string()).bind(value).fetch_optional(pool).await
        })
        .map_err(db_error)?;
        row.map(MessageRow::into_domain).transpose()
    }
}

#[async_trait::async_trait]
impl InboundStore for SqlStore {
    async fn match_message(
        &self,
        env: &EnvironmentId,
        provider: &str,
        provider_message_id: Option<&str>,
        message_id: Option<&MessageId>,
    ) -> Result<Option<MessageRecord>, StoreError> {
        // mailgate's own id (from the provider's metadata) is exact and wins; the provider's id
        // is the fallback for events that carry no metadata (SES identity notifications).
        if let Some(id) = message_id {
            if let Some(m) = self.message_where("id = $2", env, &id.to_string()).await? {
                return Ok(Some(m));
            }
        }
        let Some(pmid) = provider_message_id.filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let _ = provider; // Provider message ids are unique enough within one environment.
        self.message_where("provider_message_id = $2", env, pmid)
            .await
    }

    async fn record_inbound(
        &self,
        record: &InboundRecord<'_>,
        now: Timestamp,
    ) -> Result<RecordOutcome, StoreError> {
        let e = record.event;
        let ev = record.new_event;
        with_writer!(&self.pools, pool => async {
            let mut tx = pool.begin_write().await?;
            let inserted = sqlx::query(INSERT_PROVIDER_EVENT)
                .bind(ev.environment_id.to_string())
                .bind(&e.provider)
                .bind(&e.provider_event_id)
                .bind(ev.id.to_string())
                .bind(ev.message_id.map(|m| m.to_string()))
                .bind(e.event_type.as_str())
                .bind(e.bounce_type.map(|b| b.as_str()))
                .bind(e.recipient.as_ref().map(|r| r.normalized()))
                .bind(e.occurred_at.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                return Ok::<_, sqlx::Error>(RecordOutcome::Duplicate);
            }
            insert_event!(&mut *tx, ev)?;
            if let (Some((from, to)), Some(id)) = (record.advance, ev.message_id) {
                sqlx::query(ADVANCE)
                    .bind(to.as_str())
                    .bind(now.0)
                    .bind(id.to_string())
                    .bind(from.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(RecordOutcome::Recorded)
        }
        .await)
        .map_err(db_error)
    }

    async fn count_soft_bounces(
        &self,
        env: &EnvironmentId,
        address: &str,
        since: Timestamp,
    ) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(&self.pools, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM provider_events WHERE environment_id = $1 AND address = $2 \
                 AND type = 'bounced' AND bounce_type = 'soft' AND occurred_at >= $3",
            )
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
             message_recipients WHERE environment_id = $1 AND address = $2 \
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

//! `MessageStore`: reading messages, and `enqueue` through the group-commit writer.

use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::message::{Content, EnqueueOutcome, MessageRecord, NewMessage};
use mailgate_core::store::{MessageStore, StoreError, StoredContent};

use super::SqlStore;
use crate::error::db_error;
use crate::pools::with_pool;
use crate::rows::{parse_json, MessageRow, MESSAGE_COLUMNS};

/// The `WHERE` clause of a read by id, optionally scoped to an environment.
fn by_id(env: Option<&EnvironmentId>) -> &'static str {
    if env.is_some() {
        "WHERE id = $1 AND environment_id = $2"
    } else {
        "WHERE id = $1"
    }
}

#[async_trait::async_trait]
impl MessageStore for SqlStore {
    async fn enqueue(&self, message: NewMessage) -> Result<EnqueueOutcome, StoreError> {
        self.enqueue_grouped(message).await
    }

    async fn get_message(
        &self,
        env: Option<&EnvironmentId>,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages {}", by_id(env));
        let env = env.map(ToString::to_string);
        let row: Option<MessageRow> = with_pool!(&self.pools, pool => {
            let q = sqlx::query_as(&sql).bind(id.to_string());
            let q = match &env { Some(env) => q.bind(env), None => q };
            q.fetch_optional(pool).await
        })
        .map_err(db_error)?;
        row.map(MessageRow::into_domain).transpose()
    }

    async fn get_content(
        &self,
        env: Option<&EnvironmentId>,
        id: &MessageId,
    ) -> Result<Option<StoredContent>, StoreError> {
        let sql = format!("SELECT content FROM messages {}", by_id(env));
        let env = env.map(ToString::to_string);
        let row: Option<Option<String>> = with_pool!(&self.pools, pool => {
            let q = sqlx::query_scalar(&sql).bind(id.to_string());
            let q = match &env { Some(env) => q.bind(env), None => q };
            q.fetch_optional(pool).await
        })
        .map_err(db_error)?;
        Ok(match row {
            None => None,
            Some(None) => Some(StoredContent::Purged),
            Some(Some(json)) => Some(StoredContent::Retained(Box::new(parse_json::<Content>(
                "messages.content",
                &json,
            )?))),
        })
    }
}

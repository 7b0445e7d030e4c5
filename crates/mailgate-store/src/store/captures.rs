//! `CaptureStore`: the mailbox of the `capture` provider.

use mailgate_core::ids::EnvironmentId;
use mailgate_core::store::{CaptureStore, CapturedMessage, StoreError};

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, with_writer};
use crate::rows::{to_json, CaptureRow};

#[async_trait::async_trait]
impl CaptureStore for SqlStore {
    async fn capture(&self, message: &CapturedMessage) -> Result<(), StoreError> {
        let content = to_json("captured_messages.content", &message.content)?;
        with_writer!(&self.pools, pool => {
            sqlx::query(
                "INSERT INTO captured_messages (message_id, environment_id, content, captured_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(message.message_id.to_string())
            .bind(message.environment_id.to_string())
            .bind(&content)
            .bind(message.captured_at.0)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db_error)?;
        Ok(())
    }

    async fn list_captured(
        &self,
        env: &EnvironmentId,
        limit: u32,
    ) -> Result<Vec<CapturedMessage>, StoreError> {
        let rows: Vec<CaptureRow> = with_pool!(&self.pools, pool => {
            sqlx::query_as(
                "SELECT message_id, environment_id, content, captured_at FROM captured_messages \
                 WHERE environment_id = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(env.to_string())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })
        .map_err(db_error)?;
        rows.into_iter().map(CaptureRow::into_domain).collect()
    }
}

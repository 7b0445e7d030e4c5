//! `EventStore`: filtered, cursor-paginated reads of the event log.

use mailgate_core::event::{Event, EventQuery};
use mailgate_core::store::{EventStore, StoreError};
use sqlx::QueryBuilder;

use super::SqlStore;
use crate::error::db_error;
use crate::pools::with_pool;
use crate::rows::EventRow;

#[async_trait::async_trait]
impl EventStore for SqlStore {
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<EventRow> = with_pool!(&self.pools, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT seq, id, environment_id, message_id, type, created_at, data FROM events WHERE 1 = 1",
            );
            if let Some(env) = &query.environment_id {
                qb.push(" AND environment_id = ").push_bind(env.to_string());
            }
            if let Some(message) = &query.message_id {
                qb.push(" AND message_id = ").push_bind(message.to_string());
            }
            if !query.types.is_empty() {
                qb.push(" AND type IN (");
                let mut list = qb.separated(", ");
                for t in &query.types {
                    list.push_bind(t.as_str());
                }
                qb.push(")");
            }
            if let Some(since) = query.since {
                qb.push(" AND created_at >= ").push_bind(since.0);
            }
            if let Some(after) = query.after_seq {
                qb.push(" AND seq > ").push_bind(after);
            }
            qb.push(" ORDER BY seq ASC LIMIT ").push_bind(i64::from(query.limit));
            qb.build_query_as().fetch_all(pool).await
        })
        .map_err(db_error)?;
        rows.into_iter().map(EventRow::into_domain).collect()
    }
}

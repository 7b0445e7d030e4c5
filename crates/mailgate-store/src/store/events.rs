//! `EventStore`: filtered, cursor-paginated reads of the event log; and how the batch writers
//! (completions, provider events) append to it.

use mailgate_core::event::{Event, EventQuery};
use mailgate_core::store::{EventStore, StoreError};
use sqlx::QueryBuilder;

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, Pools};
use crate::rows::EventRow;

pub(crate) mod direct;

/// The rows a backend reads a JSON array parameter (`$1`) as, each element as `j.value`.
pub(super) fn json_rows(pools: &Pools) -> &'static str {
    match pools {
        Pools::Sqlite { .. } => SQLITE_JSON_ROWS,
        Pools::Postgres(_) => "jsonb_array_elements($1::jsonb) AS j(value)",
    }
}

/// [`json_rows`] on SQLite.
pub(super) const SQLITE_JSON_ROWS: &str = "json_each($1) AS j";

/// SQLite: the newest event's seq (0: none), before a batch appends.
pub(super) const NEWEST_EVENT_SEQ: &str = "SELECT COALESCE(max(seq), 0) FROM events";

/// SQLite: leaves pending the index entries of the events after `$1` that are about a message
/// and not `queued` (migration 0012).
pub(super) const DEFER_MESSAGE_EVENTS: &str =
    "INSERT INTO message_events_pending (seq, environment_id, message_id) \
     SELECT seq, environment_id, message_id FROM events \
     WHERE seq > $1 AND message_id IS NOT NULL AND type <> 'queued'";

/// Rows per multi-row `INSERT … VALUES` of the batch writers: full chunks reuse one prepared
/// statement; the remainder's is prepared for the occasion.
pub(crate) const VALUES_CHUNK: usize = 128;

/// How writers keep the per-message index of the log. On SQLite (migration 0012) a `queued`
/// event is indexed by the log's partial index `events_queued` as it is inserted; any other
/// event about a message leaves its entry in `message_events_pending`, which the event indexer
/// moves into `message_events`. On PostgreSQL the log's own index serves, and these do nothing.
pub(crate) trait MessageEventIndex {
    /// SQLite: the newest event's seq, before a batch appends (0: none).
    async fn newest_event_seq(&mut self) -> Result<i64, sqlx::Error>;
    /// SQLite: leaves pending the index entries of the events after `seq` that are about a
    /// message and not `queued` (the events this transaction appended: it holds the write lock).
    async fn defer_message_events_after(&mut self, seq: i64) -> Result<(), sqlx::Error>;
}

impl MessageEventIndex for sqlx::SqliteConnection {
    async fn newest_event_seq(&mut self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(NEWEST_EVENT_SEQ).fetch_one(self).await
    }

    async fn defer_message_events_after(&mut self, seq: i64) -> Result<(), sqlx::Error> {
        sqlx::query(DEFER_MESSAGE_EVENTS)
            .bind(seq)
            .execute(self)
            .await
            .map(|_| ())
    }
}

impl MessageEventIndex for sqlx::PgConnection {
    async fn newest_event_seq(&mut self) -> Result<i64, sqlx::Error> {
        Ok(0)
    }

    async fn defer_message_events_after(&mut self, _seq: i64) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

/// Appends events (`&[&NewEvent]`) in their order, on a transaction, by multi-row `VALUES`:
/// cheaper than reading them out of a JSON parameter, whose every field SQLite parses again.
/// Their per-message index entries are kept as `MessageEventIndex` says.
macro_rules! append_events {
    ($tx:expr, $events:expr) => {{
        use $crate::store::events::MessageEventIndex as _;
        let events: &[&mailgate_core::event::NewEvent] = $events;
        let before = (&mut *$tx).newest_event_seq().await?;
        for chunk in events.chunks($crate::store::events::VALUES_CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO events (id, environment_id, message_id, type, created_at, data) ",
            );
            qb.push_values(chunk, |mut row, e| {
                row.push_bind(e.id.to_string())
                    .push_bind(e.environment_id.to_string())
                    .push_bind(e.message_id.map(|m| m.to_string()))
                    .push_bind(e.event_type.as_str())
                    .push_bind(e.created_at.0)
                    .push_bind(crate::rows::value_text(&e.data));
            });
            qb.build()
                .persistent(chunk.len() == $crate::store::events::VALUES_CHUNK)
                .execute(&mut *$tx)
                .await?;
        }
        (&mut *$tx).defer_message_events_after(before).await?;
    }};
}
pub(crate) use append_events;

#[async_trait::async_trait]
impl EventStore for SqlStore {
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let sqlite = matches!(self.pools, Pools::Sqlite { .. });
        let rows: Vec<EventRow> = with_pool!(&self.pools, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT seq, id, environment_id, message_id, type, created_at, data FROM events WHERE 1 = 1",
            );
            if let Some(env) = &query.environment_id {
                qb.push(" AND environment_id = ").push_bind(env.to_string());
            }
            if let Some(message) = &query.message_id {
                qb.push(" AND message_id = ").push_bind(message.to_string());
                if sqlite {
                    // The log has no index on message_id; message_event_seqs is it (the
                    // entries indexed and those pending, migration 0012).
                    qb.push(" AND seq IN (SELECT seq FROM message_event_seqs WHERE message_id = ")
                        .push_bind(message.to_string())
                        .push(")");
                }
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

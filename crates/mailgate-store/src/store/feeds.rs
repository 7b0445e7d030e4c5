//! `FeedStore`: notification settings and the leased cursors of the event stream and notifier.

use std::time::Duration;

use mailgate_core::feeds::{FeedCursor, FeedEvent, FeedKind, FeedState, FeedStore, FeedUpdate};
use mailgate_core::ids::EnvironmentId;
use mailgate_core::notify::{EmailTarget, NotificationSettings, SignedTarget};
use mailgate_core::store::StoreError;
use mailgate_core::Timestamp;
use sqlx::Row;

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, with_writer, BeginWrite, Pools};
use crate::rows::EventRow;

type SettingsRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);

const FEED_COLUMNS: &str = "environment_id, kind, cursor_tx, cursor_seq, failures, \
    next_attempt_at, last_error, last_delivered_at";

type FeedRow = (
    String,
    String,
    i64,
    i64,
    i32,
    i64,
    Option<String>,
    Option<i64>,
);

fn feed_state(r: FeedRow) -> Result<FeedState, StoreError> {
    Ok(FeedState {
        environment_id: EnvironmentId::parse(&r.0)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        kind: FeedKind::parse(&r.1)
            .ok_or_else(|| StoreError::Corrupt(format!("feeds.kind: {:?}", r.1)))?,
        cursor: FeedCursor { tx: r.2, seq: r.3 },
        failures: u32::try_from(r.4).unwrap_or(0),
        next_attempt_at: Timestamp(r.5),
        last_error: r.6,
        last_delivered_at: r.7.map(Timestamp),
    })
}

fn target(url: Option<String>, secret: Option<String>) -> Option<SignedTarget> {
    Some(SignedTarget {
        url: url?,
        sealed_secret: secret?,
    })
}

/// The head of the log in feed order: a new feed starts after it.
fn head_sql(pools: &Pools) -> &'static str {
    match pools {
        Pools::Sqlite { .. } => "SELECT 0, COALESCE(MAX(seq), 0) FROM events",
        // Every transaction older than the oldest one running has finished: start after them.
        Pools::Postgres(_) => {
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1, 9223372036854775807"
        }
    }
}

#[async_trait::async_trait]
impl FeedStore for SqlStore {
    async fn notification_settings(
        &self,
        env: &EnvironmentId,
    ) -> Result<Option<NotificationSettings>, StoreError> {
        let row: Option<SettingsRow> = with_pool!(self.pools(), pool => {
            sqlx::query_as(
                "SELECT environment_id, webhook_url, webhook_secret, slack_url, stream_url, \
                 stream_secret, updated_at, email_to, email_from FROM notification_settings \
                 WHERE environment_id = $1",
            )
            .bind(env.to_string())
            .fetch_optional(pool)
            .await
        })
        .map_err(db_error)?;
        Ok(row.map(|r| NotificationSettings {
            environment_id: *env,
            webhook: target(r.1, r.2),
            sealed_slack_url: r.3,
            stream: target(r.4, r.5),
            updated_at: Timestamp(r.6),
            email: r.7.map(|to| EmailTarget { to, from: r.8 }),
        }))
    }

    async fn put_notification_settings(&self, s: &NotificationSettings) -> Result<(), StoreError> {
        let env = s.environment_id.to_string();
        let head = head_sql(self.pools());
        let now = s.updated_at.0;
        with_writer!(self.pools(), pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO notification_settings (environment_id, webhook_url, webhook_secret, \
                 slack_url, stream_url, stream_secret, updated_at, email_to, email_from) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (environment_id) DO UPDATE SET webhook_url = excluded.webhook_url, \
                 webhook_secret = excluded.webhook_secret, slack_url = excluded.slack_url, \
                 stream_url = excluded.stream_url, stream_secret = excluded.stream_secret, \
                 updated_at = excluded.updated_at, email_to = excluded.email_to, \
                 email_from = excluded.email_from",
            )
            .bind(&env)
            .bind(s.webhook.as_ref().map(|t| t.url.as_str()))
            .bind(s.webhook.as_ref().map(|t| t.sealed_secret.as_str()))
            .bind(s.sealed_slack_url.as_deref())
            .bind(s.stream.as_ref().map(|t| t.url.as_str()))
            .bind(s.stream.as_ref().map(|t| t.sealed_secret.as_str()))
            .bind(now)
            .bind(s.email.as_ref().map(|e| e.to.as_str()))
            .bind(s.email.as_ref().and_then(|e| e.from.as_deref()))
            .execute(&mut *tx)
            .await?;
            let (head_tx, head_seq): (i64, i64) = sqlx::query_as(head).fetch_one(&mut *tx).await?;
            for (kind, wanted) in [
                (FeedKind::Stream, s.stream.is_some()),
                (FeedKind::Notify, s.has_targets()),
            ] {
                if wanted {
                    sqlx::query(
                        "INSERT INTO feeds (environment_id, kind, cursor_tx, cursor_seq, \
                         next_attempt_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
                         ON CONFLICT (environment_id, kind) DO NOTHING",
                    )
                    .bind(&env)
                    .bind(kind.as_str())
                    .bind(head_tx)
                    .bind(head_seq)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query("DELETE FROM feeds WHERE environment_id = $1 AND kind = $2")
                        .bind(&env)
                        .bind(kind.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await
        }
        .await)
        .map_err(db_error)
    }

    async fn feed_environments(&self) -> Result<Vec<EnvironmentId>, StoreError> {
        let rows: Vec<(String,)> = with_pool!(self.pools(), pool => {
            sqlx::query_as("SELECT DISTINCT environment_id FROM feeds ORDER BY environment_id")
                .fetch_all(pool)
                .await
        })
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(id,)| EnvironmentId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    async fn feed_states(&self, env: &EnvironmentId) -> Result<Vec<FeedState>, StoreError> {
        let sql =
            format!("SELECT {FEED_COLUMNS} FROM feeds WHERE environment_id = $1 ORDER BY kind");
        let rows: Vec<FeedRow> = with_pool!(self.pools(), pool => {
            sqlx::query_as(&sql).bind(env.to_string()).fetch_all(pool).await
        })
        .map_err(db_error)?;
        rows.into_iter().map(feed_state).collect()
    }

    async fn acquire_feed(
        &self,
        env: &EnvironmentId,
        kind: FeedKind,
        token: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<FeedState>, StoreError> {
        // One conditional UPDATE: of two concurrent claimers, exactly one matches.
        let sql = format!(
            "UPDATE feeds SET lease_token = $1, lease_until = $2 \
             WHERE environment_id = $3 AND kind = $4 AND next_attempt_at <= $5 \
             AND (lease_until IS NULL OR lease_until < $5) RETURNING {FEED_COLUMNS}"
        );
        let row: Option<FeedRow> = with_writer!(self.pools(), pool => {
            sqlx::query_as(&sql)
                .bind(token)
                .bind(now.plus(lease).0)
                .bind(env.to_string())
                .bind(kind.as_str())
                .bind(now.0)
                .fetch_optional(pool)
                .await
        })
        .map_err(db_error)?;
        row.map(feed_state).transpose()
    }

    async fn feed_events(
        &self,
        env: &EnvironmentId,
        after: FeedCursor,
        limit: u32,
    ) -> Result<Vec<FeedEvent>, StoreError> {
        const COLUMNS: &str = "seq, id, environment_id, message_id, type, created_at, data";
        let rows = match self.pools() {
            Pools::Sqlite { read, .. } => sqlx::query(&format!(
                "SELECT 0 AS tx, {COLUMNS} FROM events WHERE environment_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3"
            ))
            .bind(env.to_string())
            .bind(after.seq)
            .bind(i64::from(limit))
            .fetch_all(read)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| decode(r.try_get::<i64, _>("tx"), sqlx::FromRow::from_row(&r)))
            .collect::<Result<Vec<_>, _>>()?,
            Pools::Postgres(pool) => sqlx::query(&format!(
                "SELECT tx, {COLUMNS} FROM events WHERE environment_id = $1 \
                 AND (tx, seq) > ($2, $3) \
                 AND tx < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY tx, seq LIMIT $4"
            ))
            .bind(env.to_string())
            .bind(after.tx)
            .bind(after.seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| decode(r.try_get::<i64, _>("tx"), sqlx::FromRow::from_row(&r)))
            .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    async fn release_feed(
        &self,
        env: &EnvironmentId,
        kind: FeedKind,
        token: &str,
        u: &FeedUpdate,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = with_writer!(self.pools(), pool => {
            sqlx::query(
                "UPDATE feeds SET cursor_tx = $1, cursor_seq = $2, failures = $3, last_error = $4, \
                 next_attempt_at = $5, last_delivered_at = CASE WHEN $6 THEN $7 ELSE last_delivered_at END, \
                 lease_token = NULL, lease_until = NULL, updated_at = $7 \
                 WHERE environment_id = $8 AND kind = $9 AND lease_token = $10",
            )
            .bind(u.cursor.tx)
            .bind(u.cursor.seq)
            .bind(i32::try_from(u.failures).unwrap_or(i32::MAX))
            .bind(u.last_error.as_deref())
            .bind(u.next_attempt_at.0)
            .bind(u.delivered)
            .bind(now.0)
            .bind(env.to_string())
            .bind(kind.as_str())
            .bind(token)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        Ok(changed == 1)
    }
}

fn decode(
    tx: Result<i64, sqlx::Error>,
    row: Result<EventRow, sqlx::Error>,
) -> Result<FeedEvent, StoreError> {
    let tx = tx.map_err(db_error)?;
    let event = row.map_err(db_error)?.into_domain()?;
    Ok(FeedEvent {
        cursor: FeedCursor { tx, seq: event.seq },
        event,
    })
}

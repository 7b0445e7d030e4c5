//! `LimitStore`: GCRA buckets shared by every process on the database (`rate_limits`), and the
//! recent sends to one address behind the per-recipient cap (`message_recipients`).

use std::time::Duration;

use mailgate_core::ids::EnvironmentId;
use mailgate_core::limits::{gcra, Gcra, Grant, LimitStore, RateLimit};
use mailgate_core::store::StoreError;
use mailgate_core::Timestamp;

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, with_writer, BeginWrite, Pools};

/// Creates a missing bucket. Its `tat` is `now`, which [`gcra`] treats exactly like a new bucket
/// (it never looks at a `tat` earlier than now), so creating it changes no decision.
const CREATE_BUCKET: &str =
    "INSERT INTO rate_limits (key, tat) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

const UPDATE_BUCKET: &str = "UPDATE rate_limits SET tat = $2 WHERE key = $1";

/// Reads the bucket inside the transaction. On PostgreSQL `FOR UPDATE` holds the row until
/// commit, so concurrent takers (of any process) queue on it and each sees the `tat` the previous
/// one wrote. A missing row cannot be locked, so then `CREATE_BUCKET` runs (an insert racing with
/// another's uncommitted insert of the same key waits for its commit) and the row is read again,
/// locked. On SQLite the transaction began with `BEGIN IMMEDIATE`, which holds the database's
/// write lock throughout.
fn select_bucket(pools: &Pools) -> &'static str {
    match pools {
        Pools::Sqlite { .. } => "SELECT tat FROM rate_limits WHERE key = $1",
        Pools::Postgres(_) => "SELECT tat FROM rate_limits WHERE key = $1 FOR UPDATE",
    }
}

#[async_trait::async_trait]
impl LimitStore for SqlStore {
    async fn take_token(
        &self,
        key: &str,
        limit: &RateLimit,
        now: Timestamp,
        max_delay: Duration,
    ) -> Result<Grant, StoreError> {
        let now_micros = now.0.saturating_mul(1_000);
        let select = select_bucket(self.pools());
        with_writer!(self.pools(), pool => async {
            let mut tx = pool.begin_write().await?;
            let mut tat: Option<i64> =
                sqlx::query_scalar(select).bind(key).fetch_optional(&mut *tx).await?;
            if tat.is_none() {
                sqlx::query(CREATE_BUCKET)
                    .bind(key)
                    .bind(now_micros)
                    .execute(&mut *tx)
                    .await?;
                tat = Some(sqlx::query_scalar(select).bind(key).fetch_one(&mut *tx).await?);
            }
            match gcra(tat, now_micros, limit, max_delay) {
                Gcra::Take { tat: new_tat, delay } => {
                    sqlx::query(UPDATE_BUCKET)
                        .bind(key)
                        .bind(new_tat)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(Grant::Taken(delay))
                }
                Gcra::Wait(wait) => {
                    tx.rollback().await?;
                    Ok(Grant::Refused(wait))
                }
            }
        }
        .await)
        .map_err(db_error)
    }

    async fn recent_sends_to(
        &self,
        env: &EnvironmentId,
        address: &str,
        usage: Option<&str>,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<Timestamp>, StoreError> {
        // Served by the index's key (environment, address, created_at, message_id): a range of
        // one address's window, filtered by usage type when one is asked for; plus, on a SQLite
        // file, a scan of the few recipients still pending (`recipient_sends`).
        let (filter, usage) = match usage {
            None => ("", None),
            Some("") => (" AND usage_type IS NULL", None),
            Some(u) => (" AND usage_type = $5", Some(u)),
        };
        let sql = format!(
            "SELECT created_at FROM recipient_sends WHERE environment_id = $1 AND address = $2 \
             AND created_at >= $3{filter} ORDER BY created_at DESC LIMIT $4"
        );
        let rows: Vec<i64> = with_pool!(self.pools(), pool => {
            let mut q = sqlx::query_scalar(&sql)
                .bind(env.to_string())
                .bind(address)
                .bind(since.0)
                .bind(i64::from(limit));
            if let Some(u) = usage {
                q = q.bind(u);
            }
            q.fetch_all(pool).await
        })
        .map_err(db_error)?;
        Ok(rows.into_iter().map(Timestamp).collect())
    }
}

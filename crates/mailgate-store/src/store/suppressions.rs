//! `SuppressionStore`: per-environment suppression lists.

use mailgate_core::ids::EnvironmentId;
use mailgate_core::store::{StoreError, SuppressionStore};
use mailgate_core::suppression::{Suppression, SuppressionQuery, SuppressionReason};
use mailgate_core::Timestamp;
use sqlx::QueryBuilder;

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, with_writer};
use crate::rows::parse_id;

pub(crate) const COLUMNS: &str =
    "environment_id, address, reason, source_event_id, provider, note, created_at, expires_at";

/// The suppressions among `$addresses` (normalized) in environment `$env` (its id as text) that
/// are in force at `$at` (epoch ms), as `SuppressionRow`s, on a pool, connection or transaction.
macro_rules! select_suppressed {
    ($conn:expr, $env:expr, $addresses:expr, $at:expr) => {{
        let mut qb = sqlx::QueryBuilder::new(format!(
            "SELECT {} FROM suppressions WHERE environment_id = ",
            $crate::store::suppressions::COLUMNS
        ));
        qb.push_bind($env);
        qb.push(" AND (expires_at IS NULL OR expires_at > ")
            .push_bind($at)
            .push(")");
        qb.push(" AND address IN (");
        let mut list = qb.separated(", ");
        for a in $addresses {
            list.push_bind(a.as_str());
        }
        qb.push(")");
        let rows: Result<Vec<$crate::store::suppressions::SuppressionRow>, sqlx::Error> =
            qb.build_query_as().fetch_all($conn).await;
        rows
    }};
}
pub(crate) use select_suppressed;

/// Columns of `suppressions`.
#[derive(sqlx::FromRow)]
pub(crate) struct SuppressionRow {
    pub(crate) environment_id: String,
    pub(crate) address: String,
    pub(crate) reason: String,
    pub(crate) source_event_id: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) note: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) expires_at: Option<i64>,
}

impl SuppressionRow {
    pub(crate) fn into_domain(self) -> Result<Suppression, StoreError> {
        Ok(Suppression {
            environment_id: parse_id("suppressions.environment_id", &self.environment_id)?,
            address: self.address,
            reason: SuppressionReason::parse(&self.reason)
                .ok_or_else(|| StoreError::Corrupt("suppressions.reason: unknown".into()))?,
            source_event_id: self
                .source_event_id
                .map(|id| parse_id("suppressions.source_event_id", &id))
                .transpose()?,
            provider: self.provider,
            note: self.note,
            created_at: Timestamp(self.created_at),
            expires_at: self.expires_at.map(Timestamp),
        })
    }
}

#[async_trait::async_trait]
impl SuppressionStore for SqlStore {
    async fn add_suppression(&self, s: &Suppression, replace: bool) -> Result<bool, StoreError> {
        let on_conflict = if replace {
            "DO UPDATE SET reason = excluded.reason, source_event_id = excluded.source_event_id, \
             provider = excluded.provider, note = excluded.note, created_at = excluded.created_at, \
             expires_at = excluded.expires_at"
        } else {
            // An expired suppression is replaced; one in force is kept.
            "DO UPDATE SET reason = excluded.reason, source_event_id = excluded.source_event_id, \
             provider = excluded.provider, note = excluded.note, created_at = excluded.created_at, \
             expires_at = excluded.expires_at \
             WHERE suppressions.expires_at IS NOT NULL AND suppressions.expires_at <= excluded.created_at"
        };
        let sql = format!(
            "INSERT INTO suppressions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (environment_id, address) {on_conflict}"
        );
        let n = with_writer!(&self.pools, pool => {
            sqlx::query(&sql)
                .bind(s.environment_id.to_string())
                .bind(&s.address)
                .bind(s.reason.as_str())
                .bind(s.source_event_id.map(|e| e.to_string()))
                .bind(s.provider.as_deref())
                .bind(s.note.as_deref())
                .bind(s.created_at.0)
                .bind(s.expires_at.map(|t| t.0))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn get_suppression(
        &self,
        env: &EnvironmentId,
        address: &str,
        now: Timestamp,
    ) -> Result<Option<Suppression>, StoreError> {
        Ok(self
            .find_suppressions(env, &[address.to_owned()], now)
            .await?
            .pop())
    }

    async fn find_suppressions(
        &self,
        env: &EnvironmentId,
        addresses: &[String],
        now: Timestamp,
    ) -> Result<Vec<Suppression>, StoreError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let env = env.to_string();
        let rows: Vec<SuppressionRow> = with_pool!(&self.pools, pool => {
            select_suppressed!(pool, &env, addresses, now.0)
        })
        .map_err(db_error)?;
        rows.into_iter().map(SuppressionRow::into_domain).collect()
    }

    async fn list_suppressions(
        &self,
        q: &SuppressionQuery,
    ) -> Result<Vec<Suppression>, StoreError> {
        let rows: Vec<SuppressionRow> = with_pool!(&self.pools, pool => {
            let mut qb = QueryBuilder::new(format!("SELECT {COLUMNS} FROM suppressions WHERE environment_id = "));
            qb.push_bind(q.environment_id.to_string());
            if let Some(r) = q.reason {
                qb.push(" AND reason = ").push_bind(r.as_str());
            }
            if let Some(c) = &q.contains {
                let escaped = c.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                qb.push(" AND address LIKE ").push_bind(format!("%{escaped}%")).push(" ESCAPE '\\'");
            }
            if let Some(since) = q.since {
                qb.push(" AND created_at >= ").push_bind(since.0);
            }
            if let Some(after) = &q.after {
                qb.push(" AND address > ").push_bind(after.clone());
            }
            qb.push(" ORDER BY address ASC LIMIT ").push_bind(i64::from(q.limit));
            qb.build_query_as().fetch_all(pool).await
        })
        .map_err(db_error)?;
        rows.into_iter().map(SuppressionRow::into_domain).collect()
    }

    async fn delete_suppression(
        &self,
        env: &EnvironmentId,
        address: &str,
    ) -> Result<bool, StoreError> {
        let n = with_writer!(&self.pools, pool => {
            sqlx::query("DELETE FROM suppressions WHERE environment_id = $1 AND address = $2")
                .bind(env.to_string())
                .bind(address)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        Ok(n > 0)
    }
}

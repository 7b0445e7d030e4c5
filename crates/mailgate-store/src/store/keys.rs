//! `KeyStore`: API keys by hash; admin keys have no environment.

use mailgate_core::apikey::{ApiKeyRecord, KeyHash, KeyScope, NewApiKey};
use mailgate_core::ids::{ApiKeyId, EnvironmentId};
use mailgate_core::store::{KeyStore, StoreError};

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, with_writer};
use crate::rows::ApiKeyRow;

const KEY_COLUMNS: &str = "id, environment_id, name, hint, created_at";

#[async_trait::async_trait]
impl KeyStore for SqlStore {
    async fn insert_api_key(&self, key: &NewApiKey) -> Result<(), StoreError> {
        let environment_id = match key.record.scope {
            KeyScope::Admin => None,
            KeyScope::Environment(env) => Some(env.to_string()),
        };
        with_writer!(&self.pools, pool => {
            sqlx::query(
                "INSERT INTO api_keys (id, environment_id, name, hint, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(key.record.id.to_string())
            .bind(environment_id)
            .bind(&key.record.name)
            .bind(&key.record.hint)
            .bind(&key.hash.0)
            .bind(key.record.created_at.0)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db_error)?;
        Ok(())
    }

    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        if let Some(record) = self.cache.key(hash) {
            return Ok(Some(record));
        }
        let fetched = self.cache.now();
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1");
        let row: Option<ApiKeyRow> = with_pool!(&self.pools, pool => {
            sqlx::query_as(&sql).bind(&hash.0).fetch_optional(pool).await
        })
        .map_err(db_error)?;
        let record = row.map(ApiKeyRow::into_domain).transpose()?;
        if let Some(r) = &record {
            self.cache.put_key(hash, r, fetched);
        }
        Ok(record)
    }

    async fn list_api_keys(&self, env: &EnvironmentId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE environment_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<ApiKeyRow> = with_pool!(&self.pools, pool => {
            sqlx::query_as(&sql).bind(env.to_string()).fetch_all(pool).await
        })
        .map_err(db_error)?;
        rows.into_iter().map(ApiKeyRow::into_domain).collect()
    }

    async fn delete_api_key(&self, env: &EnvironmentId, id: &ApiKeyId) -> Result<bool, StoreError> {
        let deleted = with_writer!(&self.pools, pool => {
            sqlx::query("DELETE FROM api_keys WHERE id = $1 AND environment_id = $2")
                .bind(id.to_string())
                .bind(env.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        self.cache.forget_key(id);
        Ok(deleted > 0)
    }

    async fn has_admin_key(&self) -> Result<bool, StoreError> {
        let found: Option<i64> = with_pool!(&self.pools, pool => {
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM api_keys WHERE environment_id IS NULL LIMIT 1")
                .fetch_optional(pool)
                .await
        })
        .map_err(db_error)?;
        Ok(found.is_some())
    }
}

//! `ProviderConfigStore`: sealed provider configurations per (environment, scope).

use mailgate_core::ids::EnvironmentId;
use mailgate_core::store::{ProviderConfigStore, StoreError, StoredProviderConfig};
use mailgate_core::Timestamp;

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, with_writer};

const COLUMNS: &str = "environment_id, scope, sealed, redacted, updated_at";

type Row = (String, String, String, String, i64);

fn into_domain(
    (env, scope, sealed, redacted, updated_at): Row,
) -> Result<StoredProviderConfig, StoreError> {
    Ok(StoredProviderConfig {
        environment_id: EnvironmentId::parse(&env)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        scope,
        sealed,
        redacted: serde_json::from_str(&redacted)
            .map_err(|e| StoreError::Corrupt(format!("provider_configs.redacted: {e}")))?,
        updated_at: Timestamp(updated_at),
    })
}

#[async_trait::async_trait]
impl ProviderConfigStore for SqlStore {
    async fn put_provider_config(&self, c: &StoredProviderConfig) -> Result<(), StoreError> {
        with_writer!(self.pools(), pool => {
            sqlx::query(
                "INSERT INTO provider_configs (environment_id, scope, sealed, redacted, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (environment_id, scope) DO UPDATE SET \
                 sealed = excluded.sealed, redacted = excluded.redacted, updated_at = excluded.updated_at",
            )
            .bind(c.environment_id.to_string())
            .bind(&c.scope)
            .bind(&c.sealed)
            .bind(c.redacted.to_string())
            .bind(c.updated_at.0)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db_error)
    }

    async fn get_provider_config(
        &self,
        env: &EnvironmentId,
        scope: &str,
    ) -> Result<Option<StoredProviderConfig>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM provider_configs WHERE environment_id = $1 AND scope = $2"
        );
        let row: Option<Row> = with_pool!(self.pools(), pool => {
            sqlx::query_as(&sql).bind(env.to_string()).bind(scope).fetch_optional(pool).await
        })
        .map_err(db_error)?;
        row.map(into_domain).transpose()
    }

    async fn provider_config_version(
        &self,
        env: &EnvironmentId,
        scope: &str,
    ) -> Result<Option<Timestamp>, StoreError> {
        let v: Option<i64> = with_pool!(self.pools(), pool => {
            sqlx::query_scalar("SELECT updated_at FROM provider_configs WHERE environment_id = $1 AND scope = $2")
                .bind(env.to_string())
                .bind(scope)
                .fetch_optional(pool)
                .await
        })
        .map_err(db_error)?;
        Ok(v.map(Timestamp))
    }

    async fn delete_provider_config(
        &self,
        env: &EnvironmentId,
        scope: &str,
    ) -> Result<bool, StoreError> {
        let n = with_writer!(self.pools(), pool => {
            sqlx::query("DELETE FROM provider_configs WHERE environment_id = $1 AND scope = $2")
                .bind(env.to_string())
                .bind(scope)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        Ok(n > 0)
    }

    async fn list_provider_configs(&self) -> Result<Vec<StoredProviderConfig>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM provider_configs ORDER BY environment_id, scope");
        let rows: Vec<Row> =
            with_pool!(self.pools(), pool => { sqlx::query_as(&sql).fetch_all(pool).await })
                .map_err(db_error)?;
        rows.into_iter().map(into_domain).collect()
    }
}

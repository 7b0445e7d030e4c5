//! `EnvironmentStore`.

use mailgate_core::environment::Environment;
use mailgate_core::ids::EnvironmentId;
use mailgate_core::store::{EnvironmentStore, StoreError};

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, with_writer};
use crate::rows::EnvironmentRow;

#[async_trait::async_trait]
impl EnvironmentStore for SqlStore {
    async fn create_environment(&self, env: &Environment) -> Result<(), StoreError> {
        let result = with_writer!(&self.pools, pool => {
            sqlx::query("INSERT INTO environments (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(env.id.to_string())
                .bind(env.name.as_str())
                .bind(env.created_at.0)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match result.map_err(db_error) {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => {
                Err(StoreError::Conflict(format!("environment '{}'", env.name)))
            }
            Err(e) => Err(e),
        }
    }

    async fn list_environments(&self) -> Result<Vec<Environment>, StoreError> {
        let rows: Vec<EnvironmentRow> = with_pool!(&self.pools, pool => {
            sqlx::query_as("SELECT id, name, created_at FROM environments ORDER BY name").fetch_all(pool).await
        })
        .map_err(db_error)?;
        rows.into_iter().map(EnvironmentRow::into_domain).collect()
    }

    async fn find_environment(&self, name_or_id: &str) -> Result<Option<Environment>, StoreError> {
        if let Some(env) = self.cache.environment(name_or_id) {
            return Ok(Some(env));
        }
        let fetched = self.cache.now();
        // Names cannot start with `env_`, so an id-shaped string is looked up as an id only.
        let sql = if EnvironmentId::parse(name_or_id).is_ok() {
            "SELECT id, name, created_at FROM environments WHERE id = $1"
        } else {
            "SELECT id, name, created_at FROM environments WHERE name = $1"
        };
        let row: Option<EnvironmentRow> = with_pool!(&self.pools, pool => {
            sqlx::query_as(sql).bind(name_or_id).fetch_optional(pool).await
        })
        .map_err(db_error)?;
        let env = row.map(EnvironmentRow::into_domain).transpose()?;
        if let Some(e) = &env {
            self.cache.put_environment(name_or_id, e, fetched);
        }
        Ok(env)
    }

    async fn delete_environment(&self, id: &EnvironmentId) -> Result<bool, StoreError> {
        let deleted = with_writer!(&self.pools, pool => {
            sqlx::query("DELETE FROM environments WHERE id = $1")
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        self.cache.forget_environment(id);
        Ok(deleted > 0)
    }
}

//! `TemplateStore` and `SettingsStore`: templates per (environment, usage, locale), and the
//! environment's settings (a JSON column of `environments`).

use mailgate_core::ids::EnvironmentId;
use mailgate_core::settings::EnvironmentSettings;
use mailgate_core::store::{SettingsStore, StoreError, TemplateStore};
use mailgate_core::template::{Locale, TemplateRecord, UsageType};
use mailgate_core::Timestamp;

use super::SqlStore;
use crate::error::db_error;
use crate::pools::{with_pool, with_writer};
use crate::rows::{parse_id, parse_json, to_json};

const COLUMNS: &str = "environment_id, usage_type, locale, body, updated_at";

type Row = (String, String, String, String, i64);

fn into_domain((env, usage, locale, body, updated_at): Row) -> Result<TemplateRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("templates.{what}: invalid"));
    Ok(TemplateRecord {
        environment_id: parse_id("templates.environment_id", &env)?,
        usage: UsageType::parse(&usage, "usage").map_err(|_| corrupt("usage_type"))?,
        locale: Locale::parse(&locale, "locale").map_err(|_| corrupt("locale"))?,
        template: parse_json("templates.body", &body)?,
        updated_at: Timestamp(updated_at),
    })
}

#[async_trait::async_trait]
impl TemplateStore for SqlStore {
    async fn put_template(&self, r: &TemplateRecord) -> Result<(), StoreError> {
        let body = to_json("templates.body", &r.template)?;
        with_writer!(self.pools(), pool => {
            sqlx::query(
                "INSERT INTO templates (environment_id, usage_type, locale, body, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (environment_id, usage_type, locale) DO UPDATE SET \
                 body = excluded.body, updated_at = excluded.updated_at",
            )
            .bind(r.environment_id.to_string())
            .bind(r.usage.as_str())
            .bind(r.locale.as_str())
            .bind(&body)
            .bind(r.updated_at.0)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db_error)
    }

    async fn get_template(
        &self,
        env: &EnvironmentId,
        usage: &UsageType,
        locale: &Locale,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM templates WHERE environment_id = $1 AND usage_type = $2 AND locale = $3"
        );
        let row: Option<Row> = with_pool!(self.pools(), pool => {
            sqlx::query_as(&sql)
                .bind(env.to_string())
                .bind(usage.as_str())
                .bind(locale.as_str())
                .fetch_optional(pool)
                .await
        })
        .map_err(db_error)?;
        row.map(into_domain).transpose()
    }

    async fn list_templates(&self, env: &EnvironmentId) -> Result<Vec<TemplateRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM templates WHERE environment_id = $1 ORDER BY usage_type, locale"
        );
        let rows: Vec<Row> = with_pool!(self.pools(), pool => {
            sqlx::query_as(&sql).bind(env.to_string()).fetch_all(pool).await
        })
        .map_err(db_error)?;
        rows.into_iter().map(into_domain).collect()
    }

    async fn templates_for(
        &self,
        env: &EnvironmentId,
        usages: &[UsageType],
    ) -> Result<Vec<TemplateRecord>, StoreError> {
        // The resolution asks for at most two usage types (the usage and Generic).
        let (first, second) = match usages {
            [] => return Ok(Vec::new()),
            [one] => (one.as_str(), one.as_str()),
            [one, two, ..] => (one.as_str(), two.as_str()),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM templates WHERE environment_id = $1 AND usage_type IN ($2, $3)"
        );
        let rows: Vec<Row> = with_pool!(self.pools(), pool => {
            sqlx::query_as(&sql)
                .bind(env.to_string())
                .bind(first)
                .bind(second)
                .fetch_all(pool)
                .await
        })
        .map_err(db_error)?;
        let mut out: Vec<TemplateRecord> = rows
            .into_iter()
            .map(into_domain)
            .collect::<Result<_, _>>()?;
        out.retain(|r| usages.contains(&r.usage));
        Ok(out)
    }

    async fn delete_template(
        &self,
        env: &EnvironmentId,
        usage: &UsageType,
        locale: &Locale,
    ) -> Result<bool, StoreError> {
        let n = with_writer!(self.pools(), pool => {
            sqlx::query("DELETE FROM templates WHERE environment_id = $1 AND usage_type = $2 AND locale = $3")
                .bind(env.to_string())
                .bind(usage.as_str())
                .bind(locale.as_str())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        Ok(n > 0)
    }
}

#[async_trait::async_trait]
impl SettingsStore for SqlStore {
    async fn get_settings(&self, env: &EnvironmentId) -> Result<EnvironmentSettings, StoreError> {
        if let Some(settings) = self.cache.settings(env) {
            return Ok(settings);
        }
        let fetched = self.cache.now();
        let row: Option<Option<String>> = with_pool!(self.pools(), pool => {
            sqlx::query_scalar("SELECT settings FROM environments WHERE id = $1")
                .bind(env.to_string())
                .fetch_optional(pool)
                .await
        })
        .map_err(db_error)?;
        let settings = match row.flatten() {
            Some(json) => parse_json("environments.settings", &json)?,
            None => EnvironmentSettings::default(),
        };
        self.cache.put_settings(env, &settings, fetched);
        Ok(settings)
    }

    async fn put_settings(
        &self,
        env: &EnvironmentId,
        settings: &EnvironmentSettings,
    ) -> Result<bool, StoreError> {
        let json = to_json("environments.settings", settings)?;
        let n = with_writer!(self.pools(), pool => {
            sqlx::query("UPDATE environments SET settings = $1 WHERE id = $2")
                .bind(&json)
                .bind(env.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        self.cache.forget_settings(env);
        Ok(n > 0)
    }
}

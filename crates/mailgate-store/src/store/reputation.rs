//! `ReputationStore`: windowed counts per provider, settings, the notified level, and holding a
//! claimed message while sending is paused.

use mailgate_core::event::NewEvent;
use mailgate_core::ids::{EnvironmentId, MessageId};
use mailgate_core::reputation::{Level, ProviderCounts, ReputationSettings, ReputationStore};
use mailgate_core::store::StoreError;
use mailgate_core::Timestamp;

use super::{insert_event, SqlStore};
use crate::error::db_error;
use crate::pools::{with_pool, with_writer, BeginWrite, Pools};

/// The reputation index's predicate on SQLite, which a query must name as written to read the
/// index (migration 0018: an IN over three constants cost every event insert a temporary b-tree).
const SQLITE_REPUTATION_TYPES: &str = "(type = 'sent' OR type = 'bounced' OR type = 'complained')";

/// Counts per provider over the `events_reputation` index (environment, type, created_at).
fn counts_sql(pools: &Pools) -> String {
    let (provider, bounce_type, types) = match pools {
        Pools::Sqlite { .. } => (
            "json_extract(data, '$.provider')",
            "json_extract(data, '$.bounce_type')",
            SQLITE_REPUTATION_TYPES,
        ),
        Pools::Postgres(_) => (
            "(data::jsonb ->> 'provider')",
            "(data::jsonb ->> 'bounce_type')",
            "type IN ('sent', 'bounced', 'complained')",
        ),
    };
    format!(
        "SELECT COALESCE({provider}, '') AS provider, \
         CAST(SUM(CASE WHEN type = 'sent' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN type = 'bounced' AND {bounce_type} = 'hard' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN type = 'complained' THEN 1 ELSE 0 END) AS BIGINT) \
         FROM events WHERE environment_id = $1 AND {types} \
         AND created_at >= $2 GROUP BY COALESCE({provider}, '')"
    )
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait::async_trait]
impl ReputationStore for SqlStore {
    async fn reputation_counts(
        &self,
        env: &EnvironmentId,
        since: Timestamp,
    ) -> Result<Vec<ProviderCounts>, StoreError> {
        let sql = counts_sql(self.pools());
        let rows: Vec<(String, i64, i64, i64)> = with_pool!(self.pools(), pool => {
            sqlx::query_as(&sql).bind(env.to_string()).bind(since.0).fetch_all(pool).await
        })
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(provider, sent, bounces, complaints)| ProviderCounts {
                provider,
                sent: count(sent),
                hard_bounces: count(bounces),
                complaints: count(complaints),
            })
            .collect())
    }

    async fn reputation_settings(
        &self,
        env: &EnvironmentId,
    ) -> Result<ReputationSettings, StoreError> {
        let row: Option<(i64, i64, bool)> = with_pool!(self.pools(), pool => {
            sqlx::query_as(
                "SELECT window_seconds, min_volume, pause_on_critical FROM reputation_settings \
                 WHERE environment_id = $1",
            )
            .bind(env.to_string())
            .fetch_optional(pool)
            .await
        })
        .map_err(db_error)?;
        Ok(row.map_or_else(ReputationSettings::default, |(w, m, p)| {
            ReputationSettings {
                window_seconds: count(w),
                min_volume: count(m),
                pause_on_critical: p,
            }
        }))
    }

    async fn put_reputation_settings(
        &self,
        env: &EnvironmentId,
        s: &ReputationSettings,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        with_writer!(self.pools(), pool => {
            sqlx::query(
                "INSERT INTO reputation_settings (environment_id, window_seconds, min_volume, \
                 pause_on_critical, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (environment_id) DO UPDATE SET window_seconds = excluded.window_seconds, \
                 min_volume = excluded.min_volume, pause_on_critical = excluded.pause_on_critical, \
                 updated_at = excluded.updated_at",
            )
            .bind(env.to_string())
            .bind(i64::try_from(s.window_seconds).unwrap_or(i64::MAX))
            .bind(i64::try_from(s.min_volume).unwrap_or(i64::MAX))
            .bind(s.pause_on_critical)
            .bind(now.0)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(db_error)
    }

    async fn notified_level(&self, env: &EnvironmentId) -> Result<Level, StoreError> {
        let row: Option<(String,)> = with_pool!(self.pools(), pool => {
            sqlx::query_as("SELECT notified_level FROM reputation_settings WHERE environment_id = $1")
                .bind(env.to_string())
                .fetch_optional(pool)
                .await
        })
        .map_err(db_error)?;
        match row {
            None => Ok(Level::Ok),
            Some((l,)) => Level::parse(&l).ok_or_else(|| {
                StoreError::Corrupt(format!("reputation_settings.notified_level: {l:?}"))
            }),
        }
    }

    async fn swap_notified_level(
        &self,
        env: &EnvironmentId,
        from: Level,
        to: Level,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let d = ReputationSettings::default();
        let changed = with_writer!(self.pools(), pool => {
            sqlx::query(
                "INSERT INTO reputation_settings (environment_id, window_seconds, min_volume, \
                 pause_on_critical, notified_level, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (environment_id) DO UPDATE SET notified_level = excluded.notified_level \
                 WHERE reputation_settings.notified_level = $7",
            )
            .bind(env.to_string())
            .bind(i64::try_from(d.window_seconds).unwrap_or(i64::MAX))
            .bind(i64::try_from(d.min_volume).unwrap_or(i64::MAX))
            .bind(d.pause_on_critical)
            .bind(to.as_str())
            .bind(now.0)
            .bind(from.as_str())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(db_error)?;
        Ok(changed == 1)
    }

    async fn hold_message(
        &self,
        id: &MessageId,
        lease_token: &str,
        until: Timestamp,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        with_writer!(self.pools(), pool => async {
            let mut tx = pool.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE messages SET status = 'queued', attempts = attempts - 1, next_attempt_at = $1, \
                 locked_until = NULL, lease_token = NULL, updated_at = $2 \
                 WHERE id = $3 AND lease_token = $4 AND status = 'sending'",
            )
            .bind(until.0)
            .bind(event.created_at.0)
            .bind(id.to_string())
            .bind(lease_token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                insert_event!(&mut *tx, event)?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(changed == 1)
        }
        .await)
        .map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use crate::pools::Pools;
    use crate::store::enqueue::INSERT_EVENT;
    use crate::test_file::{assert_searches, migrated_file, query_plan};
    use crate::StoreOptions;

    /// On SQLite the reputation counts read `events_reputation`, and storing an event builds no
    /// temporary b-tree to test the index's predicate (migration 0018).
    #[tokio::test]
    async fn counts_read_the_index_and_event_inserts_build_no_temporary_tree() {
        let (_dir, _, db, _) = migrated_file(&StoreOptions::default()).await;
        let pools = db.store.pools();
        let Pools::Sqlite { read, .. } = pools else {
            unreachable!("a SQLite file")
        };
        let plan = query_plan(read, &super::counts_sql(pools), 2).await;
        assert_searches(&plan, "events", "INDEX events_reputation");
        let program = sqlx::query(&format!("EXPLAIN {INSERT_EVENT}"))
            .fetch_all(read)
            .await
            .unwrap();
        let opcodes: Vec<String> = program.iter().map(|row| row.get(1)).collect();
        assert!(
            opcodes.iter().any(|op| op == "IdxInsert"),
            "the program inserts index entries: {opcodes:?}"
        );
        assert!(
            !opcodes.iter().any(|op| op == "OpenEphemeral"),
            "an event insert opens a temporary b-tree: {opcodes:?}"
        );
    }
}

//! For unit tests: a migrated SQLite file with one environment, and query-plan assertions.

use std::path::PathBuf;

use mailgate_core::environment::{Environment, EnvironmentName};
use mailgate_core::ids::EnvironmentId;
use mailgate_core::Timestamp;
use sqlx::SqlitePool;
use tempfile::TempDir;

use crate::{Database, StoreOptions};

/// A migrated SQLite file opened with `options`, with one environment: its directory (kept
/// alive), its path, the open database and the environment.
pub(crate) async fn migrated_file(
    options: &StoreOptions,
) -> (TempDir, PathBuf, Database, EnvironmentId) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailgate.db");
    let db = Database::connect(&format!("sqlite://{}", path.display()), options)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let env = Environment {
        id: EnvironmentId::new(),
        name: EnvironmentName::parse("default").unwrap(),
        created_at: Timestamp(0),
    };
    db.storage().create_environment(&env).await.unwrap();
    (dir, path, db, env.id)
}

/// The steps of SQLite's plan for `sql` on `pool`, with `args` text arguments bound (a plan is
/// made before any value is looked at).
pub(crate) async fn query_plan(pool: &SqlitePool, sql: &str, args: usize) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
    for _ in 0..args {
        q = q.bind("m");
    }
    q.fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.3)
        .collect()
}

/// Asserts that `plan` searches `table` (a step `SEARCH {table} USING {how}…`) and never scans
/// it.
pub(crate) fn assert_searches(plan: &[String], table: &str, how: &str) {
    let search = format!("SEARCH {table} USING {how}");
    assert!(
        plan.iter().any(|step| step.starts_with(&search)),
        "no {search}: {plan:?}"
    );
    let scan = format!("SCAN {table}");
    assert!(
        !plan.iter().any(|step| step.starts_with(&scan)),
        "{scan}: {plan:?}"
    );
}

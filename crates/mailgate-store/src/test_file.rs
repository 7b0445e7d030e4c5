//! For unit tests: a migrated SQLite file with one environment.

use std::path::PathBuf;

use mailgate_core::environment::{Environment, EnvironmentName};
use mailgate_core::ids::EnvironmentId;
use mailgate_core::Timestamp;
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

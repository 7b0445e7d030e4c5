//! mailgate's storage traits (`mailgate_core::store`) on SQLite and PostgreSQL: connection set-up,
//! embedded migrations, the group-committed enqueue and the leased queue claim.
//!
//! Architecture invariant: this is the only crate that knows SQL.
#![forbid(unsafe_code)]

mod cache;
mod error;
mod event_index;
mod group_commit;
mod pools;
mod rows;
mod store;
#[cfg(test)]
mod test_file;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::store::Storage;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use crate::event_index::DeferredEventIndex;
use crate::pools::Pools;
pub use crate::store::enqueue::DeferredRecipients;
use crate::store::enqueue::DirectWriter;
use crate::store::SqlStore;

/// Which database a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Tuning of the connection pool and the enqueue writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections in the pool at most.
    pub max_connections: u32,
    /// Messages committed together in one enqueue transaction at most.
    pub group_commit_max: usize,
    /// How long SQLite waits for the write lock before failing.
    pub busy_timeout: Duration,
    /// How long API keys, environments and settings read by this process are reused before
    /// they are read again (zero: always read). Writes through this process take effect at
    /// once; another process's writes are seen within this time.
    pub cache_ttl: Duration,
    /// SQLite file only: when the enqueue writer leaves recipients out of the accepting
    /// commit, and how it indexes them later (migration 0011 says why).
    pub deferred_recipients: DeferredRecipients,
    /// SQLite only: when the event indexer moves pending message events into the index
    /// (migration 0012 says why).
    pub deferred_event_index: DeferredEventIndex,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            group_commit_max: 256,
            busy_timeout: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(2),
            deferred_recipients: DeferredRecipients::default(),
            deferred_event_index: DeferredEventIndex::default(),
        }
    }
}

/// Why a database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not a `sqlite:` or `postgres:` URL, or could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or opened.
    #[error("could not connect to the database")]
    Connect(#[source] sqlx::Error),
    /// The embedded migrations could not be applied.
    #[error("could not migrate the database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Prepared statements kept per connection. The group commit's multi-row statements differ
/// by their row count (up to 64 rows per table, and on SQLite the three are one query), so
/// sqlx's default of 100 would keep evicting and re-preparing them.
const STATEMENT_CACHE: usize = 512;

/// The write connection's page cache, as SQLite's `cache_size` (negative: KiB).
pub(crate) const WRITER_CACHE_KIB: &str = "-16384";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// An open database: a connection pool plus the background enqueue writer.
#[derive(Clone)]
pub struct Database {
    store: Arc<SqlStore>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connects to `sqlite://PATH` / `sqlite:PATH` (file created if missing; parent dir must
    /// exist) or `postgres://…`/`postgresql://…`. Does not migrate.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Database, OpenError> {
        let mut direct = None;
        let pools = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|e| OpenError::InvalidUrl(format!("not a usable SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                // Overwrite what an update or delete frees with zeros: redacting a sign-in code
                // (or purging content) must not leave the old bytes in the file's free space.
                .pragma("secure_delete", "ON")
                // Statement journals (a multi-row INSERT inside the enqueue transaction needs
                // one) stay in memory: past 64 KiB SQLite would otherwise spill each to a temp
                // file it creates, writes, unlinks and closes, once per batch.
                .pragma("temp_store", "MEMORY")
                .busy_timeout(options.busy_timeout);
            // A SQLite connection is a file handle in this process: it cannot go stale, so the
            // pools do not ping it before each use (a round trip to its thread every query).
            let connect = connect.statement_cache_capacity(STATEMENT_CACHE);
            let name = connect.get_filename();
            let file = (!name.to_string_lossy().starts_with("file:")
                && name != std::path::Path::new(":memory:"))
            .then(|| name.to_path_buf());
            // The write connection keeps a larger page cache (16 MiB, filled only as used): its
            // batches (completions, provider events) look up and insert index entries across
            // the whole file, and each miss is a read from the OS.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect_with(connect.clone().pragma("cache_size", WRITER_CACHE_KIB))
                .await
                .map_err(OpenError::Connect)?;
            let read = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .test_before_acquire(false)
                .connect_with(connect)
                .await
                .map_err(OpenError::Connect)?;
            // A file (not sqlx's shared in-memory database, which another connection would not
            // see): the enqueue writer gets a connection of its own.
            if let Some(path) = file {
                direct = Some(DirectWriter::new(
                    path,
                    options.busy_timeout,
                    options.deferred_recipients,
                ));
            }
            Pools::Sqlite { read, write }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // The parse error is not echoed: it could quote the password.
            let connect = PgConnectOptions::from_str(url)
                .map_err(|_| OpenError::InvalidUrl("not a usable PostgreSQL URL".into()))?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .connect_with(connect)
                .await
                .map_err(OpenError::Connect)?;
            Pools::Postgres(pool)
        } else {
            return Err(OpenError::InvalidUrl(
                "expected a sqlite: or postgres:// URL".into(),
            ));
        };
        Ok(Database {
            store: Arc::new(SqlStore::new(
                pools,
                direct,
                options.group_commit_max,
                options.cache_ttl,
                options.deferred_event_index,
            )),
        })
    }

    /// Applies the embedded migrations; idempotent, and serialized across processes on
    /// PostgreSQL by an advisory lock.
    pub async fn migrate(&self) -> Result<(), OpenError> {
        match self.store.pools() {
            Pools::Sqlite { write, .. } => {
                // The migrations commit without syncing the log (`NORMAL`): each is a
                // transaction with its record in `_sqlx_migrations`, two commits apiece, and
                // syncing each was half of a cold start on an empty directory (48 syncs, 25 of
                // its ~50 ms; bench/JOURNAL.md). A crash may then undo the last of them, never
                // leave one half done (the log stays consistent; only durability waits), and
                // the next start applies them again; the first `FULL` commit after them — the
                // start-up's own writes come next — syncs the log with all of them in it.
                let mut conn = write.acquire().await.map_err(OpenError::Connect)?;
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *conn)
                    .await
                    .map_err(OpenError::Connect)?;
                let migrated = SQLITE_MIGRATIONS.run(&mut *conn).await;
                // Back to the connection's setting whatever happened.
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *conn)
                    .await
                    .map_err(OpenError::Connect)?;
                drop(conn);
                migrated.map_err(OpenError::Migrate)?;
                // Migration 0017: the old rows' keys are hashed here, where SHA-256 is.
                let converted = store::inbound::keys::convert_old_rows(write)
                    .await
                    .map_err(|e| OpenError::Migrate(sqlx::migrate::MigrateError::Execute(e)))?;
                if converted > 0 {
                    tracing::info!(converted, "provider event keys hashed");
                }
                Ok(())
            }
            Pools::Postgres(pool) => POSTGRES_MIGRATIONS
                .run(pool)
                .await
                .map_err(OpenError::Migrate),
        }
    }

    /// The storage traits on this database.
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.store.clone()
    }

    /// Which backend this database uses.
    pub fn backend(&self) -> Backend {
        match self.store.pools() {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Commits what the enqueue writer holds, stops it and closes the pool; later calls fail
    /// with `Unavailable`.
    pub async fn close(&self) {
        self.store.close().await;
    }
}

#[cfg(test)]
mod tests {
    /// Migrating syncs the log only at the end, and leaves the write connection syncing every
    /// commit (`FULL`), as `connect` set it.
    #[tokio::test]
    async fn migrating_leaves_the_write_connection_at_full_sync() {
        use crate::pools::Pools;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let db = super::Database::connect(&url, &super::StoreOptions::default())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        // Again: nothing left to apply, the same setting after.
        db.migrate().await.unwrap();
        let Pools::Sqlite { write, .. } = db.store.pools() else {
            unreachable!("a SQLite URL")
        };
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(write)
            .await
            .unwrap();
        assert_eq!(level, 2, "FULL");
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(write)
            .await
            .unwrap();
        assert_eq!(applied, super::SQLITE_MIGRATIONS.iter().count() as i64);
        db.close().await;
    }

    /// The SQLite that runs is the one `vendor/libsqlite3-sys` bundles (rusqlite and sqlx link
    /// the same library): 3.51.3 or later, without the WAL-reset bug, which could corrupt a file
    /// that one connection checkpoints while another commits (the enqueue writer's and sqlx's
    /// write connection in one process, or several processes).
    #[tokio::test]
    async fn the_bundled_sqlite_has_the_wal_reset_fix() {
        assert!(
            rusqlite::version_number() >= 3_051_003,
            "SQLite {}",
            rusqlite::version()
        );
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(version, rusqlite::version());
    }
}

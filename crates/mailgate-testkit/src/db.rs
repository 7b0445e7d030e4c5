//! Per-test databases: a fresh SQLite file in a temporary directory, or a fresh PostgreSQL
//! database named `mg_test_<ulid>` on the server at `MAILGATE_TEST_POSTGRES_URL`.
//!
//! PostgreSQL test databases are dropped (with `FORCE`) when the `TestDatabase` is dropped,
//! unless `MAILGATE_TEST_KEEP_DB=1`; any left behind by a crashed run share the `mg_test_`
//! prefix, so they are easy to clean up by hand.

use mailgate_store::{Backend, Database, StoreOptions};
use sqlx::{Connection, Executor, PgConnection};

/// The PostgreSQL server used when `MAILGATE_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to give `Database::connect`.
    pub url: String,
    /// Which backend it is.
    pub backend: Backend,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the server's maintenance URL and the database to drop.
    drop_on_exit: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh SQLite file in a temporary directory (created on first connect).
    pub async fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir()
            .expect("could not create a temporary directory for the test database");
        let url = format!("sqlite://{}", dir.path().join("mailgate.db").display());
        TestDatabase {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
            drop_on_exit: None,
        }
    }

    /// A fresh database on the PostgreSQL server at `MAILGATE_TEST_POSTGRES_URL`.
    pub async fn postgres() -> TestDatabase {
        let admin_url = std::env::var("MAILGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("mg_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL tests need a server at MAILGATE_TEST_POSTGRES_URL (default {DEFAULT_POSTGRES_URL}): {e}")
        });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("could not create test database {name}: {e}"));
        let _ = conn.close().await;
        let keep = std::env::var("MAILGATE_TEST_KEEP_DB").is_ok_and(|v| v == "1");
        TestDatabase {
            url: with_database(&admin_url, &name),
            backend: Backend::Postgres,
            _dir: None,
            drop_on_exit: (!keep).then_some((admin_url, name)),
        }
    }

    /// The backend named by `MAILGATE_TEST_BACKEND`: `sqlite` (the default) or `postgres`.
    pub async fn from_env() -> TestDatabase {
        match std::env::var("MAILGATE_TEST_BACKEND").as_deref() {
            Ok("postgres") | Ok("postgresql") => Self::postgres().await,
            Ok("sqlite") | Ok("") | Err(_) => Self::sqlite().await,
            Ok(other) => panic!("MAILGATE_TEST_BACKEND must be sqlite or postgres, not {other:?}"),
        }
    }

    /// Connects with default options and applies the migrations.
    pub async fn open(&self) -> Database {
        self.open_with(&StoreOptions::default()).await
    }

    /// Connects with `options` and applies the migrations.
    pub async fn open_with(&self, options: &StoreOptions) -> Database {
        let db = Database::connect(&self.url, options)
            .await
            .expect("could not connect to the test database");
        db.migrate()
            .await
            .expect("could not migrate the test database");
        db
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.drop_on_exit.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived thread
        // with its own runtime does the (best-effort) cleanup.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// `url` with its database path replaced by `name`, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_path() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}

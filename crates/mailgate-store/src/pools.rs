//! The connection pool of either backend, and the macro that runs the same code on both.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// A pool on one of the two backends.
#[derive(Debug, Clone)]
pub(crate) enum Pools {
    /// SQLite: a pool for reads, and a pool of one connection for writes. SQLite admits one
    /// writer at a time; funnelling this process's writes through one connection makes them
    /// queue fairly in the pool instead of spinning in SQLite's busy handler against each other,
    /// and leaves the busy timeout to arbitrate only between processes.
    Sqlite {
        /// Readers.
        read: SqlitePool,
        /// The one writer.
        write: SqlitePool,
    },
    /// PostgreSQL.
    Postgres(PgPool),
}

impl Pools {
    /// Closes the pool, waiting for checked-out connections to come back.
    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Self::Postgres(p) => p.close().await,
        }
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool. The body is compiled once per backend,
/// so SQL shared by both (written with `$n` placeholders, which SQLite also accepts) lives once.
macro_rules! with_pool {
    ($pools:expr, $pool:ident => $body:expr) => {
        match $pools {
            $crate::pools::Pools::Sqlite { read: $pool, .. } => $body,
            $crate::pools::Pools::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Like [`with_pool`], for statements that write: on SQLite they go through the one writer.
macro_rules! with_writer {
    ($pools:expr, $pool:ident => $body:expr) => {
        match $pools {
            $crate::pools::Pools::Sqlite { write: $pool, .. } => $body,
            $crate::pools::Pools::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_writer;

/// Starting a transaction that will write.
pub(crate) trait BeginWrite {
    /// The backend.
    type Db: sqlx::Database;
    /// Begins a write transaction.
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    /// `BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy timeout), so a
    /// transaction that reads before it writes never fails with `SQLITE_BUSY_SNAPSHOT`.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// The one connection a process writes through (SQLite), or one of the pool (PostgreSQL), held
/// by a writer across several transactions.
pub(crate) enum WriteConnection {
    /// SQLite's writer.
    Sqlite(PoolConnection<Sqlite>),
    /// A PostgreSQL connection.
    Postgres(PoolConnection<Postgres>),
}

impl WriteConnection {
    /// Waits for the write connection.
    pub(crate) async fn acquire(pools: &Pools) -> Result<Self, sqlx::Error> {
        Ok(match pools {
            Pools::Sqlite { write, .. } => Self::Sqlite(write.acquire().await?),
            Pools::Postgres(pool) => Self::Postgres(pool.acquire().await?),
        })
    }
}

/// Runs `$body` with `$conn` bound to the concrete connection of a [`WriteConnection`].
macro_rules! with_connection {
    ($held:expr, $conn:ident => $body:expr) => {
        match $held {
            $crate::pools::WriteConnection::Sqlite($conn) => $body,
            $crate::pools::WriteConnection::Postgres($conn) => $body,
        }
    };
}
pub(crate) use with_connection;

/// Starting a transaction that will write, on a held connection (as [`BeginWrite`]).
pub(crate) trait BeginWriteOn {
    /// The backend.
    type Db: sqlx::Database;
    /// Begins a write transaction.
    async fn begin_write_on(&mut self) -> Result<Transaction<'_, Self::Db>, sqlx::Error>;
}

impl BeginWriteOn for PoolConnection<Sqlite> {
    type Db = Sqlite;
    async fn begin_write_on(&mut self) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        sqlx::Connection::begin_with(&mut **self, "BEGIN IMMEDIATE").await
    }
}

impl BeginWriteOn for PoolConnection<Postgres> {
    type Db = Postgres;
    async fn begin_write_on(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        sqlx::Connection::begin(&mut **self).await
    }
}

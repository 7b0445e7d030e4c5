//! Mapping of database and decoding failures onto `StoreError`.

use mailgate_core::store::StoreError;

/// Maps a sqlx error: unique violations become `Conflict`, decoding failures `Corrupt`, anything
/// else `Unavailable`.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(
            d.constraint()
                .map_or_else(|| "unique constraint".to_owned(), str::to_owned),
        ),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

/// The error given to callers once the store has been closed.
#[derive(Debug, thiserror::Error)]
#[error("the store is closed")]
pub(crate) struct Closed;

/// The error given to every waiter of an enqueue batch whose transaction failed.
#[derive(Debug, thiserror::Error)]
#[error("the enqueue transaction failed: {0}")]
pub(crate) struct BatchFailed(pub(crate) String);

/// The error given to an enqueue whose writer went away before answering.
#[derive(Debug, thiserror::Error)]
#[error("the enqueue writer stopped before answering")]
pub(crate) struct WriterGone;

//! Appending to the event log on the writer's own connection (a SQLite file, rusqlite): the
//! events of the completions and provider events of a writer's turn, as `append_events!` does
//! through sqlx.

use std::sync::LazyLock;

use mailgate_core::event::NewEvent;
use rusqlite::{params, Connection};

use super::{DEFER_MESSAGE_EVENTS, NEWEST_EVENT_SEQ};
use crate::store::enqueue::INSERT_EVENT;

/// `$n` placeholders (shared with the sqlx forms) as SQLite's numbered `?n`: rusqlite binds by
/// position, and SQLite numbers `$n` by first appearance, not by `n`.
pub(crate) fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

static DEFER: LazyLock<String> = LazyLock::new(|| numbered(DEFER_MESSAGE_EVENTS));

/// An event with its columns as text, serialized by the caller rather than by the writer.
pub(crate) struct EventColumns {
    pub(crate) id: String,
    pub(crate) environment_id: String,
    pub(crate) message_id: Option<String>,
    event_type: &'static str,
    created_at: i64,
    data: String,
}

impl From<&NewEvent> for EventColumns {
    fn from(e: &NewEvent) -> Self {
        Self {
            id: e.id.to_string(),
            environment_id: e.environment_id.to_string(),
            message_id: e.message_id.map(|m| m.to_string()),
            event_type: e.event_type.as_str(),
            created_at: e.created_at.0,
            data: crate::rows::value_text(&e.data),
        }
    }
}

/// Appends `events` in their order and leaves pending the index entries of those about a
/// message (migration 0012), as `append_events!`.
pub(crate) fn append_events_on<'a>(
    conn: &Connection,
    events: impl IntoIterator<Item = &'a EventColumns>,
) -> rusqlite::Result<()> {
    let mut events = events.into_iter().peekable();
    if events.peek().is_none() {
        return Ok(());
    }
    let before: i64 = conn
        .prepare_cached(NEWEST_EVENT_SEQ)?
        .query_row([], |row| row.get(0))?;
    let mut insert = conn.prepare_cached(INSERT_EVENT)?;
    for e in events {
        insert.execute(params![
            e.id,
            e.environment_id,
            e.message_id,
            e.event_type,
            e.created_at,
            e.data
        ])?;
    }
    conn.prepare_cached(&DEFER)?.execute([before])?;
    Ok(())
}

//! Provider events recorded on the writer's own connection (a SQLite file): a batch of them is
//! one job of the writer's turn (`group_commit`), in the transaction of the sends, claims and
//! completions waiting then.
//!
//! Through sqlx a batch was a transaction of its own on the process's write connection: a wait
//! for that connection behind the writer's turns, multi-row inserts whose every chunk was a
//! round trip to the connection's thread, a query to learn which events were new when some
//! were not, and a commit of its own. On the writer each provider event is a single-row insert
//! of a cached statement, which says by itself whether the event was new. Its key is hashed
//! when the job is made (`keys`), before the writer's turn.

use mailgate_core::message::MessageStatus;
use mailgate_core::store::InboundRecord;
use mailgate_core::Timestamp;
use rusqlite::{params, Connection};

use super::keys::{event_key, INSERT_KEY, INSERT_SOFT_BOUNCE};
use super::message_moves;
use crate::store::events::direct::{append_events_on, EventColumns};

/// Moves a message to `?1` at `?2` if it is still `?4`.
const ADVANCE: &str =
    "UPDATE messages SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status = ?4";

/// One provider event with its log event, serialized for the writer.
struct RecordColumns {
    occurred_at: i64,
    /// The deduplication key (`keys::event_key`).
    key: [u8; 16],
    /// A soft bounce's recipient (normalized), which the soft-bounce rule counts.
    soft_bounce: Option<String>,
    event: EventColumns,
    /// The status the event moves its message towards.
    target: Option<MessageStatus>,
}

/// A batch of provider events, serialized for the writer.
pub(crate) struct RecordJob {
    now: i64,
    records: Vec<RecordColumns>,
}

impl RecordJob {
    pub(crate) fn new(records: &[InboundRecord<'_>], now: Timestamp) -> Self {
        Self {
            now: now.0,
            records: records
                .iter()
                .map(|r| {
                    let e = r.event;
                    let event = EventColumns::from(r.new_event);
                    RecordColumns {
                        occurred_at: e.occurred_at.0,
                        key: event_key(&event.environment_id, &e.provider, &e.provider_event_id),
                        soft_bounce: e
                            .recipient
                            .as_ref()
                            .filter(|_| e.is_soft_bounce())
                            .map(|a| a.normalized()),
                        event,
                        target: r.event.target(),
                    }
                })
                .collect(),
        }
    }
}

/// Records a batch as `InboundStore::record_inbound`: each provider event not recorded before
/// (nor earlier in the batch) is stored, moves its message's status forward and appends its log
/// event. Returns, in the batch's order, whether each was recorded.
pub(crate) fn record_on(conn: &Connection, job: &RecordJob) -> rusqlite::Result<Vec<bool>> {
    let mut insert = conn.prepare_cached(INSERT_KEY)?;
    let mut recorded = Vec::with_capacity(job.records.len());
    for r in &job.records {
        let new = insert.execute(params![r.occurred_at, &r.key[..]])? == 1;
        if let Some(address) = r.soft_bounce.as_ref().filter(|_| new) {
            conn.prepare_cached(INSERT_SOFT_BOUNCE)?.execute(params![
                r.event.environment_id,
                address,
                r.occurred_at
            ])?;
        }
        recorded.push(new);
    }
    let moves = message_moves(
        job.records
            .iter()
            .zip(&recorded)
            .filter(|(_, new)| **new)
            .filter_map(|(r, _)| Some((r.event.message_id.as_deref()?, r.target?))),
    );
    if !moves.is_empty() {
        let mut advance = conn.prepare_cached(ADVANCE)?;
        // A message's moves are ordered so that one never enables the next (`status_moves`).
        for (id, from, to) in moves {
            advance.execute(params![to.as_str(), job.now, id, from.as_str()])?;
        }
    }
    let events = job
        .records
        .iter()
        .zip(&recorded)
        .filter(|(_, new)| **new)
        .map(|(r, _)| &r.event);
    append_events_on(conn, events)?;
    Ok(recorded)
}

//! Provider events recorded on the writer's own connection (a SQLite file): a batch of them is
//! one job of the writer's turn (`group_commit`), in the transaction of the sends, claims and
//! completions waiting then.
//!
//! Through sqlx a batch was a transaction of its own on the process's write connection: a wait
//! for that connection behind the writer's turns, multi-row inserts whose every chunk was a
//! round trip to the connection's thread, a query to learn which events were new when some
//! were not, and a commit of its own. On the writer each provider event is a single-row insert
//! of a cached statement, which says by itself whether the event was new.

use mailgate_core::event::EventType;
use mailgate_core::inbound::BounceType;
use mailgate_core::message::MessageStatus;
use mailgate_core::store::InboundRecord;
use mailgate_core::Timestamp;
use rusqlite::{params, Connection};

use super::message_moves;
use crate::store::events::direct::{append_events_on, EventColumns};

const INSERT_PROVIDER_EVENT: &str = "INSERT INTO provider_events (environment_id, provider, \
     occurred_at, provider_event_id, event_id, bounce_type, address) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (environment_id, provider, occurred_at, provider_event_id) DO NOTHING";

/// Moves a message to `?1` at `?2` if it is still `?4`.
const ADVANCE: &str =
    "UPDATE messages SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status = ?4";

/// One provider event with its log event, serialized for the writer.
struct RecordColumns {
    provider: String,
    occurred_at: i64,
    provider_event_id: String,
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
                    let soft = e.event_type == EventType::Bounced
                        && e.bounce_type == Some(BounceType::Soft);
                    RecordColumns {
                        provider: e.provider.clone(),
                        occurred_at: e.occurred_at.0,
                        provider_event_id: e.provider_event_id.clone(),
                        soft_bounce: e
                            .recipient
                            .as_ref()
                            .filter(|_| soft)
                            .map(|a| a.normalized()),
                        event: EventColumns::from(r.new_event),
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
    let mut insert = conn.prepare_cached(INSERT_PROVIDER_EVENT)?;
    let mut recorded = Vec::with_capacity(job.records.len());
    for r in &job.records {
        let new = insert.execute(params![
            r.event.environment_id,
            r.provider,
            r.occurred_at,
            r.provider_event_id,
            r.event.id,
            r.soft_bounce.as_ref().map(|_| "soft"),
            r.soft_bounce,
        ])?;
        recorded.push(new == 1);
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

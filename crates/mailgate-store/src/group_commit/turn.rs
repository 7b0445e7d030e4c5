//! One turn of the writer on a SQLite file: every job waiting, in one transaction on the
//! writer's own connection, and one commit.
//!
//! Order within the turn: completions and provider events, then sends, then claims — so a claim
//! waiting in the same turn as a send can take it at once, and both writes of the message reach the
//! log as one page write and one sync. A statement that refuses one job (a constraint, a stored
//! value that does not parse) rolls back that job alone and answers it with the error; the others
//! commit. A failure of the database itself fails the whole turn: every job is answered
//! `Unavailable` and nothing of it is stored.
//!
//! The jobs first run with no savepoint between them: under a savepoint SQLite copies every page a
//! job changes into a journal before changing it (a few pages per delivered message), and
//! refusals are rare. If one job is refused, that pass is rolled back whole and the turn runs again
//! with each job under a savepoint of its own, so that only the refused job is lost.

use mailgate_core::message::EnqueueOutcome;
use mailgate_core::store::StoreError;
use rusqlite::Connection;

use super::{unavailable, Job, Reply, Request};
use crate::rows::ClaimRow;
use crate::store::enqueue::{pending_recipients, write_batch_on, DirectWriter, PreparedMessage};
use crate::store::inbound::direct::{record_on, RecordJob};
use crate::store::queue::direct::{claim_on, complete_on, ClaimJob, CompleteJob};

/// What a job's statements did: its value, or the refusal that rolled it back.
type Outcome<T> = Result<T, StoreError>;

/// Runs `jobs` (drained) in one transaction, answers each after the commit, and says whether
/// the database failed.
pub(super) fn run(direct: &mut DirectWriter, jobs: &mut Vec<Job>) -> bool {
    let mut sends: Vec<Request> = Vec::new();
    let mut claims: Vec<(ClaimJob, Reply<Vec<ClaimRow>>)> = Vec::new();
    let mut completions: Vec<(CompleteJob, Reply<usize>)> = Vec::new();
    let mut records: Vec<(RecordJob, Reply<Vec<bool>>)> = Vec::new();
    for job in jobs.drain(..) {
        match job {
            Job::Enqueue(request) => sends.push(request),
            Job::Claim(job, reply) => claims.push((job, reply)),
            Job::Complete(job, reply) => completions.push((job, reply)),
            Job::Record(job, reply) => records.push((job, reply)),
        }
    }
    let messages: Vec<&PreparedMessage> = sends.iter().map(|r| &r.message).collect();
    let deferred = direct.defers(messages.len());
    let pass = |tx: &Connection, isolated: Isolated| {
        let completed = completions
            .iter()
            .map(|(job, _)| attempt(tx, isolated, |c| complete_on(c, job)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let recorded = records
            .iter()
            .map(|(job, _)| attempt(tx, isolated, |c| record_on(c, job)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let stored = store_sends(tx, isolated, &messages, deferred)?;
        let claimed = claims
            .iter()
            .map(|(job, _)| attempt(tx, isolated, |c| claim_on(c, job)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((completed, recorded, stored, claimed))
    };
    let mut done = direct.transaction(|tx| pass(tx, Isolated(false)));
    if matches!(&done, Err(e) if is_refusal(e)) {
        // Rolled back: again, each job alone under its savepoint.
        done = direct.transaction(|tx| pass(tx, Isolated(true)));
    }
    match done {
        Ok((completed, recorded, stored, claimed)) => {
            let pending = if deferred {
                // One flag per send: a refused one left nothing pending.
                let created = stored
                    .iter()
                    .map(|o| matches!(o, Ok(EnqueueOutcome::Created(_))));
                pending_recipients(&messages, created)
            } else {
                0
            };
            // Claims, completions and provider events fill the log as sends do: counted
            // too, so that a writer with no sends (deliveries draining a backlog, webhooks)
            // still copies the log in its idle moments rather than inside a commit.
            let written = messages.len()
                + claimed.iter().flatten().map(Vec::len).sum::<usize>()
                + completed.iter().flatten().sum::<usize>()
                + recorded
                    .iter()
                    .flatten()
                    .map(|new| new.iter().filter(|n| **n).count())
                    .sum::<usize>();
            direct.committed(written, pending);
            tracing::debug!(
                sends = messages.len(),
                claims = claims.len(),
                completions = completions.len(),
                records = records.len(),
                "writer turn committed"
            );
            // A caller that gave up has its job done all the same: a stored send stays stored,
            // a claimed message is taken again when its lease expires.
            for (request, outcome) in sends.into_iter().zip(stored) {
                let _ = request.reply.send(outcome);
            }
            for ((_, reply), outcome) in claims.into_iter().zip(claimed) {
                let _ = reply.send(outcome);
            }
            for ((_, reply), outcome) in completions.into_iter().zip(completed) {
                let _ = reply.send(outcome);
            }
            for ((_, reply), outcome) in records.into_iter().zip(recorded) {
                let _ = reply.send(outcome);
            }
            false
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                sends = messages.len(),
                claims = claims.len(),
                completions = completions.len(),
                records = records.len(),
                "writer turn failed"
            );
            direct.reset();
            for request in sends {
                let _ = request.reply.send(Err(unavailable(&e)));
            }
            for (_, reply) in claims {
                let _ = reply.send(Err(unavailable(&e)));
            }
            for (_, reply) in completions {
                let _ = reply.send(Err(unavailable(&e)));
            }
            for (_, reply) in records {
                let _ = reply.send(Err(unavailable(&e)));
            }
            true
        }
    }
}

/// Stores the sends: all at once, or — if a statement refuses the batch (say, one message
/// names a deleted environment) — each alone, so that one bad message does not fail its
/// neighbours.
fn store_sends(
    tx: &Connection,
    isolated: Isolated,
    messages: &[&PreparedMessage],
    deferred: bool,
) -> rusqlite::Result<Vec<Outcome<EnqueueOutcome>>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    match attempt(tx, isolated, |c| write_batch_on(c, messages, deferred))? {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        Err(e) if messages.len() > 1 => {
            tracing::warn!(error = %e, size = messages.len(), "enqueue batch refused; storing its messages one by one");
            messages
                .iter()
                .map(|m| {
                    let one = attempt(tx, isolated, |c| write_batch_on(c, &[*m], deferred))?;
                    Ok(one.and_then(|mut v| {
                        v.pop()
                            .ok_or_else(|| StoreError::Corrupt("empty enqueue outcome".into()))
                    }))
                })
                .collect()
        }
        Err(e) => Ok(vec![Err(e)]),
    }
}

/// Whether each job of a pass runs under a savepoint of its own.
#[derive(Clone, Copy)]
struct Isolated(bool);

/// Runs `f` under a savepoint (`Isolated(true)`): kept if it succeeds; rolled back, with the
/// refusal as its outcome, if a statement refused it. Any other error is the database's and is
/// returned. Without a savepoint every error is returned, and the pass is rolled back.
fn attempt<T>(
    conn: &Connection,
    Isolated(isolated): Isolated,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<Outcome<T>> {
    if !isolated {
        return f(conn).map(Ok);
    }
    // Cached: a turn runs several, and compiling each was a cost on the writer's thread.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(Ok(value))
        }
        Err(e) => match refusal(e) {
            Ok(refused) => {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
                Ok(Err(refused))
            }
            Err(e) => Err(e),
        },
    }
}

/// Whether a statement error refuses one job (`refusal` maps it), rather than failing the
/// database.
fn is_refusal(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => f.code == rusqlite::ErrorCode::ConstraintViolation,
        rusqlite::Error::FromSqlConversionFailure(..) => true,
        _ => false,
    }
}

/// The refusal a statement error stands for (as `db_error` maps sqlx's: a unique violation is a
/// `Conflict`, another constraint `Unavailable`, a value that does not parse `Corrupt`), or the
/// error itself when the database failed.
fn refusal(e: rusqlite::Error) -> Result<StoreError, rusqlite::Error> {
    const UNIQUE: i32 = 2067; // SQLITE_CONSTRAINT_UNIQUE
    const PRIMARY_KEY: i32 = 1555; // SQLITE_CONSTRAINT_PRIMARYKEY
    if !is_refusal(&e) {
        return Err(e);
    }
    let unique = matches!(&e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == UNIQUE || f.extended_code == PRIMARY_KEY);
    Ok(match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => {
            StoreError::Corrupt(inner.to_string())
        }
        e if unique => StoreError::Conflict(e.to_string()),
        e => StoreError::Unavailable(Box::new(e)),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mailgate_core::event::{EventType, NewEvent};
    use mailgate_core::ids::{EnvironmentId, EventId};
    use mailgate_core::inbound::ProviderEvent;
    use mailgate_core::message::MessageStatus;
    use mailgate_core::store::{Completion, InboundRecord};
    use mailgate_core::Timestamp;
    use tokio::sync::oneshot;

    use super::*;
    use crate::store::enqueue::{message, migrated, prepare, prepared, DeferredRecipients};

    fn writer(path: &std::path::Path) -> DirectWriter {
        DirectWriter::new(
            path.to_owned(),
            Duration::from_secs(5),
            DeferredRecipients::default(),
        )
    }

    fn send(message: PreparedMessage) -> (Job, oneshot::Receiver<Outcome<EnqueueOutcome>>) {
        let (reply, answer) = oneshot::channel();
        (Job::Enqueue(Request { message, reply }), answer)
    }

    fn claim(now: i64) -> (Job, oneshot::Receiver<Outcome<Vec<ClaimRow>>>) {
        let (reply, answer) = oneshot::channel();
        let job = ClaimJob::new(8, Timestamp(now), Timestamp(now + 60_000), "lease".into());
        (Job::Claim(job, reply), answer)
    }

    fn status(path: &std::path::Path, id: &str) -> String {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// A claim waiting in the same turn as a send takes it: the send is stored first, and one
    /// commit makes both durable.
    #[tokio::test]
    async fn a_claim_takes_the_sends_of_its_own_turn() {
        let (_dir, path, db, env) = migrated().await;
        let mut w = writer(&path);
        let m = prepared(env, 1_000, &["a@example.com"]);
        let id = m.id();
        // The claim is first in line; the turn stores the send before it claims.
        let (claim_job, claimed) = claim(1_000);
        let (send_job, sent) = send(m);
        let mut jobs = vec![claim_job, send_job];
        assert!(!run(&mut w, &mut jobs), "the database did not fail");
        assert!(jobs.is_empty());
        assert!(matches!(sent.await.unwrap(), Ok(EnqueueOutcome::Created(c)) if c == id));
        let claimed: Vec<_> = claimed
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|r| r.into_domain().unwrap())
            .collect();
        assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), [id]);
        assert_eq!(
            (claimed[0].attempt, claimed[0].lease_token.as_str()),
            (1, "lease")
        );
        // Committed: another connection sees it leased.
        assert_eq!(status(&path, &id.to_string()), "sending");
        db.close().await;
    }

    /// A job a statement refuses is rolled back alone and answered with the refusal; the jobs
    /// of its turn are committed.
    #[tokio::test]
    async fn a_refused_job_is_rolled_back_alone() {
        let (_dir, path, db, env) = migrated().await;
        let mut w = writer(&path);
        let first = prepared(env, 1_000, &["a@example.com"]);
        let id = first.id();
        let (send_job, _) = send(first);
        let (claim_job, claimed) = claim(1_000);
        assert!(!run(&mut w, &mut vec![send_job, claim_job]));
        let lease = claimed
            .await
            .unwrap()
            .unwrap()
            .remove(0)
            .into_domain()
            .unwrap()
            .lease_token;

        // Its `sent` event reuses the id of its `queued` event: the insert is refused.
        let taken: String = Connection::open(&path)
            .unwrap()
            .query_row("SELECT id FROM events WHERE type = 'queued'", [], |r| {
                r.get(0)
            })
            .unwrap();
        let mut event = NewEvent::for_message(
            env,
            id,
            EventType::Sent,
            Timestamp(2_000),
            serde_json::json!({}),
        );
        event.id = taken.parse::<EventId>().unwrap();
        let completion = Completion {
            message_id: id,
            lease_token: lease,
            status: MessageStatus::Sent,
            next_attempt_at: None,
            provider: Some("capture".into()),
            provider_message_id: Some("p-1".into()),
            last_error: None,
            events: vec![event],
        };
        let (reply, completed) = oneshot::channel();
        let complete_job = Job::Complete(CompleteJob::new(&[completion], Timestamp(2_000)), reply);
        let second = prepared(env, 2_000, &["b@example.com"]);
        let second_id = second.id();
        let (send_job, sent) = send(second);
        assert!(!run(&mut w, &mut vec![complete_job, send_job]));

        assert!(matches!(
            completed.await.unwrap(),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(sent.await.unwrap(), Ok(EnqueueOutcome::Created(c)) if c == second_id));
        // The refused completion changed nothing: the message is still leased.
        assert_eq!(status(&path, &id.to_string()), "sending");
        assert_eq!(status(&path, &second_id.to_string()), "queued");
        db.close().await;
    }

    /// A batch refused (one send reuses a stored message's id) is stored one send at a time;
    /// the recipients the writer counts as pending are those of the sends it created, not of
    /// the first ones of the batch.
    #[tokio::test]
    async fn a_refused_send_leaves_nothing_pending() {
        let (_dir, path, db, env) = migrated().await;
        let mut w = writer(&path);
        let stored = message(env, 1_000, &["a@example.com"]);
        let (first, _) = send(prepare(stored.clone()));
        assert!(!run(&mut w, &mut vec![first]));
        // A batch of 8 (from which recipients are left pending): the stored message again, with
        // one recipient; six with two; one with three.
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        let mut sends = vec![prepare(stored)];
        for i in 0..6 {
            let to = [format!("b{i}@example.com"), format!("c{i}@example.com")];
            sends.push(prepared(env, 2_000, &[&to[0], &to[1]]));
        }
        sends.push(prepared(
            env,
            2_000,
            &["d@example.com", "e@example.com", "f@example.com"],
        ));
        for p in sends {
            let (job, answer) = send(p);
            jobs.push(job);
            answers.push(answer);
        }
        assert!(w.defers(jobs.len()));
        assert!(!run(&mut w, &mut jobs));
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap());
        }
        assert!(matches!(outcomes[0], Err(StoreError::Conflict(_))));
        assert!(outcomes[1..]
            .iter()
            .all(|o| matches!(o, Ok(EnqueueOutcome::Created(_)))));
        let pending: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM message_recipients_pending", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(pending, 6 * 2 + 3);
        assert_eq!(w.pending(), 6 * 2 + 3);
        db.close().await;
    }

    /// Claims fill the log as sends do: a writer that only claims (deliveries draining a
    /// backlog) copies the log in its idle moments too, rather than leaving it to SQLite inside
    /// a commit once 1,000 pages have gathered — every 77th claim of the queue-claim benchmark
    /// waited ~3.5 ms for that copy (the p99), ~0.4 ms otherwise.
    #[tokio::test]
    async fn claims_count_towards_the_idle_checkpoint() {
        let (_dir, path, db, env) = migrated().await;
        let mut w = writer(&path);
        let mut jobs: Vec<Job> = (0..72)
            .map(|i| send(prepared(env, 1_000, &[&format!("r{i}@example.com")])).0)
            .collect();
        assert!(!run(&mut w, &mut jobs));
        assert!(w.checkpoint_if_due().is_some(), "72 sends are due a copy");
        async fn claim_eight(w: &mut DirectWriter) {
            let (job, claimed) = claim(1_000);
            assert!(!run(w, &mut vec![job]));
            assert_eq!(claimed.await.unwrap().unwrap().len(), 8);
        }
        // Seven claims of eight messages: 56 rows written, not yet due.
        for _ in 0..7 {
            claim_eight(&mut w).await;
        }
        assert_eq!(w.checkpoint_if_due(), None);
        claim_eight(&mut w).await;
        let (frames, copied) = w
            .checkpoint_if_due()
            .expect("64 claimed rows are due a copy");
        assert!(frames > 0);
        assert_eq!(copied, frames, "the whole log was copied");
        db.close().await;
    }

    /// A batch of provider events is a job of the turn: recorded with the sends of its turn,
    /// each event once; a batch a statement refuses (its environment is gone) is rolled back
    /// alone.
    #[tokio::test]
    async fn provider_events_are_recorded_in_the_turn() {
        let (_dir, path, db, env) = migrated().await;
        let mut w = writer(&path);
        let event = ProviderEvent {
            provider: "sendgrid".into(),
            provider_event_id: "pe-1".into(),
            provider_message_id: None,
            message_id: None,
            event_type: EventType::Delivered,
            bounce_type: None,
            recipient: None,
            occurred_at: Timestamp(1_500),
            detail: serde_json::json!({}),
        };
        let record = |env| {
            let log = NewEvent {
                id: EventId::new(),
                environment_id: env,
                message_id: None,
                event_type: EventType::Delivered,
                created_at: Timestamp(2_000),
                data: serde_json::json!({}),
            };
            let job = RecordJob::new(
                &[InboundRecord {
                    event: &event,
                    new_event: &log,
                }],
                Timestamp(2_000),
            );
            let (reply, answer) = oneshot::channel();
            (Job::Record(job, reply), answer)
        };
        let (known, recorded) = record(env);
        let (gone, refused) = record(EnvironmentId::new());
        let m = prepared(env, 1_000, &["a@example.com"]);
        let id = m.id();
        let (send_job, sent) = send(m);
        assert!(!run(&mut w, &mut vec![known, gone, send_job]));
        assert_eq!(recorded.await.unwrap().unwrap(), [true]);
        assert!(matches!(
            refused.await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(sent.await.unwrap(), Ok(EnqueueOutcome::Created(c)) if c == id));
        // The provider's retry, in a later turn: known, not recorded again.
        let (again, answer) = record(env);
        assert!(!run(&mut w, &mut vec![again]));
        assert_eq!(answer.await.unwrap().unwrap(), [false]);
        let count = |table: &str| -> i64 {
            Connection::open(&path)
                .unwrap()
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count("provider_event_keys"), 1);
        assert_eq!(count("events WHERE type = 'delivered'"), 1);
        db.close().await;
    }
}

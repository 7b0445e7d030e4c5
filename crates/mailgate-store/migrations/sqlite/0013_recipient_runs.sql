-- Sorted runs between the pending recipients and the recipient index (issue 8: accepted sends
-- per second).
--
-- The enqueue writer moved pending recipients into message_recipients (keyed by address) in
-- sorted chunks while sends kept coming; each recipient still landed on a leaf of its own, so a
-- chunk of 8,192 dirtied thousands of pages, written to the log and checkpointed again. While
-- sends keep coming it now seals each chunk into a run here instead: the run's key leads with
-- its id, so a run is appended at the right edge, a few hundred pages per chunk. When no send
-- waits, the writer merges the oldest run into message_recipients a slice at a time; if runs
-- pile up past its limit under sustained load, it merges between batches too.
--
-- A run is read only while its id is listed in message_recipient_run_ids (sealing lists it in
-- the same transaction, merging unlists it with its last rows), so recipient_sends probes each
-- listed run by its key instead of scanning the table. Every step moves rows from one place to
-- another in one transaction: a send is found exactly once.
--
-- No foreign key: a run is copied from pending rows, which have theirs, and checking each
-- copied row's environment again is one more lookup per row on the writer. Deleting an environment
-- deletes its runs' rows through the trigger below (a scan of the runs, which are bounded by
-- the writer's limit; environments are seldom deleted).
CREATE TABLE message_recipient_runs (
    run             INTEGER NOT NULL,
    environment_id  TEXT NOT NULL,
    address         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    usage_type      TEXT,
    PRIMARY KEY (run, environment_id, address, created_at, message_id)
) WITHOUT ROWID;

CREATE TABLE message_recipient_run_ids (
    run  INTEGER PRIMARY KEY
);

DROP VIEW recipient_sends;
CREATE VIEW recipient_sends AS
    SELECT environment_id, address, created_at, message_id, usage_type FROM message_recipients
    UNION ALL
    SELECT environment_id, address, created_at, message_id, usage_type
        FROM message_recipient_runs
        WHERE run IN (SELECT run FROM message_recipient_run_ids)
    UNION ALL
    SELECT environment_id, address, created_at, message_id, usage_type
        FROM message_recipients_pending;

CREATE TRIGGER environments_delete_recipient_runs AFTER DELETE ON environments
BEGIN
    DELETE FROM message_recipient_runs WHERE environment_id = OLD.id;
END;

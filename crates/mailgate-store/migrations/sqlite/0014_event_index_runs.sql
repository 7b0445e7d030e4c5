-- Sorted runs between the pending message-event entries and message_events (issue 8: webhook
-- events stored per second, in arrays of 100).
--
-- The event indexer moved pending entries into message_events (keyed by message) in sorted
-- batches while events kept coming; a webhook's events concern messages all over the index, so a
-- batch of 32,768 still dirtied most of its leaves, on the write connection the recordings
-- need. While events keep coming the indexer now seals the pending entries into a run here
-- instead: the run's key leads with its id, so it is appended at the right edge, page after
-- page. When the log is quiet the indexer merges the oldest run into message_events a slice at
-- a time; if runs pile up past its limit under sustained load, it merges while events come too.
--
-- A run is read only while its id is listed in message_event_run_ids (sealing lists it in the
-- same transaction that deletes its pending rows, merging unlists it with its last rows), so
-- message_event_seqs probes each listed run by its key instead of scanning the table. Readers
-- ask by set membership (`seq IN (SELECT seq FROM message_event_seqs …)`), so an entry found in
-- two places at once is still one event.
--
-- No foreign key: a run is copied from pending rows, which have theirs, and checking each
-- copied row's message again is one more lookup per row. Deleting an environment deletes its
-- messages' run entries through the trigger below, before the messages go.
CREATE TABLE message_event_runs (
    run         INTEGER NOT NULL,
    message_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (run, message_id, seq)
) WITHOUT ROWID;

CREATE TABLE message_event_run_ids (
    run  INTEGER PRIMARY KEY
);

DROP VIEW message_event_seqs;
CREATE VIEW message_event_seqs AS
    SELECT message_id, seq FROM events WHERE type = 'queued' AND message_id IS NOT NULL
    UNION ALL
    SELECT message_id, seq FROM message_events
    UNION ALL
    SELECT message_id, seq FROM message_event_runs
        WHERE run IN (SELECT run FROM message_event_run_ids)
    UNION ALL
    SELECT message_id, seq FROM message_events_pending;

CREATE TRIGGER environments_delete_event_runs BEFORE DELETE ON environments
BEGIN
    DELETE FROM message_event_runs
        WHERE message_id IN (SELECT id FROM messages WHERE environment_id = OLD.id);
END;

-- The per-message event index out of the recording commit (issue 8: webhook events stored per
-- second).
--
-- events_message (message_id, seq) was an index on the log itself. A message's `queued` event is
-- written with the message, so its entry lands at the right edge of the index (message ids grow
-- with time); every later event (sent, delivered, opened, bounced, …) concerns an older message,
-- in no particular order, and dirtied a leaf page of its own, written and synced in the commit
-- its webhook or completion waits for — several kilobytes per event of ~800 bytes.
--
-- The log keeps an index for `queued` events only (events_queued, partial): the message is new,
-- so the entry lands at the right edge, in the insert itself. Writers append every other event's
-- (seq, message) to message_events_pending, in log order (a few pages per batch); the store's
-- event indexer moves them into message_events in key order, in large batches, so that a leaf
-- takes many entries at once. Readers read all three through message_event_seqs: the pending
-- rows are few (the indexer keeps them under its high-water mark) and narrow, and a scan of
-- them is cheap. (Triggers would have kept writers from forgetting the pending rows, but a
-- trigger runs a sub-program for every insert into the log, `queued` ones included: 10 % fewer
-- accepted sends per second, side by side.)
--
-- The log loses its foreign key to messages: without a full index on events.message_id,
-- deleting an environment would scan the log once per message. message_events keeps it (its key
-- leads with message_id), so an environment's deletion still removes its messages' entries; its
-- pending rows go with the environment.
CREATE TABLE events_unkeyed (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    message_id      TEXT,
    type            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    data            TEXT NOT NULL
);
INSERT INTO events_unkeyed (seq, id, environment_id, message_id, type, created_at, data)
    SELECT seq, id, environment_id, message_id, type, created_at, data FROM events ORDER BY seq;
-- The counter goes along: a seq is never handed out twice, even one whose event was deleted.
DELETE FROM sqlite_sequence WHERE name = 'events_unkeyed';
INSERT INTO sqlite_sequence (name, seq) SELECT 'events_unkeyed', seq FROM sqlite_sequence
    WHERE name = 'events';
DROP TABLE events;
ALTER TABLE events_unkeyed RENAME TO events;
CREATE INDEX events_environment ON events (environment_id, seq);
CREATE INDEX events_reputation ON events (environment_id, type, created_at)
    WHERE type IN ('sent', 'bounced', 'complained');
CREATE INDEX events_queued ON events (message_id, seq) WHERE type = 'queued';

CREATE TABLE message_events (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;
INSERT INTO message_events (message_id, seq)
    SELECT message_id, seq FROM events WHERE message_id IS NOT NULL AND type <> 'queued'
    ORDER BY message_id, seq;

CREATE TABLE message_events_pending (
    seq             INTEGER PRIMARY KEY,
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    message_id      TEXT NOT NULL
);

CREATE VIEW message_event_seqs AS
    SELECT message_id, seq FROM events WHERE type = 'queued' AND message_id IS NOT NULL
    UNION ALL
    SELECT message_id, seq FROM message_events
    UNION ALL
    SELECT message_id, seq FROM message_events_pending;

-- Fewer B-tree entries per accepted message (issue 8: the single SQLite writer is CPU-bound on
-- them).
--
-- message_recipients was a rowid table with three indexes: (message_id, address),
-- (environment_id, address, created_at) and (environment_id, address, usage_type, created_at),
-- four entries per recipient. Every reader asks by environment and address for a window of
-- created_at (the per-recipient cap, with or without a usage type; the recipient lookup), so the
-- table itself is now keyed that way, WITHOUT ROWID: one entry per recipient. A usage-type cap
-- filters the window's rows, which are few (the window of one address's sends). Nothing deletes a
-- single message, so the cascade that needed the message_id index now comes from the environment.
CREATE TABLE message_recipients_keyed (
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    address         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    usage_type      TEXT,
    PRIMARY KEY (environment_id, address, created_at, message_id)
) WITHOUT ROWID;
INSERT INTO message_recipients_keyed (environment_id, address, created_at, message_id, usage_type)
    SELECT environment_id, address, created_at, message_id, usage_type FROM message_recipients;
DROP TABLE message_recipients;
ALTER TABLE message_recipients_keyed RENAME TO message_recipients;

-- The reputation counts read only 'sent', 'bounced' and 'complained' events (the query names the
-- same list, so it still uses this index); 'queued' and the rest no longer pay for an entry.
DROP INDEX events_reputation;
CREATE INDEX events_reputation ON events (environment_id, type, created_at)
    WHERE type IN ('sent', 'bounced', 'complained');

-- Fewer B-tree entries per provider event (issue 8: webhook events stored per second).
--
-- provider_events was a rowid table with its key in a separate index; it is now keyed by the
-- deduplication key itself, WITHOUT ROWID: one entry per event instead of two.
--
-- The address index served only the soft-bounce rule, which counts an address's soft bounces
-- (`bounce_type = 'soft'` is in its query); deliveries, opens and clicks, most of the traffic, no
-- longer pay for an entry.
CREATE TABLE provider_events_keyed (
    environment_id     TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    provider_event_id  TEXT NOT NULL,
    event_id           TEXT NOT NULL,
    message_id         TEXT,
    type               TEXT NOT NULL,
    bounce_type        TEXT,
    address            TEXT,
    occurred_at        INTEGER NOT NULL,
    PRIMARY KEY (environment_id, provider, provider_event_id)
) WITHOUT ROWID;
INSERT INTO provider_events_keyed (environment_id, provider, provider_event_id, event_id,
        message_id, type, bounce_type, address, occurred_at)
    SELECT environment_id, provider, provider_event_id, event_id, message_id, type, bounce_type,
        address, occurred_at
    FROM provider_events;
DROP TABLE provider_events;
ALTER TABLE provider_events_keyed RENAME TO provider_events;
CREATE INDEX provider_events_soft_bounces ON provider_events (environment_id, address, occurred_at)
    WHERE bounce_type = 'soft';

-- Provider events keyed by the provider's time first, and only the soft-bounce rule's fields
-- kept (issue 8: webhook events stored per second).
--
-- The deduplication row of every provider event was keyed (environment, provider, provider
-- event id): providers' event ids are random (UUIDs, base64), so each event's row landed on a
-- leaf of its own, written and synced in the commit its webhook waited for. The key now puts
-- the time the provider says the event happened before its id: events arrive roughly in the
-- order they happened, so their rows land at the right edge of their provider's range, many to
-- a page. A retry of an event carries the same time (the parsers never fall back to the time of
-- arrival), so it still meets its first copy's key.
--
-- The row keeps what the soft-bounce rule counts (bounce type and address) for soft bounces
-- only; the message id and type were never read. Deliveries, opens and clicks — most of the
-- traffic — no longer keep their recipient's address here (the log keeps none either).
CREATE TABLE provider_events_timed (
    environment_id     TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    occurred_at        INTEGER NOT NULL,
    provider_event_id  TEXT NOT NULL,
    event_id           TEXT NOT NULL,
    bounce_type        TEXT,
    address            TEXT,
    PRIMARY KEY (environment_id, provider, occurred_at, provider_event_id)
) WITHOUT ROWID;
INSERT INTO provider_events_timed (environment_id, provider, occurred_at, provider_event_id,
        event_id, bounce_type, address)
    SELECT environment_id, provider, occurred_at, provider_event_id, event_id,
        CASE WHEN type = 'bounced' AND bounce_type = 'soft' THEN 'soft' END,
        CASE WHEN type = 'bounced' AND bounce_type = 'soft' THEN address END
    FROM provider_events
    ORDER BY environment_id, provider, occurred_at, provider_event_id;
DROP TABLE provider_events;
ALTER TABLE provider_events_timed RENAME TO provider_events;
CREATE INDEX provider_events_soft_bounces ON provider_events (environment_id, address, occurred_at)
    WHERE bounce_type = 'soft';

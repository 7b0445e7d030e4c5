-- Provider events keyed by the provider's time first, and only the soft-bounce rule's fields
-- kept, as on SQLite (its migration 0015 says why): a retry of an event carries the same time,
-- so it still meets its first copy's key; deliveries, opens and clicks no longer keep their
-- recipient's address here.
ALTER TABLE provider_events DROP CONSTRAINT provider_events_pkey;
UPDATE provider_events SET bounce_type = NULL, address = NULL
    WHERE type <> 'bounced' OR bounce_type IS DISTINCT FROM 'soft';
ALTER TABLE provider_events DROP COLUMN message_id, DROP COLUMN type;
ALTER TABLE provider_events ADD PRIMARY KEY (environment_id, provider, occurred_at, provider_event_id);

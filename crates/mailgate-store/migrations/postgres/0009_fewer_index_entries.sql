-- Fewer index entries per accepted message (issue 8).
--
-- message_recipients had three indexes: (message_id, address), (environment_id, address,
-- created_at) and (environment_id, address, usage_type, created_at). Every reader asks by
-- environment and address for a window of created_at (the per-recipient cap, with or without a
-- usage type; the recipient lookup), so one key serves them all. A usage-type cap filters the
-- window's rows, which are few. Nothing deletes a single message, so the cascade that needed the
-- message_id index now comes from the environment.
ALTER TABLE message_recipients DROP CONSTRAINT message_recipients_message_id_fkey;
ALTER TABLE message_recipients DROP CONSTRAINT message_recipients_pkey;
DROP INDEX message_recipients_address;
DROP INDEX message_recipients_usage;
ALTER TABLE message_recipients
    ADD PRIMARY KEY (environment_id, address, created_at, message_id);
ALTER TABLE message_recipients
    ADD FOREIGN KEY (environment_id) REFERENCES environments (id) ON DELETE CASCADE;

-- The reputation counts read only 'sent', 'bounced' and 'complained' events (the query names the
-- same list, so it still uses this index); 'queued' and the rest no longer pay for an entry.
DROP INDEX events_reputation;
CREATE INDEX events_reputation ON events (environment_id, type, created_at)
    WHERE type IN ('sent', 'bounced', 'complained');

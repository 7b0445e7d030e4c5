-- Provider management (issue 7): organizations, the sandbox, the per-recipient cap and shared
-- rate limits.

-- The organization a message is for (NULL: none), and whether the sandbox holds it.
ALTER TABLE messages ADD COLUMN organization TEXT;
ALTER TABLE messages ADD COLUMN sandboxed BOOLEAN NOT NULL DEFAULT FALSE;

-- The usage type the message's template was asked for (NULL: no template), for the
-- per-recipient cap counted per usage type.
ALTER TABLE message_recipients ADD COLUMN usage_type TEXT;
CREATE INDEX message_recipients_usage ON message_recipients (environment_id, address, usage_type, created_at);

-- One GCRA bucket per key, shared by every process on the database: `tat` is the theoretical
-- arrival time in microseconds since the epoch.
CREATE TABLE rate_limits (
    key  TEXT PRIMARY KEY,
    tat  BIGINT NOT NULL
);

-- Templates, environment settings, and what auth mail needs: expiry, tracking and secrets.

-- The environment's settings as JSON (NULL: the defaults).
ALTER TABLE environments ADD COLUMN settings TEXT;

-- One template per (environment, usage type, locale); `body` is the template as JSON.
CREATE TABLE templates (
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    usage_type      TEXT NOT NULL,
    locale          TEXT NOT NULL,
    body            TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (environment_id, usage_type, locale)
);

-- After `expires_at` a message is never delivered (it ends `expired`).
ALTER TABLE messages ADD COLUMN expires_at BIGINT;
ALTER TABLE messages ADD COLUMN track_opens BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE messages ADD COLUMN track_links BOOLEAN NOT NULL DEFAULT FALSE;
-- The secret values (JSON array) to redact from `content` when the message reaches a final
-- state; set to NULL in the same transaction.
ALTER TABLE messages ADD COLUMN secrets TEXT;

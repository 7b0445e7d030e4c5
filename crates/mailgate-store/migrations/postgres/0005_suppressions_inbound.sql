-- Suppression lists, provider events from webhooks, and the recipient index (issue 6).

-- Addresses an environment no longer sends to. `address` is normalized (domain lower case).
CREATE TABLE suppressions (
    environment_id   TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    address          TEXT NOT NULL,
    reason           TEXT NOT NULL,
    source_event_id  TEXT,
    provider         TEXT,
    note             TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT,
    PRIMARY KEY (environment_id, address)
);
CREATE INDEX suppressions_created ON suppressions (environment_id, created_at);

-- One row per provider event received: the deduplication key, and the facts the soft-bounce
-- rule and the recipient view need.
CREATE TABLE provider_events (
    environment_id     TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    provider_event_id  TEXT NOT NULL,
    event_id           TEXT NOT NULL,
    message_id         TEXT,
    type               TEXT NOT NULL,
    bounce_type        TEXT,
    address            TEXT,
    occurred_at        BIGINT NOT NULL,
    PRIMARY KEY (environment_id, provider, provider_event_id)
);
CREATE INDEX provider_events_address ON provider_events (environment_id, address, occurred_at);

-- Every recipient (to, cc, bcc) of every message, normalized, written at enqueue.
CREATE TABLE message_recipients (
    message_id      TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    environment_id  TEXT NOT NULL,
    address         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (message_id, address)
);
CREATE INDEX message_recipients_address ON message_recipients (environment_id, address, created_at);

-- Matching provider events to messages.
CREATE INDEX messages_provider_message_id ON messages (environment_id, provider_message_id);

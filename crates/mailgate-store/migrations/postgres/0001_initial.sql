-- Initial schema (PostgreSQL). Timestamps are milliseconds since the Unix epoch; JSON is stored as text.

CREATE TABLE environments (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY NOT NULL,
    -- NULL for admin keys.
    environment_id  TEXT REFERENCES environments (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    hint            TEXT NOT NULL,
    hash            TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL
);
CREATE INDEX api_keys_environment ON api_keys (environment_id);

CREATE TABLE messages (
    id                       TEXT PRIMARY KEY NOT NULL,
    environment_id           TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    status                   TEXT NOT NULL,
    -- NULL once purged after the retention period.
    content                  TEXT,
    tags                     TEXT NOT NULL,
    metadata                 TEXT NOT NULL,
    provider_options         TEXT,
    idempotency_key          TEXT,
    idempotency_fingerprint  TEXT,
    attempts                 BIGINT NOT NULL,
    max_attempts             BIGINT NOT NULL,
    next_attempt_at          BIGINT NOT NULL,
    locked_until             BIGINT,
    lease_token              TEXT,
    provider                 TEXT,
    provider_message_id      TEXT,
    last_error               TEXT,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL,
    UNIQUE (environment_id, idempotency_key)
);
-- The claim: due queued messages, and sending messages whose lease expired.
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'queued';
CREATE INDEX messages_leases ON messages (locked_until) WHERE status = 'sending';
-- The retention purge.
CREATE INDEX messages_retained ON messages (updated_at) WHERE content IS NOT NULL;

CREATE TABLE events (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    message_id      TEXT REFERENCES messages (id) ON DELETE CASCADE,
    type            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    data            TEXT NOT NULL
);
CREATE INDEX events_environment ON events (environment_id, seq);
CREATE INDEX events_message ON events (message_id, seq);

CREATE TABLE captured_messages (
    seq             BIGSERIAL PRIMARY KEY,
    message_id      TEXT NOT NULL,
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    content         TEXT NOT NULL,
    captured_at     BIGINT NOT NULL
);
CREATE INDEX captured_messages_environment ON captured_messages (environment_id, seq);

-- Reputation, failure notifications and the event stream (issue 6, part b).

-- The event stream reads in commit order. `seq` comes from a sequence, handed out before commit,
-- so a later seq can become visible before an earlier one; ordering by the writing transaction's
-- id and reading only transactions older than every one still running makes the cursor safe.
-- Existing rows get the migrating transaction's id (they predate every feed).
ALTER TABLE events ADD COLUMN tx BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX events_feed ON events (environment_id, tx, seq);

-- Reputation counts read one environment's sent/bounced/complained events of a window.
CREATE INDEX events_reputation ON events (environment_id, type, created_at);

-- Per-environment targets. Secrets and the Slack URL are sealed by the application.
CREATE TABLE notification_settings (
    environment_id        TEXT PRIMARY KEY NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    webhook_url           TEXT,
    webhook_secret        TEXT,
    slack_url             TEXT,
    stream_url            TEXT,
    stream_secret         TEXT,
    updated_at            BIGINT NOT NULL
);

-- Consumers of the event log (kind 'stream' or 'notify'): a cursor and a lease, so that one
-- worker at a time, in any process, delivers an environment's feed.
CREATE TABLE feeds (
    environment_id     TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL,
    cursor_tx          BIGINT NOT NULL,
    cursor_seq         BIGINT NOT NULL,
    lease_token        TEXT,
    lease_until        BIGINT,
    failures           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT NOT NULL,
    last_error         TEXT,
    last_delivered_at  BIGINT,
    updated_at         BIGINT NOT NULL,
    PRIMARY KEY (environment_id, kind)
);

-- Reputation settings and the level last notified (so each crossing is notified once).
CREATE TABLE reputation_settings (
    environment_id     TEXT PRIMARY KEY NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    window_seconds     BIGINT NOT NULL,
    min_volume         BIGINT NOT NULL,
    pause_on_critical  BOOLEAN NOT NULL,
    notified_level     TEXT NOT NULL DEFAULT 'ok',
    updated_at         BIGINT NOT NULL
);

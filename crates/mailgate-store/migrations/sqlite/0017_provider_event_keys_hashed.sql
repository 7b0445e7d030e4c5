-- Provider events deduplicated by a 16-byte key after the provider's time (issue 8: webhook
-- events stored per second, in arrays of 100).
--
-- provider_events (migration 0015) was keyed by (environment, provider, the provider's time, its
-- event id), ~120 bytes a row. SendGrid's times are whole seconds and its ids random, so a
-- second's events landed all over that second's range of leaf pages: a commit of ~800 events
-- dirtied ~600 pages, ~3 KB of log per event, about half of what recording an event wrote.
-- Side by side, recording without any deduplication row was 35-60 % faster.
--
-- A row is now the provider's time and the first 16 bytes of SHA-256 over the environment,
-- provider and event id (`store/inbound/keys.rs`), ~30 bytes: a second's rows fill a quarter as
-- many pages, so a commit dirties a quarter as many. Two different events of the same second
-- share a key with a probability of about 2^-128 per pair.
--
-- The soft-bounce rule's rows (environment, address, time) move to a table of their own; the
-- keys have no environment column, so deleting an environment leaves its keys (16 opaque bytes
-- each, which a new environment's id never hashes to). The old rows' keys are computed when
-- the database is migrated (`Database::migrate`: SQL has no SHA-256), which empties
-- provider_events; it stays, empty, for that.
CREATE TABLE provider_event_keys (
    occurred_at  INTEGER NOT NULL,
    key          BLOB NOT NULL,
    PRIMARY KEY (occurred_at, key)
) WITHOUT ROWID;

CREATE TABLE soft_bounces (
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    address         TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL
);
CREATE INDEX soft_bounces_address ON soft_bounces (environment_id, address, occurred_at);

INSERT INTO soft_bounces (environment_id, address, occurred_at)
    SELECT environment_id, address, occurred_at FROM provider_events
    WHERE bounce_type = 'soft' AND address IS NOT NULL;

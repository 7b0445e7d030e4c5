-- Per-environment (and per-organization) provider configurations. `sealed` is encrypted by the
-- application (AEAD bound to the environment); `redacted` is the same configuration with every
-- secret masked, safe to show.
CREATE TABLE provider_configs (
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    sealed          TEXT NOT NULL,
    redacted        TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (environment_id, scope)
);

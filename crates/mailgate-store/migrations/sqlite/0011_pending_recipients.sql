-- The recipient index out of the acknowledging commit (issue 8: accepted sends per second).
--
-- message_recipients is keyed by (environment, address, created_at, message_id), so each
-- recipient lands in its address's part of the B-tree: with many addresses, every message of a
-- batch dirtied a page of its own, and the commit that answers the sends wrote (and synced) a
-- page of log per message for it. A large batch (a saturated writer) now appends its
-- recipients to this table instead, in arrival order (a few pages per batch); the enqueue
-- writer moves them into message_recipients in sorted chunks — large ones once this table
-- reaches its high-water mark, small ones when no send waits — so a page of the index takes
-- many recipients at once. Small batches still write the index in their own commit.
--
-- Readers read both, through recipient_sends: the rows here are few (the writer keeps them
-- under the high-water mark), and a scan of them is cheap.
CREATE TABLE message_recipients_pending (
    seq             INTEGER PRIMARY KEY,
    environment_id  TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    address         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    usage_type      TEXT
);

CREATE VIEW recipient_sends AS
    SELECT environment_id, address, created_at, message_id, usage_type FROM message_recipients
    UNION ALL
    SELECT environment_id, address, created_at, message_id, usage_type
        FROM message_recipients_pending;

-- The readers of the recipient index read it through recipient_sends, as on SQLite. There, the
-- accepting commit appends recipients to a pending table that the enqueue writer moves into
-- message_recipients in sorted chunks (see the SQLite migration of the same number); here the
-- accepting commit writes message_recipients itself (PostgreSQL's writers are many and its
-- index pages are written back by the checkpointer, not in the commit), so the view is the
-- table.
CREATE VIEW recipient_sends AS
    SELECT environment_id, address, created_at, message_id, usage_type FROM message_recipients;

-- Due retries are claimed before first attempts, as on SQLite (its migration 0016 says why):
-- this index finds them without walking the backlog of first attempts in `messages_due`.
CREATE INDEX messages_retry_due ON messages (next_attempt_at)
    WHERE status = 'queued' AND attempts > 0;

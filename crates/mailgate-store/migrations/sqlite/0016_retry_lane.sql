-- Due retries are claimed before first attempts (issue 8: the fault run's retry tail).
--
-- The claim took due messages in the order they became due. A message that failed became due
-- again after its backoff, behind every message accepted meanwhile: under a backlog each retry
-- waited for the whole backlog again, so a message refused three times waited three backlogs
-- (seconds each in the benchmark) on top of its backoff. A retry now keeps its place in line:
-- once its backoff has passed it goes ahead of messages accepted after it. This index finds
-- the due retries without walking the backlog of first attempts in `messages_due`.
CREATE INDEX messages_retry_due ON messages (next_attempt_at)
    WHERE status = 'queued' AND attempts > 0;

-- The reputation index's predicate as equalities joined by OR (issue 8: the CPU each event costs
-- its writer).
--
-- Every insert into `events` evaluates the predicate of each partial index on it. SQLite codes an
-- IN over a constant list of three or more values by building a temporary b-tree of the values
-- (opened, created, filled, probed, closed) every time the statement runs: for
-- `type IN ('sent', 'bounced', 'complained')` that was one temporary b-tree per event stored —
-- every send's `queued` event, every delivery's outcome, every provider event — about 7 % of the
-- instructions the gateway executes per accepted send (`bench/ab/instructions.sh`). Equalities
-- joined by OR are plain comparisons. The reputation counts name the same expression, so they
-- still read this index.
DROP INDEX events_reputation;
CREATE INDEX events_reputation ON events (environment_id, type, created_at)
    WHERE type = 'sent' OR type = 'bounced' OR type = 'complained';

-- The address index served only the soft-bounce rule, which counts an address's soft bounces
-- (`bounce_type = 'soft'` is in its query); deliveries, opens and clicks, most of the traffic, no
-- longer pay for an entry (issue 8: webhook events stored per second).
DROP INDEX provider_events_address;
CREATE INDEX provider_events_soft_bounces ON provider_events (environment_id, address, occurred_at)
    WHERE bounce_type = 'soft';

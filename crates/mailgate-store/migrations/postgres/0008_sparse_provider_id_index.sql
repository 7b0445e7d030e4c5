-- A message has no provider id until it is sent, so indexing the NULLs only cost every enqueue
-- an index insert. Lookups name a provider id (`provider_message_id = $n`), which implies
-- NOT NULL, so they still use this index.
DROP INDEX messages_provider_message_id;
CREATE INDEX messages_provider_message_id ON messages (environment_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

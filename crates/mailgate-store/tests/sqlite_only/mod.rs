//! Tests of what only the SQLite backend has: its own tables and the work done on them.

pub mod provider_events;

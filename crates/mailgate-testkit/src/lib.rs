//! Dev-only helpers shared by mailgate's test suites: per-test databases on SQLite and
//! PostgreSQL, the scripted fake provider and (feature `app`) the HTTP `TestApp`.
#![forbid(unsafe_code)]

#[cfg(feature = "app")]
pub mod app;
pub mod db;
pub mod events;
pub mod fake_provider;
pub mod peers;

//! The HTTP API end to end: real requests over loopback against a server on a fresh database
//! (SQLite, or PostgreSQL with `MAILGATE_TEST_BACKEND=postgres`).

mod api {
    mod delivery;
    mod emails;
    mod environments;
    mod errors;
    mod events;
    mod health;
    mod hostile;
    mod http_providers;
    mod keys;
    mod notifications;
    mod providers;
    mod routing;
    mod sns;
    pub mod support;
    mod suppressions;
    mod templates;
    pub mod webhook_support;
    mod webhooks;
}

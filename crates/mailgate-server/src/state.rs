//! The state every handler shares: storage, the send service, the clock and the server's
//! configuration.

use std::sync::Arc;
use std::time::Duration;

use mailgate_core::ingest::IngestService;
use mailgate_core::send::SendService;
use mailgate_core::store::Storage;
use mailgate_core::Clock;
use mailgate_providers::{ProviderRegistry, WebhookVerifier};

/// How the HTTP server behaves; the binary fills it from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes; larger requests get 413 `payload_too_large`.
    pub max_request_bytes: usize,
    /// Longest a request may take before it is answered with 503 `timeout`.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 15 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The storage backend.
    pub storage: Arc<dyn Storage>,
    /// Accepts sends (validation, durable enqueue, dispatcher wake-up).
    pub send: SendService,
    /// The source of the current time.
    pub clock: Arc<dyn Clock>,
    /// Per-environment providers (set, show, verify; also the dispatcher's resolver).
    pub providers: Arc<ProviderRegistry>,
    /// The server's configuration.
    pub config: Arc<ServerConfig>,
    /// Records provider events (deduplication, matching, status, suppression).
    pub ingest: IngestService,
    /// Authenticates and parses provider webhooks.
    pub webhooks: Arc<WebhookVerifier>,
}

//! `capture://`: stores each delivered message in the database so it can be read back through
//! the API. The default provider of a fresh installation, and the one tests deliver through.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{Provider, SendError, SendReceipt, VerifyReport};
use mailgate_core::store::{CaptureStore, CapturedMessage};
use mailgate_core::Clock;

/// The capture provider.
pub struct CaptureProvider {
    store: Arc<dyn CaptureStore>,
    clock: Arc<dyn Clock>,
    delay: Duration,
}

impl CaptureProvider {
    /// A capture provider writing to `store`.
    pub fn new(store: Arc<dyn CaptureStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            delay: Duration::ZERO,
        }
    }

    /// Waits `delay` before each capture, to imitate a slow provider (`capture://?delay_ms=N`).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[async_trait]
impl Provider for CaptureProvider {
    fn name(&self) -> &str {
        "capture"
    }

    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let captured = CapturedMessage {
            message_id: message.id,
            environment_id: message.environment_id,
            content: message.content.clone(),
            captured_at: self.clock.now(),
        };
        self.store.capture(&captured).await.map_err(|e| {
            SendError::retryable(
                "capture_store_unavailable",
                format!("could not store the captured message: {e}"),
            )
        })?;
        Ok(SendReceipt {
            provider_message_id: Some(message.id.to_string()),
            final_delivery: true,
        })
    }

    async fn verify(&self) -> Result<VerifyReport, SendError> {
        Ok(VerifyReport {
            ok: true,
            checks: vec!["capture stores messages locally; nothing is sent".into()],
        })
    }
}

//! `capture://`: stores each delivered message in the database so it can be read back through
//! the API. The default provider of a fresh installation, and the one tests deliver through.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
};
use mailgate_core::store::{CaptureStore, CapturedMessage};
use mailgate_core::Clock;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{BuildContext, ConfigError};
use crate::dsn::Dsn;

/// `capture://[?delay_ms=N]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Wait this long before each capture, to imitate a slow provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl CaptureConfig {
    /// From a DSN.
    pub fn from_dsn(mut dsn: Dsn) -> Result<Self, ConfigError> {
        if dsn.host.is_some() || dsn.user.is_some() {
            return Err(ConfigError::invalid(
                "dsn",
                "capture:// takes no host or credentials",
            ));
        }
        let delay_ms = dsn.take_parsed::<u64>("delay_ms", "a whole number of milliseconds")?;
        dsn.finish()?;
        Ok(Self { delay_ms })
    }

    /// Nothing secret here.
    pub fn redacted(&self) -> Value {
        json!({ "delay_ms": self.delay_ms })
    }

    /// The provider.
    pub fn build(&self, ctx: &BuildContext) -> Arc<dyn Provider> {
        let p = CaptureProvider::new(ctx.capture_store.clone(), ctx.clock.clone());
        Arc::new(p.with_delay(Duration::from_millis(self.delay_ms.unwrap_or(0))))
    }
}

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
        Ok(VerifyReport::from_checks(vec![
            VerifyCheck::ok(
                CheckAspect::Connection,
                "capture stores messages locally; nothing is sent",
            ),
            VerifyCheck::skipped(CheckAspect::Credentials, "capture needs no credentials"),
            VerifyCheck::skipped(
                CheckAspect::Sender,
                "capture takes any sender: nothing leaves mailgate",
            ),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::provider::CheckStatus;
    use mailgate_core::store::StoreError;
    use mailgate_core::{EnvironmentId, SystemClock};

    struct Nowhere;

    #[async_trait]
    impl CaptureStore for Nowhere {
        async fn capture(&self, _: &CapturedMessage) -> Result<(), StoreError> {
            Ok(())
        }
        async fn list_captured(
            &self,
            _: &EnvironmentId,
            _: u32,
        ) -> Result<Vec<CapturedMessage>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn verify_has_nothing_to_fail() {
        let p = CaptureProvider::new(Arc::new(Nowhere), Arc::new(SystemClock));
        let report = p.verify().await.unwrap();
        assert!(report.ok);
        let statuses: Vec<(CheckAspect, CheckStatus)> =
            report.checks.iter().map(|c| (c.aspect, c.status)).collect();
        assert_eq!(
            statuses,
            [
                (CheckAspect::Connection, CheckStatus::Ok),
                (CheckAspect::Credentials, CheckStatus::Skipped),
                (CheckAspect::Sender, CheckStatus::Skipped),
            ]
        );
    }
}

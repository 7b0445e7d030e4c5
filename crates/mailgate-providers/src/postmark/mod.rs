//! Postmark provider. Placeholder: replaced by the Postmark work of issue 4.

use std::sync::Arc;

use mailgate_core::provider::Provider;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::ConfigError;
use crate::dsn::Dsn;

/// Postmark configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostmarkConfig {}

impl PostmarkConfig {
    /// From a DSN.
    pub fn from_dsn(_dsn: Dsn) -> Result<Self, ConfigError> {
        Err(ConfigError::UnknownType("postmark".into()))
    }

    /// Secrets masked.
    pub fn redacted(&self) -> Value {
        json!({})
    }

    /// The provider.
    pub async fn build(&self) -> Result<Arc<dyn Provider>, ConfigError> {
        Err(ConfigError::UnknownType("postmark".into()))
    }
}

//! mailgate's delivery providers, one module per provider. Each classifies its own failures
//! into retryable and permanent at this boundary; the retry policy lives in core.
//!
//! A provider is described by a `ProviderConfig` (from a DSN or JSON) and built from it.
#![forbid(unsafe_code)]

pub mod capture;
pub mod chain;
pub mod config;
pub mod dsn;
pub mod http;
pub mod mailgun;
pub mod outbound;
pub mod postmark;
pub mod registry;
pub mod reply_text;
pub mod resend;
pub mod secrets;
pub mod sendgrid;
pub mod ses;
pub mod smtp;
mod verify;
pub mod webhook;

pub use capture::CaptureProvider;
pub use chain::{ChainConfig, MemberConfig};
pub use config::{BuildContext, ConfigError, ProviderConfig};
pub use dsn::Dsn;
pub use registry::{ProviderRegistry, ProviderSource, ProviderView, RegistryError};
pub use secrets::{SecretError, SecretKey};
pub use webhook::{WebhookError, WebhookOutcome, WebhookRequest, WebhookVerifier};

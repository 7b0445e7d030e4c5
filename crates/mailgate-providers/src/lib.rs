//! mailgate's delivery providers, one module per provider. Each classifies its own failures
//! into retryable and permanent at this boundary; the retry policy lives in core.
//!
//! Today: `capture` (the built-in default) and the DSN parser that selects a provider.
#![forbid(unsafe_code)]

pub mod capture;
pub mod dsn;

pub use capture::CaptureProvider;
pub use dsn::{build_provider, Dsn, DsnError};

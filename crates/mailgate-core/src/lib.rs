//! Domain core of mailgate: validated types, the send service, the dispatcher loop and the traits
//! (storage, providers, clock) through which every piece of I/O happens.
//!
//! Architecture invariant: this crate knows nothing of HTTP, SQL or provider wire formats.
#![forbid(unsafe_code)]

pub mod address;
pub mod apikey;
pub mod dispatcher;
pub mod environment;
pub mod event;
pub mod feeds;
pub mod ids;
pub mod inbound;
pub mod ingest;
pub mod limits;
pub mod message;
pub mod notify;
pub mod provider;
pub mod redact;
pub mod reputation;
pub mod retry;
pub mod routing;
pub mod send;
pub mod settings;
pub mod store;
pub mod suppression;
pub mod template;
pub mod time;
pub mod validation;

pub use address::{EmailAddress, Mailbox};
pub use ids::{ApiKeyId, EnvironmentId, EventId, MessageId};
pub use time::{Clock, SystemClock, Timestamp};
pub use validation::FieldError;

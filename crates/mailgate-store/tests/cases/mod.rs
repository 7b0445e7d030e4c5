//! The contract test bodies, each `async fn(Database)`.

pub mod accounts;
pub mod events;
pub mod inbound;
pub mod limits;
pub mod messages;
pub mod queue;
pub mod templates;

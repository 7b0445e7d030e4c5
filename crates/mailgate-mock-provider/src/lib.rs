//! A mock email provider for mailgate's benchmarks and reliability tests.
//!
//! It serves the send endpoints of SES v2 (`POST /v2/email/outbound-emails`, plus
//! `GET /v2/email/account`), Mailgun (`POST /v3/{domain}/messages`), Postmark (`POST /email`,
//! `/email/batch`), Resend (`POST /emails`, `/emails/batch`) and SendGrid (`POST /v3/mail/send`)
//! with each provider's success shape, applies a latency distribution, a fault mix and a rate
//! limit ([`Behavior`]), and counts per mailgate message id how often it was requested and
//! accepted ([`StatsSnapshot`]): losses are the accepted ids it never answered with a 2xx,
//! duplicates the 2xx answers beyond the first.
//!
//! Use it as a binary (`mailgate-mock-provider --help`) or in-process from tests ([`spawn`]).
#![forbid(unsafe_code)]

pub mod behavior;
mod ids;
mod providers;
mod server;
pub mod smtp;
mod stats;

pub use behavior::{Behavior, Faults, Latency};
pub use server::{spawn, MockHandle};
pub use stats::{Stats, StatsSnapshot};

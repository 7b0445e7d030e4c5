//! Real third-party peers started on loopback for provider tests, each stopped when dropped.

pub mod moto;
pub mod prism;
pub mod smtp;

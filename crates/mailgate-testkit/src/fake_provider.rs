//! The scripted fake provider.

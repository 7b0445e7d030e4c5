//! Per-test databases (written by the store work).

//! The error every parser at the edge returns: a stable code, a message for people, and the path
//! of the field that was refused.

use serde::Serialize;

/// A refused input value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Stable snake_case code, e.g. `invalid_address`.
    pub code: &'static str,
    /// What is wrong, in words.
    pub message: String,
    /// Path of the offending field, e.g. `to[1]`.
    pub field: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: field.into(),
        }
    }

    /// The same error, re-rooted under a parent path (`to` + `[1]` style paths are given whole).
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

/// Refuses CR, LF and other control characters in a value that ends up in a header.
pub fn check_header_value(field: &str, value: &str) -> Result<(), FieldError> {
    if value.chars().any(|c| c == '\r' || c == '\n') {
        return Err(FieldError::new(
            "header_injection",
            field,
            "line breaks (CR or LF) are not allowed in header values",
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(FieldError::new(
            "invalid_characters",
            field,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

//! `ApiError`: the one error type at the HTTP edge. Every failure becomes
//! `{"error": {"code", "message", "field"}}` with a stable snake_case code and the right status;
//! 5xx bodies carry no internals, and their cause chain is logged once, here.

use std::borrow::Cow;
use std::error::Error as StdError;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mailgate_core::send::SendServiceError;
use mailgate_core::store::StoreError;
use mailgate_core::FieldError;
use serde::Serialize;

/// An error answered to an API caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    field: Option<String>,
    details: Option<serde_json::Value>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl ApiError {
    /// An error with a status, a code and a message for people.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            details: None,
            source: None,
        }
    }

    /// The same error with machine-readable details (e.g. a suppression's reason and date).
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The same error, naming the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The path of the offending field, if any.
    pub fn field_path(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// 401: no key, a malformed key or an unknown key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer KEY",
        )
    }

    /// 403: the key belongs to another environment.
    pub fn forbidden_environment() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden_environment",
            "this key may not act on that environment",
        )
    }

    /// 403: the operation needs an admin key.
    pub fn admin_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "admin_required",
            "this operation needs an admin key",
        )
    }

    /// 404: nothing here (or nothing this key may see).
    pub fn not_found(what: &'static str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 400: the body is not JSON.
    pub fn invalid_json(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    /// 413: the request body is larger than the server accepts.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {limit} bytes"),
        )
    }

    /// 422 (or 413 for size limits) from a refused input value.
    pub fn field(err: FieldError) -> Self {
        let status = match err.code {
            "body_too_large" | "attachments_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self {
            status,
            code: err.code,
            message: err.message.into(),
            field: Some(err.field),
            details: None,
            source: None,
        }
    }

    /// 503 (or 500 for corrupt data) from a storage failure; the cause is logged, not shown.
    pub fn store(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(_) => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the resource already exists",
            ),
            StoreError::Corrupt(_) => Self {
                source: Some(Box::new(err)),
                ..Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred",
                )
            },
            StoreError::Unavailable(_) => Self {
                source: Some(Box::new(err)),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is temporarily unavailable",
                )
            },
        }
    }

    /// A generic error for a bare status (unknown routes, timeouts, layers that answer alone).
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this method is not allowed on this route",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::REQUEST_TIMEOUT
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ("timeout", "the request took too long"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "the body must be application/json",
            ),
            s if s.is_server_error() => ("internal_error", "an internal error occurred"),
            _ => ("bad_request", "the request could not be handled"),
        };
        Self::new(status, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        Self::field(err)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::store(err)
    }
}

impl From<SendServiceError> for ApiError {
    fn from(err: SendServiceError) -> Self {
        match err {
            SendServiceError::Invalid(e) => Self::field(e),
            SendServiceError::IdempotencyConflict(_) => Self::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "this Idempotency-Key was already used with a different request",
            )
            .with_field("Idempotency-Key"),
            SendServiceError::Suppressed { field, suppression } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "recipient_suppressed",
                format!(
                    "{field} is on this environment's suppression list (reason: {}, since {}); remove it with DELETE /v1/environments/{{env}}/suppressions/{{address}} to send again",
                    suppression.reason.as_str(),
                    suppression.created_at.to_rfc3339()
                ),
            )
            .with_field(field)
            .with_details(serde_json::json!({
                "reason": suppression.reason,
                "suppressed_at": suppression.created_at.to_rfc3339(),
            })),
            SendServiceError::RecipientRateLimited { field, retry_after } => {
                let secs = retry_after.as_secs_f64().ceil() as u64;
                Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "recipient_rate_limited",
                    format!(
                        "{field} has received as many messages as this environment allows in its window (recipient_rate_limit); try again in {secs} s"
                    ),
                )
                .with_field(field)
                .with_details(serde_json::json!({ "retry_after_seconds": secs }))
            }
            SendServiceError::Store(e) => Self::store(e),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

/// Formats an error's cause chain for the log, outermost first.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(code = self.code, error = %chain(source.as_ref()), "request failed");
        }
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                details: self.details.as_ref(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        // A 429 says when to come back, in the header as well as the body.
        let retry_after = self
            .details
            .as_ref()
            .and_then(|d| d.get("retry_after_seconds"))
            .and_then(serde_json::Value::as_u64)
            .filter(|_| self.status == StatusCode::TOO_MANY_REQUESTS);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

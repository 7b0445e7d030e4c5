//! JSON request bodies, parsed by hand so that every error names its field: `JsonBody` buffers
//! the body (within the size limit) and parses it to a `serde_json::Value`; [`parse`] turns that
//! value into a DTO with `serde_path_to_error`.
//!
//! Content types: a missing `Content-Type` is accepted as JSON (curl-friendly); anything other
//! than `application/json` or `application/*+json` is refused with 415 `unsupported_media_type`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// A request body that is syntactically valid JSON.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            let mime = ct
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if mime != "application/json"
                && !(mime.starts_with("application/") && mime.ends_with("+json"))
            {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "request bodies must be application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(state.config.max_request_bytes)
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the request body could not be read",
                )
            }
        })?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid_json(format!("the body is not valid JSON: {e}")))?;
        Ok(Self(value))
    }
}

/// Deserializes a DTO from a parsed body. Unknown fields → 422 `unknown_field`, missing required
/// fields → 422 `missing_field`, wrong types → 422 `invalid_field`; each with the field's path.
pub fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        let (code, field) = if let Some(name) = quoted_after(&message, "unknown field `") {
            // The path usually ends at the unknown key already; make sure it does.
            let field = if path.ends_with(name) {
                path.clone()
            } else {
                join(&path, name)
            };
            ("unknown_field", field)
        } else if let Some(name) = quoted_after(&message, "missing field `") {
            ("missing_field", join(&path, name))
        } else {
            ("invalid_field", path)
        };
        let field = if field == "." { String::new() } else { field };
        let message = message
            .split(", expected one of")
            .next()
            .unwrap_or(&message)
            .to_owned();
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
    })
}

/// The text between `prefix` and the next backtick.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() || path == "." {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: Option<String>,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: String,
    }

    #[test]
    fn errors_name_their_field() {
        let e = parse::<Outer>(&json!({"nme": "x"})).unwrap_err();
        assert_eq!((e.code(), e.status().as_u16()), ("unknown_field", 422));
        assert_eq!(e.field_path(), Some("nme"));
        let e = parse::<Outer>(&json!({"items": [{"a": "x"}, {"a": 1}]})).unwrap_err();
        assert_eq!(e.code(), "invalid_field");
        assert_eq!(e.field_path(), Some("items[1].a"));
        let e = parse::<Outer>(&json!({"items": [{}]})).unwrap_err();
        assert_eq!(e.code(), "missing_field");
        assert_eq!(e.field_path(), Some("items[0].a"));
        let e = parse::<Outer>(&json!({"items": [{"a": "x", "b": 1}]})).unwrap_err();
        assert_eq!(e.code(), "unknown_field");
        assert_eq!(e.field_path(), Some("items[0].b"));
    }
}

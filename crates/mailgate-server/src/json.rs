//! JSON request bodies, parsed by hand so that every error names its field: `JsonBody` buffers
//! the body (within the size limit) and parses it to a `serde_json::Value`; [`parse`] turns that
//! value into a DTO with `serde_path_to_error`. The send path, which runs on every message, takes
//! the buffered bytes (`JsonBytes`) and [`from_bytes`] parses them straight into its DTO, going
//! through the `Value` only when that fails, so that its errors are exactly those of the two
//! steps.
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
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        Ok(Self(to_value(&bytes)?))
    }
}

/// A request body declared as JSON (or undeclared) and within the size limit, not parsed yet.
#[derive(Debug, Clone)]
pub struct JsonBytes(pub Bytes);

impl FromRequest<AppState> for JsonBytes {
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
        Ok(Self(bytes))
    }
}

/// Parses a body to a `Value`: 400 `invalid_json` when it is not JSON.
pub fn to_value(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_json(format!("the body is not valid JSON: {e}")))
}

/// Parses a body straight into a DTO. Its result is [`to_value`] then [`parse`]'s, whatever the
/// body: a body that does not parse directly (invalid JSON, a wrong field, but also a duplicate
/// key, which the direct parse refuses and a `Value` keeps the last of) takes those two steps.
/// Skipping the `Value` on the way that succeeds saves a tree of allocations per send.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => parse(&to_value(bytes)?),
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

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: Option<String>,
        #[serde(default)]
        items: Vec<Inner>,
        data: Option<serde_json::Map<String, Value>>,
        n: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: String,
    }

    /// `from_bytes` against the two steps it stands for: the same DTO, or the same error (status,
    /// code, field and message).
    #[test]
    fn the_direct_parse_answers_as_the_two_steps() {
        let deep = format!(
            "{{\"data\": {{\"k\": {}1{}}}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let bodies: &[&str] = &[
            r#"{"name": "x", "items": [{"a": "b"}], "data": {"k": [1, {"z": null}]}, "n": 7}"#,
            r#"{}"#,
            r#"{"name": null}"#,
            // A duplicate key: refused by the direct parse, the last kept by a `Value`.
            r#"{"name": "first", "name": "second"}"#,
            r#"{"data": {"k": 1, "k": 2}}"#,
            r#"{"nme": "x"}"#,
            r#"{"items": [{"a": "x"}, {"a": 1}]}"#,
            r#"{"items": [{}]}"#,
            r#"{"n": -1}"#,
            r#"{"n": 1e2}"#,
            r#"{"n": 4294967296}"#,
            r#"{"nme": "x", "#,
            r#"{"name": "x"} trailing"#,
            r#"{"name": "\ud800"}"#,
            r#"[1, 2]"#,
            r#"null"#,
            "",
            &deep,
        ];
        for body in bodies {
            let direct = from_bytes::<Outer>(body.as_bytes());
            let steps = to_value(body.as_bytes()).and_then(|v| parse::<Outer>(&v));
            match (direct, steps) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{body}"),
                (Err(a), Err(b)) => assert_eq!(
                    (a.status(), a.code(), a.field_path(), a.to_string()),
                    (b.status(), b.code(), b.field_path(), b.to_string()),
                    "{body}"
                ),
                (a, b) => panic!("{body}: {a:?} against {b:?}"),
            }
        }
        // And they are not all alike: the table holds successes and each kind of error.
        let codes: Vec<_> = bodies
            .iter()
            .map(|b| from_bytes::<Outer>(b.as_bytes()).err().map(|e| e.code()))
            .collect();
        for code in [
            None,
            Some("invalid_json"),
            Some("unknown_field"),
            Some("invalid_field"),
            Some("missing_field"),
        ] {
            assert!(codes.contains(&code), "no case gives {code:?}");
        }
        let dup = from_bytes::<Outer>(br#"{"name": "first", "name": "second"}"#).unwrap();
        assert_eq!(dup.name.as_deref(), Some("second"));
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

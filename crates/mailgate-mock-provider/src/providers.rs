//! Each provider's wire shapes: where its messages are in a request, and its success and fault
//! answers (bodies and headers as `reference/providers.md` describes them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::behavior::Fault;
use crate::ids;

/// The imitated provider of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ses,
    Mailgun,
    Postmark,
    Resend,
    SendGrid,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh provider message id body: 32 hex digits, unique per process.
fn fresh_hex() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{:016x}", rand::random::<u64>(), n)
}

fn uuid_like() -> String {
    let h = fresh_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An SES message id in SES's shape: `0100`, the send time in milliseconds as 12 hex digits, a
/// UUID, `-000000` (`0100018f0000abcd-…-000000`). The time prefix matters to a benchmark: the
/// gateway indexes provider message ids, and SES's sort by send time, so each new one lands
/// near the last rather than at a random place in the index.
fn ses_message_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("0100{ms:012x}-{}-000000", uuid_like())
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The messages of one request: one per message, `None` where no id was found. `batch` is true
/// when the request was a JSON array (Postmark `/email/batch`, Resend `/emails/batch`).
pub struct Parsed {
    pub ids: Vec<Option<String>>,
    pub batch: bool,
}

/// Reads the message ids out of a request body.
pub fn parse(kind: Kind, headers: &HeaderMap, body: &[u8]) -> Parsed {
    if kind == Kind::Mailgun {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let fields = if ct.starts_with("multipart/") {
            ids::multipart_fields(ct, body)
        } else {
            ids::urlencoded_fields(body)
        };
        return Parsed {
            ids: vec![ids::from_form(&fields)],
            batch: false,
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => Parsed {
            ids: items.iter().map(ids::from_json).collect(),
            batch: true,
        },
        Ok(v) => Parsed {
            ids: vec![ids::from_json(&v)],
            batch: false,
        },
        Err(_) => Parsed {
            ids: vec![None],
            batch: false,
        },
    }
}

/// The provider's success answer for `n` messages.
pub fn success(kind: Kind, n: usize, batch: bool) -> Response {
    match kind {
        Kind::Ses => Json200(json!({ "MessageId": ses_message_id() })).into_response(),
        Kind::Mailgun => Json200(json!({
            "id": format!("<{}@mock.mailgun.example>", fresh_hex()),
            "message": "Queued. Thank you."
        }))
        .into_response(),
        Kind::Postmark => {
            let one = || {
                json!({"To": "recipient@example.com", "SubmittedAt": "2024-01-01T00:00:00Z",
                       "MessageID": uuid_like(), "ErrorCode": 0, "Message": "OK"})
            };
            if batch {
                Json200(Value::Array((0..n).map(|_| one()).collect())).into_response()
            } else {
                Json200(one()).into_response()
            }
        }
        Kind::Resend => {
            if batch {
                Json200(json!({ "data": (0..n).map(|_| json!({"id": uuid_like()})).collect::<Vec<_>>() }))
                    .into_response()
            } else {
                Json200(json!({ "id": uuid_like() })).into_response()
            }
        }
        Kind::SendGrid => {
            let mut r = StatusCode::ACCEPTED.into_response();
            r.headers_mut().insert(
                "x-message-id",
                HeaderValue::from_str(&fresh_hex()[..22]).expect("hex is a valid header"),
            );
            r
        }
    }
}

struct Json200(Value);

impl IntoResponse for Json200 {
    fn into_response(self) -> Response {
        (StatusCode::OK, axum::Json(self.0)).into_response()
    }
}

fn with_headers(status: StatusCode, body: Value, headers: &[(&'static str, String)]) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

/// The provider's answer for a fault other than a reset.
pub fn fault(kind: Kind, fault: Fault) -> Response {
    let reset_at = (epoch_secs() + 1).to_string();
    match (kind, fault) {
        (_, Fault::Reset) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        (Kind::Ses, f) => {
            let (status, ty, msg) = match f {
                Fault::Throttled => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    "Maximum sending rate exceeded.",
                ),
                Fault::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Service Unavailable",
                ),
                Fault::Internal => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    "Internal failure",
                ),
                _ => (
                    StatusCode::BAD_REQUEST,
                    "MessageRejected",
                    "Email address is not verified.",
                ),
            };
            with_headers(
                status,
                json!({ "message": msg }),
                &[(
                    "x-amzn-errortype",
                    format!("{ty}:http://internal.amazon.com/"),
                )],
            )
        }
        (Kind::Mailgun, Fault::Throttled) => with_headers(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"message": "Domain mock.example is not allowed to send: account-requests-per-sec limit exceeded, try again after 1 seconds"}),
            &[("x-ratelimit-reset", reset_at)],
        ),
        (Kind::Postmark, Fault::Throttled) => with_headers(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"ErrorCode": 429, "Message": "Rate limit exceeded."}),
            &[],
        ),
        (Kind::Postmark, Fault::Rejected) => with_headers(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as inactive."}),
            &[],
        ),
        (Kind::Resend, Fault::Throttled) => with_headers(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests. You can only make 2 requests per second."}),
            &[
                ("ratelimit-limit", "2".into()),
                ("ratelimit-remaining", "0".into()),
                ("ratelimit-reset", "1".into()),
                ("retry-after", "1".into()),
            ],
        ),
        (Kind::Resend, Fault::Rejected) => with_headers(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"statusCode": 422, "name": "validation_error", "message": "Invalid `to` field."}),
            &[],
        ),
        (Kind::SendGrid, Fault::Throttled) => with_headers(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"errors": [{"message": "too many requests", "field": null}]}),
            &[
                ("x-ratelimit-limit", "600".into()),
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset_at),
            ],
        ),
        (Kind::SendGrid, Fault::Rejected) => with_headers(
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"message": "The from email does not contain a valid address.", "field": "from.email"}]}),
            &[],
        ),
        (Kind::Mailgun, Fault::Rejected) => with_headers(
            StatusCode::BAD_REQUEST,
            json!({"message": "to parameter is not a valid address. please check documentation"}),
            &[],
        ),
        (_, Fault::Unavailable) => with_headers(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "Service Unavailable"}),
            &[],
        ),
        (_, _) => with_headers(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "Internal Server Error"}),
            &[],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SES ids carry their send time after `0100`, so they sort by time as SES's do.
    #[test]
    fn ses_ids_have_the_shape_and_order_of_real_ones() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let first = ses_message_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = ses_message_id();
        for id in [&first, &second] {
            assert!(id.starts_with("0100") && id.ends_with("-000000"), "{id}");
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [16, 8, 4, 4, 4, 12, 6],
                "{id}"
            );
            let ms = u128::from_str_radix(&parts[0][4..], 16).unwrap();
            assert!(ms >= before && ms < before + 60_000, "{id}");
        }
        assert!(first < second, "{first} then {second}");
        assert_ne!(first[17..], second[17..]);
    }
}

//! What the HTTP API providers (Mailgun, Postmark, Resend, SendGrid) share: one reqwest client
//! setup, transport-error and status classification, rate-limit header parsing, and the merge of
//! a message's `provider_options` into the provider's request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailgate_core::provider::SendError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

use crate::config::ConfigError;

/// A client with rustls, the given timeout and mailgate's user agent.
pub fn client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .user_agent(concat!("mailgate/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| ConfigError::invalid("http", format!("cannot build the HTTP client: {e}")))
}

/// Checks an `endpoint=` override: an absolute http(s) URL; returned without a trailing slash.
pub fn endpoint(value: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(value)
        .map_err(|_| ConfigError::invalid("endpoint", "must be an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(
            "endpoint",
            "must be an http:// or https:// URL",
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// A failure before any HTTP status arrived: always worth retrying. The message names the host,
/// never the URL's query or credentials.
pub fn transport_error(provider: &str, err: &reqwest::Error) -> SendError {
    let host = err
        .url()
        .and_then(|u| u.host_str())
        .unwrap_or("the provider")
        .to_owned();
    let (code, what) = if err.is_timeout() {
        (
            "timeout",
            format!("{provider} at {host} did not answer in time"),
        )
    } else if err.is_connect() {
        ("connect", format!("cannot connect to {provider} at {host}"))
    } else {
        (
            "transport",
            format!("the request to {provider} at {host} failed before an answer"),
        )
    };
    SendError::retryable(code, what)
}

/// The delay a 429 or 503 asks for: `Retry-After` (seconds or an HTTP date), else
/// `ratelimit-reset` (seconds, Resend), else `X-RateLimit-Reset` (Unix time, possibly fractional:
/// Mailgun, SendGrid).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return seconds(secs);
        }
        if let Ok(at) = httpdate(v) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    if let Some(secs) = get("ratelimit-reset").and_then(|v| v.parse::<f64>().ok()) {
        return seconds(secs);
    }
    if let Some(epoch) = get("x-ratelimit-reset").and_then(|v| v.parse::<f64>().ok()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        return seconds(epoch - now);
    }
    None
}

fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

fn httpdate(s: &str) -> Result<SystemTime, ()> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(s, &format).map_err(|_| ())?;
    let secs = t.assume_utc().unix_timestamp();
    u64::try_from(secs)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| ())
}

/// The default classification of an HTTP status: 408, 429 and 5xx are retryable (with the
/// delay the headers ask for); 401 and 403 mean the provider refuses our credentials, so it is
/// unusable until its operator acts; everything else is a permanent refusal of the message.
/// Providers refine it (Resend's quotas, Postmark's error codes) before falling back to this.
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    code: String,
    message: String,
) -> SendError {
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        SendError::Retryable {
            code,
            message,
            retry_after: retry_after(headers),
        }
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        SendError::Unusable { code, message }
    } else {
        SendError::Permanent { code, message }
    }
}

/// Merges `overrides` into `base`: objects merge key by key (recursively), anything else
/// replaces. This is how a message's `provider_options` reach the provider's request.
pub fn merge_json(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge_json(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn reads_every_rate_limit_header_form() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("ratelimit-reset", "2")])),
            Some(Duration::from_secs(2))
        );
        let soon = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + 30.5;
        let d = retry_after(&headers(&[("x-ratelimit-reset", &format!("{soon}"))])).unwrap();
        assert!(
            d > Duration::from_secs(29) && d <= Duration::from_secs(31),
            "{d:?}"
        );
        let d = retry_after(&headers(&[(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        )]))
        .unwrap();
        assert_eq!(d, Duration::ZERO, "a date in the past means now");
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn classifies_statuses() {
        let h = headers(&[("retry-after", "3")]);
        for s in [429, 500, 502, 503, 504, 408] {
            let e = classify_status(StatusCode::from_u16(s).unwrap(), &h, "c".into(), "m".into());
            assert!(e.is_retryable(), "{s}");
        }
        for s in [400, 402, 404, 413, 422] {
            let e = classify_status(StatusCode::from_u16(s).unwrap(), &h, "c".into(), "m".into());
            assert!(matches!(e, SendError::Permanent { .. }), "{s}: {e:?}");
        }
        for s in [401, 403] {
            let e = classify_status(StatusCode::from_u16(s).unwrap(), &h, "c".into(), "m".into());
            assert!(matches!(e, SendError::Unusable { .. }), "{s}: {e:?}");
        }
    }

    #[test]
    fn merges_options_deeply() {
        let mut base = json!({"a": 1, "o": {"x": 1, "y": 2}, "l": [1]});
        merge_json(
            &mut base,
            &json!({"o": {"y": 3, "z": 4}, "l": [2], "n": null}),
        );
        assert_eq!(
            base,
            json!({"a": 1, "o": {"x": 1, "y": 3, "z": 4}, "l": [2], "n": null})
        );
    }
}

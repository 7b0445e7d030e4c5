//! Secret redaction: after a message reaches a final state, every occurrence of its secret data
//! values (sign-in codes, magic links) in its stored content is replaced with `[redacted]`.
//! The store applies it in the transaction that records the final state.

use serde_json::{Map, Value};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Shorter values are not treated as secrets: redacting them would garble the whole message.
pub const MIN_SECRET_CHARS: usize = 4;

/// The strings to redact for `data`: each secret field's value as given and as it appears
/// HTML-escaped in an `html` body. Values are strings or numbers; others are ignored.
pub fn secret_values(data: &Map<String, Value>, secret_fields: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for field in secret_fields {
        let raw = match data.get(field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        if raw.chars().count() < MIN_SECRET_CHARS {
            continue;
        }
        let escaped = minijinja::HtmlEscape(&raw).to_string();
        for v in [raw, escaped] {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    // Longest first, so that a value containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// Replaces every occurrence of every secret in every string of `value`; returns whether
/// anything changed.
pub fn redact(value: &mut Value, secrets: &[String]) -> bool {
    match value {
        Value::String(s) => {
            let mut changed = false;
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), REDACTED);
                    changed = true;
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, v| redact(v, secrets) | acc),
        Value::Object(map) => redact_map(map, secrets),
        _ => false,
    }
}

fn redact_map(map: &mut Map<String, Value>, secrets: &[String]) -> bool {
    map.values_mut()
        .fold(false, |acc, v| redact(v, secrets) | acc)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redacts_raw_and_escaped_values_everywhere() {
        let data = json!({"code": 123456, "link": "https://x.example/a?t=1&u=2", "name": "Ann"});
        let fields = ["code", "link", "name2"].map(String::from).to_vec();
        let secrets = secret_values(data.as_object().unwrap(), &fields);
        let mut content = json!({
            "subject": "Code 123456",
            "text": "Open https://x.example/a?t=1&u=2",
            "html": "<a href=\"https:&#x2f;&#x2f;x.example&#x2f;a?t=1&amp;u=2\">go</a> 123456",
            "to": [{"email": "ann@example.com"}],
        });
        assert!(redact(&mut content, &secrets));
        let s = content.to_string();
        assert!(!s.contains("123456") && !s.contains("x.example"), "{s}");
        assert_eq!(content["subject"], "Code [redacted]");
        assert!(!redact(&mut content, &secrets));
    }

    #[test]
    fn short_values_are_not_secrets() {
        let data = json!({"code": "12"});
        assert!(secret_values(data.as_object().unwrap(), &["code".into()]).is_empty());
    }
}

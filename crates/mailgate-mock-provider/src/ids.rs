//! Finding mailgate's message id in a provider request.
//!
//! In order: a `mailgate_message_id` entry anywhere in a JSON body (SES `EmailTags` as
//! `{"Name", "Value"}`, Postmark `Metadata`, Resend `tags` as `{"name", "value"}`, SendGrid
//! `custom_args`) or a Mailgun `v:mailgate_message_id` field; an `X-Mailgate-Message-Id` header
//! of the message; else the subject (`subject:…`), which load generators make unique.

use serde_json::Value;

const KEYS: [&str; 2] = ["mailgate_message_id", "x-mailgate-message-id"];

/// The id in a JSON message object.
pub fn from_json(v: &Value) -> Option<String> {
    find_tagged(v).or_else(|| find_subject(v).map(|s| format!("subject:{s}")))
}

fn is_key(k: &str) -> bool {
    KEYS.iter().any(|key| k.eq_ignore_ascii_case(key))
}

fn find_tagged(v: &Value) -> Option<String> {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if is_key(k) {
                    if let Some(s) = v.as_str() {
                        return Some(s.to_owned());
                    }
                }
            }
            // `{"Name": "mailgate_message_id", "Value": "msg_…"}` and its lowercase form.
            let name = map.get("Name").or_else(|| map.get("name"));
            if name.and_then(Value::as_str).is_some_and(is_key) {
                if let Some(s) = map.get("Value").or_else(|| map.get("value")) {
                    return s.as_str().map(str::to_owned);
                }
            }
            map.values().find_map(find_tagged)
        }
        Value::Array(items) => items.iter().find_map(find_tagged),
        _ => None,
    }
}

fn find_subject(v: &Value) -> Option<String> {
    let map = v.as_object()?;
    for (k, v) in map {
        if k.eq_ignore_ascii_case("subject") {
            match v {
                Value::String(s) => return Some(s.clone()),
                // SES: `"Subject": {"Data": "…"}`.
                Value::Object(o) => {
                    if let Some(s) = o.get("Data").and_then(Value::as_str) {
                        return Some(s.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    map.values()
        .filter(|v| v.is_object())
        .find_map(find_subject)
}

/// The id in a Mailgun form (multipart or URL-encoded) given as `(name, value)` fields.
pub fn from_form(fields: &[(String, String)]) -> Option<String> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    get("v:mailgate_message_id")
        .or_else(|| get("h:X-Mailgate-Message-Id"))
        .or_else(|| get("subject").map(|s| format!("subject:{s}")))
}

/// The text fields of a multipart/form-data body (file parts are skipped).
pub fn multipart_fields(content_type: &str, body: &[u8]) -> Vec<(String, String)> {
    let Some(boundary) = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
    else {
        return Vec::new();
    };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let body = String::from_utf8_lossy(body);
    body.split(delimiter.as_str())
        .filter_map(|part| {
            let part = part.strip_prefix("\r\n")?;
            let (head, value) = part.split_once("\r\n\r\n")?;
            if head.contains("filename=") {
                return None;
            }
            let name = head
                .split(';')
                .find_map(|p| p.trim().strip_prefix("name="))?
                .split("\r\n")
                .next()?
                .trim_matches('"')
                .to_owned();
            Some((name, value.strip_suffix("\r\n").unwrap_or(value).to_owned()))
        })
        .collect()
}

/// The fields of an application/x-www-form-urlencoded body.
pub fn urlencoded_fields(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_id_in_each_provider_shape() {
        let ses = json!({"Content": {"Simple": {"Subject": {"Data": "hi"}}},
            "EmailTags": [{"Name": "env", "Value": "x"}, {"Name": "mailgate_message_id", "Value": "msg_1"}]});
        assert_eq!(from_json(&ses).as_deref(), Some("msg_1"));
        let postmark = json!({"Subject": "hi", "Metadata": {"mailgate_message_id": "msg_2"}});
        assert_eq!(from_json(&postmark).as_deref(), Some("msg_2"));
        let resend =
            json!({"subject": "hi", "tags": [{"name": "mailgate_message_id", "value": "msg_3"}]});
        assert_eq!(from_json(&resend).as_deref(), Some("msg_3"));
        let sendgrid = json!({"personalizations": [{"to": []}], "custom_args": {"mailgate_message_id": "msg_4"}});
        assert_eq!(from_json(&sendgrid).as_deref(), Some("msg_4"));
        let plain = json!({"Content": {"Simple": {"Subject": {"Data": "bench 17"}}}});
        assert_eq!(from_json(&plain).as_deref(), Some("subject:bench 17"));
    }

    #[test]
    fn reads_mailgun_forms() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\na@b.c\r\n--XyZ\r\nContent-Disposition: form-data; name=\"v:mailgate_message_id\"\r\n\r\nmsg_5\r\n--XyZ\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"a.txt\"\r\n\r\nfile\r\n--XyZ--\r\n";
        let fields = multipart_fields("multipart/form-data; boundary=XyZ", body);
        assert_eq!(fields.len(), 2);
        assert_eq!(from_form(&fields).as_deref(), Some("msg_5"));
        let fields = urlencoded_fields(b"from=a%40b.c&subject=hello+world%21");
        assert_eq!(fields[0].1, "a@b.c");
        assert_eq!(from_form(&fields).as_deref(), Some("subject:hello world!"));
    }
}

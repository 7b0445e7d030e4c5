//! Oversize requests and contents.

use reqwest::Method;
use serde_json::{json, Value};

use super::{email, with, Auth, Case, Rng, MAX_ATTACHMENT, MAX_ATTACHMENTS, MAX_BODY, MAX_REQUEST};

fn b64_of(bytes: usize) -> String {
    "AAAA".repeat(bytes.div_ceil(3))
}

pub(super) fn oversize(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "oversize";
    for _ in 0..200 {
        let case = match r.below(12) {
            0 | 1 => {
                let n = r.range(MAX_REQUEST + 1, 8 * MAX_REQUEST);
                let field = *r.pick(&["text", "html", "subject"]);
                Case::send(F, format!("{n}-byte {field}"), &with(email(), field, "x".repeat(n).into()))
                    .expect(413, "payload_too_large")
            }
            2 => {
                let n = r.range(MAX_REQUEST, 4 * MAX_REQUEST);
                Case::send(
                    F,
                    format!("{n}-byte attachment in a too-large request"),
                    &with(email(), "attachments", json!([{"filename": "big.bin", "content": b64_of(n)}])),
                )
                .expect(413, "payload_too_large")
            }
            3 => {
                let provider = *r.pick(&["mailgun", "postmark", "resend", "sendgrid", "ses"]);
                let n = r.range(MAX_REQUEST + 1, 4 * MAX_REQUEST);
                Case::hook(F, format!("{n}-byte {provider} webhook"), "hooks", provider)
                    .raw(vec![b'['; n])
                    .expect(413, "payload_too_large")
            }
            4 => {
                let n = r.range(MAX_REQUEST + 1, 3 * MAX_REQUEST);
                Case::new(F, "template too large", Method::PUT, "/v1/environments/default/templates/Big")
                    .json(&json!({"subject": "s", "text": "x".repeat(n)}))
                    .expect(413, "payload_too_large")
            }
            5 => {
                let n = r.range(MAX_REQUEST + 1, 3 * MAX_REQUEST);
                Case::new(F, "provider config too large", Method::PUT, "/v1/environments/default/provider")
                    .auth(Auth::Admin)
                    .json(&json!({"dsn": format!("capture://?delay_ms={}", "1".repeat(n))}))
                    .expect(413, "payload_too_large")
            }
            6 => {
                let n = r.range(MAX_BODY + 1, MAX_REQUEST - 2048);
                let field = *r.pick(&["text", "html"]);
                Case::send(F, format!("{n}-byte {field} over max_body_bytes"), &with(email(), field, "y".repeat(n).into()))
                    .expect(413, "body_too_large")
                    .field("html")
            }
            7 => {
                let n = r.range(MAX_ATTACHMENT + 1, 3 * MAX_ATTACHMENT);
                let parts = r.range(1, MAX_ATTACHMENTS);
                let each = n.div_ceil(parts);
                let atts: Vec<Value> = (0..parts)
                    .map(|i| json!({"filename": format!("f{i}.bin"), "content": b64_of(each)}))
                    .collect();
                Case::send(F, format!("{parts} attachments of {each} bytes"), &with(email(), "attachments", atts.into()))
                    .expect(413, "attachments_too_large")
                    .field("attachments")
            }
            8 => {
                let parts = r.range(MAX_ATTACHMENTS + 1, 40);
                let atts: Vec<Value> = (0..parts)
                    .map(|i| json!({"filename": format!("f{i}.txt"), "content": "aGk="}))
                    .collect();
                Case::send(F, format!("{parts} attachments"), &with(email(), "attachments", atts.into()))
                    .expect(422, "too_many_attachments")
                    .field("attachments")
            }
            9 => {
                let n = r.range(51, 300);
                let field = *r.pick(&["to", "cc", "bcc"]);
                let rcpts: Vec<Value> = (0..n).map(|i| format!("r{i}@example.com").into()).collect();
                Case::send(F, format!("{n} recipients in {field}"), &with(email(), field, rcpts.into()))
                    .expect(422, "too_many_recipients")
                    .field("to")
            }
            10 => {
                if r.below(2) == 0 {
                    let n = r.range(11, 200);
                    let tags: Vec<Value> = (0..n).map(|i| format!("t{i}").into()).collect();
                    Case::send(F, format!("{n} tags"), &with(email(), "tags", tags.into()))
                        .expect(422, "too_many_tags")
                        .field("tags")
                } else {
                    let n = r.range(21, 200);
                    let meta: serde_json::Map<String, Value> =
                        (0..n).map(|i| (format!("k{i}"), "v".into())).collect();
                    Case::send(F, format!("{n} metadata entries"), &with(email(), "metadata", meta.into()))
                        .expect(422, "too_many_metadata")
                        .field("metadata")
                }
            }
            _ => match r.below(4) {
                0 => Case::send(F, "long header value", &with(email(), "headers", json!({"X-Long": "v".repeat(r.range(999, 5000))})))
                    .expect(422, "invalid_header")
                    .field("headers.X-Long"),
                1 => Case::send(F, "long filename", &with(email(), "attachments", json!([{"filename": format!("{}.txt", "f".repeat(r.range(256, 4000))), "content": "aGk="}])))
                    .expect(422, "invalid_filename")
                    .field("attachments[0].filename"),
                2 => Case::send(F, "long tag", &with(email(), "tags", json!(["t".repeat(r.range(129, 4000))])))
                    .expect(422, "invalid_tag")
                    .field("tags[0]"),
                _ => Case::send(F, "long metadata value", &with(email(), "metadata", json!({"k": "m".repeat(r.range(513, 4000))})))
                    .expect(422, "invalid_metadata")
                    .field("metadata.k"),
            },
        };
        out.push(case);
    }
}

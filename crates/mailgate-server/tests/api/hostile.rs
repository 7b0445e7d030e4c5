//! Hostile input (issue 8): thousands of generated, deterministic (seeded) hostile requests over
//! real HTTP on loopback. Each must be answered with its stable error — the expected 4xx status
//! and `error.code` (or one of a small set where the family allows several), never a 2xx, never a
//! 5xx — and none may store anything: events (every message has one), suppressions, templates,
//! provider configurations, environments and keys are counted through the storage API before
//! and after.
//!
//! Families: header injection (subject, display names, custom header names and values,
//! attachment file names and types, tags, metadata, template data rendered into the subject and
//! the sender), oversize requests and contents, deep nesting, invalid UTF-8, malformed JSON,
//! wrong content types, malformed addresses (IDN edge cases included), unknown fields, wrong
//! types and conflicting fields, invalid usage types, locales and organizations (bodies and
//! paths), forged webhooks for every provider (and unconfigured ones), bad provider
//! configurations (DSNs, composite DSNs, JSON chains) and bad API keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use mailgate_core::environment::Environment;
use mailgate_core::event::EventQuery;
use mailgate_core::message::Limits;
use mailgate_core::suppression::SuppressionQuery;
use mailgate_testkit::app::TestApp;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use super::sns::{fake_sns, rfc3339, sign_sns, FakeSns, TOPIC};
use super::support::body;
use super::webhook_support::now_seconds;

/// The request body limit of the app under attack.
const MAX_REQUEST: usize = 32 * 1024;
const MAX_BODY: usize = 8 * 1024;
const MAX_ATTACHMENT: usize = 2 * 1024;
const MAX_ATTACHMENTS: usize = 3;
const MAILGUN_KEY: &str = "key-hostile-signing-0123456789abcdef";
const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RESEND_OTHER: &str = "whsec_c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXM=";
/// How many requests are in flight at once.
const CONCURRENCY: usize = 16;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn word(&mut self) -> String {
        let n = self.range(3, 10);
        (0..n)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Who sends a request.
#[derive(Clone)]
enum Auth {
    /// The `default` environment's key.
    Env,
    /// The admin key.
    Admin,
    /// No `Authorization` header.
    None,
    /// This exact `Authorization` header value.
    Raw(Vec<u8>),
}

/// One hostile request and the answers it may get.
struct Case {
    family: &'static str,
    what: String,
    method: Method,
    path: String,
    auth: Auth,
    /// `None`: no `Content-Type` header.
    content_type: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// Allowed (status, code) pairs.
    expect: Vec<(u16, &'static str)>,
    /// The `error.field` it must name, when the family makes it certain.
    field: Option<String>,
}

impl Case {
    fn new(family: &'static str, what: impl Into<String>, method: Method, path: &str) -> Self {
        Self {
            family,
            what: what.into(),
            method,
            path: path.to_owned(),
            auth: Auth::Env,
            content_type: Some(b"application/json".to_vec()),
            headers: Vec::new(),
            body: Vec::new(),
            expect: Vec::new(),
            field: None,
        }
    }

    /// `POST /v1/emails` with a JSON body.
    fn send(family: &'static str, what: impl Into<String>, body: &Value) -> Self {
        Self::new(family, what, Method::POST, "/v1/emails").json(body)
    }

    /// `POST /webhooks/{env}/{provider}`: no key, no content type unless given.
    fn hook(family: &'static str, what: impl Into<String>, env: &str, provider: &str) -> Self {
        let mut c = Self::new(
            family,
            what,
            Method::POST,
            &format!("/webhooks/{env}/{provider}"),
        );
        c.auth = Auth::None;
        c.content_type = None;
        c
    }

    fn json(mut self, body: &Value) -> Self {
        self.body = serde_json::to_vec(body).unwrap();
        self
    }

    fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn ct(mut self, ct: Option<&[u8]>) -> Self {
        self.content_type = ct.map(<[u8]>::to_vec);
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.expect.push((status, code));
        self
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// A valid send to mutate.
fn email() -> Value {
    json!({"from": "Sender <sender@example.com>", "to": ["ann@example.com"], "subject": "Hello", "text": "Hi Ann"})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// Percent-encodes everything but ASCII letters and digits (for path segments).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The code `check_header_value` gives a value holding `bad`.
fn injection_code(bad: &str) -> &'static str {
    if bad.contains(['\r', '\n']) {
        "header_injection"
    } else {
        "invalid_characters"
    }
}

const INJECTIONS: &[&str] = &[
    "\r\n",
    "\n",
    "\r",
    "\r\n\r\n",
    "\r\nBcc: victim@evil.example",
    "\nContent-Type: text/html",
    "\r\n X-Folded: continued",
    "\n\nbody injected",
    "\u{0}",
    "\u{7}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\u{8}",
];

/// A value holding an injection (at the start, the end or inside), its code, and the same
/// injection inside a value: display names and rendered subjects are trimmed by design, so a
/// line break at their ends is removed, not refused.
fn injected(r: &mut Rng) -> (String, String, &'static str) {
    let bad = *r.pick(INJECTIONS);
    let (w, w2) = (r.word(), r.word());
    let inside = format!("{w}{bad}{w2}");
    let s = match r.below(3) {
        0 => format!("{w}{bad}"),
        1 => format!("{bad}{w}"),
        _ => inside.clone(),
    };
    (s, inside, injection_code(bad))
}

fn header_injection(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "header_injection";
    for _ in 0..330 {
        let (bad, inside, code) = injected(r);
        let case = match r.below(13) {
            0 => Case::send(F, "subject", &with(email(), "subject", bad.clone().into()))
                .field("subject"),
            1 => Case::send(
                F,
                "from display name",
                &with(email(), "from", format!("{bad} <sender@example.com>").into()),
            )
            .field("from"),
            2 => Case::send(
                F,
                "to object name",
                &with(
                    email(),
                    "to",
                    json!(["bob@example.com", {"email": "ann@example.com", "name": inside}]),
                ),
            )
            .field("to[1]"),
            3 => Case::send(
                F,
                "cc display name",
                &with(email(), "cc", format!("{bad} <cc@example.com>").into()),
            )
            .field("cc"),
            4 => Case::send(
                F,
                "reply_to object name",
                &with(
                    email(),
                    "reply_to",
                    json!([{"email": "r@example.com", "name": inside}]),
                ),
            )
            .field("reply_to[0]"),
            5 => Case::send(
                F,
                "header value",
                &with(email(), "headers", json!({"X-Campaign": bad})),
            )
            .field("headers.X-Campaign"),
            6 => {
                // A header *name* with a line break or control character is not a name.
                let name = format!("X-{bad}");
                Case::send(F, "header name", &with(email(), "headers", json!({ &name: "v" })))
                    .expect(422, "invalid_header")
                    .field(format!("headers.{name}"))
            }
            7 => Case::send(
                F,
                "attachment filename",
                &with(
                    email(),
                    "attachments",
                    json!([{"filename": format!("{bad}.txt"), "content": "aGk=", "content_type": "text/plain"}]),
                ),
            )
            .field("attachments[0].filename"),
            8 => Case::send(
                F,
                "attachment content_type",
                &with(
                    email(),
                    "attachments",
                    json!([{"filename": "a.txt", "content": "aGk=", "content_type": format!("text/plain{bad}")}]),
                ),
            )
            .field("attachments[0].content_type"),
            9 => Case::send(F, "tag", &with(email(), "tags", json!(["ok", bad])))
                .field("tags[1]"),
            10 => Case::send(F, "metadata value", &with(email(), "metadata", json!({"k": bad})))
                .field("metadata.k"),
            11 => Case::send(
                F,
                "template data in the subject",
                &json!({"to": "ann@example.com", "usage": "Hostile", "data": {"name": inside, "sender": "Acme"}}),
            )
            .field("subject"),
            _ => Case::send(
                F,
                "template data in the sender",
                &json!({"to": "ann@example.com", "usage": "Hostile", "data": {"name": "Ann", "sender": bad}}),
            )
            .field("template.from"),
        };
        let case = if case.expect.is_empty() {
            case.expect(422, code)
        } else {
            case
        };
        out.push(case);
    }
}

fn b64_of(bytes: usize) -> String {
    "AAAA".repeat(bytes.div_ceil(3))
}

fn oversize(r: &mut Rng, out: &mut Vec<Case>) {
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

/// `depth` nested arrays or objects around `inner`, closed or not.
fn nested(depth: usize, objects: bool, closed: bool, inner: &str) -> String {
    let (open, close) = if objects {
        ("{\"a\":", "}")
    } else {
        ("[", "]")
    };
    let mut s = open.repeat(depth);
    s.push_str(inner);
    if closed {
        s.push_str(&close.repeat(depth));
    }
    s
}

fn deep_nesting(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "deep_nesting";
    for _ in 0..170 {
        let depth = *r.pick(&[129, 200, 1_000, 10_000, 30_000]);
        let objects = r.below(2) == 0;
        let closed = r.below(4) != 0;
        let v = nested(depth, objects, closed, "1");
        let what = format!(
            "{depth} levels of {}",
            if objects { "objects" } else { "arrays" }
        );
        let case = match r.below(8) {
            0 => Case::send(F, format!("{what} at the top"), &Value::Null).raw(v),
            1 => {
                let key = *r.pick(&[
                    "subject",
                    "to",
                    "data",
                    "metadata",
                    "provider_options",
                    "headers",
                    "attachments",
                ]);
                Case::send(F, format!("{what} in {key}"), &Value::Null)
                    .raw(format!("{{\"from\": \"a@example.com\", \"{key}\": {v}}}"))
            }
            2 => {
                let provider = *r.pick(&["mailgun", "postmark", "resend", "sendgrid", "ses"]);
                let out = Case::hook(F, format!("{what} to {provider}"), "hooks", provider).raw(v);
                out.expect(401, "webhook_unauthorized")
            }
            3 => Case::new(
                F,
                format!("{what} as a template"),
                Method::PUT,
                "/v1/environments/default/templates/Deep",
            )
            .raw(format!("{{\"subject\": {v}}}")),
            4 => Case::new(
                F,
                format!("{what} as a provider"),
                Method::PUT,
                "/v1/environments/default/provider",
            )
            .auth(Auth::Admin)
            .raw(format!("{{\"primary\": {v}}}")),
            _ => {
                // Within serde_json's recursion limit: parsed, then refused by type.
                let depth = r.range(2, 120);
                let key = *r.pick(&["subject", "text", "tags", "headers", "metadata", "ttl"]);
                let v: Value =
                    serde_json::from_str(&nested(depth, objects, true, "\"x\"")).unwrap();
                let field = match (key, objects) {
                    ("tags", true) | ("subject" | "text" | "ttl", _) => key.to_owned(),
                    ("tags", false) => "tags[0]".to_owned(),
                    (_, true) => format!("{key}.a"),
                    (_, false) => key.to_owned(),
                };
                Case::send(
                    F,
                    format!("{depth} levels in {key}"),
                    &with(email(), key, v),
                )
                .expect(422, "invalid_field")
                .field(field)
            }
        };
        let case = if case.body.len() > MAX_REQUEST {
            // Refused for its size before it is parsed.
            Case {
                expect: Vec::new(),
                ..case
            }
            .expect(413, "payload_too_large")
        } else if case.expect.is_empty() {
            case.expect(400, "invalid_json")
        } else {
            case
        };
        out.push(case);
    }
}

const BAD_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xa0\xa1",
    b"\xe2\x28\xa1",
    b"\xe2\x82\x28",
    b"\xf0\x28\x8c\xbc",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
    b"\xf4\x90\x80\x80",
];

fn invalid_utf8(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "invalid_utf8";
    for _ in 0..170 {
        let bad = *r.pick(BAD_UTF8);
        let case = match r.below(8) {
            0..=2 => {
                // Inside a string value of an otherwise valid send.
                let key = *r.pick(&["subject", "text", "html"]);
                let mut body = format!("{{\"from\": \"a@example.com\", \"to\": \"b@example.com\", \"subject\": \"s\", \"text\": \"t\", \"{key}\": \"").into_bytes();
                body.extend_from_slice(r.word().as_bytes());
                body.extend_from_slice(bad);
                body.extend_from_slice(b"\"}");
                Case::send(F, format!("invalid UTF-8 in {key}"), &Value::Null)
                    .raw(body)
                    .expect(400, "invalid_json")
            }
            3 => {
                let mut body = serde_json::to_vec(&email()).unwrap();
                let at = r.below(body.len());
                body.splice(at..at, bad.iter().copied());
                Case::send(F, "invalid UTF-8 anywhere", &Value::Null)
                    .raw(body)
                    .expect(400, "invalid_json")
            }
            4 => {
                let esc = *r.pick(&[
                    "\\ud800",
                    "\\udfff",
                    "\\ud83d",
                    "\\ude00x",
                    "\\ud800\\u0041",
                ]);
                Case::send(F, format!("lone surrogate {esc}"), &Value::Null)
                    .raw(format!("{{\"from\": \"a@example.com\", \"to\": \"b@example.com\", \"subject\": \"{esc}\", \"text\": \"t\"}}"))
                    .expect(400, "invalid_json")
            }
            5 => {
                // The whole body in UTF-16.
                let text = email().to_string();
                let mut body = vec![0xff, 0xfe];
                for unit in text.encode_utf16() {
                    body.extend_from_slice(&unit.to_le_bytes());
                }
                Case::send(F, "UTF-16 body", &Value::Null)
                    .raw(body)
                    .expect(400, "invalid_json")
            }
            6 => {
                let mut ct = b"application/json; charset=".to_vec();
                ct.extend_from_slice(bad);
                if r.below(2) == 0 {
                    ct = [b"application/".as_slice(), bad, b"json"].concat();
                }
                Case::send(F, "invalid UTF-8 in Content-Type", &email())
                    .ct(Some(&ct))
                    .expect(415, "unsupported_media_type")
            }
            _ => match r.below(2) {
                0 => {
                    let key = [b"mg_".as_slice(), bad, r.word().as_bytes()].concat();
                    Case::send(F, "invalid UTF-8 in the key", &email())
                        .auth(Auth::Raw([b"Bearer ".as_slice(), &key].concat()))
                        .expect(401, "unauthorized")
                }
                _ => Case::send(F, "invalid UTF-8 in Idempotency-Key", &email())
                    .header("Idempotency-Key", [b"key-".as_slice(), bad].concat())
                    .expect(422, "invalid_idempotency_key")
                    .field("Idempotency-Key"),
            },
        };
        out.push(case);
    }
}

fn malformed_json(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "malformed_json";
    const FIXED: &[&str] = &[
        "",
        " ",
        "{",
        "}",
        "{\"to\":}",
        "{'to': 'ann@example.com'}",
        "{\"subject\": \"a\",}",
        "{\"tags\": [1, 2,]}",
        "NaN",
        "{\"ttl\": NaN}",
        "{\"ttl\": Infinity}",
        "{\"ttl\": -}",
        "// comment\n{}",
        "/* c */ {}",
        "{\"subject\": \"a\" \"text\": \"b\"}",
        "\"unterminated",
        "{\"subject\": \"\\x41\"}",
        "{\"subject\": \"\\u12\"}",
        "{\"subject\": \"tab\there\"}",
        "{\"subject\": \"nl\nhere\"}",
        "tru",
        "nul",
        "{} {}",
        "{}garbage",
        "\u{feff}{}",
        "{\"a\" 1}",
        "{1: 2}",
        "[}",
        "{]",
        "{\"subject\": 01}",
        "{\"ttl\": 1.}",
        "{\"ttl\": .5}",
        "{\"ttl\": 0x10}",
        "{\"ttl\": +1}",
        "{\"to\": [\"a@example.com\" \"b@example.com\"]}",
        "\u{0}",
        "{\"subject\": \"\u{1}\"}",
    ];
    const NOT_OBJECTS: &[&str] = &[
        "null",
        "1",
        "[]",
        "\"string\"",
        "true",
        "[{}]",
        "-0",
        "1e308",
    ];
    for i in 0..220 {
        let case = if i < FIXED.len() {
            Case::send(F, format!("{:?}", FIXED[i]), &Value::Null)
                .raw(FIXED[i])
                .expect(400, "invalid_json")
        } else if i < FIXED.len() + NOT_OBJECTS.len() {
            let s = NOT_OBJECTS[i - FIXED.len()];
            Case::send(F, format!("top-level {s}"), &Value::Null)
                .raw(s)
                .expect(422, "invalid_field")
        } else {
            // A truncated send (every prefix of an object is unfinished).
            let mut body = serde_json::to_vec(&with(
                email(),
                "metadata",
                json!({"k": r.word(), "n": r.word()}),
            ))
            .unwrap();
            let at = r.range(1, body.len() - 1);
            body.truncate(at);
            let target = r.below(4);
            let case = match target {
                0 => Case::new(
                    F,
                    format!("template cut at {at}"),
                    Method::PUT,
                    "/v1/environments/default/templates/Cut",
                ),
                1 => Case::new(
                    F,
                    format!("provider cut at {at}"),
                    Method::PUT,
                    "/v1/environments/default/provider",
                )
                .auth(Auth::Admin),
                _ => Case::send(F, format!("send cut at {at}"), &Value::Null),
            };
            case.raw(body).expect(400, "invalid_json")
        };
        out.push(case);
    }
}

fn wrong_content_type(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "wrong_content_type";
    const TYPES: &[&str] = &[
        "text/plain",
        "text/html",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "application/jsonx",
        "application/json5",
        "application/x-json",
        "application/json-seq",
        "application/javascript",
        "json",
        "*/*",
        "application/",
        "image/png",
        "",
        "; application/json",
        "text/plain; charset=utf-8; application/json",
        "application/octet-stream",
    ];
    for _ in 0..110 {
        let ct = *r.pick(TYPES);
        let case = match r.below(5) {
            0 => Case::new(
                F,
                format!("template as {ct:?}"),
                Method::PUT,
                "/v1/environments/default/templates/Typed",
            )
            .json(&json!({"subject": "s", "text": "t"})),
            1 => Case::new(
                F,
                format!("provider as {ct:?}"),
                Method::PUT,
                "/v1/environments/default/provider",
            )
            .auth(Auth::Admin)
            .json(&json!({"dsn": "capture://"})),
            _ => Case::send(F, format!("send as {ct:?}"), &email()),
        };
        out.push(
            case.ct(Some(ct.as_bytes()))
                .expect(415, "unsupported_media_type"),
        );
    }
}

/// Addresses that are invalid written alone or as `{"email": …}`.
fn bad_addresses() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "@",
        "ann",
        "ann@",
        "@example.com",
        "ann@@example.com",
        "ann@example",
        "ann@localhost",
        "ann@-example.com",
        "ann@example-.com",
        "ann@example..com",
        "ann@.example.com",
        "ann@example.com.",
        ".ann@example.com",
        "ann.@example.com",
        "an..n@example.com",
        "ann example@example.com",
        "ann @example.com",
        "ann@exa mple.com",
        "ann@example.com (comment)",
        "ann@[300.1.1.1]",
        "ann@[IPv6:zz::1]",
        "ann@[example.com]",
        "ann@1.2.3.4",
        "ann@example.123",
        "ann@a_b.example.com",
        "ann@xn--.com",
        "ann\"@example.com",
        "\"ann@example.com",
        "ann,bob@example.com",
        "ann;bob@example.com",
        "ann@example.com,bob@example.com",
        "ann<bob@example.com",
        "ann@exam\u{FF0E}\u{FF0E}com",
        "ann@\u{3002}com",
        "ann@\u{4F8B}\u{3048}\u{3002}",
        "ann@m\u{FC}nchen",
        "ann@-m\u{FC}nchen.de",
        "ann@b\u{FC}cher-.de",
        "ann@\u{202E}example.com",
        "ann@exa\u{A0}mple.com",
        "ann@\u{301}example.com",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(format!("{}@example.com", "a".repeat(65)));
    v.push(format!("ann@{}.com", "b".repeat(64)));
    v.push(format!("ann@{}com", "abcdefghij.".repeat(25)));
    v.push(format!(
        "{}@{}{}.com",
        "a".repeat(64),
        "c".repeat(63),
        ".d".repeat(95)
    ));
    v
}

fn malformed_addresses(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "malformed_address";
    let bad = bad_addresses();
    for i in 0..280 {
        let addr = if i < bad.len() {
            bad[i].clone()
        } else {
            r.pick(&bad).clone()
        };
        let key = *r.pick(&["from", "to", "cc", "bcc", "reply_to"]);
        let form = r.below(if key == "from" { 3 } else { 4 });
        let (value, field) = match form {
            0 => (Value::String(addr.clone()), key.to_owned()),
            1 => (json!({"email": addr, "name": "Ann"}), key.to_owned()),
            // `Name <addr>`: only for addresses without angle brackets (`Ann <ann<bob@x>` is the
            // valid address bob@x with the name `Ann <ann`).
            2 if !addr.contains(['<', '>']) => (
                Value::String(format!("Ann Example <{addr}>")),
                key.to_owned(),
            ),
            2 => (Value::String(addr.clone()), key.to_owned()),
            _ => (
                json!(["ok@example.com", {"email": "ok2@example.com"}, addr]),
                format!("{key}[2]"),
            ),
        };
        out.push(
            Case::send(
                F,
                format!("{key} form {form}: {addr:?}"),
                &with(email(), key, value),
            )
            .expect(422, "invalid_address")
            .field(field),
        );
    }
    // Display names over 256 characters.
    for _ in 0..20 {
        let name = "N".repeat(r.range(257, 2000));
        out.push(
            Case::send(
                F,
                "long display name",
                &with(
                    email(),
                    "to",
                    json!({"email": "ann@example.com", "name": name}),
                ),
            )
            .expect(422, "invalid_address")
            .field("to"),
        );
    }
}

fn unknown_fields(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "unknown_field";
    const TOP: &[&str] = &[
        "subjcet",
        "sbject",
        "form",
        "frm",
        "too",
        "t0",
        "htlm",
        "txt",
        "atachments",
        "attachment",
        "header",
        "tag",
        "metdata",
        "meta",
        "enviroment",
        "env",
        "usgae",
        "dat",
        "locael",
        "tll",
        "expires",
        "expiresAt",
        "organisation",
        "org",
        "reply-to",
        "replyTo",
        "trackOpens",
        "track_clicks",
        "tracking",
        "providerOptions",
        "id",
        "status",
        "__proto__",
        "constructor",
        "Subject",
        "TO",
        "",
    ];
    for _ in 0..170 {
        let case = match r.below(5) {
            0 | 1 => {
                let typo = *r.pick(TOP);
                Case::send(
                    F,
                    format!("top-level {typo:?}"),
                    &with(email(), typo, r.word().into()),
                )
                .field(typo)
            }
            2 => {
                let typo = *r.pick(&[
                    "filname",
                    "contnet",
                    "contentType",
                    "size",
                    "name",
                    "cid",
                    "disposition",
                ]);
                let mut a = json!({"filename": "a.txt", "content": "aGk="});
                a[typo] = "x".into();
                Case::send(
                    F,
                    format!("attachment {typo}"),
                    &with(email(), "attachments", json!([a])),
                )
                .field(format!("attachments[0].{typo}"))
            }
            3 => {
                let typo = *r.pick(&["nmae", "emial", "address", "mail", "Name"]);
                let mut m = json!({"email": "ann@example.com"});
                m[typo] = "x".into();
                Case::send(
                    F,
                    format!("mailbox {typo}"),
                    &with(email(), "to", json!([m])),
                )
                .field(format!("to[0].{typo}"))
            }
            _ => {
                let typo = *r.pick(&["subjcet", "txt", "htlm", "form", "provider_templat"]);
                Case::new(
                    F,
                    format!("template {typo}"),
                    Method::PUT,
                    "/v1/environments/default/templates/Typo",
                )
                .json(&json!({"subject": "s", "text": "t", typo: "x"}))
                .field(typo)
            }
        };
        out.push(case.expect(422, "unknown_field"));
    }
}

fn wrong_types(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "wrong_type";
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("subject", json!(5), "subject", "invalid_field"),
        ("subject", json!(true), "subject", "invalid_field"),
        ("subject", json!(["a"]), "subject", "invalid_field"),
        ("subject", json!({"a": 1}), "subject", "invalid_field"),
        ("text", json!(1.5), "text", "invalid_field"),
        ("html", json!([]), "html", "invalid_field"),
        ("to", json!(5), "to", "invalid_field"),
        ("to", json!(true), "to", "invalid_field"),
        ("to", json!([1]), "to[0]", "invalid_field"),
        ("to", json!([["ann@example.com"]]), "to[0]", "invalid_field"),
        ("from", json!(["a@example.com"]), "from", "invalid_field"),
        ("from", json!({"email": 5}), "from.email", "invalid_field"),
        (
            "from",
            json!({"email": "a@example.com", "name": 5}),
            "from.name",
            "invalid_field",
        ),
        (
            "from",
            json!({"name": "Ann"}),
            "from.email",
            "missing_field",
        ),
        ("tags", json!("tag"), "tags", "invalid_field"),
        ("tags", json!({}), "tags", "invalid_field"),
        ("tags", json!([1]), "tags[0]", "invalid_field"),
        ("tags", json!([null]), "tags[0]", "invalid_field"),
        ("metadata", json!([]), "metadata", "invalid_field"),
        ("metadata", json!({"k": 1}), "metadata.k", "invalid_field"),
        (
            "metadata",
            json!({"k": null}),
            "metadata.k",
            "invalid_field",
        ),
        ("attachments", json!({}), "attachments", "invalid_field"),
        ("attachments", json!("x"), "attachments", "invalid_field"),
        ("attachments", json!([1]), "attachments[0]", "invalid_field"),
        (
            "attachments",
            json!([{"filename": 1, "content": ""}]),
            "attachments[0].filename",
            "invalid_field",
        ),
        (
            "attachments",
            json!([{"filename": "a"}]),
            "attachments[0].content",
            "missing_field",
        ),
        (
            "attachments",
            json!([{"filename": "a", "content": "%%%"}]),
            "attachments[0].content",
            "invalid_base64",
        ),
        (
            "attachments",
            json!([{"filename": "a", "content": "aGk=", "content_type": "text"}]),
            "attachments[0].content_type",
            "invalid_content_type",
        ),
        (
            "attachments",
            json!([{"filename": "../a", "content": "aGk="}]),
            "attachments[0].filename",
            "invalid_filename",
        ),
        (
            "attachments",
            json!([{"filename": " ", "content": "aGk="}]),
            "attachments[0].filename",
            "invalid_filename",
        ),
        ("headers", json!([]), "headers", "invalid_field"),
        ("headers", json!({"X-A": 1}), "headers.X-A", "invalid_field"),
        (
            "headers",
            json!({"Bcc": "evil@example.com"}),
            "headers.Bcc",
            "reserved_header",
        ),
        (
            "headers",
            json!({"X:Colon": "v"}),
            "headers.X:Colon",
            "invalid_header",
        ),
        (
            "headers",
            json!({"X Space": "v"}),
            "headers.X Space",
            "invalid_header",
        ),
        ("headers", json!({"": "v"}), "headers.", "invalid_header"),
        ("ttl", json!(-1), "ttl", "invalid_field"),
        ("ttl", json!("60"), "ttl", "invalid_field"),
        ("ttl", json!(1.5), "ttl", "invalid_field"),
        ("ttl", json!(1e30), "ttl", "invalid_field"),
        ("ttl", json!(0), "ttl", "invalid_field"),
        ("ttl", json!(31 * 24 * 3600), "ttl", "invalid_field"),
        ("ttl", json!(u64::MAX), "ttl", "invalid_field"),
        ("expires_at", json!(5), "expires_at", "invalid_field"),
        (
            "expires_at",
            json!("tomorrow"),
            "expires_at",
            "invalid_field",
        ),
        (
            "expires_at",
            json!("2026-01-01"),
            "expires_at",
            "invalid_field",
        ),
        (
            "expires_at",
            json!("2000-01-01T00:00:00Z"),
            "expires_at",
            "already_expired",
        ),
        ("track_opens", json!("yes"), "track_opens", "invalid_field"),
        ("track_links", json!(1), "track_links", "invalid_field"),
        (
            "provider_options",
            json!([]),
            "provider_options",
            "invalid_field",
        ),
        (
            "provider_options",
            json!("x"),
            "provider_options",
            "invalid_field",
        ),
        ("data", json!("x"), "data", "invalid_field"),
        ("data", json!({"code": "1"}), "data", "usage_required"),
        ("locale", json!("en"), "locale", "usage_required"),
        ("environment", json!(5), "environment", "invalid_field"),
        ("organization", json!(5), "organization", "invalid_field"),
        ("usage", json!(5), "usage", "invalid_field"),
        ("usage", json!("SignIn"), "subject", "conflicting_content"),
        ("subject", json!(null), "subject", "missing_subject"),
        ("text", json!(null), "text", "missing_content"),
        ("to", json!([]), "to", "missing_recipient"),
        ("from", json!(null), "from", "missing_sender"),
    ];
    for i in 0..190 {
        let (key, value, field, code) = if i < cases.len() {
            cases[i].clone()
        } else {
            r.pick(&cases).clone()
        };
        let mut body = with(email(), key, value.clone());
        if value.is_null() {
            body = without(body, key);
        }
        if code == "already_expired" {
            // Refused when the request is checked; the field is the expiry.
            out.push(
                Case::send(F, format!("{key} = {value}"), &body)
                    .expect(422, "already_expired")
                    .expect(422, "invalid_field"),
            );
            continue;
        }
        out.push(
            Case::send(F, format!("{key} = {value}"), &body)
                .expect(422, code)
                .field(field),
        );
    }
    // Both expiries at once.
    out.push(
        Case::send(
            F,
            "ttl and expires_at",
            &with(
                with(email(), "ttl", 60.into()),
                "expires_at",
                "2099-01-01T00:00:00Z".into(),
            ),
        )
        .expect(422, "conflicting_expiry")
        .field("ttl"),
    );
}

const BAD_USAGES: &[&str] = &[
    "",
    "Sign In",
    "SignIn\n",
    "Sign.In",
    "../etc/passwd",
    "\u{dc}n\u{ef}code",
    "Sign/In",
    "<script>",
    "SignIn;DROP TABLE templates",
    "\u{0}",
    "Sign\tIn",
    "SignIn\u{200B}",
];
const BAD_LOCALES: &[&str] = &[
    "",
    "e",
    "english",
    "en-",
    "en--US",
    "en-US-waytoolongsubtag",
    "12",
    "en US",
    "fr_CA_",
    "-en",
    "en-\u{dc}S",
    "e1",
    "en-US\r\n",
    "zh-Hant-TW-",
    "de;",
    "fr-CA/../x",
];
const BAD_ORGS: &[&str] = &[
    "",
    ".acme",
    "acme corp",
    "acme/../x",
    "ac\nme",
    "\u{e1}cme",
    "acme!",
    "acme@x",
    "acme\u{0}",
    "acme%",
    "acme:1",
];

fn invalid_names(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "invalid_name";
    let long_usage = "U".repeat(65);
    let long_org = "o".repeat(65);
    let long_locale = "x".repeat(100);
    for _ in 0..230 {
        let case = match r.below(9) {
            0 => {
                let u = if r.below(8) == 0 {
                    long_usage.as_str()
                } else {
                    r.pick(BAD_USAGES)
                };
                Case::send(
                    F,
                    format!("send usage {u:?}"),
                    &json!({"to": "ann@example.com", "usage": u, "data": {"code": "123456"}}),
                )
                .expect(422, "invalid_usage")
                .field("usage")
            }
            1 => {
                let l = if r.below(8) == 0 {
                    long_locale.as_str()
                } else {
                    r.pick(BAD_LOCALES)
                };
                Case::send(F, format!("send locale {l:?}"), &json!({"to": "ann@example.com", "usage": "SignIn", "locale": l, "data": {"code": "123456"}}))
                    .expect(422, "invalid_locale")
                    .field("locale")
            }
            2 => {
                let o = if r.below(8) == 0 {
                    long_org.as_str()
                } else {
                    r.pick(BAD_ORGS)
                };
                Case::send(
                    F,
                    format!("send organization {o:?}"),
                    &with(email(), "organization", o.into()),
                )
                .expect(422, "invalid_organization")
                .field("organization")
            }
            3 | 4 => {
                let u = *r.pick(&BAD_USAGES[1..]);
                let method = r.pick(&[Method::PUT, Method::DELETE, Method::GET]).clone();
                Case::new(
                    F,
                    format!("{method} template {u:?}"),
                    method,
                    &format!("/v1/environments/default/templates/{}", pct(u)),
                )
                .json(&json!({"subject": "s", "text": "t"}))
                .expect(422, "invalid_usage")
                .field("usage")
            }
            5 => {
                let l = *r.pick(BAD_LOCALES);
                let method = r.pick(&[Method::PUT, Method::DELETE]).clone();
                Case::new(
                    F,
                    format!("{method} template locale {l:?}"),
                    method,
                    &format!(
                        "/v1/environments/default/templates/SignIn?locale={}",
                        pct(l)
                    ),
                )
                .json(&json!({"subject": "s", "text": "t"}))
                .expect(422, "invalid_locale")
                .field("locale")
            }
            6 => {
                let o = *r.pick(&BAD_ORGS[1..]);
                let method = r.pick(&[Method::PUT, Method::DELETE, Method::GET]).clone();
                Case::new(
                    F,
                    format!("{method} organization provider {o:?}"),
                    method,
                    &format!("/v1/environments/default/organizations/{}/provider", pct(o)),
                )
                .auth(Auth::Admin)
                .json(&json!({"dsn": "capture://"}))
                .expect(422, "invalid_organization")
                .field("org")
            }
            7 => {
                // Not UTF-8 once decoded: refused by the router's path extraction.
                let seg = *r.pick(&["%FF", "Sign%C3%28In", "%ED%A0%80"]);
                let path = if r.below(2) == 0 {
                    format!("/v1/environments/default/templates/{seg}")
                } else {
                    format!("/v1/environments/default/organizations/{seg}/provider")
                };
                Case::new(F, format!("PUT {path}"), Method::PUT, &path)
                    .auth(Auth::Admin)
                    .json(&json!({"subject": "s", "text": "t"}))
                    .expect(400, "bad_request")
            }
            _ => {
                let t = *r.pick(&[
                    "{{ unclosed",
                    "{% if %}",
                    "{% for %}",
                    "{% endif %}",
                    "{{ }}",
                    "{% block %}",
                    "{{ a b }}",
                    "{% raw %}",
                    "{{ 'x' ~ }}",
                ]);
                let field = *r.pick(&["subject", "text", "html"]);
                let mut body = json!({"subject": "s", "text": "t"});
                body[field] = t.into();
                Case::new(
                    F,
                    format!("template {field} {t:?}"),
                    Method::PUT,
                    "/v1/environments/default/templates/Broken",
                )
                .json(&body)
                .expect(422, "invalid_template")
                .field(field)
            }
        };
        out.push(case);
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The keys the forged webhooks are (mis)signed with.
struct Keys {
    sendgrid: SigningKey,
    sendgrid_other: SigningKey,
    sns: FakeSns,
}

fn forged_webhooks(r: &mut Rng, keys: &Keys, out: &mut Vec<Case>) {
    const F: &str = "forged_webhook";
    let now = now_seconds();
    let resend_key = STANDARD
        .decode(RESEND_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let resend_other = STANDARD
        .decode(RESEND_OTHER.trim_start_matches("whsec_"))
        .unwrap();
    for _ in 0..520 {
        let rcpt = format!("{}@example.net", r.word());
        let eid = format!("evt-{}", r.next());
        let case = match r.below(8) {
            0 => {
                // Mailgun: the signature is inside the body.
                let ts = match r.below(5) {
                    0 => (now - r.range(301, 100_000) as i64).to_string(),
                    1 => (now + r.range(301, 100_000) as i64).to_string(),
                    2 => i64::MIN.to_string(),
                    3 => "not-a-number".to_owned(),
                    _ => now.to_string(),
                };
                let token = format!("{:0>50}", r.next());
                let good = hex::encode(hmac(
                    MAILGUN_KEY.as_bytes(),
                    &[ts.as_bytes(), token.as_bytes()],
                ));
                let stale = ts != now.to_string();
                let (sig, what): (Value, &str) = match r.below(7) {
                    0 if stale => (good.clone().into(), "fresh signature over a bad timestamp"),
                    1 => (hex::encode(r.bytes(32)).into(), "random signature"),
                    2 => (
                        hex::encode(hmac(b"wrong-key", &[ts.as_bytes(), token.as_bytes()])).into(),
                        "another key's signature",
                    ),
                    3 => (Value::Null, "no signature"),
                    4 => (json!(12345), "signature not a string"),
                    5 => (
                        good[..good.len() - 1].to_owned().into(),
                        "truncated signature",
                    ),
                    _ => (
                        hex::encode(hmac(
                            MAILGUN_KEY.as_bytes(),
                            &[ts.as_bytes(), b"other-token"],
                        ))
                        .into(),
                        "signature of another token",
                    ),
                };
                let event = json!({"event": r.pick(&["delivered", "failed", "complained"]), "severity": "permanent", "id": eid,
                    "timestamp": now, "recipient": rcpt, "user-variables": {}});
                let mut body = json!({"signature": {"timestamp": ts, "token": token, "signature": sig}, "event-data": event});
                if r.below(10) == 0 {
                    body.as_object_mut().unwrap().remove("signature");
                }
                Case::hook(F, format!("mailgun: {what} (ts {ts})"), "hooks", "mailgun").json(&body)
            }
            1 => {
                let (auth, what): (Option<Vec<u8>>, &str) = match r.below(8) {
                    0 => (None, "no Authorization"),
                    1 => (
                        Some(format!("Basic {}", STANDARD.encode("hook:guess")).into_bytes()),
                        "wrong password",
                    ),
                    2 => (
                        Some(format!("Basic {}", STANDARD.encode("HOOK:s3cret")).into_bytes()),
                        "wrong user case",
                    ),
                    3 => (
                        Some(format!("Basic {}", STANDARD.encode("hook")).into_bytes()),
                        "no colon",
                    ),
                    4 => (Some(b"Basic %%%not-base64%%%".to_vec()), "not base64"),
                    5 => (
                        Some(format!("Bearer {}", STANDARD.encode("hook:s3cret")).into_bytes()),
                        "wrong scheme",
                    ),
                    6 => (
                        Some(
                            [
                                b"Basic ".as_slice(),
                                STANDARD.encode(b"hook:s3cret\xff").as_bytes(),
                            ]
                            .concat(),
                        ),
                        "password with a trailing byte",
                    ),
                    _ => (
                        Some(format!("Basic {}", STANDARD.encode("hook:s3cre")).into_bytes()),
                        "password prefix",
                    ),
                };
                let body = json!({"RecordType": "Bounce", "ID": r.next() >> 12, "Type": "HardBounce", "Email": rcpt, "MessageID": eid, "BouncedAt": "2026-01-01T00:00:00Z"});
                let c = Case::hook(F, format!("postmark: {what}"), "hooks", "postmark").json(&body);
                match auth {
                    Some(a) => c.header("Authorization", a),
                    None => c,
                }
            }
            2 => {
                let body = serde_json::to_vec(&json!({"type": r.pick(&["email.bounced", "email.delivered", "email.complained"]), "created_at": "2026-01-01T00:00:00.000Z",
                    "data": {"email_id": eid, "to": [rcpt], "bounce": {"type": "Permanent"}}})).unwrap();
                let id = format!("msg_{}", r.next());
                let mut ts = now.to_string();
                let sign = |key: &[u8], id: &str, ts: &str, body: &[u8]| {
                    STANDARD.encode(hmac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
                };
                let (sig, what) = match r.below(8) {
                    0 => {
                        ts = (now - r.range(301, 100_000) as i64).to_string();
                        (
                            format!("v1,{}", sign(&resend_key, &id, &ts, &body)),
                            "valid signature, stale timestamp",
                        )
                    }
                    1 => {
                        ts = i64::MIN.to_string();
                        (
                            format!("v1,{}", sign(&resend_key, &id, &ts, &body)),
                            "valid signature, absurd timestamp",
                        )
                    }
                    2 => (
                        format!("v1,{}", STANDARD.encode(r.bytes(32))),
                        "random signature",
                    ),
                    3 => (
                        format!("v1,{}", sign(&resend_other, &id, &ts, &body)),
                        "another secret",
                    ),
                    4 => (
                        format!("v2,{}", sign(&resend_key, &id, &ts, &body)),
                        "wrong version",
                    ),
                    5 => (
                        format!("v1,{}", sign(&resend_key, "msg_other", &ts, &body)),
                        "signature of another id",
                    ),
                    6 => (
                        format!("v1,{}", sign(&resend_key, &id, &ts, b"{}")),
                        "signature of another body",
                    ),
                    _ => (String::new(), "no signature"),
                };
                let mut c = Case::hook(F, format!("resend: {what}"), "hooks", "resend")
                    .raw(body)
                    .header("svix-id", id)
                    .header("svix-timestamp", ts);
                if !sig.is_empty() {
                    c = c.header("svix-signature", sig);
                }
                c
            }
            3 => {
                let events = json!([{"email": rcpt, "timestamp": now, "event": r.pick(&["bounce", "delivered", "spamreport"]), "type": "bounce", "sg_event_id": eid}]);
                let body = serde_json::to_vec(&events).unwrap();
                let sign = |key: &SigningKey, ts: &str, body: &[u8]| {
                    let mut signed = ts.as_bytes().to_vec();
                    signed.extend_from_slice(body);
                    let sig: Signature = key.sign(&signed);
                    STANDARD.encode(sig.to_der().as_bytes())
                };
                let mut ts = now.to_string();
                let (sig, what) = match r.below(7) {
                    0 => {
                        ts = (now - r.range(301, 100_000) as i64).to_string();
                        (
                            Some(sign(&keys.sendgrid, &ts, &body)),
                            "valid signature, stale timestamp",
                        )
                    }
                    1 => {
                        ts = i64::MIN.to_string();
                        (
                            Some(sign(&keys.sendgrid, &ts, &body)),
                            "valid signature, absurd timestamp",
                        )
                    }
                    2 => (Some(sign(&keys.sendgrid_other, &ts, &body)), "another key"),
                    3 => (Some(STANDARD.encode(r.bytes(70))), "random bytes"),
                    4 => (Some("%%%".to_owned()), "not base64"),
                    5 => (
                        Some(sign(&keys.sendgrid, &ts, b"[]")),
                        "signature of another body",
                    ),
                    _ => (None, "no signature"),
                };
                let mut c = Case::hook(F, format!("sendgrid: {what}"), "hooks", "sendgrid")
                    .raw(body)
                    .header("X-Twilio-Email-Event-Webhook-Timestamp", ts);
                if let Some(sig) = sig {
                    c = c.header("X-Twilio-Email-Event-Webhook-Signature", sig);
                }
                c
            }
            4 | 5 => {
                let inner = json!({"eventType": "Bounce", "mail": {"messageId": eid, "destination": [rcpt]},
                    "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": rcpt}]}});
                let m = json!({"Type": "Notification", "MessageId": eid, "TopicArn": TOPIC, "Message": inner.to_string(), "Timestamp": rfc3339(now)});
                let signed = |m: Value| sign_sns(&keys.sns, m, if r_bit(&eid) { "1" } else { "2" });
                let (m, what) = match r.below(9) {
                    0 => {
                        let mut m = signed(m);
                        m["Message"] = m["Message"]
                            .as_str()
                            .unwrap()
                            .replace("Permanent", "Transient")
                            .into();
                        (m, "tampered message")
                    }
                    1 => {
                        let mut m = signed(m);
                        m.as_object_mut().unwrap().remove("Signature");
                        (m, "no signature")
                    }
                    2 => {
                        let mut m = signed(m);
                        m["Signature"] = STANDARD.encode(r.bytes(128)).into();
                        (m, "random signature")
                    }
                    3 => {
                        let mut m = m;
                        m["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:not-ours".into();
                        (signed(m), "topic not allowed")
                    }
                    4 => {
                        let mut m = m;
                        m["Timestamp"] =
                            rfc3339(now - 2 * 3600 - r.range(0, 100_000) as i64).into();
                        (signed(m), "older than an hour")
                    }
                    5 => {
                        let mut m = signed(m);
                        m["SigningCertURL"] = (*r.pick(&[
                            "http://sns.us-east-1.amazonaws.com/cert.pem",
                            "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
                            "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
                            "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
                            "https://sns.us-east-1.amazonaws.com/cert.txt",
                            "https://169.254.169.254/latest/meta-data.pem",
                            "file:///etc/passwd",
                            "not a url",
                            "",
                        ]))
                        .into();
                        (m, "certificate URL outside the SNS rule")
                    }
                    6 => {
                        let mut m = signed(m);
                        m["SigningCertUrl"] = "https://evil.example/cert.pem".into();
                        (m, "lambda-style certificate URL elsewhere")
                    }
                    7 => {
                        let c = json!({"Type": "SubscriptionConfirmation", "MessageId": eid, "Token": "tok", "TopicArn": TOPIC,
                            "Message": "subscribe", "SubscribeURL": r.pick(&["https://169.254.169.254/latest", "http://127.0.0.1:1/confirm", "https://evil.example/confirm"]).to_string(), "Timestamp": rfc3339(now)});
                        (signed(c), "SubscribeURL outside the SNS rule")
                    }
                    _ => {
                        let mut m = signed(m);
                        m["Signature"] = json!(["not", "a", "string"]);
                        (m, "signature of the wrong type")
                    }
                };
                Case::hook(F, format!("ses: {what}"), "hooks", "ses")
                    .header("x-amz-sns-message-type", "Notification")
                    .json(&m)
            }
            6 => {
                let provider = *r.pick(&[
                    "capture",
                    "smtp",
                    "foo",
                    "MAILGUN",
                    "Mailgun",
                    "mailgun+api",
                    "ses+api",
                    "",
                    "..",
                    "mailgun%00",
                ]);
                if provider.is_empty() || provider == ".." {
                    Case::hook(F, format!("provider {provider:?}"), "hooks", provider)
                        .json(&json!({}))
                        .expect(404, "not_found")
                        .expect(405, "method_not_allowed")
                } else {
                    Case::hook(
                        F,
                        format!("unconfigured provider {provider:?}"),
                        "hooks",
                        provider,
                    )
                    .json(&json!({}))
                    .expect(401, "webhook_not_configured")
                }
            }
            _ => {
                let provider = *r.pick(&["mailgun", "postmark", "resend", "sendgrid", "ses"]);
                if r.below(2) == 0 {
                    Case::hook(
                        F,
                        format!("{provider} to an environment without it"),
                        "default",
                        provider,
                    )
                    .json(&json!({}))
                    .expect(401, "webhook_not_configured")
                } else {
                    let env = *r.pick(&[
                        "nope",
                        "env_0000000000000000000000000",
                        "%FF%FE",
                        "default%0A",
                    ]);
                    Case::hook(F, format!("{provider} to environment {env}"), env, provider)
                        .json(&json!({}))
                        .expect(404, "not_found")
                        .expect(400, "bad_request")
                }
            }
        };
        let case = if case.expect.is_empty() {
            case.expect(401, "webhook_unauthorized")
        } else {
            case
        };
        out.push(case);
    }
}

fn r_bit(s: &str) -> bool {
    s.len().is_multiple_of(2)
}

fn bad_provider_configs(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "bad_provider_config";
    let nine = (0..9)
        .map(|i| format!("capture://?delay_ms={i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let dsns: Vec<String> = [
        "",
        " ",
        "capture",
        "://",
        "carrier-pigeon://coop",
        "capture://?dealy_ms=5",
        "capture://?delay_ms=soon",
        "capture://?delay_ms=-5",
        "capture://?delay_ms=1e99",
        "capture://?delay_ms=99999999999999999999999",
        "capture://\r\nX-Injected: 1",
        "smtp://",
        "smtp://user:pass@",
        "smtp://host:99999",
        "smtp://host:port",
        "smtp://ho st:25",
        "smtp://host:25?unknown=1",
        "smtp://host:25?timeout_seconds=abc",
        "smtp://host:25?pool_max=-1",
        "smtp://host:25?disable_starttls=maybe",
        "smtps://%zz@host:465",
        "smtp://[::1:25",
        "mailgun+api://key@mg.example.com?region=mars",
        "mailgun+api://key@mg.example.com?webhook_signing_ky=x",
        "sendgrid+api://SG.x@default?region=moon",
        "ses+api://AKIA:secret@default?region=us-east-1&bogus=1",
        "ses+smtp://AKIA:secret@default?region=",
        "resend+api://re_x@default?timeout_seconds=-1",
        "postmark+api://token@default?message_stream=a&message_stream=b&nope=1",
        "failover(",
        "failover()",
        "failover(capture://",
        "roundrobin()",
        "failover(capture:// carrier-pigeon://x)",
        "failover(failover(capture://))",
        "roundrobin(capture:// capture://?delay_ms=x)",
        "sideways(capture://)",
        "failover(capture://))",
        "failover capture://",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        format!("failover({nine})"),
        format!("roundrobin({nine})"),
        format!("capture://?{}", "a=1&".repeat(200)),
    ])
    .collect();
    let capture = json!({"dsn": "capture://"});
    let bodies: Vec<Value> = vec![
        json!({"dsn": 42}),
        json!({"dsn": null}),
        json!({"dsn": []}),
        json!({"dsn": {"dsn": "capture://"}}),
        json!({}),
        json!({"type": 5}),
        json!({"type": "smtp"}),
        json!({"type": "carrier-pigeon"}),
        json!({"type": "capture", "delay": 5}),
        json!({"type": "capture", "delay_ms": "soon"}),
        json!({"type": "mailgun"}),
        json!({"type": "sendgrid", "api_key": 5}),
        json!({"dsn": "capture://", "type": "capture"}),
        json!({"primary": "x"}),
        json!({"primary": capture, "failovers": "x"}),
        json!({"primary": capture, "failovers": [{"dsn": "nope://"}]}),
        json!({"failovers": [capture]}),
        json!({"mode": "roundrobin", "providers": []}),
        json!({"mode": "sideways", "providers": [capture]}),
        json!({"mode": "roundrobin", "providers": "capture://"}),
        json!({"primary": {"dsn": "capture://", "max_per_second": -1}}),
        json!({"primary": {"dsn": "capture://", "max_per_second": "fast"}}),
        json!({"primary": {"dsn": "capture://", "burst": "x"}}),
        json!({"primary": {"dsn": "capture://", "name": 5}}),
        json!({"primary": capture, "circuit": {"failure_threshold": "x"}}),
        json!({"primary": capture, "circuit": {"unknown": 1}}),
        json!({"primary": capture, "failovers": vec![capture.clone(); 8]}),
        json!({"primary": capture, "sender": "not an address"}),
    ];
    for i in 0..250 {
        let (body, what) = if i % 2 == 0 {
            let dsn = if i / 2 < dsns.len() {
                dsns[i / 2].clone()
            } else {
                r.pick(&dsns).clone()
            };
            (json!({ "dsn": dsn }), format!("dsn {dsn:?}"))
        } else {
            let b = if i / 2 < bodies.len() {
                bodies[i / 2].clone()
            } else {
                r.pick(&bodies).clone()
            };
            let what = format!("body {b}");
            (b, what)
        };
        let path = match r.below(4) {
            0 => "/v1/environments/default/organizations/acme/provider",
            1 => "/v1/environments/hooks/provider",
            _ => "/v1/environments/default/provider",
        };
        out.push(
            Case::new(F, format!("{path}: {what}"), Method::PUT, path)
                .auth(Auth::Admin)
                .json(&body)
                .expect(422, "invalid_provider_config")
                .expect(422, "unknown_provider_type"),
        );
    }
    for body in ["[]", "\"capture://\"", "null", "5"] {
        out.push(
            Case::new(
                F,
                format!("non-object {body}"),
                Method::PUT,
                "/v1/environments/default/provider",
            )
            .auth(Auth::Admin)
            .raw(body)
            .expect(400, "invalid_json"),
        );
    }
}

fn bad_keys(r: &mut Rng, admin: &str, key: &str, out: &mut Vec<Case>) {
    const F: &str = "bad_key";
    for _ in 0..110 {
        let (auth, what): (Auth, String) = match r.below(9) {
            0 => (Auth::None, "no key".into()),
            1 => (Auth::Raw(b"Bearer".to_vec()), "empty bearer".into()),
            2 => (
                Auth::Raw(format!("Bearer mg_{}", r.word()).into_bytes()),
                "unknown key".into(),
            ),
            3 => (
                Auth::Raw(format!("Basic {admin}").into_bytes()),
                "admin key as Basic".into(),
            ),
            4 => (
                Auth::Raw(format!("Bearer {}x", key).into_bytes()),
                "key with a suffix".into(),
            ),
            5 => (
                Auth::Raw(format!("Bearer {}", &key[..key.len() - 1]).into_bytes()),
                "truncated key".into(),
            ),
            6 => (
                Auth::Raw(format!("Bearer {admin} {admin}").into_bytes()),
                "two keys".into(),
            ),
            7 => (
                Auth::Raw(format!("Bearer {}", "A".repeat(r.range(100, 4000))).into_bytes()),
                "long key".into(),
            ),
            _ => (
                Auth::Raw(format!("Token {key}").into_bytes()),
                "wrong scheme".into(),
            ),
        };
        let path = *r.pick(&[
            "/v1/emails",
            "/v1/environments/default/provider",
            "/v1/environments/default/templates/SignIn",
        ]);
        let method = if path == "/v1/emails" {
            Method::POST
        } else {
            Method::PUT
        };
        out.push(
            Case::new(F, format!("{method} {path}: {what}"), method, path)
                .auth(auth)
                .json(&email())
                .expect(401, "unauthorized"),
        );
    }
    for _ in 0..20 {
        out.push(
            Case::send(
                F,
                "another environment's send",
                &with(email(), "environment", "hooks".into()),
            )
            .expect(403, "forbidden_environment"),
        );
        out.push(
            Case::new(
                F,
                "another environment's provider",
                Method::PUT,
                "/v1/environments/hooks/provider",
            )
            .json(&json!({"dsn": "capture://"}))
            .expect(403, "forbidden_environment"),
        );
    }
}

/// What the store holds, counted through the storage API.
#[derive(Debug, PartialEq)]
struct Snapshot {
    environments: usize,
    events: usize,
    keys: BTreeMap<String, usize>,
    suppressions: BTreeMap<String, usize>,
    templates: BTreeMap<String, usize>,
    captured: BTreeMap<String, usize>,
    provider_configs: Vec<(String, String, i64)>,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    let s = &app.storage;
    let envs: Vec<Environment> = s.list_environments().await.unwrap();
    let events = s
        .list_events(&EventQuery {
            environment_id: None,
            message_id: None,
            types: Vec::new(),
            since: None,
            after_seq: None,
            limit: 1_000_000,
        })
        .await
        .unwrap()
        .len();
    let mut snap = Snapshot {
        environments: envs.len(),
        events,
        keys: BTreeMap::new(),
        suppressions: BTreeMap::new(),
        templates: BTreeMap::new(),
        captured: BTreeMap::new(),
        provider_configs: s
            .list_provider_configs()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.environment_id.to_string(), c.scope, c.updated_at.0))
            .collect(),
    };
    snap.provider_configs.sort();
    for env in envs {
        let name = env.name.as_str().to_owned();
        snap.keys
            .insert(name.clone(), s.list_api_keys(&env.id).await.unwrap().len());
        let q = SuppressionQuery {
            environment_id: env.id,
            reason: None,
            contains: None,
            since: None,
            after: None,
            limit: 1_000_000,
        };
        snap.suppressions
            .insert(name.clone(), s.list_suppressions(&q).await.unwrap().len());
        snap.templates
            .insert(name.clone(), s.list_templates(&env.id).await.unwrap().len());
        snap.captured.insert(
            name,
            s.list_captured(&env.id, 1_000_000).await.unwrap().len(),
        );
    }
    snap
}

/// Sends one case; `Err` says what was wrong with the answer.
async fn run(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    key: &str,
    c: &Case,
) -> Result<(), String> {
    let mut req = client.request(c.method.clone(), format!("{base}{}", c.path));
    match &c.auth {
        Auth::Env => req = req.header("Authorization", format!("Bearer {key}")),
        Auth::Admin => req = req.header("Authorization", format!("Bearer {admin}")),
        Auth::None => {}
        Auth::Raw(v) => {
            req = req.header(
                "Authorization",
                reqwest::header::HeaderValue::from_bytes(v)
                    .map_err(|e| format!("bad test header: {e}"))?,
            )
        }
    }
    if let Some(ct) = &c.content_type {
        req = req.header(
            "Content-Type",
            reqwest::header::HeaderValue::from_bytes(ct)
                .map_err(|e| format!("bad test header: {e}"))?,
        );
    }
    for (k, v) in &c.headers {
        req = req.header(
            k.as_str(),
            reqwest::header::HeaderValue::from_bytes(v)
                .map_err(|e| format!("bad test header: {e}"))?,
        );
    }
    let resp = req
        .body(c.body.clone())
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.map_err(|e| format!("no body: {e}"))?;
    let short: String = text.chars().take(300).collect();
    if !(400..500).contains(&status) {
        return Err(format!("status {status} (not a 4xx): {short}"));
    }
    if ct != "application/json" {
        return Err(format!("status {status} with content type {ct:?}: {short}"));
    }
    let v: Value =
        serde_json::from_str(&text).map_err(|_| format!("status {status}, not JSON: {short}"))?;
    let code = v["error"]["code"].as_str().unwrap_or_default();
    if v["error"]["message"].as_str().is_none_or(str::is_empty) {
        return Err(format!("status {status} without a message: {short}"));
    }
    if !c.expect.iter().any(|(s, k)| *s == status && *k == code) {
        return Err(format!(
            "got {status} {code:?}, expected one of {:?}: {short}",
            c.expect
        ));
    }
    if let Some(field) = &c.field {
        if v["error"]["field"].as_str() != Some(field.as_str()) {
            return Err(format!(
                "{status} {code}: field {:?}, expected {field:?}",
                v["error"]["field"]
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_requests_get_stable_errors_and_store_nothing() {
    let limits = Limits {
        max_body_bytes: MAX_BODY,
        max_attachment_bytes: MAX_ATTACHMENT,
        max_attachments: MAX_ATTACHMENTS,
        ..Limits::default()
    };
    let app = TestApp::builder()
        .limits(limits)
        .max_request_bytes(MAX_REQUEST)
        .spawn()
        .await;
    let key = app.create_key("default").await;
    app.create_env("hooks").await;

    // `hooks` delivers through every provider with webhooks, each with its credentials.
    let sns = fake_sns().await;
    let sendgrid = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let sendgrid_public = STANDARD.encode(
        sendgrid
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    );
    let chain = json!({
        "primary": {"type": "ses", "region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "c2VjcmV0",
            "sns_topic_arn": TOPIC, "dangerous_sns_cert_url_prefix": format!("{}/", sns.base),
            "dangerous_sns_ca_file": sns.ca_file.path().to_str().unwrap()},
        "failovers": [
            {"dsn": format!("mailgun+api://key-api@mg.acme.example?webhook_signing_key={MAILGUN_KEY}")},
            {"dsn": "postmark+api://server-token@default?webhook_username=hook&webhook_password=s3cret"},
            {"type": "resend", "api_key": "re_test", "webhook_secret": RESEND_SECRET},
            {"type": "sendgrid", "api_key": "SG.test", "webhook_public_key": sendgrid_public},
        ],
    });
    body(
        app.put_json("/v1/environments/hooks/provider", &app.admin_key, &chain)
            .await,
        200,
    )
    .await;
    // A template that puts data into the subject and the sender.
    let template = json!({"subject": "Hi {{ name }}", "text": "{{ name }}", "from": "{{ sender }} <noreply@acme.example>"});
    body(
        app.put_json(
            "/v1/environments/default/templates/Hostile",
            &app.admin_key,
            &template,
        )
        .await,
        200,
    )
    .await;

    let keys = Keys {
        sendgrid,
        sendgrid_other: SigningKey::from_slice(&[9u8; 32]).unwrap(),
        sns,
    };
    let mut r = Rng(0x05EE_D0F1_550E);
    let mut cases = Vec::new();
    header_injection(&mut r, &mut cases);
    oversize(&mut r, &mut cases);
    deep_nesting(&mut r, &mut cases);
    invalid_utf8(&mut r, &mut cases);
    malformed_json(&mut r, &mut cases);
    wrong_content_type(&mut r, &mut cases);
    malformed_addresses(&mut r, &mut cases);
    unknown_fields(&mut r, &mut cases);
    wrong_types(&mut r, &mut cases);
    invalid_names(&mut r, &mut cases);
    forged_webhooks(&mut r, &keys, &mut cases);
    bad_provider_configs(&mut r, &mut cases);
    bad_keys(&mut r, &app.admin_key, &key, &mut cases);
    // Interleave the families so that concurrent requests mix.
    let mut order: Vec<usize> = (0..cases.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, r.below(i + 1));
    }
    let cases: Vec<Case> = {
        let mut slots: Vec<Option<Case>> = cases.into_iter().map(Some).collect();
        order.iter().map(|&i| slots[i].take().unwrap()).collect()
    };
    let mut per_family: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        *per_family.entry(c.family).or_default() += 1;
    }
    assert!(cases.len() >= 2000, "only {} cases", cases.len());

    let before = snapshot(&app).await;
    let started = Instant::now();
    let cases = Arc::new(cases);
    let next = Arc::new(AtomicUsize::new(0));
    let resent = Arc::new(AtomicUsize::new(0));
    // One connection per request: the server closes a connection whose oversize body it did not
    // read, and a pooled client could reuse it for the next request.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (cases, next, resent) = (Arc::clone(&cases), Arc::clone(&next), Arc::clone(&resent));
        let (client, base) = (client.clone(), app.address.clone());
        let (admin, key) = (app.admin_key.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(c) = cases.get(i) else { break };
                let mut result = run(&client, &base, &admin, &key, c).await;
                // An oversize body may be cut off by the server's early answer (the kernel
                // resets the connection with unread data); send it again, a few times at most.
                for _ in 0..4 {
                    let reset = result
                        .as_ref()
                        .is_err_and(|e| e.starts_with("request failed"));
                    if !(reset && c.body.len() > MAX_REQUEST) {
                        break;
                    }
                    resent.fetch_add(1, Ordering::SeqCst);
                    result = run(&client, &base, &admin, &key, c).await;
                }
                if let Err(e) = result {
                    failures.push(format!("[{}] {}: {e}", c.family, c.what.escape_debug()));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    eprintln!(
        "hostile: {} requests in {:.1} s, {} oversize ones sent again ({per_family:?})",
        cases.len(),
        elapsed.as_secs_f64(),
        resent.load(Ordering::SeqCst)
    );
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let after = snapshot(&app).await;
    assert_eq!(after, before, "hostile requests changed the store");
    // The server is still well.
    assert_eq!(app.get("/readyz", &app.admin_key).await.status(), 200);

    // The snapshot does see a change: one ordinary send adds a message (its `queued` event).
    body(app.post_json("/v1/emails", &key, &email()).await, 202).await;
    assert_ne!(
        snapshot(&app).await,
        before,
        "the snapshot sees a stored message"
    );
    app.stop().await;
}

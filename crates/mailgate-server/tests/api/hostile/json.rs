//! Deep nesting, invalid UTF-8, malformed JSON and wrong content types.

use reqwest::Method;
use serde_json::{json, Value};

use super::{email, with, Auth, Case, Rng, MAX_REQUEST};

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

pub(super) fn deep_nesting(r: &mut Rng, out: &mut Vec<Case>) {
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

pub(super) fn invalid_utf8(r: &mut Rng, out: &mut Vec<Case>) {
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

pub(super) fn malformed_json(r: &mut Rng, out: &mut Vec<Case>) {
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

pub(super) fn wrong_content_type(r: &mut Rng, out: &mut Vec<Case>) {
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

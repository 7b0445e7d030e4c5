//! Header injection: subjects, display names, custom headers, attachments, tags, metadata and
//! template data.

use serde_json::json;

use super::{email, with, Case, Rng};

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

pub(super) fn header_injection(r: &mut Rng, out: &mut Vec<Case>) {
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

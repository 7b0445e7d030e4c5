//! Malformed addresses (IDN edge cases included).

use serde_json::{json, Value};

use super::{email, with, Case, Rng};

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

pub(super) fn malformed_addresses(r: &mut Rng, out: &mut Vec<Case>) {
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

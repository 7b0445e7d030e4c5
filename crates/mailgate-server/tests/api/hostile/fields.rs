//! Unknown fields, wrong types and conflicting fields, invalid usage types, locales and
//! organizations (bodies and paths).

use reqwest::Method;
use serde_json::{json, Value};

use super::{email, pct, with, without, Auth, Case, Rng};

pub(super) fn unknown_fields(r: &mut Rng, out: &mut Vec<Case>) {
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

pub(super) fn wrong_types(r: &mut Rng, out: &mut Vec<Case>) {
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

pub(super) fn invalid_names(r: &mut Rng, out: &mut Vec<Case>) {
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

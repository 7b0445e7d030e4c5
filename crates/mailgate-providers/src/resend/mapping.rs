//! Maps a mailgate message onto Resend's `POST /emails` JSON body (snake_case).
//!
//! - `from`, `to`, `cc`, `bcc` and `reply_to` are `Name <address>` strings (arrays for the
//!   recipient lists); `text`, `html`, `subject` as given; headers as an object.
//! - Attachments: `{filename, content (base64), content_type, content_id?}`; a `content_id`
//!   makes the attachment inline (`cid:`).
//! - Tags: Resend tags are `{name, value}` pairs of ASCII letters, digits, `_` and `-` (at most
//!   256 characters each). The message's id comes first as `mailgate_message_id` (so that events
//!   can be matched without the provider id), then every metadata entry as `name = key,
//!   value = value`, then every tag as `name = tag, value = "true"`. Other characters become
//!   `_`; when two names collide after that, the first wins.
//! - `provider_options` (a JSON object) is merged into the body with `http::merge_json`, so any
//!   Resend field can be set or overridden: `scheduled_at`, `topic_id`, `tags` (an array
//!   replaces the computed tags, as arrays do in the merge), or a published template as `"template": {"id": "…", "variables": {…}}` — with a template, the
//!   message's `text` and `html` are left out, as Resend requires.
//! - Open and click tracking are per-domain settings in Resend, not per message: the API has
//!   no field for them, so they cannot be set through `provider_options`; `verify` reports the
//!   From domain's settings.
//! - Idempotency: see [`idempotency_key`].

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::SendError;
use serde_json::{json, Map, Value};

use crate::http::merge_json;

/// Longest tag name or value Resend accepts.
const MAX_TAG_LEN: usize = 256;
/// The tag carrying mailgate's message id.
pub(crate) const MESSAGE_ID_TAG: &str = "mailgate_message_id";

/// Makes a tag name or value acceptable to Resend: ASCII letters, digits, `_` and `-` kept,
/// every other character replaced by `_`, cut to 256 characters; an empty input becomes `_`.
pub fn sanitize_tag(s: &str) -> String {
    let out: String = s
        .chars()
        .take(MAX_TAG_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// The `Idempotency-Key` sent with every attempt of a message: its mailgate id (`msg_…`).
///
/// mailgate already maps a caller's idempotency key to exactly one message within an
/// environment, so the message id deduplicates everything the caller's key would: retries
/// of an attempt that Resend took but whose answer was lost are not sent twice. The caller's
/// key itself is not forwarded because Resend scopes keys to the whole Resend team while
/// mailgate scopes them to one environment: staging and production sharing a Resend account
/// and both using `order-receipt/123` would otherwise see the second message silently
/// dropped (same body) or refused with 409 (different body).
pub fn idempotency_key(message: &ClaimedMessage) -> String {
    message.id.to_string()
}

/// `Name <address>` as Resend's docs show it; the name is quoted only when it holds one of
/// RFC 5322's specials.
fn mailbox(m: &Mailbox) -> Value {
    match &m.name {
        Some(name) if !name.contains(|c: char| "\"(),.:;<>@[\\]".contains(c)) => {
            Value::from(format!("{name} <{}>", m.email))
        }
        _ => Value::from(m.to_string()),
    }
}

fn list(ms: &[Mailbox]) -> Value {
    Value::Array(ms.iter().map(mailbox).collect())
}

/// The JSON body of `POST /emails` for `message`, `provider_options` merged in.
pub fn send_request(message: &ClaimedMessage) -> Result<Value, SendError> {
    let c = &message.content;
    let mut body = Map::new();
    body.insert("from".into(), mailbox(&c.from));
    body.insert("to".into(), list(&c.to));
    for (key, ms) in [("cc", &c.cc), ("bcc", &c.bcc), ("reply_to", &c.reply_to)] {
        if !ms.is_empty() {
            body.insert(key.into(), list(ms));
        }
    }
    body.insert("subject".into(), Value::from(c.subject.clone()));
    if let Some(text) = &c.text {
        body.insert("text".into(), Value::from(text.clone()));
    }
    if let Some(html) = &c.html {
        body.insert("html".into(), Value::from(html.clone()));
    }
    if !c.headers.is_empty() {
        let mut headers = Map::new();
        for h in &c.headers {
            if headers
                .insert(h.name.clone(), Value::from(h.value.clone()))
                .is_some()
            {
                return Err(SendError::permanent(
                    "duplicate_header",
                    format!(
                        "Resend takes each custom header once, and '{}' appears twice",
                        h.name
                    ),
                ));
            }
        }
        body.insert("headers".into(), Value::Object(headers));
    }
    if !c.attachments.is_empty() {
        let attachments = c
            .attachments
            .iter()
            .map(|a| {
                let mut v = json!({
                    "filename": a.filename,
                    "content": STANDARD.encode(&a.content),
                    "content_type": a.content_type,
                });
                if let Some(cid) = &a.content_id {
                    v["content_id"] = Value::from(cid.clone());
                }
                v
            })
            .collect();
        body.insert("attachments".into(), Value::Array(attachments));
    }
    body.insert("tags".into(), Value::Array(tags(message)));
    let mut body = Value::Object(body);
    if let Some(options) = &message.provider_options {
        let Some(obj) = options.as_object() else {
            return Err(SendError::permanent(
                "invalid_provider_options",
                "provider_options must be a JSON object of Resend request fields",
            ));
        };
        if obj.contains_key("template") {
            // Resend renders the published template; it refuses html/text beside it.
            if let Some(b) = body.as_object_mut() {
                b.remove("html");
                b.remove("text");
            }
        }
        merge_json(&mut body, options);
    }
    Ok(body)
}

/// The message id, metadata and tags as Resend tags, sanitised, first name wins.
fn tags(message: &ClaimedMessage) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let pairs = std::iter::once((MESSAGE_ID_TAG.to_owned(), message.id.to_string()))
        .chain(
            message
                .metadata
                .iter()
                .map(|(k, v)| (sanitize_tag(k), sanitize_tag(v))),
        )
        .chain(
            message
                .tags
                .iter()
                .map(|t| (sanitize_tag(t), "true".to_owned())),
        );
    for (name, value) in pairs {
        if seen.insert(name.clone()) {
            out.push(json!({"name": name, "value": value}));
        }
    }
    out
}

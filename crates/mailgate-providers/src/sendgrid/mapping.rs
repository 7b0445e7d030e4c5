//! Maps a mailgate message onto SendGrid's `POST /v3/mail/send` JSON body.
//!
//! - One personalization holds every recipient. SendGrid refuses an address that appears twice
//!   in it, so to, cc and bcc are deduplicated (case-insensitively on the address) in that
//!   order: an address keeps its first place. SendGrid requires a `to`: a message with only cc
//!   or bcc recipients fails permanently (`no_to_recipient`).
//! - `from` and `reply_to` are `{email, name?}`; several Reply-To addresses go to
//!   `reply_to_list` instead.
//! - `content`: `text/plain` first, then `text/html`, as SendGrid requires; empty bodies are
//!   left out (SendGrid refuses empty values).
//! - Attachments: `{content (base64), filename, type, disposition, content_id?}`, inline when
//!   the attachment has a content id.
//! - Headers: an object. SendGrid refuses to override [`RESERVED_HEADERS`]; mailgate's own
//!   header check already refuses most of them, and the rest (`x-sg-id`, `x-sg-eid`) fail
//!   permanently here (`reserved_header`).
//! - Tags become `categories`: unique, at most 10 (the rest are dropped, with a log line), each
//!   cut to 255 characters.
//! - Metadata becomes the personalization's `custom_args` (string values), together with
//!   `mailgate_message_id` so that events can be matched without the provider id. The
//!   personalization is used rather than the top-level `custom_args` because the official spec
//!   types the top-level field as a string while the API takes an object.
//! - `provider_options` (a JSON object) is merged into the body with `http::merge_json`: for
//!   example `tracking_settings` (`{"open_tracking": {"enable": true}, "click_tracking":
//!   {"enable": true, "enable_text": false}}`), `mail_settings`, `asm`, `ip_pool_name`,
//!   `send_at`, `batch_id`. Two keys are personalization fields and move there:
//!   `dynamic_template_data` and `substitutions`. With a dynamic template
//!   (`"template_id": "d-…"`), the message's `content` and `subject` are left out: the template
//!   supplies them.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::SendError;
use serde_json::{json, Map, Value};

use crate::http::merge_json;

/// Headers SendGrid does not let a request override (lower case).
pub const RESERVED_HEADERS: &[&str] = &[
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
];
/// The most categories SendGrid takes per message.
const MAX_CATEGORIES: usize = 10;
/// The longest category SendGrid takes.
const MAX_CATEGORY_LEN: usize = 255;
/// The custom argument carrying mailgate's message id.
pub(crate) const MESSAGE_ID_ARG: &str = "mailgate_message_id";
/// Option keys that belong in the personalization rather than at the top level.
const PERSONALIZATION_OPTIONS: &[&str] = &["dynamic_template_data", "substitutions"];

fn address(m: &Mailbox) -> Value {
    let mut v = Map::new();
    v.insert("email".into(), Value::from(m.email.to_string()));
    if let Some(name) = &m.name {
        v.insert("name".into(), Value::from(name.clone()));
    }
    Value::Object(v)
}

/// A tag as a SendGrid category: cut to 255 characters.
pub fn category(tag: &str) -> String {
    tag.chars().take(MAX_CATEGORY_LEN).collect()
}

/// to, cc and bcc with every address kept only at its first place.
pub(crate) fn dedupe(lists: [&[Mailbox]; 3]) -> [Vec<&Mailbox>; 3] {
    let mut seen = HashSet::new();
    lists.map(|list| {
        list.iter()
            .filter(|m| seen.insert(m.email.normalized().to_lowercase()))
            .collect()
    })
}

/// The JSON body of `POST /v3/mail/send` for `message`, `provider_options` merged in.
pub fn send_request(message: &ClaimedMessage) -> Result<Value, SendError> {
    let c = &message.content;
    let [to, cc, bcc] = dedupe([&c.to, &c.cc, &c.bcc]);
    if to.is_empty() {
        return Err(SendError::permanent(
            "no_to_recipient",
            "SendGrid needs at least one To recipient; this message has only cc or bcc",
        ));
    }
    let mut personalization = Map::new();
    for (key, list) in [("to", &to), ("cc", &cc), ("bcc", &bcc)] {
        if !list.is_empty() {
            let v = list.iter().map(|m| address(m)).collect();
            personalization.insert(key.into(), Value::Array(v));
        }
    }
    let mut args = Map::new();
    args.insert(MESSAGE_ID_ARG.into(), Value::from(message.id.to_string()));
    for (k, v) in &message.metadata {
        args.entry(k.clone())
            .or_insert_with(|| Value::from(v.clone()));
    }
    personalization.insert("custom_args".into(), Value::Object(args));

    let mut body = Map::new();
    body.insert("from".into(), address(&c.from));
    match c.reply_to.as_slice() {
        [] => {}
        [one] => {
            body.insert("reply_to".into(), address(one));
        }
        many => {
            body.insert(
                "reply_to_list".into(),
                Value::Array(many.iter().map(address).collect()),
            );
        }
    }
    body.insert("subject".into(), Value::from(c.subject.clone()));
    let content: Vec<Value> = [("text/plain", &c.text), ("text/html", &c.html)]
        .into_iter()
        .filter_map(|(kind, value)| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| json!({"type": kind, "value": v}))
        })
        .collect();
    if !content.is_empty() {
        body.insert("content".into(), Value::Array(content));
    }
    if !c.attachments.is_empty() {
        let list = c
            .attachments
            .iter()
            .map(|a| {
                let mut v = json!({
                    "content": STANDARD.encode(&a.content),
                    "filename": a.filename,
                    "type": a.content_type,
                    "disposition": if a.content_id.is_some() { "inline" } else { "attachment" },
                });
                if let Some(cid) = &a.content_id {
                    v["content_id"] = Value::from(cid.clone());
                }
                v
            })
            .collect();
        body.insert("attachments".into(), Value::Array(list));
    }
    if !c.headers.is_empty() {
        let mut headers = Map::new();
        for h in &c.headers {
            if RESERVED_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()) {
                return Err(SendError::permanent(
                    "reserved_header",
                    format!("SendGrid does not allow the header '{}' to be set", h.name),
                ));
            }
            if headers
                .insert(h.name.clone(), Value::from(h.value.clone()))
                .is_some()
            {
                return Err(SendError::permanent(
                    "duplicate_header",
                    format!(
                        "SendGrid takes each custom header once, and '{}' appears twice",
                        h.name
                    ),
                ));
            }
        }
        body.insert("headers".into(), Value::Object(headers));
    }
    let categories = categories(&message.tags);
    if !categories.is_empty() {
        body.insert("categories".into(), Value::from(categories));
    }
    // mailgate's effective tracking is explicit, so an account default cannot turn it on for a
    // sign-in link; `provider_options.tracking_settings` may still override it (deep merge).
    let tracking = message.delivery.tracking;
    body.insert(
        "tracking_settings".into(),
        json!({
            "open_tracking": {"enable": tracking.opens},
            "click_tracking": {"enable": tracking.links, "enable_text": tracking.links},
        }),
    );

    let mut options = match &message.provider_options {
        None => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(SendError::permanent(
                "invalid_provider_options",
                "provider_options must be a JSON object of SendGrid request fields",
            ))
        }
    };
    for key in PERSONALIZATION_OPTIONS {
        if let Some(v) = options.remove(*key) {
            personalization.insert((*key).into(), v);
        }
    }
    let dynamic_template = options
        .get("template_id")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("d-"));
    if dynamic_template {
        body.remove("content");
        body.remove("subject");
    }
    body.insert(
        "personalizations".into(),
        Value::Array(vec![Value::Object(personalization)]),
    );
    let mut body = Value::Object(body);
    if !options.is_empty() {
        merge_json(&mut body, &Value::Object(options));
    }
    Ok(body)
}

/// Tags as categories: cut to 255 characters, unique, at most 10.
fn categories(tags: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    let all: Vec<String> = tags
        .iter()
        .map(|t| category(t))
        .filter(|t| !t.is_empty() && seen.insert(t.clone()))
        .collect();
    if all.len() > MAX_CATEGORIES {
        tracing::warn!(
            tags = all.len(),
            kept = MAX_CATEGORIES,
            "SendGrid takes at most 10 categories; the other tags are not sent"
        );
    }
    all.into_iter().take(MAX_CATEGORIES).collect()
}

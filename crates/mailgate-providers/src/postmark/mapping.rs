//! Maps a message to Postmark's PascalCase JSON body, then merges its `provider_options`; picks
//! `/email` or `/email/withTemplate`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::SendError;
use serde_json::{json, Map, Value};

/// The plain send path.
pub(crate) const EMAIL: &str = "/email";
/// The stored-template send path.
pub(crate) const WITH_TEMPLATE: &str = "/email/withTemplate";

/// The request for one message: its path and JSON body.
pub(crate) fn build_request(
    message: &ClaimedMessage,
    message_stream: &str,
) -> Result<(&'static str, Value), SendError> {
    let content = &message.content;
    let mut body = Map::new();
    body.insert("From".into(), content.from.to_string().into());
    for (field, list) in [
        ("To", &content.to),
        ("Cc", &content.cc),
        ("Bcc", &content.bcc),
        ("ReplyTo", &content.reply_to),
    ] {
        if !list.is_empty() {
            body.insert(field.into(), join(list).into());
        }
    }
    body.insert("Subject".into(), content.subject.clone().into());
    if let Some(text) = &content.text {
        body.insert("TextBody".into(), text.clone().into());
    }
    if let Some(html) = &content.html {
        body.insert("HtmlBody".into(), html.clone().into());
    }
    if !content.headers.is_empty() {
        let headers = content
            .headers
            .iter()
            .map(|h| json!({"Name": h.name, "Value": h.value}))
            .collect();
        body.insert("Headers".into(), Value::Array(headers));
    }
    if !content.attachments.is_empty() {
        let attachments = content
            .attachments
            .iter()
            .map(|a| {
                let mut item = json!({
                    "Name": a.filename,
                    "Content": STANDARD.encode(&a.content),
                    "ContentType": a.content_type,
                });
                if let Some(cid) = &a.content_id {
                    item["ContentID"] = format!("cid:{cid}").into();
                }
                item
            })
            .collect();
        body.insert("Attachments".into(), Value::Array(attachments));
    }
    // Postmark takes a single tag: the first one.
    if let Some(tag) = message.tags.first() {
        body.insert("Tag".into(), tag.clone().into());
    }
    // mailgate's id rides in Metadata so that webhook events match without Postmark's id.
    let mut metadata = json!(message.metadata);
    metadata["mailgate_message_id"] = message.id.to_string().into();
    body.insert("Metadata".into(), metadata);
    body.insert("MessageStream".into(), message_stream.into());
    // mailgate's effective tracking is explicit, so a server default cannot turn it on for a
    // sign-in link; `provider_options` may still override it.
    let tracking = message.delivery.tracking;
    body.insert("TrackOpens".into(), tracking.opens.into());
    body.insert(
        "TrackLinks".into(),
        if tracking.links {
            "HtmlAndText"
        } else {
            "None"
        }
        .into(),
    );

    let mut body = Value::Object(body);
    let mut path = EMAIL;
    if let Some(options) = &message.provider_options {
        let Value::Object(map) = options else {
            return Err(SendError::permanent(
                "invalid_provider_options",
                "Postmark provider_options must be a JSON object of Postmark request fields",
            ));
        };
        let template = ["TemplateAlias", "TemplateId"]
            .iter()
            .any(|k| map.get(*k).is_some_and(|v| !v.is_null()));
        if template {
            path = WITH_TEMPLATE;
            if let Value::Object(b) = &mut body {
                for field in ["Subject", "TextBody", "HtmlBody"] {
                    b.remove(field);
                }
            }
        }
        crate::http::merge_json(&mut body, options);
    }
    if let Value::Object(b) = &mut body {
        b.retain(|_, v| !v.is_null());
    }
    Ok((path, body))
}

/// A comma-separated address list; display names are quoted (`"Lee, Ann" <ann@example.com>`).
fn join(list: &[Mailbox]) -> String {
    list.iter()
        .map(Mailbox::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

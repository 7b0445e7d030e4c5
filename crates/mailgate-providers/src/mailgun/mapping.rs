//! Maps a message to Mailgun's send form: addresses, bodies, `h:` headers, attachments and
//! inline parts, `o:tag` tags, `v:` user variables, then the message's `provider_options`.

use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::SendError;
use serde_json::Value;

use super::form::Form;

/// Builds the form for one message, or refuses `provider_options` that are not an object.
pub(crate) fn build_form(message: &ClaimedMessage) -> Result<Form, SendError> {
    let content = &message.content;
    let mut form = Form::default();
    form.text("from", content.from.to_string());
    for (field, list) in [
        ("to", &content.to),
        ("cc", &content.cc),
        ("bcc", &content.bcc),
    ] {
        for mailbox in list {
            form.text(field, mailbox.to_string());
        }
    }
    form.text("subject", content.subject.clone());
    if let Some(text) = &content.text {
        form.text("text", text.clone());
    }
    if let Some(html) = &content.html {
        form.text("html", html.clone());
    }
    if !content.reply_to.is_empty() {
        form.text("h:Reply-To", join(&content.reply_to));
    }
    for header in &content.headers {
        form.text(format!("h:{}", header.name), header.value.clone());
    }
    for attachment in &content.attachments {
        match &attachment.content_id {
            // Mailgun gives an inline part the Content-ID of its file name: `cid:NAME` in the HTML.
            Some(cid) => form.file(
                "inline",
                cid,
                &attachment.content_type,
                attachment.content.clone(),
            ),
            None => form.file(
                "attachment",
                &attachment.filename,
                &attachment.content_type,
                attachment.content.clone(),
            ),
        }
    }
    for tag in &message.tags {
        form.text("o:tag", tag.clone());
    }
    // mailgate's id first, so that webhook events match without Mailgun's id.
    form.text("v:mailgate_message_id", message.id.to_string());
    for (key, value) in &message.metadata {
        if key != "mailgate_message_id" {
            form.text(format!("v:{key}"), value.clone());
        }
    }
    // mailgate's effective tracking is explicit, so a domain default cannot turn it on for a
    // sign-in link; `provider_options` may still override it.
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    form.text(
        "o:tracking-opens",
        yes_no(message.delivery.tracking.opens).to_owned(),
    );
    form.text(
        "o:tracking-clicks",
        yes_no(message.delivery.tracking.links).to_owned(),
    );
    if let Some(options) = &message.provider_options {
        apply_options(&mut form, options)?;
    }
    Ok(form)
}

/// Recipients for one header: `"Ann" <ann@example.com>, bo@example.com`.
fn join(list: &[Mailbox]) -> String {
    list.iter()
        .map(Mailbox::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Merges `provider_options` into the form: each key replaces the fields of that name.
fn apply_options(form: &mut Form, options: &Value) -> Result<(), SendError> {
    let Value::Object(options) = options else {
        return Err(SendError::permanent(
            "invalid_provider_options",
            "Mailgun provider_options must be a JSON object of form fields",
        ));
    };
    if options.get("template").is_some_and(|t| !t.is_null()) {
        // A stored template renders the bodies; sending both is ambiguous.
        form.remove("text");
        form.remove("html");
    }
    for (name, value) in options {
        form.remove(name);
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    form.text(name.clone(), scalar(item));
                }
            }
            other => form.text(name.clone(), scalar(other)),
        }
    }
    Ok(())
}

/// A JSON value as a form field: strings verbatim, anything else as JSON text.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mailgate_core::ids::{EnvironmentId, MessageId};
    use mailgate_core::message::{Attachment, Content, Header};
    use serde_json::json;

    use super::*;

    fn mb(s: &str) -> Mailbox {
        Mailbox::parse(s, "t").unwrap()
    }

    pub(crate) fn message(options: Option<Value>) -> ClaimedMessage {
        ClaimedMessage {
            id: MessageId::new(),
            environment_id: EnvironmentId::new(),
            attempt: 1,
            max_attempts: 3,
            lease_token: "l".into(),
            content: Content {
                from: mb("Acme <noreply@mg.acme.com>"),
                to: vec![mb("Ann Lee <ann@example.net>"), mb("bo@example.net")],
                cc: vec![mb("cy@example.net")],
                bcc: vec![],
                reply_to: vec![mb("support@acme.com")],
                subject: "Hi".into(),
                text: Some("t".into()),
                html: Some("<p>h</p>".into()),
                headers: vec![Header::parse("X-Order", "42", "h").unwrap()],
                attachments: vec![Attachment {
                    filename: "logo.png".into(),
                    content_type: "image/png".into(),
                    content: vec![1, 2],
                    content_id: Some("logo".into()),
                }],
            },
            tags: vec!["a".into(), "b".into()],
            metadata: BTreeMap::from([("order".to_owned(), "42".to_owned())]),
            provider_options: options,
            idempotency_key: None,
            delivery: Default::default(),
        }
    }

    #[test]
    fn maps_every_field() {
        let form = build_form(&message(None)).unwrap();
        assert_eq!(form.texts("from"), ["\"Acme\" <noreply@mg.acme.com>"]);
        assert_eq!(
            form.texts("to"),
            ["\"Ann Lee\" <ann@example.net>", "bo@example.net"]
        );
        assert_eq!(form.texts("cc"), ["cy@example.net"]);
        assert!(!form.has("bcc"));
        assert_eq!(form.texts("h:Reply-To"), ["support@acme.com"]);
        assert_eq!(form.texts("h:X-Order"), ["42"]);
        assert_eq!(form.texts("o:tag"), ["a", "b"]);
        assert_eq!(form.texts("v:order"), ["42"]);
        assert!(form.has("inline") && !form.has("attachment"));
    }

    #[test]
    fn tracking_is_explicit_from_the_effective_flags() {
        let mut m = message(None);
        let form = build_form(&m).unwrap();
        assert_eq!(form.texts("o:tracking-opens"), ["no"]);
        assert_eq!(form.texts("o:tracking-clicks"), ["no"]);
        m.delivery.tracking.opens = true;
        m.delivery.tracking.links = true;
        let form = build_form(&m).unwrap();
        assert_eq!(form.texts("o:tracking-opens"), ["yes"]);
        assert_eq!(form.texts("o:tracking-clicks"), ["yes"]);
    }

    #[test]
    fn options_replace_add_and_remove_fields() {
        let form = build_form(&message(Some(json!({
            "template": "welcome",
            "t:variables": {"name": "Ann"},
            "o:tag": ["x"],
            "o:tracking-opens": "yes",
            "o:tracking-clicks": true,
            "h:X-Order": null,
        }))))
        .unwrap();
        assert_eq!(form.texts("template"), ["welcome"]);
        assert_eq!(form.texts("t:variables"), ["{\"name\":\"Ann\"}"]);
        assert_eq!(form.texts("o:tag"), ["x"]);
        assert_eq!(form.texts("o:tracking-opens"), ["yes"]);
        assert_eq!(form.texts("o:tracking-clicks"), ["true"]);
        assert!(!form.has("h:X-Order"));
        assert!(
            !form.has("text") && !form.has("html"),
            "the template renders"
        );
        let e = build_form(&message(Some(json!(["x"])))).unwrap_err();
        assert!(!e.is_retryable());
    }
}

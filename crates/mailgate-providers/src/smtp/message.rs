//! Builds the MIME message and the SMTP envelope from a claimed message with lettre's builder.
//!
//! Structure: text and html → `multipart/alternative` (text first); inline attachments (with a
//! Content-ID) next to the html → `multipart/related`; other attachments → `multipart/mixed`.
//! Bcc recipients go in the envelope only, never in a header.

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Address;
use mailgate_core::message::{Attachment as Attached, ClaimedMessage};
use mailgate_core::provider::SendError;

/// A message ready for SMTP.
pub(crate) struct Outgoing {
    /// The formatted message (CRLF line ends, headers encoded).
    pub raw: Vec<u8>,
    /// MAIL FROM.
    pub from: Address,
    /// RCPT TO, in the order to, cc, bcc (the order "recipient #n" counts in).
    pub recipients: Vec<Address>,
    /// The Message-ID without angle brackets: `{message id}@{sender's domain}`.
    pub message_id: String,
}

/// Builds the MIME message and envelope. Errors are permanent: retrying cannot fix the content.
pub(crate) fn build(message: &ClaimedMessage) -> Result<Outgoing, SendError> {
    let content = &message.content;
    let from = mailbox(&content.from, "the sender")?;
    let message_id = format!("{}@{}", message.id, content.from.email.domain());

    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(content.subject.clone())
        .message_id(Some(format!("<{message_id}>")));
    for (i, to) in content.to.iter().enumerate() {
        builder = builder.to(mailbox(to, &format!("recipient #{}", i + 1))?);
    }
    for (i, cc) in content.cc.iter().enumerate() {
        let n = content.to.len() + i + 1;
        builder = builder.cc(mailbox(cc, &format!("recipient #{n}"))?);
    }
    for (i, r) in content.reply_to.iter().enumerate() {
        builder = builder.reply_to(mailbox(r, &format!("reply-to #{}", i + 1))?);
    }
    for h in &content.headers {
        let name = HeaderName::new_from_ascii(h.name.clone()).map_err(|_| {
            SendError::permanent(
                "invalid_header",
                format!("header name '{}' cannot be sent over SMTP", h.name),
            )
        })?;
        builder = builder.raw_header(HeaderValue::new(name, h.value.clone()));
    }

    let body = body(
        content.text.as_deref(),
        content.html.as_deref(),
        &content.attachments,
    );
    let built = match body {
        Body::Single(part) => builder.singlepart(part),
        Body::Multi(part) => builder.multipart(part),
    }
    .map_err(|e| SendError::permanent("invalid_message", format!("cannot build MIME: {e}")))?;

    let recipients = content
        .recipients()
        .enumerate()
        .map(|(i, m)| mailbox(m, &format!("recipient #{}", i + 1)).map(|m| m.email))
        .collect::<Result<Vec<_>, _>>()?;
    if recipients.is_empty() {
        return Err(SendError::permanent(
            "no_recipients",
            "the message has no recipients",
        ));
    }
    Ok(Outgoing {
        raw: built.formatted(),
        from: from.email,
        recipients,
        message_id,
    })
}

fn mailbox(m: &mailgate_core::Mailbox, who: &str) -> Result<Mailbox, SendError> {
    let address = Address::new(m.email.local_part(), m.email.domain()).map_err(|_| {
        SendError::permanent(
            "invalid_address",
            format!("the address of {who} cannot be sent over SMTP"),
        )
    })?;
    Ok(Mailbox::new(m.name.clone(), address))
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

fn body(text: Option<&str>, html: Option<&str>, attachments: &[Attached]) -> Body {
    // Inline parts belong next to the html that refers to them; without html they are ordinary
    // attachments.
    let (inline, files): (Vec<&Attached>, Vec<&Attached>) = attachments
        .iter()
        .partition(|a| a.content_id.is_some() && html.is_some());

    let html_part = html.map(|h| {
        let part = SinglePart::html(h.to_owned());
        if inline.is_empty() {
            Body::Single(part)
        } else {
            let related = inline
                .iter()
                .fold(MultiPart::related().singlepart(part), |m, a| {
                    m.singlepart(attachment(a))
                });
            Body::Multi(related)
        }
    });
    let main = match (text, html_part) {
        (Some(t), Some(h)) => {
            let alt = MultiPart::alternative().singlepart(SinglePart::plain(t.to_owned()));
            Body::Multi(match h {
                Body::Single(p) => alt.singlepart(p),
                Body::Multi(p) => alt.multipart(p),
            })
        }
        (None, Some(h)) => h,
        (Some(t), None) => Body::Single(SinglePart::plain(t.to_owned())),
        (None, None) => Body::Single(SinglePart::plain(String::new())),
    };
    if files.is_empty() {
        return main;
    }
    let mixed = match main {
        Body::Single(p) => MultiPart::mixed().singlepart(p),
        Body::Multi(p) => MultiPart::mixed().multipart(p),
    };
    Body::Multi(files.iter().fold(mixed, |m, a| m.singlepart(attachment(a))))
}

fn attachment(a: &Attached) -> SinglePart {
    let content_type = ContentType::parse(&a.content_type)
        .unwrap_or_else(|_| ContentType::parse("application/octet-stream").expect("valid"));
    let builder = match &a.content_id {
        Some(cid) => Attachment::new_inline_with_name(cid.clone(), a.filename.clone()),
        None => Attachment::new(a.filename.clone()),
    };
    builder.body(a.content.clone(), content_type)
}

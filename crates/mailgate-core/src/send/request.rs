//! What a caller asks to send, and how it becomes content: the explicit fields, over the
//! rendered template, over the environment's defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::address::Mailbox;
use crate::environment::OrganizationName;
use crate::message::{Attachment, Content, Header, Limits};
use crate::settings::MessageDefaults;
use crate::template::{split_addresses, Locale, Rendered, UsageType};
use crate::time::Timestamp;
use crate::validation::{check_header_value, FieldError};

/// The explicit parts of a send, each already valid; any may be left to the template or to the
/// environment's defaults.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The sender.
    pub from: Option<Mailbox>,
    /// Primary recipients.
    pub to: Vec<Mailbox>,
    /// Cc recipients.
    pub cc: Vec<Mailbox>,
    /// Bcc recipients.
    pub bcc: Vec<Mailbox>,
    /// Reply-To addresses.
    pub reply_to: Vec<Mailbox>,
    /// The subject line.
    pub subject: Option<String>,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// Custom headers.
    pub headers: Vec<Header>,
    /// Attached files.
    pub attachments: Vec<Attachment>,
}

impl From<Content> for Draft {
    fn from(c: Content) -> Self {
        Self {
            from: Some(c.from),
            to: c.to,
            cc: c.cc,
            bcc: c.bcc,
            reply_to: c.reply_to,
            subject: Some(c.subject),
            text: c.text,
            html: c.html,
            headers: c.headers,
            attachments: c.attachments,
        }
    }
}

/// A usage type with its data, rendered from the environment's templates.
#[derive(Debug, Clone)]
pub struct TemplateUse {
    /// The usage type.
    pub usage: UsageType,
    /// The recipient's locale, if known.
    pub locale: Option<Locale>,
    /// The template's variables.
    pub data: Map<String, Value>,
}

/// When a message stops being worth delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// At this instant.
    At(Timestamp),
    /// This long after acceptance.
    Ttl(Duration),
}

/// A send whose parts are each valid; the service checks the whole.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    /// The explicit content.
    pub draft: Draft,
    /// A usage type to render instead of explicit subject and bodies.
    pub template: Option<TemplateUse>,
    /// Labels.
    pub tags: Vec<String>,
    /// Caller's metadata.
    pub metadata: BTreeMap<String, String>,
    /// Provider overrides (a JSON object).
    pub provider_options: Option<Value>,
    /// When the message expires, if it does.
    pub expiry: Option<Expiry>,
    /// Open tracking, when the caller says.
    pub track_opens: Option<bool>,
    /// Click tracking, when the caller says.
    pub track_links: Option<bool>,
    /// The organization the message is for: its provider chain and sender, where set.
    pub organization: Option<OrganizationName>,
}

impl SendRequest {
    /// A request for explicit content with no options.
    pub fn new(content: Content) -> Self {
        Self {
            draft: content.into(),
            ..Self::default()
        }
    }
}

/// Parses a rendered address list (`from` must hold exactly one).
fn rendered_list(list: &str, field: &str) -> Result<Vec<Mailbox>, FieldError> {
    check_header_value(field, list)?;
    split_addresses(list)
        .into_iter()
        .map(|a| Mailbox::parse(a, field))
        .collect()
}

/// The first non-empty of the explicit list, the template's list and the default list.
fn pick(
    explicit: Vec<Mailbox>,
    rendered: Option<&str>,
    default: &[Mailbox],
    field: &str,
) -> Result<Vec<Mailbox>, FieldError> {
    if !explicit.is_empty() {
        return Ok(explicit);
    }
    if let Some(list) = rendered.filter(|l| !l.trim().is_empty()) {
        return rendered_list(list, field);
    }
    Ok(default.to_vec())
}

/// Builds the content: explicit fields win, then the template's, then the environment's
/// defaults. Rendered values pass the same checks as explicit ones (a CR or LF in a subject or an
/// address is `header_injection`).
pub(crate) fn compose(
    draft: Draft,
    rendered: Option<&Rendered>,
    defaults: &MessageDefaults,
) -> Result<Content, FieldError> {
    let r = rendered.cloned().unwrap_or_default();
    let from = match (
        draft.from,
        r.from.as_deref().filter(|f| !f.trim().is_empty()),
    ) {
        (Some(f), _) => f,
        (None, Some(f)) => Mailbox::parse(f, "template.from")?,
        (None, None) => defaults.from.clone().ok_or_else(|| {
            FieldError::new(
                "missing_sender",
                "from",
                "from is required (or set the environment's defaults.from)",
            )
        })?,
    };
    let subject = draft.subject.or(r.subject).unwrap_or_default();
    check_header_value("subject", &subject)?;
    Ok(Content {
        from,
        reply_to: pick(
            draft.reply_to,
            r.reply_to.as_deref(),
            &defaults.reply_to,
            "template.reply_to",
        )?,
        cc: pick(draft.cc, r.cc.as_deref(), &defaults.cc, "template.cc")?,
        bcc: pick(draft.bcc, r.bcc.as_deref(), &defaults.bcc, "template.bcc")?,
        to: draft.to,
        subject,
        text: draft.text.or(r.text),
        html: draft.html.or(r.html),
        headers: draft.headers,
        attachments: draft.attachments,
    })
}

/// Checks the rules that span fields: a recipient, a body (unless a provider template renders
/// it), and the size limits.
pub(crate) fn check(
    c: &Content,
    tags: usize,
    metadata: usize,
    limits: &Limits,
    provider_template: bool,
) -> Result<(), FieldError> {
    let recipients = c.recipients().count();
    if recipients == 0 {
        return Err(FieldError::new(
            "missing_recipient",
            "to",
            "at least one recipient is required in to, cc or bcc",
        ));
    }
    if recipients > limits.max_recipients {
        return Err(FieldError::new(
            "too_many_recipients",
            "to",
            format!(
                "at most {} recipients across to, cc and bcc",
                limits.max_recipients
            ),
        ));
    }
    if !provider_template && c.subject.trim().is_empty() {
        return Err(FieldError::new(
            "missing_subject",
            "subject",
            "a subject is required",
        ));
    }
    if !provider_template
        && c.text.as_deref().is_none_or(str::is_empty)
        && c.html.as_deref().is_none_or(str::is_empty)
    {
        return Err(FieldError::new(
            "missing_content",
            "text",
            "text or html content is required",
        ));
    }
    if c.body_bytes() > limits.max_body_bytes {
        return Err(FieldError::new(
            "body_too_large",
            "html",
            format!("subject and bodies exceed {} bytes", limits.max_body_bytes),
        ));
    }
    if c.attachments.len() > limits.max_attachments {
        return Err(FieldError::new(
            "too_many_attachments",
            "attachments",
            format!("at most {} attachments", limits.max_attachments),
        ));
    }
    if c.attachment_bytes() > limits.max_attachment_bytes {
        return Err(FieldError::new(
            "attachments_too_large",
            "attachments",
            format!("attachments exceed {} bytes", limits.max_attachment_bytes),
        ));
    }
    if tags > limits.max_tags {
        return Err(FieldError::new(
            "too_many_tags",
            "tags",
            format!("at most {} tags", limits.max_tags),
        ));
    }
    if metadata > limits.max_metadata {
        return Err(FieldError::new(
            "too_many_metadata",
            "metadata",
            format!("at most {} metadata entries", limits.max_metadata),
        ));
    }
    Ok(())
}

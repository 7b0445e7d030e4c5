//! `POST /v1/emails` and `GET /v1/emails/{id}` bodies, and the one place where a send body becomes
//! a core `SendRequest`.

use std::collections::BTreeMap;
use std::time::Duration;

use mailgate_core::address::Mailbox;
use mailgate_core::environment::OrganizationName;
use mailgate_core::event::Event;
use mailgate_core::message::{decode_base64, Attachment, Header, MessageRecord, MessageStatus};
use mailgate_core::send::{Draft, Expiry, SendRequest, TemplateUse, Warning};
use mailgate_core::template::{Locale, UsageType};
use mailgate_core::validation::check_header_value;
use mailgate_core::{FieldError, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::events::EventOut;

const MAX_TAG_CHARS: usize = 128;
const MAX_METADATA_KEY_CHARS: usize = 64;
const MAX_METADATA_VALUE_CHARS: usize = 512;
const MAX_FILENAME_CHARS: usize = 255;

/// The body of `POST /v1/emails`. Address fields stay raw JSON here so that their errors can name
/// the exact element (`to[1]`, `from.email`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEmailIn {
    /// `"Name <a@b>"` or `{"email", "name"}`.
    pub from: Option<Value>,
    /// A string, an object, or an array of them.
    pub to: Option<Value>,
    /// Like `to`.
    pub cc: Option<Value>,
    /// Like `to`.
    pub bcc: Option<Value>,
    /// Like `to`.
    pub reply_to: Option<Value>,
    /// The subject line.
    pub subject: Option<String>,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// Attached files.
    #[serde(default)]
    pub attachments: Vec<AttachmentIn>,
    /// Custom headers, name → value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Caller's key → value metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Open tracking; off by default for auth usage types, else the environment's setting.
    pub track_opens: Option<bool>,
    /// Click tracking; off by default for auth usage types, else the environment's setting.
    pub track_links: Option<bool>,
    /// Provider-specific overrides.
    pub provider_options: Option<Map<String, Value>>,
    /// The environment's name or id (required for admin keys).
    pub environment: Option<String>,
    /// A usage type (`SignIn`, …) rendered from the environment's templates.
    pub usage: Option<String>,
    /// The template's variables.
    pub data: Option<Map<String, Value>>,
    /// The recipient's locale (`fr-CA`).
    pub locale: Option<String>,
    /// RFC 3339 instant after which the message is never delivered.
    pub expires_at: Option<String>,
    /// Seconds after acceptance after which the message is never delivered.
    pub ttl: Option<u64>,
    /// The organization the message is for: its own provider chain and sender, where set.
    pub organization: Option<String>,
}

/// One attachment in a send body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentIn {
    /// File name shown to the recipient.
    pub filename: String,
    /// Base64 content.
    pub content: String,
    /// MIME type (`application/octet-stream` when absent).
    pub content_type: Option<String>,
    /// Content-ID for inline parts.
    pub content_id: Option<String>,
}

/// Longest `ttl` accepted: 30 days.
const MAX_TTL_SECONDS: u64 = 30 * 24 * 3600;

impl SendEmailIn {
    /// The template part: `usage` with `data` and `locale`, refusing explicit subject and bodies
    /// beside it and template fields without it.
    fn template(&mut self) -> Result<Option<TemplateUse>, FieldError> {
        let Some(usage) = self.usage.take() else {
            for (name, present) in [
                ("data", self.data.is_some()),
                ("locale", self.locale.is_some()),
            ] {
                if present {
                    return Err(FieldError::new(
                        "usage_required",
                        name,
                        format!("{name} is only used with usage (a template)"),
                    ));
                }
            }
            return Ok(None);
        };
        for (name, present) in [
            ("subject", self.subject.is_some()),
            ("html", self.html.is_some()),
            ("text", self.text.is_some()),
        ] {
            if present {
                return Err(FieldError::new(
                    "conflicting_content",
                    name,
                    format!("{name} comes from the template when usage is given"),
                ));
            }
        }
        Ok(Some(TemplateUse {
            usage: UsageType::parse(&usage, "usage")?,
            locale: self
                .locale
                .take()
                .map(|l| Locale::parse(&l, "locale"))
                .transpose()?,
            data: self.data.take().unwrap_or_default(),
        }))
    }

    /// `expires_at` or `ttl` (not both).
    fn expiry(&self) -> Result<Option<Expiry>, FieldError> {
        match (&self.expires_at, self.ttl) {
            (Some(_), Some(_)) => Err(FieldError::new(
                "conflicting_expiry",
                "ttl",
                "give expires_at or ttl, not both",
            )),
            (Some(at), None) => Timestamp::parse(at)
                .filter(|_| at.contains('T'))
                .map(|t| Some(Expiry::At(t)))
                .ok_or_else(|| {
                    FieldError::new(
                        "invalid_field",
                        "expires_at",
                        "expires_at must be an RFC 3339 instant, e.g. 2026-11-27T10:05:00Z",
                    )
                }),
            (None, Some(ttl)) if ttl == 0 || ttl > MAX_TTL_SECONDS => Err(FieldError::new(
                "invalid_field",
                "ttl",
                format!("ttl is 1–{MAX_TTL_SECONDS} seconds"),
            )),
            (None, Some(ttl)) => Ok(Some(Expiry::Ttl(Duration::from_secs(ttl)))),
            (None, None) => Ok(None),
        }
    }

    /// Converts the body into a send request whose parts are each valid; the service renders
    /// the template and checks the whole (recipients, content, limits).
    pub fn into_request(mut self) -> Result<SendRequest, FieldError> {
        let template = self.template()?;
        let expiry = self.expiry()?;
        let from = match &self.from {
            None | Some(Value::Null) => None,
            Some(v) => Some(mailbox(v, "from")?),
        };
        if let Some(subject) = &self.subject {
            check_header_value("subject", subject)?;
        }
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| Header::parse(name, value, &format!("headers.{name}")))
            .collect::<Result<_, _>>()?;
        let attachments = self
            .attachments
            .into_iter()
            .enumerate()
            .map(|(i, a)| a.into_attachment(&format!("attachments[{i}]")))
            .collect::<Result<_, _>>()?;
        let draft = Draft {
            from,
            to: mailboxes(self.to.as_ref(), "to")?,
            cc: mailboxes(self.cc.as_ref(), "cc")?,
            bcc: mailboxes(self.bcc.as_ref(), "bcc")?,
            reply_to: mailboxes(self.reply_to.as_ref(), "reply_to")?,
            subject: self.subject,
            text: self.text,
            html: self.html,
            headers,
            attachments,
        };
        for (i, tag) in self.tags.iter().enumerate() {
            check_tag(tag, &format!("tags[{i}]"))?;
        }
        for (key, value) in &self.metadata {
            check_metadata(key, value)?;
        }
        Ok(SendRequest {
            draft,
            template,
            tags: self.tags,
            metadata: self.metadata,
            provider_options: self.provider_options.map(Value::Object),
            expiry,
            track_opens: self.track_opens,
            track_links: self.track_links,
            organization: self
                .organization
                .as_deref()
                .map(OrganizationName::parse)
                .transpose()?,
        })
    }
}

impl AttachmentIn {
    fn into_attachment(self, field: &str) -> Result<Attachment, FieldError> {
        let name_field = format!("{field}.filename");
        check_header_value(&name_field, &self.filename)?;
        if self.filename.trim().is_empty()
            || self.filename.chars().count() > MAX_FILENAME_CHARS
            || self.filename.contains(['/', '\\'])
        {
            return Err(FieldError::new(
                "invalid_filename",
                name_field,
                "file names are 1–255 characters without '/' or '\\'",
            ));
        }
        let content_type = self
            .content_type
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let type_field = format!("{field}.content_type");
        check_header_value(&type_field, &content_type)?;
        if !is_mime_type(&content_type) {
            return Err(FieldError::new(
                "invalid_content_type",
                type_field,
                "content_type must look like type/subtype",
            ));
        }
        let content_id = match self.content_id {
            Some(cid) => {
                let cid_field = format!("{field}.content_id");
                check_header_value(&cid_field, &cid)?;
                let cid = cid
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned();
                if cid.is_empty() || cid.len() > 255 || cid.contains(['<', '>', ' ']) {
                    return Err(FieldError::new(
                        "invalid_content_id",
                        cid_field,
                        "content_id is 1–255 characters without spaces or angle brackets",
                    ));
                }
                Some(cid)
            }
            None => None,
        };
        let content = decode_base64(&format!("{field}.content"), &self.content)?;
        Ok(Attachment {
            filename: self.filename,
            content_type,
            content,
            content_id,
        })
    }
}

/// `type/subtype` with RFC 2045 token characters, optionally followed by `; parameters`.
fn is_mime_type(s: &str) -> bool {
    let essence = s.split(';').next().unwrap_or_default().trim();
    let is_token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    matches!(essence.split_once('/'), Some((ty, sub)) if is_token(ty) && is_token(sub))
}

fn check_tag(tag: &str, field: &str) -> Result<(), FieldError> {
    check_header_value(field, tag)?;
    let len = tag.chars().count();
    if len == 0 || len > MAX_TAG_CHARS {
        return Err(FieldError::new(
            "invalid_tag",
            field,
            format!("tags are 1–{MAX_TAG_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_metadata(key: &str, value: &str) -> Result<(), FieldError> {
    let field = format!("metadata.{key}");
    check_header_value(&field, key)?;
    check_header_value(&field, value)?;
    let key_len = key.chars().count();
    if key_len == 0 || key_len > MAX_METADATA_KEY_CHARS {
        return Err(FieldError::new(
            "invalid_metadata",
            field,
            format!("metadata keys are 1–{MAX_METADATA_KEY_CHARS} characters"),
        ));
    }
    if value.chars().count() > MAX_METADATA_VALUE_CHARS {
        return Err(FieldError::new(
            "invalid_metadata",
            field,
            format!("metadata values are at most {MAX_METADATA_VALUE_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A list of mailboxes: absent or null (none), one string or object, or an array of them.
pub(crate) fn mailboxes(value: Option<&Value>, field: &str) -> Result<Vec<Mailbox>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| mailbox(v, &format!("{field}[{i}]")))
            .collect(),
        Some(one) => Ok(vec![mailbox(one, field)?]),
    }
}

/// One mailbox: `"Name <a@b>"` or `{"email": "a@b", "name": "Name"}`.
pub(crate) fn mailbox(value: &Value, field: &str) -> Result<Mailbox, FieldError> {
    match value {
        Value::String(s) => Mailbox::parse(s, field),
        Value::Object(map) => {
            if let Some(key) = map.keys().find(|k| *k != "email" && *k != "name") {
                return Err(FieldError::new(
                    "unknown_field",
                    format!("{field}.{key}"),
                    format!("unknown field `{key}`"),
                ));
            }
            let email = match map.get("email") {
                Some(Value::String(s)) => s,
                None | Some(Value::Null) => {
                    return Err(FieldError::new(
                        "missing_field",
                        format!("{field}.email"),
                        "missing field `email`",
                    ))
                }
                Some(_) => {
                    return Err(FieldError::new(
                        "invalid_field",
                        format!("{field}.email"),
                        "email must be a string",
                    ))
                }
            };
            let name = match map.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(FieldError::new(
                        "invalid_field",
                        format!("{field}.name"),
                        "name must be a string",
                    ))
                }
            };
            Mailbox::from_parts(email, name, field)
        }
        _ => Err(FieldError::new(
            "invalid_field",
            field,
            "expected an address string, an {\"email\", \"name\"} object, or an array of them",
        )),
    }
}

/// The answer to an accepted (or replayed) send.
#[derive(Debug, Serialize)]
pub struct SendEmailOut {
    /// The message id.
    pub id: String,
    /// Always `queued` at acceptance (a replay reports the original acceptance).
    pub status: MessageStatus,
    /// What the caller should know (e.g. tracking on a magic link); omitted when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// A message as `GET /v1/emails/{id}` shows it, with its event timeline.
#[derive(Debug, Serialize)]
pub struct EmailOut {
    /// The message id.
    pub id: String,
    /// The environment's id.
    pub environment: String,
    /// Current status.
    pub status: MessageStatus,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When the next attempt is due; only while queued.
    pub next_attempt_at: Option<String>,
    /// The provider of the last attempt.
    pub provider: Option<String>,
    /// The provider's id for the message.
    pub provider_message_id: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Caller's tags.
    pub tags: Vec<String>,
    /// Caller's metadata.
    pub metadata: BTreeMap<String, String>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// Its events, oldest first.
    pub events: Vec<EventOut>,
}

impl EmailOut {
    /// A message record with its events.
    pub fn new(record: MessageRecord, events: Vec<Event>) -> Self {
        Self {
            id: record.id.to_string(),
            environment: record.environment_id.to_string(),
            status: record.status,
            attempts: record.attempts,
            max_attempts: record.max_attempts,
            next_attempt_at: (record.status == MessageStatus::Queued)
                .then(|| record.next_attempt_at.to_rfc3339()),
            provider: record.provider,
            provider_message_id: record.provider_message_id,
            last_error: record.last_error,
            tags: record.tags,
            metadata: record.metadata,
            created_at: record.created_at.to_rfc3339(),
            updated_at: record.updated_at.to_rfc3339(),
            events: events.into_iter().map(EventOut::from).collect(),
        }
    }
}

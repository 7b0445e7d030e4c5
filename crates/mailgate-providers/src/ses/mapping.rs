//! Maps a mailgate message onto an SES v2 `SendEmail` request.
//!
//! `provider_options` accepts this documented set of keys; any other key is refused with a
//! permanent `invalid_provider_options` error naming it:
//! - `template` (string): an SES template name, or its ARN when it starts with `arn:`; the
//!   message is then sent as `Content.Template` (SES renders subject and bodies; the message's
//!   headers and attachments are still sent);
//! - `template_data` (object, or a string holding a JSON object): the template's variables;
//! - `ConfigurationSetName`, `FeedbackForwardingEmailAddress`,
//!   `FeedbackForwardingEmailAddressIdentityArn`, `FromEmailAddressIdentityArn`, `TenantName`
//!   (strings) and `ListManagementOptions` (`{"ContactListName": …, "TopicName": …}`): copied to
//!   the request field of the same name;
//! - `EmailTags` (`[{"Name": …, "Value": …}]`): extra tags, sanitised like the others.

use aws_sdk_sesv2::operation::send_email::builders::SendEmailFluentBuilder;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{
    Attachment, AttachmentContentDisposition, Body, Content, Destination, EmailContent,
    ListManagementOptions, Message, MessageHeader, MessageTag, Template,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::SendError;
use serde_json::{Map, Value};

/// Longest tag name or value SES accepts.
const MAX_TAG_LEN: usize = 256;
/// The tag carrying mailgate's message id, so that SES events can be matched without the
/// provider message id.
pub(crate) const MESSAGE_ID_TAG: &str = "mailgate_message_id";

/// Makes a tag name or value acceptable to SES: ASCII letters, digits, `_` and `-` kept, every
/// other character replaced by `_`, cut to 256 characters; an empty input becomes `_`.
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

/// Encodes a header text as RFC 2047 `B` encoded-words when it is not plain printable ASCII.
pub(crate) fn encode_word(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_owned();
    }
    // Each encoded-word stays under 75 characters: at most 45 bytes of UTF-8 per word, cut on a
    // character boundary.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(&chunk)));
    }
    words.join(" ")
}

/// `Name <addr>` as SES takes it: ASCII names quoted, other names as RFC 2047 encoded-words.
pub(crate) fn encode_mailbox(m: &Mailbox) -> String {
    match &m.name {
        Some(name) if !name.is_ascii() => format!("{} <{}>", encode_word(name), m.email),
        _ => m.to_string(),
    }
}

/// The message's tags and metadata as SES message tags: each tag `t` becomes `t=true`, each
/// metadata entry `k=v` stays a pair, and `mailgate_message_id` carries the message id. Names
/// are unique: the first wins.
pub(crate) fn message_tags(
    message: &ClaimedMessage,
    extra: &[(String, String)],
) -> Vec<MessageTag> {
    let mut seen = std::collections::BTreeSet::new();
    let pairs = std::iter::once((MESSAGE_ID_TAG.to_owned(), message.id.to_string()))
        .chain(message.tags.iter().map(|t| (t.clone(), "true".to_owned())))
        .chain(message.metadata.iter().map(|(k, v)| (k.clone(), v.clone())))
        .chain(extra.iter().cloned());
    pairs
        .filter_map(|(k, v)| {
            let name = sanitize_tag(&k);
            if !seen.insert(name.clone()) {
                return None;
            }
            MessageTag::builder()
                .name(name)
                .value(sanitize_tag(&v))
                .build()
                .ok()
        })
        .collect()
}

fn invalid(message: impl Into<String>) -> SendError {
    SendError::permanent("invalid_provider_options", message)
}

fn string_option(key: &str, v: &Value) -> Result<String, SendError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("provider_options.{key} must be a string")))
}

/// The parsed `provider_options`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SesOptions {
    template: Option<String>,
    template_data: Option<String>,
    configuration_set: Option<String>,
    feedback_forwarding: Option<String>,
    feedback_forwarding_arn: Option<String>,
    from_arn: Option<String>,
    tenant_name: Option<String>,
    list_management: Option<(String, Option<String>)>,
    extra_tags: Vec<(String, String)>,
}

impl SesOptions {
    /// Reads the documented keys; refuses any other.
    pub(crate) fn parse(options: Option<&Value>) -> Result<Self, SendError> {
        let mut out = Self::default();
        let Some(options) = options else {
            return Ok(out);
        };
        let empty = Map::new();
        let obj = match options {
            Value::Null => &empty,
            Value::Object(o) => o,
            _ => return Err(invalid("provider_options must be a JSON object")),
        };
        for (key, v) in obj {
            match key.as_str() {
                "template" => out.template = Some(string_option(key, v)?),
                "template_data" => {
                    out.template_data = Some(match v {
                        Value::Object(_) => v.to_string(),
                        Value::String(s) => match serde_json::from_str::<Value>(s) {
                            Ok(Value::Object(_)) => s.clone(),
                            _ => return Err(invalid("provider_options.template_data must be a JSON object (or a string holding one)")),
                        },
                        _ => return Err(invalid("provider_options.template_data must be a JSON object")),
                    })
                }
                "ConfigurationSetName" => out.configuration_set = Some(string_option(key, v)?),
                "FeedbackForwardingEmailAddress" => {
                    out.feedback_forwarding = Some(string_option(key, v)?)
                }
                "FeedbackForwardingEmailAddressIdentityArn" => {
                    out.feedback_forwarding_arn = Some(string_option(key, v)?)
                }
                "FromEmailAddressIdentityArn" => out.from_arn = Some(string_option(key, v)?),
                "TenantName" => out.tenant_name = Some(string_option(key, v)?),
                "ListManagementOptions" => {
                    let list = v.get("ContactListName").and_then(Value::as_str).ok_or_else(|| {
                        invalid("provider_options.ListManagementOptions needs a ContactListName string")
                    })?;
                    let topic = v.get("TopicName").and_then(Value::as_str).map(str::to_owned);
                    out.list_management = Some((list.to_owned(), topic));
                }
                "EmailTags" => {
                    let tags = v.as_array().ok_or_else(|| {
                        invalid("provider_options.EmailTags must be a list of {Name, Value}")
                    })?;
                    for t in tags {
                        match (t.get("Name").and_then(Value::as_str), t.get("Value").and_then(Value::as_str)) {
                            (Some(n), Some(val)) => out.extra_tags.push((n.to_owned(), val.to_owned())),
                            _ => return Err(invalid("provider_options.EmailTags entries need Name and Value strings")),
                        }
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "provider_options key '{other}' is not supported by the SES provider (known: template, template_data, ConfigurationSetName, FeedbackForwardingEmailAddress, FeedbackForwardingEmailAddressIdentityArn, FromEmailAddressIdentityArn, TenantName, ListManagementOptions, EmailTags)"
                    )))
                }
            }
        }
        if out.template_data.is_some() && out.template.is_none() {
            return Err(invalid(
                "provider_options.template_data needs provider_options.template",
            ));
        }
        Ok(out)
    }
}

fn utf8(data: &str) -> Result<Content, SendError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| SendError::permanent("invalid_message", e.to_string()))
}

fn headers(message: &ClaimedMessage) -> Result<Vec<MessageHeader>, SendError> {
    message
        .content
        .headers
        .iter()
        .map(|h| {
            MessageHeader::builder()
                .name(&h.name)
                .value(encode_word(&h.value))
                .build()
                .map_err(|e| SendError::permanent("invalid_message", e.to_string()))
        })
        .collect()
}

fn attachments(message: &ClaimedMessage) -> Result<Vec<Attachment>, SendError> {
    message
        .content
        .attachments
        .iter()
        .map(|a| {
            let mut b = Attachment::builder()
                .file_name(&a.filename)
                .content_type(&a.content_type)
                .raw_content(Blob::new(a.content.clone()));
            b = match &a.content_id {
                Some(cid) => b
                    .content_disposition(AttachmentContentDisposition::Inline)
                    .content_id(cid),
                None => b.content_disposition(AttachmentContentDisposition::Attachment),
            };
            b.build()
                .map_err(|e| SendError::permanent("invalid_message", e.to_string()))
        })
        .collect()
}

fn content(message: &ClaimedMessage, options: &SesOptions) -> Result<EmailContent, SendError> {
    let headers = headers(message)?;
    let attachments = attachments(message)?;
    if let Some(template) = &options.template {
        let t = if template.starts_with("arn:") {
            Template::builder().template_arn(template)
        } else {
            Template::builder().template_name(template)
        };
        let t = t
            .template_data(options.template_data.clone().unwrap_or_else(|| "{}".into()))
            .set_headers(Some(headers).filter(|h| !h.is_empty()))
            .set_attachments(Some(attachments).filter(|a| !a.is_empty()));
        return Ok(EmailContent::builder().template(t.build()).build());
    }
    let c = &message.content;
    let mut body = Body::builder();
    if let Some(text) = &c.text {
        body = body.text(utf8(text)?);
    }
    if let Some(html) = &c.html {
        body = body.html(utf8(html)?);
    }
    let simple = Message::builder()
        .subject(utf8(&c.subject)?)
        .body(body.build())
        .set_headers(Some(headers).filter(|h| !h.is_empty()))
        .set_attachments(Some(attachments).filter(|a| !a.is_empty()));
    Ok(EmailContent::builder().simple(simple.build()).build())
}

/// Longest SES tenant name.
const MAX_TENANT_LEN: usize = 64;

/// The `TenantName` taken from the message's organization: SES allows 1–64 ASCII letters,
/// digits, `-` and `_`, while organization names may also hold `.`, so such a name makes this
/// provider unusable for the organization until its operator renames it or sets
/// `provider_options.TenantName`.
fn organization_tenant(organization: &str) -> Result<String, SendError> {
    let ok = !organization.is_empty()
        && organization.len() <= MAX_TENANT_LEN
        && organization
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(organization.to_owned())
    } else {
        Err(SendError::unusable(
            "tenant_name_invalid",
            format!("tenant_from_organization: the organization name '{organization}' is not a valid SES tenant name (1–64 letters, digits, '-' and '_'); set provider_options.TenantName or turn tenant_from_organization off"),
        ))
    }
}

/// Fills a `SendEmail` call with the whole message; `configuration_set` is the configured
/// default, which `provider_options.ConfigurationSetName` overrides; `organization_tenant` is
/// the organization's name when `tenant_from_organization` is on, which
/// `provider_options.TenantName` overrides.
pub(crate) fn fill_request(
    mut req: SendEmailFluentBuilder,
    message: &ClaimedMessage,
    configuration_set: Option<&str>,
    organization: Option<&str>,
) -> Result<SendEmailFluentBuilder, SendError> {
    let options = SesOptions::parse(message.provider_options.as_ref())?;
    let tenant = match (&options.tenant_name, organization) {
        (Some(explicit), _) => Some(explicit.clone()),
        (None, Some(organization)) => Some(organization_tenant(organization)?),
        (None, None) => None,
    };
    let c = &message.content;
    let list = |v: &[Mailbox]| {
        Some(v.iter().map(encode_mailbox).collect::<Vec<_>>()).filter(|v| !v.is_empty())
    };
    req = req
        .from_email_address(encode_mailbox(&c.from))
        .destination(
            Destination::builder()
                .set_to_addresses(list(&c.to))
                .set_cc_addresses(list(&c.cc))
                .set_bcc_addresses(list(&c.bcc))
                .build(),
        )
        .set_reply_to_addresses(list(&c.reply_to))
        .content(content(message, &options)?)
        .set_email_tags(Some(message_tags(message, &options.extra_tags)))
        .set_configuration_set_name(
            options
                .configuration_set
                .clone()
                .or_else(|| configuration_set.map(str::to_owned)),
        )
        .set_feedback_forwarding_email_address(options.feedback_forwarding.clone())
        .set_feedback_forwarding_email_address_identity_arn(options.feedback_forwarding_arn.clone())
        .set_from_email_address_identity_arn(options.from_arn.clone())
        .set_tenant_name(tenant);
    if let Some((list, topic)) = &options.list_management {
        let lm = ListManagementOptions::builder()
            .contact_list_name(list)
            .set_topic_name(topic.clone())
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        req = req.list_management_options(lm);
    }
    Ok(req)
}

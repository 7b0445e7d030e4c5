//! Bodies for `/v1/environments/{env}/templates`.

use mailgate_core::template::{Rendered, Template, TemplateRecord, TemplateSource};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `?locale=` on template routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocaleQuery {
    /// The locale (the environment's default locale when absent).
    pub locale: Option<String>,
}

/// A template with its key.
#[derive(Debug, Serialize)]
pub struct TemplateOut {
    /// The usage type.
    pub usage: String,
    /// The locale.
    pub locale: String,
    /// `environment` or `builtin`.
    pub source: TemplateSource,
    /// When it was last saved (`null` for built-ins).
    pub updated_at: Option<String>,
    /// The template.
    pub template: Template,
}

impl From<TemplateRecord> for TemplateOut {
    fn from(r: TemplateRecord) -> Self {
        Self {
            usage: r.usage.to_string(),
            locale: r.locale.to_string(),
            source: TemplateSource::Environment,
            updated_at: Some(r.updated_at.to_rfc3339()),
            template: r.template,
        }
    }
}

/// The environment's templates, and the usage types with a built-in default.
#[derive(Debug, Serialize)]
pub struct TemplateListOut {
    /// The stored templates, by usage then locale.
    pub data: Vec<TemplateOut>,
    /// Usage types that have a built-in template.
    pub builtin: Vec<&'static str>,
}

/// The body of `POST …/templates/{usage}/preview`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    /// The locale to resolve.
    pub locale: Option<String>,
    /// Variables, over sample data fitting the usage type.
    pub data: Option<Map<String, Value>>,
    /// An unsaved template to render instead of the resolved one.
    pub template: Option<Template>,
}

/// A rendered preview; nothing was sent.
#[derive(Debug, Serialize)]
pub struct PreviewOut {
    /// The usage type of the template used.
    pub usage: String,
    /// Its locale.
    pub locale: String,
    /// `environment`, `builtin`, or `request` for an unsaved template.
    pub source: &'static str,
    /// The rendered subject.
    pub subject: Option<String>,
    /// The rendered HTML.
    pub html: Option<String>,
    /// The rendered text.
    pub text: Option<String>,
    /// The sender (the template's, else the environment's default).
    pub from: Option<String>,
    /// Reply-To.
    pub reply_to: Option<String>,
    /// Cc.
    pub cc: Option<String>,
    /// Bcc.
    pub bcc: Option<String>,
    /// The provider template's name and variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_template: Option<Value>,
}

impl PreviewOut {
    /// A preview from a rendering.
    pub fn new(usage: String, locale: String, source: &'static str, r: Rendered) -> Self {
        Self {
            usage,
            locale,
            source,
            subject: r.subject,
            html: r.html,
            text: r.text,
            from: r.from,
            reply_to: r.reply_to,
            cc: r.cc,
            bcc: r.bcc,
            provider_template: r
                .provider_template
                .map(|(name, vars)| serde_json::json!({"name": name, "variables": vars})),
        }
    }
}

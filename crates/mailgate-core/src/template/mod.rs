//! Templates (DESIGN §6): usage types, locales, the stored template, its validation at save time
//! and its rendering with MiniJinja — sandboxed (no loader, no filesystem), with a fuel limit,
//! strict about undefined variables, HTML-escaping values in `html` only.

mod builtin;
pub mod resolve;

use std::collections::BTreeMap;
use std::fmt;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::EnvironmentId;
use crate::time::Timestamp;
use crate::validation::FieldError;

pub use builtin::{builtin, sample_data, BUILTIN_LOCALE};
pub use resolve::{resolve, Resolved, TemplateSource};

/// Instructions one render may execute at most; a template that needs more is refused.
pub const FUEL: u64 = 50_000;
/// Longest template source accepted per field, in bytes.
pub const MAX_SOURCE_BYTES: usize = 512 * 1024;

/// A usage type: a well-known name (`SignIn`, …) or a custom `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UsageType(String);

impl UsageType {
    /// The usage types mailgate knows and ships defaults for.
    pub const WELL_KNOWN: [&'static str; 7] = [
        "Register",
        "SignIn",
        "ForgotPassword",
        "Invitation",
        "MagicLink",
        "EmailVerification",
        "Generic",
    ];

    /// The fallback of every usage type.
    pub fn generic() -> Self {
        Self("Generic".into())
    }

    /// Checks a name.
    pub fn parse(s: &str, field: &str) -> Result<Self, FieldError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(FieldError::new(
                "invalid_usage",
                field,
                "usage types are 1–64 characters of A–Z, a–z, 0–9, '_' and '-'",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `Generic`.
    pub fn is_generic(&self) -> bool {
        self.0 == "Generic"
    }

    /// Whether messages of this type carry sign-in secrets (codes, links), so that open and click
    /// tracking is off by default: link scanners and tracking redirects consume magic links.
    pub fn is_auth(&self) -> bool {
        matches!(
            self.0.as_str(),
            "Register"
                | "SignIn"
                | "ForgotPassword"
                | "Invitation"
                | "MagicLink"
                | "EmailVerification"
        )
    }
}

impl TryFrom<String> for UsageType {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s, "usage")
    }
}

impl From<UsageType> for String {
    fn from(u: UsageType) -> Self {
        u.0
    }
}

impl fmt::Display for UsageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A locale tag (`en`, `fr-CA`, `zh-Hant-TW`): a 2–3 letter language in lower case, then
/// subtags of 1–8 letters or digits; stored in canonical case (`fr-CA`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Locale(String);

impl Locale {
    /// Checks and canonicalizes a tag (`_` is accepted for `-`).
    pub fn parse(s: &str, field: &str) -> Result<Self, FieldError> {
        let err = || {
            FieldError::new(
                "invalid_locale",
                field,
                "locales look like en, fr or fr-CA (a language, then optional subtags)",
            )
        };
        let mut parts = s.split(['-', '_']);
        let lang = parts.next().unwrap_or_default();
        if !(2..=3).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(err());
        }
        let mut out = lang.to_ascii_lowercase();
        for sub in parts {
            if sub.is_empty() || sub.len() > 8 || !sub.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(err());
            }
            out.push('-');
            match sub.len() {
                2 => out.push_str(&sub.to_ascii_uppercase()),
                4 => {
                    out.push_str(&sub[..1].to_ascii_uppercase());
                    out.push_str(&sub[1..].to_ascii_lowercase());
                }
                _ => out.push_str(&sub.to_ascii_lowercase()),
            }
        }
        if out.len() > 35 {
            return Err(err());
        }
        Ok(Self(out))
    }

    /// English, the locale of the built-in templates and the default default.
    pub fn english() -> Self {
        Self("en".into())
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bare language (`fr` for `fr-CA`), if this tag has subtags.
    pub fn base(&self) -> Option<Self> {
        self.0
            .split_once('-')
            .map(|(lang, _)| Self(lang.to_owned()))
    }
}

impl TryFrom<String> for Locale {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s, "locale")
    }
}

impl From<Locale> for String {
    fn from(l: Locale) -> Self {
        l.0
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A template held by the provider itself (SES, Mailgun, Postmark, …), with its variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderTemplate {
    /// The provider's name (or id) for the template.
    pub name: String,
    /// Variables passed to it; each value is itself a template over the send's data. The send's
    /// data is passed too, so `code` reaches the template without being listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// A template as stored for one (environment, usage, locale). Every string field is MiniJinja
/// source. Either `subject` with `html` and/or `text`, or a `provider_template`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The subject line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The HTML body (values are HTML-escaped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The plain-text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The sender, e.g. `{{ app }} <noreply@acme.example>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Reply-To addresses, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Cc addresses, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<String>,
    /// Bcc addresses, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bcc: Option<String>,
    /// A provider-side template instead of `html`/`text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_template: Option<ProviderTemplate>,
}

/// A stored template with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Its environment.
    pub environment_id: EnvironmentId,
    /// Its usage type.
    pub usage: UsageType,
    /// Its locale.
    pub locale: Locale,
    /// The template.
    pub template: Template,
    /// When it was last saved.
    pub updated_at: Timestamp,
}

/// What rendering a template produced; addresses are still text, to be parsed by the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// The subject, trimmed.
    pub subject: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
    /// The text body.
    pub text: Option<String>,
    /// The sender.
    pub from: Option<String>,
    /// Reply-To list.
    pub reply_to: Option<String>,
    /// Cc list.
    pub cc: Option<String>,
    /// Bcc list.
    pub bcc: Option<String>,
    /// The provider template's name and its variables (data first, rendered variables over it).
    pub provider_template: Option<(String, Map<String, Value>)>,
}

impl Template {
    /// The (field, source) pairs of the template, named as in the API.
    fn sources(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = [
            ("subject", &self.subject),
            ("html", &self.html),
            ("text", &self.text),
            ("from", &self.from),
            ("reply_to", &self.reply_to),
            ("cc", &self.cc),
            ("bcc", &self.bcc),
        ]
        .into_iter()
        .filter_map(|(f, s)| s.as_deref().map(|s| (f.to_owned(), s)))
        .collect();
        if let Some(p) = &self.provider_template {
            for (k, v) in &p.variables {
                out.push((format!("provider_template.variables.{k}"), v.as_str()));
            }
        }
        out
    }

    /// Checks the template when it is saved: the required parts are there and every field
    /// parses (422 `invalid_template` with the field, line and column).
    pub fn validate(&self) -> Result<(), FieldError> {
        match &self.provider_template {
            Some(p) => {
                if p.name.trim().is_empty() {
                    return Err(FieldError::new(
                        "invalid_template",
                        "provider_template.name",
                        "the provider template needs a name",
                    ));
                }
                if self.html.is_some() || self.text.is_some() {
                    return Err(FieldError::new(
                        "invalid_template",
                        "provider_template",
                        "a provider template replaces html and text; give one or the other",
                    ));
                }
            }
            None => {
                if self.subject.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    return Err(FieldError::new(
                        "invalid_template",
                        "subject",
                        "a template needs a subject",
                    ));
                }
                if self.html.is_none() && self.text.is_none() {
                    return Err(FieldError::new(
                        "invalid_template",
                        "html",
                        "a template needs html, text or both",
                    ));
                }
            }
        }
        for (field, source) in self.sources() {
            if source.len() > MAX_SOURCE_BYTES {
                return Err(FieldError::new(
                    "invalid_template",
                    field,
                    format!("template fields are limited to {MAX_SOURCE_BYTES} bytes"),
                ));
            }
            let env = engine();
            if let Err(e) = env.template_from_named_str(&field, source) {
                return Err(FieldError::new(
                    "invalid_template",
                    field.clone(),
                    describe(&e, source, &field),
                ));
            }
        }
        Ok(())
    }

    /// Renders every field with `data`. A missing variable is `missing_variable`, running out of
    /// fuel is `template_too_expensive`; the error names the field and the line.
    pub fn render(&self, data: &Map<String, Value>) -> Result<Rendered, FieldError> {
        let env = engine();
        let ctx = minijinja::Value::from_serialize(data);
        let one = |field: &str, source: &Option<String>| -> Result<Option<String>, FieldError> {
            source
                .as_deref()
                .map(|s| render_one(&env, field, s, &ctx))
                .transpose()
        };
        let provider_template = match &self.provider_template {
            None => None,
            Some(p) => {
                let mut vars = data.clone();
                for (k, v) in &p.variables {
                    let field = format!("provider_template.variables.{k}");
                    vars.insert(k.clone(), Value::String(render_one(&env, &field, v, &ctx)?));
                }
                Some((p.name.clone(), vars))
            }
        };
        Ok(Rendered {
            subject: one("subject", &self.subject)?.map(|s| s.trim().to_owned()),
            html: one("html", &self.html)?,
            text: one("text", &self.text)?,
            from: one("from", &self.from)?,
            reply_to: one("reply_to", &self.reply_to)?,
            cc: one("cc", &self.cc)?,
            bcc: one("bcc", &self.bcc)?,
            provider_template,
        })
    }
}

/// The sandboxed engine: no loader, strict undefined, a fuel limit, HTML escaping for the `html`
/// field only (templates are named after their field).
fn engine<'a>() -> Environment<'a> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

fn render_one(
    env: &Environment<'_>,
    field: &str,
    source: &str,
    ctx: &minijinja::Value,
) -> Result<String, FieldError> {
    env.render_named_str(field, source, ctx).map_err(|e| {
        let code = match e.kind() {
            ErrorKind::UndefinedError => "missing_variable",
            ErrorKind::OutOfFuel => "template_too_expensive",
            _ => "template_render_failed",
        };
        FieldError::new(code, field, describe(&e, source, field))
    })
}

/// "line L, column C: what" for people; never the data's values.
fn describe(e: &minijinja::Error, source: &str, field: &str) -> String {
    let what = match e.kind() {
        ErrorKind::UndefinedError => "a variable the data does not define".to_owned(),
        ErrorKind::OutOfFuel => format!("the template ran out of fuel ({FUEL} instructions)"),
        kind => match e.detail() {
            Some(d) => format!("{kind}: {d}"),
            None => kind.to_string(),
        },
    };
    let line = e.line().unwrap_or(1);
    let column = e
        .range()
        .and_then(|r| source.get(..r.start))
        .map(|before| before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1);
    match column {
        Some(c) => format!("{field}: line {line}, column {c}: {what}"),
        None => format!("{field}: line {line}: {what}"),
    }
}

/// Splits a rendered address list on commas outside quotes and angle brackets.
pub fn split_addresses(list: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut angle) = (Vec::new(), 0, false, false);
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests;

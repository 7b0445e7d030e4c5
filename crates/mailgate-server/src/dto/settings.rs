//! The body of `PATCH /v1/environments/{env}`: a partial update of the environment's settings.

use mailgate_core::settings::{EnvironmentSettings, RecipientRateLimit, Sandbox};
use mailgate_core::template::Locale;
use mailgate_core::FieldError;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::emails::{mailbox, mailboxes};

/// Most secret fields an environment may name.
const MAX_SECRET_FIELDS: usize = 32;

/// A partial update: each field given replaces the stored one; unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatchIn {
    /// `from`, `reply_to`, `cc`, `bcc`; a `null` clears one.
    pub defaults: Option<Map<String, Value>>,
    /// The locale tried after the requested one and its base language.
    pub default_locale: Option<String>,
    /// Data fields whose values are secrets.
    pub secret_fields: Option<Vec<String>>,
    /// `{"opens": bool, "links": bool}` (either may be left out).
    pub tracking: Option<TrackingIn>,
    /// Whether built-in templates fill in for missing ones.
    pub builtin_templates: Option<bool>,
    /// `{"enabled": bool, "allow": ["ann@example.com", "@example.org"]}`, replacing the stored one.
    pub sandbox: Option<Sandbox>,
    /// `{"max": 10, "window_seconds": 600, "per_usage": false}`, or `null` to remove the cap.
    #[serde(default, deserialize_with = "explicit_null")]
    pub recipient_rate_limit: Option<Option<RecipientRateLimit>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn explicit_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A partial tracking setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingIn {
    /// Open tracking.
    pub opens: Option<bool>,
    /// Click tracking.
    pub links: Option<bool>,
}

impl SettingsPatchIn {
    /// Applies the patch to `settings`, checking every value.
    pub fn apply(self, settings: &mut EnvironmentSettings) -> Result<(), FieldError> {
        if let Some(defaults) = self.defaults {
            for (key, value) in &defaults {
                let field = format!("defaults.{key}");
                let d = &mut settings.defaults;
                match key.as_str() {
                    "from" => {
                        d.from = match value {
                            Value::Null => None,
                            v => Some(mailbox(v, &field)?),
                        }
                    }
                    "reply_to" => d.reply_to = mailboxes(Some(value), &field)?,
                    "cc" => d.cc = mailboxes(Some(value), &field)?,
                    "bcc" => d.bcc = mailboxes(Some(value), &field)?,
                    _ => {
                        return Err(FieldError::new(
                            "unknown_field",
                            field,
                            format!("unknown field `{key}`, expected from, reply_to, cc or bcc"),
                        ))
                    }
                }
            }
        }
        if let Some(locale) = self.default_locale {
            settings.default_locale = Locale::parse(&locale, "default_locale")?;
        }
        if let Some(fields) = self.secret_fields {
            if fields.len() > MAX_SECRET_FIELDS {
                return Err(FieldError::new(
                    "invalid_field",
                    "secret_fields",
                    format!("at most {MAX_SECRET_FIELDS} secret fields"),
                ));
            }
            for (i, f) in fields.iter().enumerate() {
                let ok = !f.is_empty()
                    && f.len() <= 64
                    && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(FieldError::new(
                        "invalid_field",
                        format!("secret_fields[{i}]"),
                        "secret fields are data keys of 1–64 letters, digits and '_'",
                    ));
                }
            }
            settings.secret_fields = fields;
        }
        if let Some(t) = self.tracking {
            settings.tracking.opens = t.opens.unwrap_or(settings.tracking.opens);
            settings.tracking.links = t.links.unwrap_or(settings.tracking.links);
        }
        if let Some(b) = self.builtin_templates {
            settings.builtin_templates = b;
        }
        if let Some(mut sandbox) = self.sandbox {
            sandbox.allow = sandbox
                .allow
                .into_iter()
                .map(|a| a.trim().to_ascii_lowercase())
                .collect();
            sandbox.validate()?;
            settings.sandbox = sandbox;
        }
        if let Some(limit) = self.recipient_rate_limit {
            if let Some(l) = &limit {
                l.validate()?;
            }
            settings.recipient_rate_limit = limit;
        }
        Ok(())
    }
}

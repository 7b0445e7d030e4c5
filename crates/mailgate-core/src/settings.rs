//! An environment's settings (`PATCH /v1/environments/{env}`): message defaults, the default
//! locale, which data fields are secret, open and click tracking, built-in templates.

use serde::{Deserialize, Serialize};

use crate::address::Mailbox;
use crate::template::Locale;

/// Data fields treated as secrets unless the environment says otherwise.
pub const DEFAULT_SECRET_FIELDS: [&str; 4] = ["code", "link", "token", "url"];

/// Open and click tracking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tracking {
    /// Track opens (a pixel).
    pub opens: bool,
    /// Track clicks (rewritten links).
    pub links: bool,
}

/// Applied to every message of the environment unless the message or its template says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageDefaults {
    /// The sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Mailbox>,
    /// Reply-To addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<Mailbox>,
    /// Cc addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<Mailbox>,
    /// Bcc addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<Mailbox>,
}

/// The settings of one environment, as stored (JSON) and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentSettings {
    /// Message defaults.
    pub defaults: MessageDefaults,
    /// The locale tried after the requested one and its base language (`en` by default).
    pub default_locale: Locale,
    /// Data fields whose values are secrets: never logged, redacted from stored content once the
    /// message reaches a final state.
    pub secret_fields: Vec<String>,
    /// Tracking for messages that do not say, except auth usage types (always off by default).
    pub tracking: Tracking,
    /// Whether the built-in templates are used when the environment has none of its own
    /// (`true`); when `false`, a usage without a template and without `Generic` is refused.
    pub builtin_templates: bool,
}

impl Default for EnvironmentSettings {
    fn default() -> Self {
        Self {
            defaults: MessageDefaults::default(),
            default_locale: Locale::english(),
            secret_fields: DEFAULT_SECRET_FIELDS.map(str::to_owned).to_vec(),
            tracking: Tracking::default(),
            builtin_templates: true,
        }
    }
}

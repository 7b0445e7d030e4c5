//! An environment's settings (`PATCH /v1/environments/{env}`): message defaults, the default
//! locale, which data fields are secret, open and click tracking, built-in templates, the sandbox
//! and the per-recipient rate limit.

use serde::{Deserialize, Serialize};

use crate::address::{EmailAddress, Mailbox};
use crate::template::Locale;
use crate::validation::FieldError;

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

/// The sandbox (as SES's and Knock's): while enabled, only allow-listed recipients are delivered;
/// every other message is captured and ends `sandboxed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sandbox {
    /// Whether the sandbox holds messages.
    pub enabled: bool,
    /// Addresses (`ann@example.com`) and domains (`@example.org`) that are delivered.
    pub allow: Vec<String>,
}

impl Sandbox {
    /// Checks the allow list: each entry is an address or `@domain`.
    pub fn validate(&self) -> Result<(), FieldError> {
        for (i, entry) in self.allow.iter().enumerate() {
            let ok = match entry.strip_prefix('@') {
                Some(domain) => EmailAddress::parse(&format!("x@{domain}")).is_ok(),
                None => EmailAddress::parse(entry).is_ok(),
            };
            if !ok {
                return Err(FieldError::new(
                    "invalid_sandbox_entry",
                    format!("sandbox.allow[{i}]"),
                    "each entry is an address (ann@example.com) or a domain (@example.org)",
                ));
            }
        }
        Ok(())
    }

    /// Whether a message to these recipients (normalized addresses) is held: the sandbox is on
    /// and at least one recipient is not allowed.
    pub fn holds<'a>(&self, mut recipients: impl Iterator<Item = &'a str>) -> bool {
        self.enabled && !recipients.all(|r| self.allows(r))
    }

    /// Whether one normalized address is allowed.
    pub fn allows(&self, address: &str) -> bool {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.allow
            .iter()
            .any(|entry| match entry.strip_prefix('@') {
                Some(d) => d.eq_ignore_ascii_case(domain),
                None => entry.eq_ignore_ascii_case(address),
            })
    }
}

/// A cap on messages to one address in a sliding window (Logto: 10 per 10 minutes): protection
/// against code-bombing someone's inbox through a sign-in form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientRateLimit {
    /// Messages allowed to one address in the window.
    pub max: u32,
    /// The window's length.
    pub window_seconds: u32,
    /// Count each usage type (`SignIn`, `ForgotPassword`, …) on its own rather than all messages
    /// together; messages without a usage type then share one count.
    #[serde(default)]
    pub per_usage: bool,
}

impl RecipientRateLimit {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.max == 0 || self.max > 100_000 {
            return Err(FieldError::new(
                "invalid_setting",
                "recipient_rate_limit.max",
                "must be between 1 and 100000",
            ));
        }
        if self.window_seconds == 0 || self.window_seconds > 31 * 24 * 3600 {
            return Err(FieldError::new(
                "invalid_setting",
                "recipient_rate_limit.window_seconds",
                "must be between 1 and 2678400 (31 days)",
            ));
        }
        Ok(())
    }
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
    /// The sandbox.
    pub sandbox: Sandbox,
    /// The per-recipient cap, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_rate_limit: Option<RecipientRateLimit>,
}

impl EnvironmentSettings {
    /// Checks what serde cannot: the sandbox list and the rate limit's numbers.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.sandbox.validate()?;
        if let Some(limit) = &self.recipient_rate_limit {
            limit.validate()?;
        }
        Ok(())
    }
}

impl Default for EnvironmentSettings {
    fn default() -> Self {
        Self {
            defaults: MessageDefaults::default(),
            default_locale: Locale::english(),
            secret_fields: DEFAULT_SECRET_FIELDS.map(str::to_owned).to_vec(),
            tracking: Tracking::default(),
            builtin_templates: true,
            sandbox: Sandbox::default(),
            recipient_rate_limit: None,
        }
    }
}

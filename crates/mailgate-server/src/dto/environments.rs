//! Bodies for environments and their API keys.

use mailgate_core::apikey::{ApiKeyRecord, KeyScope};
use mailgate_core::environment::Environment;
use mailgate_core::settings::EnvironmentSettings;
use mailgate_core::validation::check_header_value;
use mailgate_core::FieldError;
use serde::{Deserialize, Serialize};

/// A list of resources.
#[derive(Debug, Serialize)]
pub struct ListOut<T> {
    /// The items.
    pub data: Vec<T>,
}

/// The body of `POST /v1/environments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentIn {
    /// The new environment's name.
    pub name: String,
}

/// An environment.
#[derive(Debug, Serialize)]
pub struct EnvironmentOut {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Its settings (shown for one environment, not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<EnvironmentSettings>,
}

impl EnvironmentOut {
    /// The same, with the environment's settings.
    pub fn with_settings(mut self, settings: EnvironmentSettings) -> Self {
        self.settings = Some(settings);
        self
    }
}

impl From<Environment> for EnvironmentOut {
    fn from(e: Environment) -> Self {
        Self {
            id: e.id.to_string(),
            name: e.name.to_string(),
            created_at: e.created_at.to_rfc3339(),
            settings: None,
        }
    }
}

/// The body of `POST /v1/environments/{env}/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// A label for people.
    pub name: String,
}

impl KeyIn {
    /// The checked label: 1–100 characters without control characters.
    pub fn into_name(self) -> Result<String, FieldError> {
        check_header_value("name", &self.name)?;
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(FieldError::new(
                "invalid_name",
                "name",
                "key names are 1–100 characters",
            ));
        }
        Ok(name)
    }
}

/// A key as listed (never its secret).
#[derive(Debug, Serialize)]
pub struct KeyOut {
    /// Its id.
    pub id: String,
    /// Its label.
    pub name: String,
    /// The first characters of its secret.
    pub hint: String,
    /// The environment's id (`null` for admin keys).
    pub environment: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

impl From<ApiKeyRecord> for KeyOut {
    fn from(k: ApiKeyRecord) -> Self {
        let environment = match k.scope {
            KeyScope::Admin => None,
            KeyScope::Environment(id) => Some(id.to_string()),
        };
        Self {
            id: k.id.to_string(),
            name: k.name,
            hint: k.hint,
            environment,
            created_at: k.created_at.to_rfc3339(),
        }
    }
}

/// A newly created key, with its secret shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedKeyOut {
    /// The key's listing fields.
    #[serde(flatten)]
    pub key: KeyOut,
    /// The secret (`mg_…`); it cannot be shown again.
    #[serde(rename = "key")]
    pub secret: String,
}

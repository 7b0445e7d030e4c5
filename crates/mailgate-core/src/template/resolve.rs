//! Resolution: which template renders a (usage, locale). (usage, locale) → (usage, base
//! language) → (usage, the environment's default locale) → the same for `Generic` → the
//! built-in template of the usage → the built-in `Generic` → nothing (`template_not_found`).
//! An environment's own `Generic` is preferred to a built-in default (Logto's rule: a missing
//! usage falls back to Generic).

use serde::Serialize;

use super::builtin::builtin_locale;
use super::{builtin, Locale, Template, UsageType};
use crate::ids::EnvironmentId;
use crate::settings::EnvironmentSettings;
use crate::store::{StoreError, TemplateStore};

/// Where a resolved template comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSource {
    /// The environment's own template.
    Environment,
    /// A built-in default.
    Builtin,
}

impl TemplateSource {
    /// The stable name shown in events and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Environment => "environment",
            Self::Builtin => "builtin",
        }
    }
}

/// The template chosen for a send, and the (usage, locale) it was found under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The usage type the template was found under (`Generic` after a fallback).
    pub usage: UsageType,
    /// The locale it was found under.
    pub locale: Locale,
    /// Whether it is the environment's or a built-in.
    pub source: TemplateSource,
    /// The template.
    pub template: Template,
}

/// The locales tried, in order: the requested one, its base language, the default locale.
pub fn locale_chain(requested: Option<&Locale>, default: &Locale) -> Vec<Locale> {
    let mut chain: Vec<Locale> = Vec::with_capacity(3);
    let candidates = requested
        .into_iter()
        .flat_map(|l| [Some(l.clone()), l.base()])
        .flatten()
        .chain(std::iter::once(default.clone()));
    for l in candidates {
        if !chain.contains(&l) {
            chain.push(l);
        }
    }
    chain
}

/// Finds the template for (usage, locale) in one store query; `None` when nothing fits.
pub async fn resolve(
    store: &dyn TemplateStore,
    env: &EnvironmentId,
    settings: &EnvironmentSettings,
    usage: &UsageType,
    locale: Option<&Locale>,
) -> Result<Option<Resolved>, StoreError> {
    let mut usages = vec![usage.clone()];
    if !usage.is_generic() {
        usages.push(UsageType::generic());
    }
    let stored = store.templates_for(env, &usages).await?;
    let chain = locale_chain(locale, &settings.default_locale);
    for u in &usages {
        for l in &chain {
            if let Some(r) = stored.iter().find(|r| &r.usage == u && &r.locale == l) {
                return Ok(Some(Resolved {
                    usage: r.usage.clone(),
                    locale: r.locale.clone(),
                    source: TemplateSource::Environment,
                    template: r.template.clone(),
                }));
            }
        }
    }
    if settings.builtin_templates {
        for u in &usages {
            if let Some(template) = builtin(u) {
                return Ok(Some(Resolved {
                    usage: u.clone(),
                    locale: builtin_locale(),
                    source: TemplateSource::Builtin,
                    template,
                }));
            }
        }
    }
    Ok(None)
}

//! `/v1/environments/{env}/templates`: an environment's templates per (usage, locale) — set
//! (validated at save: a template that does not parse is refused with its line and column),
//! shown (the built-in default when the environment has none), listed, removed, and previewed
//! with sample data without sending anything.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mailgate_core::environment::Environment;
use mailgate_core::send::{not_found, SendService, TemplateUse};
use mailgate_core::settings::EnvironmentSettings;
use mailgate_core::store::Storage;
use mailgate_core::template::{
    builtin, sample_data, Locale, Template, TemplateRecord, TemplateSource, UsageType,
    BUILTIN_LOCALE,
};
use mailgate_core::validation::check_header_value;
use mailgate_core::Clock;

use crate::auth::Principal;
use crate::dto::templates::{LocaleQuery, PreviewIn, PreviewOut, TemplateListOut, TemplateOut};
use crate::error::ApiError;
use crate::json::{self, JsonBody};
use crate::state::AppState;

/// Templates.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/environments/{env}/templates", get(list))
        .route(
            "/v1/environments/{env}/templates/{usage}",
            get(show).put(set).delete(remove),
        )
        .route(
            "/v1/environments/{env}/templates/{usage}/preview",
            post(preview),
        )
}

/// The environment, its settings, the usage type and the locale (default: the environment's).
async fn target(
    storage: &dyn Storage,
    principal: &Principal,
    env: &str,
    usage: &str,
    locale: Option<&str>,
) -> Result<(Environment, EnvironmentSettings, UsageType, Locale), ApiError> {
    let env = principal
        .required_environment(storage, Some(env), "env")
        .await?;
    let usage = UsageType::parse(usage, "usage")?;
    let settings = storage.get_settings(&env.id).await?;
    let locale = match locale {
        Some(l) => Locale::parse(l, "locale")?,
        None => settings.default_locale.clone(),
    };
    Ok((env, settings, usage, locale))
}

/// Every stored template of the environment.
async fn list(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<TemplateListOut>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let data = storage.list_templates(&env.id).await?;
    Ok(Json(TemplateListOut {
        data: data.into_iter().map(Into::into).collect(),
        builtin: UsageType::WELL_KNOWN.to_vec(),
    }))
}

/// The stored template for (usage, locale), else the built-in one, else 404.
async fn show(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path((env, usage)): Path<(String, String)>,
    Query(q): Query<LocaleQuery>,
) -> Result<Json<TemplateOut>, ApiError> {
    let (env, _, usage, locale) = target(
        storage.as_ref(),
        &principal,
        &env,
        &usage,
        q.locale.as_deref(),
    )
    .await?;
    if let Some(r) = storage.get_template(&env.id, &usage, &locale).await? {
        return Ok(Json(r.into()));
    }
    match builtin(&usage).filter(|_| locale.as_str() == BUILTIN_LOCALE) {
        Some(template) => Ok(Json(TemplateOut {
            usage: usage.to_string(),
            locale: locale.to_string(),
            source: TemplateSource::Builtin,
            updated_at: None,
            template,
        })),
        None => Err(ApiError::not_found("template")),
    }
}

/// Creates or replaces the template for (usage, locale) after checking that it parses.
async fn set(
    State(storage): State<Arc<dyn Storage>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path((env, usage)): Path<(String, String)>,
    Query(q): Query<LocaleQuery>,
    JsonBody(body): JsonBody,
) -> Result<Json<TemplateOut>, ApiError> {
    let (env, _, usage, locale) = target(
        storage.as_ref(),
        &principal,
        &env,
        &usage,
        q.locale.as_deref(),
    )
    .await?;
    let template: Template = json::parse(&body)?;
    template.validate()?;
    let record = TemplateRecord {
        environment_id: env.id,
        usage,
        locale,
        template,
        updated_at: clock.now(),
    };
    storage.put_template(&record).await?;
    tracing::info!(environment.id = %env.id, usage = %record.usage, locale = %record.locale, "template saved");
    Ok(Json(record.into()))
}

/// Removes the template for (usage, locale): 204, or 404.
async fn remove(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path((env, usage)): Path<(String, String)>,
    Query(q): Query<LocaleQuery>,
) -> Result<StatusCode, ApiError> {
    let (env, _, usage, locale) = target(
        storage.as_ref(),
        &principal,
        &env,
        &usage,
        q.locale.as_deref(),
    )
    .await?;
    if storage.delete_template(&env.id, &usage, &locale).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("template"))
    }
}

/// Renders the template a send of this usage would use (or the body's unsaved template) with
/// sample data under the given data. Nothing is sent.
async fn preview(
    State(storage): State<Arc<dyn Storage>>,
    State(send): State<SendService>,
    principal: Principal,
    Path((env, usage)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<PreviewOut>, ApiError> {
    let input: PreviewIn = json::parse(&body)?;
    let (env, settings, usage, _) =
        target(storage.as_ref(), &principal, &env, &usage, None).await?;
    let tu = TemplateUse {
        locale: input
            .locale
            .as_deref()
            .map(|l| Locale::parse(l, "locale"))
            .transpose()?,
        data: sample_data(&usage, &input.data.unwrap_or_default()),
        usage,
    };
    let (used_usage, used_locale, source, template) = match input.template {
        Some(t) => {
            t.validate().map_err(|e| {
                let field = format!("template.{}", e.field);
                e.at(field)
            })?;
            let locale = tu.locale.clone().unwrap_or(settings.default_locale.clone());
            (tu.usage.to_string(), locale.to_string(), "request", t)
        }
        None => {
            let r = send
                .resolve(&env, &settings, &tu)
                .await?
                .ok_or_else(|| not_found(&tu))?;
            (
                r.usage.to_string(),
                r.locale.to_string(),
                r.source.as_str(),
                r.template,
            )
        }
    };
    let mut rendered = template.render(&tu.data)?;
    if rendered.from.is_none() {
        rendered.from = settings.defaults.from.as_ref().map(ToString::to_string);
    }
    for (field, value) in [
        ("subject", &rendered.subject),
        ("from", &rendered.from),
        ("reply_to", &rendered.reply_to),
        ("cc", &rendered.cc),
        ("bcc", &rendered.bcc),
    ] {
        if let Some(v) = value {
            check_header_value(field, v)?;
        }
    }
    Ok(Json(PreviewOut::new(
        used_usage,
        used_locale,
        source,
        rendered,
    )))
}

//! `/v1/environments`: create, list, show and delete environments (admin keys only).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mailgate_core::environment::{Environment, EnvironmentName};
use mailgate_core::store::{Storage, StoreError};
use mailgate_core::{Clock, EnvironmentId};

use crate::auth::Principal;
use crate::dto::settings::SettingsPatchIn;
use crate::dto::{EnvironmentIn, EnvironmentOut, ListOut};
use crate::error::ApiError;
use crate::json::{self, JsonBody};
use crate::state::AppState;

/// Environments.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/environments", get(list).post(create))
        .route(
            "/v1/environments/{env}",
            get(show).patch(update).delete(delete),
        )
}

/// Creates an environment: 201, or 409 `environment_exists`.
async fn create(
    State(storage): State<Arc<dyn Storage>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<EnvironmentOut>), ApiError> {
    principal.require_admin()?;
    let input: EnvironmentIn = json::parse(&body)?;
    let env = Environment {
        id: EnvironmentId::new(),
        name: EnvironmentName::parse(&input.name)?,
        created_at: clock.now(),
    };
    match storage.create_environment(&env).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(env.into()))),
        Err(StoreError::Conflict(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "environment_exists",
            "an environment with this name already exists",
        )
        .with_field("name")),
        Err(e) => Err(e.into()),
    }
}

/// Every environment, by name.
async fn list(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
) -> Result<Json<ListOut<EnvironmentOut>>, ApiError> {
    principal.require_admin()?;
    let envs = storage.list_environments().await?;
    Ok(Json(ListOut {
        data: envs.into_iter().map(Into::into).collect(),
    }))
}

/// One environment, by name or id.
async fn show(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<EnvironmentOut>, ApiError> {
    principal.require_admin()?;
    let env = storage
        .find_environment(&env)
        .await?
        .ok_or_else(|| ApiError::not_found("environment"))?;
    let settings = storage.get_settings(&env.id).await?;
    Ok(Json(EnvironmentOut::from(env).with_settings(settings)))
}

/// Updates the environment's settings (`defaults`, `default_locale`, `secret_fields`,
/// `tracking`, `builtin_templates`); answers the environment with all its settings. An
/// environment key may update its own environment.
async fn update(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(env): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<EnvironmentOut>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let patch: SettingsPatchIn = json::parse(&body)?;
    let mut settings = storage.get_settings(&env.id).await?;
    patch.apply(&mut settings)?;
    if !storage.put_settings(&env.id, &settings).await? {
        return Err(ApiError::not_found("environment"));
    }
    tracing::info!(environment.id = %env.id, "environment settings updated");
    Ok(Json(EnvironmentOut::from(env).with_settings(settings)))
}

/// Deletes an environment and everything in it: 204, or 404.
async fn delete(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_admin()?;
    let env = storage
        .find_environment(&env)
        .await?
        .ok_or_else(|| ApiError::not_found("environment"))?;
    if storage.delete_environment(&env.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("environment"))
    }
}

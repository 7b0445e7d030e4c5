//! `/v1/environments/{env}/keys`: an environment's API keys, managed by an admin key or by a
//! key of that environment.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use mailgate_core::apikey::{ApiKeyRecord, ApiKeySecret, KeyScope, NewApiKey};
use mailgate_core::store::Storage;
use mailgate_core::{ApiKeyId, Clock};

use crate::auth::Principal;
use crate::dto::{CreatedKeyOut, KeyIn, KeyOut, ListOut};
use crate::error::ApiError;
use crate::json::{self, JsonBody};
use crate::state::AppState;

/// API keys of an environment.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/environments/{env}/keys", get(list).post(create))
        .route("/v1/environments/{env}/keys/{key_id}", delete(remove))
}

/// Creates a key; its secret is in this answer only.
async fn create(
    State(storage): State<Arc<dyn Storage>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path(env): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<CreatedKeyOut>), ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let name = json::parse::<KeyIn>(&body)?.into_name()?;
    let secret = ApiKeySecret::generate();
    let record = ApiKeyRecord {
        id: ApiKeyId::new(),
        scope: KeyScope::Environment(env.id),
        name,
        hint: secret.hint(),
        created_at: clock.now(),
    };
    storage
        .insert_api_key(&NewApiKey {
            record: record.clone(),
            hash: secret.hash(),
        })
        .await?;
    tracing::info!(key.id = %record.id, environment.id = %env.id, "API key created");
    let out = CreatedKeyOut {
        key: record.into(),
        secret: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// The environment's keys, without secrets.
async fn list(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<ListOut<KeyOut>>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let keys = storage.list_api_keys(&env.id).await?;
    Ok(Json(ListOut {
        data: keys.into_iter().map(Into::into).collect(),
    }))
}

/// Deletes a key: 204, or 404.
async fn remove(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path((env, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let id = ApiKeyId::parse(&key_id).map_err(|_| ApiError::not_found("key"))?;
    if storage.delete_api_key(&env.id, &id).await? {
        tracing::info!(key.id = %id, environment.id = %env.id, "API key deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("key"))
    }
}

//! `POST /webhooks/{env}/{provider}`: provider event webhooks. No API key: each request is
//! authenticated the provider's way (signature or credentials from the environment's provider
//! configuration) before anything is recorded; a failure is a 401 that changes nothing.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use mailgate_providers::{WebhookError, WebhookOutcome, WebhookRequest};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// Provider webhooks.
pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/{env}/{provider}", post(receive))
}

/// Authenticates, normalizes and records a provider's webhook. Events about unknown messages
/// are recorded without a message; duplicates are acknowledged and change nothing.
async fn receive(
    State(state): State<AppState>,
    Path((env, provider)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let env = state
        .storage
        .find_environment(&env)
        .await?
        .ok_or_else(|| ApiError::not_found("environment"))?;
    let configs = state.providers.webhook_configs(&env.id).await.map_err(|e| {
        tracing::error!(environment.id = %env.id, error = %e, "webhook: provider configuration unreadable");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the provider configuration could not be read")
    })?;
    let request = WebhookRequest::new(
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))),
        body.to_vec(),
    );
    // Any provider of the environment's chains (and its organizations') of this type may have
    // sent it; the first whose credentials authenticate the request takes it.
    let mut result = Err(WebhookError::NotConfigured(format!(
        "this environment does not deliver through '{provider}'"
    )));
    for config in configs.iter().filter(|c| c.type_name() == provider) {
        result = state.webhooks.handle(&provider, config, &request).await;
        if !matches!(
            result,
            Err(WebhookError::Unauthorized(_) | WebhookError::NotConfigured(_))
        ) {
            break;
        }
    }
    let outcome = result
        .map_err(|e| {
            tracing::warn!(environment.id = %env.id, provider = %provider, code = e.code(), reason = %e, "webhook refused");
            let status = match e {
                WebhookError::Unauthorized(_) | WebhookError::NotConfigured(_) => StatusCode::UNAUTHORIZED,
                WebhookError::Invalid(_) => StatusCode::BAD_REQUEST,
                WebhookError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError::new(status, e.code(), e.to_string())
        })?;
    match outcome {
        WebhookOutcome::Events(events) => {
            let summary = state.ingest.ingest(&env.id, events).await?;
            Ok((StatusCode::OK, Json(json!(summary))))
        }
        WebhookOutcome::SubscriptionConfirmed => {
            Ok((StatusCode::OK, Json(json!({"confirmed": true}))))
        }
        WebhookOutcome::Ignored => Ok((StatusCode::OK, Json(json!({"recorded": 0})))),
    }
}

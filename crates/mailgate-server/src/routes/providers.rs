//! `/v1/environments/{env}/provider`: the provider that delivers an environment's messages —
//! set (JSON or DSN), shown with secrets masked, removed (back to the server's default),
//! verified against the provider, and tested with a real send.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mailgate_core::message::Content;
use mailgate_core::provider::SendError;
use mailgate_core::send::{SendOutcome, SendRequest, SendService};
use mailgate_core::store::Storage;
use mailgate_core::{Clock, Mailbox};
use mailgate_providers::{
    ConfigError, ProviderConfig, ProviderRegistry, ProviderView, RegistryError,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::{self, JsonBody};
use crate::state::AppState;

/// The environment's provider.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/environments/{env}/provider",
            get(show).put(set).delete(remove),
        )
        .route("/v1/environments/{env}/provider/verify", post(verify))
        .route("/v1/environments/{env}/provider/test", post(test))
}

fn view_out(env: &str, view: ProviderView) -> Json<Value> {
    Json(json!({
        "environment": env,
        "source": view.source.as_str(),
        "provider": view.config,
        "updated_at": view.updated_at.map(|t| t.to_rfc3339()),
    }))
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Config(ConfigError::UnknownType(t)) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_provider_type",
            format!("unknown provider type '{t}'"),
        )
        .with_field("type"),
        RegistryError::Config(ConfigError::Invalid { field, message }) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_provider_config",
            message,
        )
        .with_field(field),
        RegistryError::Secret(e) => {
            tracing::error!(error = %e, "stored provider configuration cannot be decrypted");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "provider_config_unreadable",
                e.to_string(),
            )
        }
        RegistryError::Store(e) => ApiError::from(e),
    }
}

/// The provider in use: the environment's own, or the default.
async fn show(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let view = registry.show(&env.id).await.map_err(registry_error)?;
    Ok(view_out(env.name.as_str(), view))
}

/// Sets the environment's provider from `{"type": …}` or `{"dsn": …}`; answers it redacted.
async fn set(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path(env): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    if !body.is_object() {
        return Err(ApiError::invalid_json("the body must be a JSON object"));
    }
    let config = ProviderConfig::from_json(body).map_err(|e| registry_error(e.into()))?;
    let view = registry
        .set(&env.id, &config, clock.now())
        .await
        .map_err(registry_error)?;
    tracing::info!(environment.id = %env.id, provider = config.type_name(), "environment provider set");
    Ok(view_out(env.name.as_str(), view))
}

/// Back to the server's default provider: 204, or 404 when the environment had none of its own.
async fn remove(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<StatusCode, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    if registry.remove(&env.id).await.map_err(registry_error)? {
        tracing::info!(environment.id = %env.id, "environment provider removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("provider"))
    }
}

/// Checks the configuration against the provider; always 200 with `ok` and the findings.
async fn verify(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let view = registry.show(&env.id).await.map_err(registry_error)?;
    let out = match registry.verify(&env.id).await.map_err(registry_error)? {
        Ok(report) => json!({ "ok": report.ok, "checks": report.checks }),
        Err(e) => {
            let retryable = matches!(e, SendError::Retryable { .. });
            json!({ "ok": false, "checks": [], "error": { "code": e.code(), "message": e.to_string(), "retryable": retryable } })
        }
    };
    let mut out = out;
    out["provider"] = view.config;
    out["source"] = Value::from(view.source.as_str());
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestIn {
    to: String,
    from: String,
}

/// Queues a short test message through the environment's provider; answers its id (202).
async fn test(
    State(storage): State<Arc<dyn Storage>>,
    State(send): State<SendService>,
    principal: Principal,
    Path(env): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let input: TestIn = json::parse(&body)?;
    let content = Content {
        from: Mailbox::parse(&input.from, "from")?,
        to: vec![Mailbox::parse(&input.to, "to")?],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: "mailgate test message".into(),
        text: Some(format!(
            "This is a test message from mailgate for the environment '{}'.",
            env.name
        )),
        html: None,
        headers: vec![],
        attachments: vec![],
    };
    let request = SendRequest {
        content,
        tags: vec!["mailgate-test".into()],
        metadata: Default::default(),
        provider_options: None,
    };
    let id = match send.send(&env, request, None).await? {
        SendOutcome::Accepted(id) | SendOutcome::Replayed(id) => id,
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": "queued" })),
    ))
}

//! `/v1/environments/{env}/provider`: the provider that delivers an environment's messages —
//! set (JSON or DSN), shown with secrets masked, removed (back to the server's default),
//! verified against the provider, and tested with a real send.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mailgate_core::event::EventQuery;
use mailgate_core::message::MessageStatus;
use mailgate_core::provider::SendError;
use mailgate_core::send::{Draft, SendRequest, SendService};
use mailgate_core::store::Storage;
use mailgate_core::{Clock, Mailbox};
use mailgate_providers::{
    ConfigError, ProviderConfig, ProviderRegistry, ProviderView, RegistryError,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::dto::EventOut;
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
    from: Option<String>,
}

/// How long a test send waits for its outcome.
const TEST_WAIT: Duration = Duration::from_secs(10);

/// Sends a short test message through the real path (send service, queue, dispatcher, the
/// environment's provider) and reports what happened: 200 with the status, provider, reason and
/// events once the attempt finished, or `"finished": false` with what is known after 10 s.
/// `from` may be left out when the environment has a default sender.
async fn test(
    State(storage): State<Arc<dyn Storage>>,
    State(send): State<SendService>,
    principal: Principal,
    Path(env): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let input: TestIn = json::parse(&body)?;
    let draft = Draft {
        from: input
            .from
            .as_deref()
            .map(|f| Mailbox::parse(f, "from"))
            .transpose()?,
        to: vec![Mailbox::parse(&input.to, "to")?],
        subject: Some("mailgate test message".into()),
        text: Some(format!(
            "This is a test message from mailgate for the environment '{}'.",
            env.name
        )),
        ..Draft::default()
    };
    let request = SendRequest {
        draft,
        tags: vec!["mailgate-test".into()],
        ..SendRequest::default()
    };
    let id = send.send(&env, request, None).await?.id();
    let deadline = Instant::now() + TEST_WAIT;
    let (record, finished) = loop {
        let record = storage
            .get_message(Some(&env.id), &id)
            .await?
            .ok_or_else(|| ApiError::not_found("message"))?;
        let pending = record.status == MessageStatus::Sending
            || (record.status == MessageStatus::Queued && record.attempts == 0);
        if !pending || Instant::now() >= deadline {
            break (record, !pending);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let query = EventQuery {
        environment_id: Some(env.id),
        message_id: Some(id),
        types: Vec::new(),
        since: None,
        after_seq: None,
        limit: 100,
    };
    let events: Vec<EventOut> = storage
        .list_events(&query)
        .await?
        .into_iter()
        .map(EventOut::from)
        .collect();
    Ok(Json(json!({
        "id": id,
        "finished": finished,
        "ok": matches!(record.status, MessageStatus::Sent | MessageStatus::Delivered),
        "status": record.status,
        "provider": record.provider,
        "provider_message_id": record.provider_message_id,
        "attempts": record.attempts,
        "reason": record.last_error,
        "events": events,
    })))
}

//! `/v1/environments/{env}/provider` and `/v1/environments/{env}/organizations/{org}/provider`:
//! the provider chain that delivers an environment's (or an organization's) messages — set (JSON,
//! DSN or composite DSN), shown with secrets masked, removed (back to the server's default, or
//! to the environment's), verified provider by provider, and tested with a real send.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mailgate_core::environment::{Environment, OrganizationName};
use mailgate_core::event::EventQuery;
use mailgate_core::message::MessageStatus;
use mailgate_core::send::{Draft, SendRequest, SendService};
use mailgate_core::store::Storage;
use mailgate_core::{Clock, Mailbox};
use mailgate_providers::{ChainConfig, ConfigError, ProviderRegistry, ProviderView, RegistryError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::dto::EventOut;
use crate::error::ApiError;
use crate::json::{self, JsonBody};
use crate::state::AppState;

/// The environment's provider chain, and its organizations'.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/environments/{env}/provider",
            get(show).put(set).delete(remove),
        )
        .route("/v1/environments/{env}/provider/verify", post(verify))
        .route("/v1/environments/{env}/provider/test", post(test))
        .route(
            "/v1/environments/{env}/organizations/{org}/provider",
            get(show_org).put(set_org).delete(remove_org),
        )
        .route(
            "/v1/environments/{env}/organizations/{org}/provider/verify",
            post(verify_org),
        )
}

fn view_out(env: &str, org: Option<&OrganizationName>, view: ProviderView) -> Json<Value> {
    Json(json!({
        "environment": env,
        "organization": org.map(OrganizationName::as_str),
        "source": view.source.as_str(),
        "provider": view.config,
        "providers": view
            .members
            .iter()
            .map(|(name, t)| json!({ "name": name, "type": t }))
            .collect::<Vec<_>>(),
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

fn organization(org: &str) -> Result<OrganizationName, ApiError> {
    OrganizationName::parse(org).map_err(|e| ApiError::field(e.at("org")))
}

/// Shared by the environment's and the organizations' routes.
struct Scope {
    env: Environment,
    org: Option<OrganizationName>,
}

async fn scope(
    storage: &dyn Storage,
    principal: &Principal,
    env: &str,
    org: Option<&str>,
) -> Result<Scope, ApiError> {
    let env = principal
        .required_environment(storage, Some(env), "env")
        .await?;
    let org = org.map(organization).transpose()?;
    Ok(Scope { env, org })
}

async fn show_in(registry: &ProviderRegistry, s: Scope) -> Result<Json<Value>, ApiError> {
    let view = registry
        .show(&s.env.id, s.org.as_ref())
        .await
        .map_err(registry_error)?
        .ok_or_else(|| ApiError::not_found("provider"))?;
    Ok(view_out(s.env.name.as_str(), s.org.as_ref(), view))
}

async fn set_in(
    registry: &ProviderRegistry,
    clock: &dyn Clock,
    s: Scope,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid_json("the body must be a JSON object"));
    }
    let chain = ChainConfig::from_json(body).map_err(|e| registry_error(e.into()))?;
    let view = registry
        .set(&s.env.id, s.org.as_ref(), &chain, clock.now())
        .await
        .map_err(registry_error)?;
    tracing::info!(environment.id = %s.env.id, organization = s.org.is_some(), providers = ?chain.type_names(), "provider chain set");
    Ok(view_out(s.env.name.as_str(), s.org.as_ref(), view))
}

async fn remove_in(registry: &ProviderRegistry, s: Scope) -> Result<StatusCode, ApiError> {
    if registry
        .remove(&s.env.id, s.org.as_ref())
        .await
        .map_err(registry_error)?
    {
        tracing::info!(environment.id = %s.env.id, organization = s.org.is_some(), "provider chain removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("provider"))
    }
}

async fn verify_in(registry: &ProviderRegistry, s: Scope) -> Result<Json<Value>, ApiError> {
    let view = registry
        .show(&s.env.id, s.org.as_ref())
        .await
        .map_err(registry_error)?
        .ok_or_else(|| ApiError::not_found("provider"))?;
    let reports = registry
        .verify(&s.env.id, s.org.as_ref())
        .await
        .map_err(registry_error)?;
    let ok = reports
        .iter()
        .all(|r| r.result.as_ref().is_ok_and(|r| r.ok));
    let providers: Vec<Value> = reports
        .into_iter()
        .map(|r| match r.result {
            Ok(report) => json!({
                "name": r.name,
                "type": r.provider,
                "ok": report.ok,
                "checks": report.checks,
            }),
            Err(e) => json!({
                "name": r.name,
                "type": r.provider,
                "ok": false,
                "checks": [],
                "error": { "code": e.code(), "message": e.to_string(), "retryable": e.is_retryable() },
            }),
        })
        .collect();
    Ok(Json(json!({
        "environment": s.env.name.as_str(),
        "organization": s.org.as_ref().map(OrganizationName::as_str),
        "source": view.source.as_str(),
        "ok": ok,
        "provider": view.config,
        "providers": providers,
    })))
}

/// The chain in use: the environment's own, or the default.
async fn show(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    show_in(
        &registry,
        scope(storage.as_ref(), &principal, &env, None).await?,
    )
    .await
}

/// Sets the environment's chain (one provider, a composite DSN, or primary and failovers);
/// answers it redacted.
async fn set(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path(env): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let s = scope(storage.as_ref(), &principal, &env, None).await?;
    set_in(&registry, clock.as_ref(), s, body).await
}

/// Back to the server's default provider: 204, or 404 when the environment had none of its own.
async fn remove(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_in(
        &registry,
        scope(storage.as_ref(), &principal, &env, None).await?,
    )
    .await
}

/// Checks every provider of the chain; always 200 with `ok` and a report per provider.
async fn verify(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    verify_in(
        &registry,
        scope(storage.as_ref(), &principal, &env, None).await?,
    )
    .await
}

/// An organization's own chain; 404 when it uses the environment's.
async fn show_org(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path((env, org)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    show_in(
        &registry,
        scope(storage.as_ref(), &principal, &env, Some(&org)).await?,
    )
    .await
}

/// Sets an organization's chain (and its `from`).
async fn set_org(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path((env, org)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let s = scope(storage.as_ref(), &principal, &env, Some(&org)).await?;
    set_in(&registry, clock.as_ref(), s, body).await
}

/// Back to the environment's chain.
async fn remove_org(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path((env, org)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    remove_in(
        &registry,
        scope(storage.as_ref(), &principal, &env, Some(&org)).await?,
    )
    .await
}

/// Checks every provider of an organization's chain.
async fn verify_org(
    State(storage): State<Arc<dyn Storage>>,
    State(registry): State<Arc<ProviderRegistry>>,
    principal: Principal,
    Path((env, org)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    verify_in(
        &registry,
        scope(storage.as_ref(), &principal, &env, Some(&org)).await?,
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestIn {
    to: String,
    from: Option<String>,
    /// Test an organization's chain.
    organization: Option<String>,
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
        organization: input
            .organization
            .as_deref()
            .map(OrganizationName::parse)
            .transpose()?,
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

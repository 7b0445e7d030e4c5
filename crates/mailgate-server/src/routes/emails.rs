//! `POST /v1/emails`, `GET /v1/emails/{id}` and `GET /v1/emails/{id}/content`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mailgate_core::environment::Environment;
use mailgate_core::event::EventQuery;
use mailgate_core::message::{Content, Idempotency, IdempotencyKey, MessageStatus};
use mailgate_core::send::{SendOutcome, SendService};
use mailgate_core::store::{Storage, StoredContent};
use mailgate_core::{FieldError, MessageId};
use serde_json::json;

use crate::auth::Principal;
use crate::dto::{EmailOut, SendEmailIn, SendEmailOut};
use crate::error::ApiError;
use crate::json::{self, JsonBytes};
use crate::state::AppState;

/// The header that marks an idempotent replay.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Most events shown in a message's timeline.
const TIMELINE_LIMIT: u32 = 1000;

/// Sending and reading messages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/emails", post(send))
        .route("/v1/emails/{id}", get(show))
        .route("/v1/emails/{id}/content", get(content))
}

/// Accepts a message: 202 when queued, 200 with `Idempotent-Replayed: true` for a replay.
async fn send(
    State(storage): State<Arc<dyn Storage>>,
    State(service): State<SendService>,
    principal: Principal,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let input: SendEmailIn = json::from_bytes(&body)?;
    let env = principal
        .required_environment(
            storage.as_ref(),
            input.environment.as_deref(),
            "environment",
        )
        .await?;
    let idempotency = idempotency(&headers, &env, &body)?;
    let request = input.into_request()?;
    let accepted = service.send_detailed(&env, request, idempotency).await?;
    let out = SendEmailOut {
        id: accepted.outcome.id().to_string(),
        status: MessageStatus::Queued,
        warnings: accepted.warnings,
    };
    Ok(match accepted.outcome {
        SendOutcome::Accepted(_) => (StatusCode::ACCEPTED, Json(out)).into_response(),
        SendOutcome::Replayed(_) => (
            StatusCode::OK,
            [(REPLAYED, HeaderValue::from_static("true"))],
            Json(out),
        )
            .into_response(),
    })
}

/// The `Idempotency-Key` header with the fingerprint of the request: its canonical JSON (sorted
/// keys, no whitespace) together with the environment it was sent to. The body is parsed to a
/// `Value` for it only here, when a key is given.
fn idempotency(
    headers: &HeaderMap,
    env: &Environment,
    body: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .map_err(|_| {
            FieldError::new(
                "invalid_idempotency_key",
                "Idempotency-Key",
                "idempotency keys are printable ASCII",
            )
        })
        .and_then(IdempotencyKey::parse)?;
    let canonical = json!({"environment": env.id.to_string(), "body": json::to_value(body)?});
    Ok(Some(Idempotency::new(key, &canonical)))
}

/// A message with its event timeline; 404 outside the key's environment.
async fn show(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<EmailOut>, ApiError> {
    let id = MessageId::parse(&id).map_err(|_| ApiError::not_found("message"))?;
    let scope = principal.environment_id();
    let record = storage
        .get_message(scope.as_ref(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    let query = EventQuery {
        environment_id: Some(record.environment_id),
        message_id: Some(id),
        types: Vec::new(),
        since: None,
        after_seq: None,
        limit: TIMELINE_LIMIT,
    };
    let events = storage.list_events(&query).await?;
    Ok(Json(EmailOut::new(record, events)))
}

/// A message's stored content (attachments in base64), or 410 once purged.
async fn content(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Content>, ApiError> {
    let id = MessageId::parse(&id).map_err(|_| ApiError::not_found("message"))?;
    let scope = principal.environment_id();
    match storage.get_content(scope.as_ref(), &id).await? {
        Some(StoredContent::Retained(content)) => Ok(Json(*content)),
        Some(StoredContent::Purged) => Err(ApiError::new(
            StatusCode::GONE,
            "content_purged",
            "this message's content was purged after the retention period",
        )),
        None => Err(ApiError::not_found("message")),
    }
}

//! `/v1/environments/{env}/suppressions` (list, add, check, remove) and
//! `/v1/environments/{env}/recipients/{address}` (suppression state, last messages, events).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mailgate_core::store::Storage;
use mailgate_core::suppression::{Suppression, SuppressionQuery, SuppressionReason};
use mailgate_core::{Clock, FieldError};

use crate::auth::Principal;
use crate::dto::suppressions::{
    instant, normalized_address, RecipientOut, SuppressionCheckOut, SuppressionIn,
    SuppressionListOut, SuppressionOut, SuppressionParams,
};
use crate::dto::EmailOut;
use crate::error::ApiError;
use crate::json::{self, JsonBody};
use crate::state::AppState;

/// How many messages the recipient view shows.
const RECIPIENT_MESSAGES: u32 = 20;

/// Suppressions and the recipient view.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/environments/{env}/suppressions", get(list).post(add))
        .route(
            "/v1/environments/{env}/suppressions/{address}",
            get(check).delete(remove),
        )
        .route(
            "/v1/environments/{env}/recipients/{address}",
            get(recipient),
        )
}

/// A filtered page of suppressions, by address.
async fn list(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(env): Path<String>,
    Query(p): Query<SuppressionParams>,
) -> Result<Json<SuppressionListOut>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let reason = p
        .reason
        .as_deref()
        .map(|r| {
            SuppressionReason::parse(r).ok_or_else(|| {
                FieldError::new(
                    "invalid_reason",
                    "reason",
                    "one of hard_bounce, complaint, soft_bounces, manual",
                )
            })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(FieldError::new("invalid_limit", "limit", "between 1 and 500").into());
    }
    let query = SuppressionQuery {
        environment_id: env.id,
        reason,
        contains: p.contains.map(|c| c.to_lowercase()),
        since: p
            .since
            .as_deref()
            .map(|s| instant(s, "since"))
            .transpose()?,
        after: p.cursor,
        limit: limit + 1,
    };
    let mut rows = storage.list_suppressions(&query).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|s| s.address.clone())
    } else {
        None
    };
    Ok(Json(SuppressionListOut {
        data: rows.into_iter().map(SuppressionOut::from).collect(),
        next_cursor,
    }))
}

/// Adds (or replaces) a suppression by hand.
async fn add(
    State(storage): State<Arc<dyn Storage>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path(env): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<SuppressionOut>), ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let input = json::parse::<SuppressionIn>(&body)?;
    let suppression = Suppression {
        environment_id: env.id,
        address: normalized_address(&input.address, "address")?,
        reason: input.reason.unwrap_or(SuppressionReason::Manual),
        source_event_id: None,
        provider: None,
        note: input.note,
        created_at: clock.now(),
        expires_at: input
            .expires_at
            .as_deref()
            .map(|s| instant(s, "expires_at"))
            .transpose()?,
    };
    storage.add_suppression(&suppression, true).await?;
    tracing::info!(environment.id = %env.id, reason = suppression.reason.as_str(), "suppression added by hand");
    Ok((StatusCode::CREATED, Json(suppression.into())))
}

/// Whether an address is suppressed, and why.
async fn check(
    State(storage): State<Arc<dyn Storage>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path((env, address)): Path<(String, String)>,
) -> Result<Json<SuppressionCheckOut>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let address = normalized_address(&address, "address")?;
    let found = storage
        .get_suppression(&env.id, &address, clock.now())
        .await?;
    Ok(Json(SuppressionCheckOut {
        address,
        suppressed: found.is_some(),
        suppression: found.map(SuppressionOut::from),
    }))
}

/// Removes a suppression: sends to the address are accepted again.
async fn remove(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path((env, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let address = normalized_address(&address, "address")?;
    if storage.delete_suppression(&env.id, &address).await? {
        tracing::info!(environment.id = %env.id, "suppression removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("suppression"))
    }
}

/// "Why didn't they get it?": suppression state and the last messages with their events.
async fn recipient(
    State(storage): State<Arc<dyn Storage>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path((env, address)): Path<(String, String)>,
) -> Result<Json<RecipientOut>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let address = normalized_address(&address, "address")?;
    let suppression = storage
        .get_suppression(&env.id, &address, clock.now())
        .await?;
    let messages = storage
        .recipient_messages(&env.id, &address, RECIPIENT_MESSAGES)
        .await?;
    Ok(Json(RecipientOut {
        address,
        suppressed: suppression.is_some(),
        suppression: suppression.map(SuppressionOut::from),
        messages: messages
            .into_iter()
            .map(|m| EmailOut::new(m.message, m.events))
            .collect(),
    }))
}

//! `GET /v1/events`: the event log, filtered and paginated by cursor.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use mailgate_core::store::Storage;

use crate::auth::Principal;
use crate::dto::events::{cursor_after, EventsParams};
use crate::dto::{EventListOut, EventOut};
use crate::error::ApiError;
use crate::state::AppState;

/// The event log.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", get(list))
}

/// A page of events, oldest first; environment keys see only their environment.
async fn list(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Query(params): Query<EventsParams>,
) -> Result<Json<EventListOut>, ApiError> {
    let env = principal
        .environment(storage.as_ref(), params.environment(), "environment")
        .await?;
    let mut query = params.to_query(env.map(|e| e.id))?;
    let page = query.limit as usize;
    query.limit += 1;
    let mut events = storage.list_events(&query).await?;
    let next_cursor = if events.len() > page {
        events.truncate(page);
        events.last().map(|e| cursor_after(e.seq))
    } else {
        None
    };
    Ok(Json(EventListOut {
        data: events.into_iter().map(EventOut::from).collect(),
        next_cursor,
    }))
}

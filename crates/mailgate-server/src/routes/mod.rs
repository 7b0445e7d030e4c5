//! The API's routes: one `router()` per resource, merged here.

use axum::http::StatusCode;
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

pub mod emails;
pub mod environments;
pub mod events;
pub mod health;
pub mod keys;
pub mod notifications;
pub mod providers;
pub mod reputation;
pub mod suppressions;
pub mod templates;
pub mod webhooks;

/// Every route, with JSON answers for unknown routes and methods.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(emails::router())
        .merge(events::router())
        .merge(environments::router())
        .merge(keys::router())
        .merge(providers::router())
        .merge(templates::router())
        .merge(notifications::router())
        .merge(reputation::router())
        .merge(suppressions::router())
        .merge(webhooks::router())
        .method_not_allowed_fallback(|| async {
            ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .fallback(|| async { ApiError::from_status(StatusCode::NOT_FOUND) })
}

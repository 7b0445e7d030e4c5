//! mailgate's HTTP API on axum: one router per resource, API-key authentication, and one error
//! type (`ApiError`) that every failure is answered with.
//!
//! Architecture invariant: only this crate knows HTTP. Handlers are thin: extract, make one core
//! or store call, answer.
#![forbid(unsafe_code)]

use std::any::Any;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use mailgate_core::send::SendService;
use mailgate_core::store::Storage;
use mailgate_core::Clock;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub mod auth;
pub mod dto;
pub mod error;
pub mod json;
pub mod routes;
pub mod state;

pub use auth::Principal;
pub use error::ApiError;
pub use state::{AppState, ServerConfig};

impl FromRef<AppState> for Arc<dyn Storage> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.storage)
    }
}

impl FromRef<AppState> for SendService {
    fn from_ref(state: &AppState) -> Self {
        state.send.clone()
    }
}

impl FromRef<AppState> for Arc<mailgate_providers::ProviderRegistry> {
    fn from_ref(state: &AppState) -> Self {
        state.providers.clone()
    }
}

impl FromRef<AppState> for Arc<dyn Clock> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.clock)
    }
}

/// The whole API with its layers: tracing (method, path, status and latency only — never
/// headers or bodies), JSON for every error a layer answers alone, panic catching, the request
/// timeout and the body limit.
pub fn router(state: AppState) -> Router {
    let config = Arc::clone(&state.config);
    let layers = ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn(json_errors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, config.request_timeout));
    routes::router()
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(layers)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Gives a JSON error body to error answers that carry none (axum's own rejections, the
/// timeout, 405), keeping their status and other headers.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (_, body) = ApiError::from_status(status).into_response().into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, body)
}

/// The answer to a handler that panicked: a generic 500, the panic logged.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %detail, "handler panicked");
    ApiError::from_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

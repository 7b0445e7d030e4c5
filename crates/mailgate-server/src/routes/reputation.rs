//! `/v1/environments/{env}/reputation`: bounce and complaint rates over the rolling window, per
//! provider, judged against the SES thresholds; `PATCH` sets the window, the minimum volume and
//! whether sending pauses at critical.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mailgate_core::reputation::{self, Report};
use mailgate_core::store::Storage;
use mailgate_core::Clock;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::{self, JsonBody};
use crate::state::AppState;

/// The environment's reputation.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/environments/{env}/reputation", get(show).patch(update))
}

/// The `PATCH` body; absent fields keep their value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsIn {
    window_seconds: Option<u64>,
    min_volume: Option<u64>,
    pause_on_critical: Option<bool>,
}

fn report_out(env: &str, r: &Report) -> Value {
    let providers: serde_json::Map<String, Value> = r
        .providers
        .iter()
        .map(|(name, rates)| (name.clone(), json!(rates)))
        .collect();
    json!({
        "environment": env,
        "level": r.level,
        "paused": r.paused,
        "window": { "seconds": r.settings.window_seconds, "since": r.since.to_rfc3339() },
        "min_volume": r.settings.min_volume,
        "pause_on_critical": r.settings.pause_on_critical,
        "thresholds": {
            "bounce": { "warning": reputation::BOUNCE_WARNING, "critical": reputation::BOUNCE_CRITICAL },
            "complaint": { "warning": reputation::COMPLAINT_WARNING, "critical": reputation::COMPLAINT_CRITICAL },
        },
        "overall": r.overall,
        "providers": providers,
    })
}

/// The rates and levels now.
async fn show(
    State(storage): State<Arc<dyn Storage>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let report = reputation::report(storage.as_ref(), &env.id, clock.now()).await?;
    Ok(Json(report_out(env.name.as_str(), &report)))
}

/// Changes the settings; answers the report under them.
async fn update(
    State(storage): State<Arc<dyn Storage>>,
    State(clock): State<Arc<dyn Clock>>,
    principal: Principal,
    Path(env): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    let input: SettingsIn = json::parse(&body)?;
    let mut settings = storage.reputation_settings(&env.id).await?;
    if let Some(w) = input.window_seconds {
        if !(60..=30 * 24 * 3600).contains(&w) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "window_seconds must be between 60 and 2592000",
            )
            .with_field("window_seconds"));
        }
        settings.window_seconds = w;
    }
    settings.min_volume = input.min_volume.unwrap_or(settings.min_volume);
    settings.pause_on_critical = input
        .pause_on_critical
        .unwrap_or(settings.pause_on_critical);
    let now = clock.now();
    storage
        .put_reputation_settings(&env.id, &settings, now)
        .await?;
    tracing::info!(environment.id = %env.id, pause_on_critical = settings.pause_on_critical, "reputation settings set");
    let report = reputation::report(storage.as_ref(), &env.id, now).await?;
    Ok(Json(report_out(env.name.as_str(), &report)))
}

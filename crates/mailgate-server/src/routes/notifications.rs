//! `/v1/environments/{env}/notifications`: failure-notification targets (a signed webhook, a
//! Slack incoming webhook) and the event-stream URL, with each feed's delivery state. Secrets
//! are generated here, shown once in the `PUT` answer, and stored sealed.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mailgate_core::feeds::{FeedKind, FeedState};
use mailgate_core::notify::{EmailTarget, NotificationSettings, SignedTarget};
use mailgate_core::store::Storage;
use mailgate_core::{Clock, EnvironmentId, Mailbox};
use mailgate_providers::outbound::{generate_secret, seal_owner};
use mailgate_providers::ProviderRegistry;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::{self, JsonBody};
use crate::state::AppState;

/// The environment's notification targets.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/environments/{env}/notifications", get(show).put(set))
}

/// A URL target in a `PUT` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlIn {
    url: String,
    /// Generate a new secret even if the target already has one.
    #[serde(default)]
    rotate_secret: bool,
}

/// The `PUT` body: every target, `null` or absent to remove it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationsIn {
    #[serde(default)]
    webhook: Option<UrlIn>,
    #[serde(default)]
    slack: Option<UrlIn>,
    #[serde(default)]
    event_stream: Option<UrlIn>,
    #[serde(default)]
    email: Option<EmailIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailIn {
    to: String,
    #[serde(default)]
    from: Option<String>,
}

fn check_url(url: &str, field: &str) -> Result<(), ApiError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && !url.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
            "expected an http:// or https:// URL",
        )
        .with_field(field))
    }
}

fn feed_out(state: Option<&FeedState>) -> Value {
    state.map_or(Value::Null, |s| {
        json!({
            "last_seq": s.cursor.seq,
            "last_delivered_at": s.last_delivered_at.map(|t| t.to_rfc3339()),
            "failures": s.failures,
            "last_error": s.last_error,
            "next_attempt_at": s.next_attempt_at.to_rfc3339(),
        })
    })
}

async fn view(
    storage: &dyn Storage,
    env_name: &str,
    env: &EnvironmentId,
) -> Result<Value, ApiError> {
    let settings = storage.notification_settings(env).await?;
    let feeds = storage.feed_states(env).await?;
    let feed = |k: FeedKind| feed_out(feeds.iter().find(|f| f.kind == k));
    let url = |t: Option<&SignedTarget>| t.map_or(Value::Null, |t| json!({"url": t.url}));
    let s = settings.as_ref();
    Ok(json!({
        "environment": env_name,
        "webhook": url(s.and_then(|s| s.webhook.as_ref())),
        "slack": if s.and_then(|s| s.sealed_slack_url.as_ref()).is_some() { json!({"configured": true}) } else { Value::Null },
        "email": s.and_then(|s| s.email.as_ref()).map_or(Value::Null, |e| json!({"to": e.to, "from": e.from})),
        "event_stream": url(s.and_then(|s| s.stream.as_ref())),
        "delivery": {
            "notifications": feed(FeedKind::Notify),
            "event_stream": feed(FeedKind::Stream),
        },
        "updated_at": s.map(|s| s.updated_at.to_rfc3339()),
    }))
}

/// The targets (URLs only; secrets are never shown again) and delivery state.
async fn show(
    State(storage): State<Arc<dyn Storage>>,
    principal: Principal,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let env = principal
        .required_environment(storage.as_ref(), Some(&env), "env")
        .await?;
    Ok(Json(
        view(storage.as_ref(), env.name.as_str(), &env.id).await?,
    ))
}

/// Replaces the targets. A webhook or event-stream target gets a fresh `whsec_` secret when it
/// is new or `rotate_secret` is set; the answer shows new secrets once.
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
    let input: NotificationsIn = json::parse(&body)?;
    // Checked here; sent through the environment's own pipeline by the feed worker.
    let email = match input.email {
        Some(e) => {
            let to = Mailbox::parse(&e.to, "email.to")?;
            let from = e
                .from
                .as_deref()
                .map(|f| Mailbox::parse(f, "email.from"))
                .transpose()?;
            Some(EmailTarget {
                to: to.to_string(),
                from: from.map(|f| f.to_string()),
            })
        }
        None => None,
    };
    let previous = storage.notification_settings(&env.id).await?;
    let key = registry.secret_key();
    let mut shown = serde_json::Map::new();
    let mut signed = |name: &str, input: Option<UrlIn>, old: Option<SignedTarget>| {
        let Some(input) = input else {
            return Ok(None);
        };
        check_url(&input.url, &format!("{name}.url"))?;
        let sealed_secret = match old {
            Some(old) if !input.rotate_secret => old.sealed_secret,
            _ => {
                let secret = generate_secret();
                let sealed = key.seal(secret.as_bytes(), &seal_owner(&env.id, "secret"));
                shown.insert(name.to_owned(), json!({ "secret": secret }));
                sealed
            }
        };
        Ok::<_, ApiError>(Some(SignedTarget {
            url: input.url,
            sealed_secret,
        }))
    };
    let webhook = signed(
        "webhook",
        input.webhook,
        previous.as_ref().and_then(|p| p.webhook.clone()),
    )?;
    let stream = signed(
        "event_stream",
        input.event_stream,
        previous.as_ref().and_then(|p| p.stream.clone()),
    )?;
    let slack = match input.slack {
        Some(s) => {
            check_url(&s.url, "slack.url")?;
            Some(key.seal(s.url.as_bytes(), &seal_owner(&env.id, "slack")))
        }
        None => None,
    };
    storage
        .put_notification_settings(&NotificationSettings {
            environment_id: env.id,
            webhook,
            sealed_slack_url: slack,
            stream,
            email,
            updated_at: clock.now(),
        })
        .await?;
    tracing::info!(environment.id = %env.id, "notification targets set");
    let mut out = view(storage.as_ref(), env.name.as_str(), &env.id).await?;
    for (name, secret) in shown {
        out[name.as_str()]["secret"] = secret["secret"].clone();
    }
    Ok(Json(out))
}

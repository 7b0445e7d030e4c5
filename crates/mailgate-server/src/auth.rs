//! Authentication: the `Principal` extractor (who is calling, from `Authorization: Bearer KEY`)
//! and the rule that decides which environment a call may act on.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use mailgate_core::apikey::{ApiKeySecret, KeyScope};
use mailgate_core::environment::Environment;
use mailgate_core::store::Storage;
use mailgate_core::{ApiKeyId, EnvironmentId};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller: the key's scope and id (never its secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// What the key may act on.
    pub scope: KeyScope,
    /// The key's id.
    pub key_id: ApiKeyId,
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or_else(ApiError::unauthorized)?;
        let hash = ApiKeySecret::from_presented(token).hash();
        let record = state
            .storage
            .find_api_key(&hash)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(Self {
            scope: record.scope,
            key_id: record.id,
        })
    }
}

/// The token of an `Authorization: Bearer …` header, if well formed.
fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(char::is_whitespace))
    .then_some(token)
}

impl Principal {
    /// Whether this is an admin key.
    pub fn is_admin(&self) -> bool {
        matches!(self.scope, KeyScope::Admin)
    }

    /// The environment an environment key is bound to (`None` for admin keys): the scope of
    /// every read made with it.
    pub fn environment_id(&self) -> Option<EnvironmentId> {
        match self.scope {
            KeyScope::Admin => None,
            KeyScope::Environment(id) => Some(id),
        }
    }

    /// Refuses anything but an admin key (403 `admin_required`).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::admin_required())
        }
    }

    /// The environment a call acts on. `requested` is a name or id from the path, the body or
    /// the query (`field` names it in errors). An admin key may name any environment and gets
    /// `None` when it names none; an environment key gets its own environment and may name only
    /// that one (403 `forbidden_environment` otherwise, so existence never leaks across
    /// environments).
    pub async fn environment(
        &self,
        storage: &dyn Storage,
        requested: Option<&str>,
        field: &str,
    ) -> Result<Option<Environment>, ApiError> {
        match (self.scope, requested) {
            (KeyScope::Admin, None) => Ok(None),
            (KeyScope::Admin, Some(name)) => match storage.find_environment(name).await? {
                Some(env) => Ok(Some(env)),
                None => Err(ApiError::not_found("environment").with_field(field)),
            },
            (KeyScope::Environment(own), requested) => {
                let env = storage
                    .find_environment(&own.to_string())
                    .await?
                    .ok_or_else(ApiError::unauthorized)?;
                match requested {
                    Some(name) if name != env.name.as_str() && name != env.id.to_string() => {
                        Err(ApiError::forbidden_environment().with_field(field))
                    }
                    _ => Ok(Some(env)),
                }
            }
        }
    }

    /// Like [`Principal::environment`], but an environment is required (422
    /// `environment_required` for an admin key that names none).
    pub async fn required_environment(
        &self,
        storage: &dyn Storage,
        requested: Option<&str>,
        field: &str,
    ) -> Result<Environment, ApiError> {
        self.environment(storage, requested, field)
            .await?
            .ok_or_else(|| {
                ApiError::field(mailgate_core::FieldError::new(
                    "environment_required",
                    field,
                    "an admin key must name the environment",
                ))
            })
    }
}

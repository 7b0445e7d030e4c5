//! The provider registry: which provider delivers each environment's messages. It stores each
//! environment's configuration sealed with the secret key, shows it only redacted, builds providers
//! on demand and caches them, re-checking the stored version every few seconds so that a change
//! made through any process reaches every process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailgate_core::provider::{Provider, ProviderResolver, SendError, VerifyReport};
use mailgate_core::store::{ProviderConfigStore, StoreError, StoredProviderConfig};
use mailgate_core::{EnvironmentId, Timestamp};
use serde_json::Value;

use crate::config::{BuildContext, ConfigError, ProviderConfig};
use crate::secrets::{SecretError, SecretKey};

/// Scope of an environment's own provider (organizations get their own scopes later).
const ENVIRONMENT_SCOPE: &str = "";

/// Why the registry could not do what was asked. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The stored configuration cannot be decrypted.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where an environment's provider comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderSource {
    /// Set for the environment.
    Environment,
    /// The server's default (`provider.default`).
    Default,
}

impl ProviderSource {
    /// `environment` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Environment => "environment",
            Self::Default => "default",
        }
    }
}

/// An environment's provider as shown to people: secrets masked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderView {
    /// Where it comes from.
    pub source: ProviderSource,
    /// The redacted configuration.
    pub config: Value,
    /// When the environment's configuration was set (`None` for the default).
    pub updated_at: Option<Timestamp>,
}

struct Cached {
    version: Option<Timestamp>,
    provider: Arc<dyn Provider>,
    checked: Instant,
}

/// See the module documentation.
pub struct ProviderRegistry {
    store: Arc<dyn ProviderConfigStore>,
    key: SecretKey,
    ctx: BuildContext,
    default_config: ProviderConfig,
    default_provider: Arc<dyn Provider>,
    recheck: Duration,
    cache: Mutex<HashMap<EnvironmentId, Cached>>,
}

fn owner(env: &EnvironmentId, scope: &str) -> String {
    format!("{env}/{scope}")
}

impl ProviderRegistry {
    /// A registry whose environments fall back to `default_config`. Changes made by another
    /// process are noticed within `recheck`.
    pub async fn new(
        store: Arc<dyn ProviderConfigStore>,
        key: SecretKey,
        ctx: BuildContext,
        default_config: ProviderConfig,
        recheck: Duration,
    ) -> Result<Self, ConfigError> {
        let default_provider = default_config.build(&ctx).await?;
        Ok(Self {
            store,
            key,
            ctx,
            default_config,
            default_provider,
            recheck,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The key that seals secrets at rest (also used for notification secrets).
    pub fn secret_key(&self) -> &SecretKey {
        &self.key
    }

    /// Sets an environment's provider, replacing any earlier one.
    pub async fn set(
        &self,
        env: &EnvironmentId,
        config: &ProviderConfig,
        now: Timestamp,
    ) -> Result<ProviderView, RegistryError> {
        let plaintext = serde_json::to_vec(config)
            .map_err(|e| ConfigError::invalid("provider", e.to_string()))?;
        let stored = StoredProviderConfig {
            environment_id: *env,
            scope: ENVIRONMENT_SCOPE.into(),
            sealed: self.key.seal(&plaintext, &owner(env, ENVIRONMENT_SCOPE)),
            redacted: config.redacted(),
            updated_at: now,
        };
        self.store.put_provider_config(&stored).await?;
        self.forget(env);
        Ok(ProviderView {
            source: ProviderSource::Environment,
            config: stored.redacted,
            updated_at: Some(now),
        })
    }

    /// An environment's provider, redacted.
    pub async fn show(&self, env: &EnvironmentId) -> Result<ProviderView, RegistryError> {
        Ok(
            match self
                .store
                .get_provider_config(env, ENVIRONMENT_SCOPE)
                .await?
            {
                Some(c) => ProviderView {
                    source: ProviderSource::Environment,
                    config: c.redacted,
                    updated_at: Some(c.updated_at),
                },
                None => ProviderView {
                    source: ProviderSource::Default,
                    config: self.default_config.redacted(),
                    updated_at: None,
                },
            },
        )
    }

    /// Returns an environment to the default provider; false if it had none of its own.
    pub async fn remove(&self, env: &EnvironmentId) -> Result<bool, RegistryError> {
        let removed = self
            .store
            .delete_provider_config(env, ENVIRONMENT_SCOPE)
            .await?;
        self.forget(env);
        Ok(removed)
    }

    /// Checks an environment's provider against the provider itself.
    pub async fn verify(
        &self,
        env: &EnvironmentId,
    ) -> Result<Result<VerifyReport, SendError>, RegistryError> {
        let provider = self.load(env).await?.1;
        Ok(provider.verify().await)
    }

    /// An environment's provider configuration, decrypted (the default when none is stored);
    /// for webhook verification only — never show or log it.
    pub async fn config(&self, env: &EnvironmentId) -> Result<ProviderConfig, RegistryError> {
        let Some(stored) = self
            .store
            .get_provider_config(env, ENVIRONMENT_SCOPE)
            .await?
        else {
            return Ok(self.default_config.clone());
        };
        let plaintext = self.key.open(&stored.sealed, &owner(env, &stored.scope))?;
        let value: Value = serde_json::from_slice(&plaintext).map_err(|_| SecretError::Corrupt)?;
        Ok(ProviderConfig::from_json(value)?)
    }

    /// Re-encrypts every stored configuration from `old` to this registry's key; returns how many.
    pub async fn reseal_all(
        store: &dyn ProviderConfigStore,
        old: &SecretKey,
        new: &SecretKey,
    ) -> Result<usize, RegistryError> {
        let all = store.list_provider_configs().await?;
        for c in &all {
            let owner = owner(&c.environment_id, &c.scope);
            let plaintext = old.open(&c.sealed, &owner)?;
            let resealed = StoredProviderConfig {
                sealed: new.seal(&plaintext, &owner),
                ..c.clone()
            };
            store.put_provider_config(&resealed).await?;
        }
        Ok(all.len())
    }

    fn forget(&self, env: &EnvironmentId) {
        self.cache.lock().expect("registry cache lock").remove(env);
    }

    /// The stored version and the provider built from it (the default when none is stored).
    async fn load(
        &self,
        env: &EnvironmentId,
    ) -> Result<(Option<Timestamp>, Arc<dyn Provider>), RegistryError> {
        let Some(stored) = self
            .store
            .get_provider_config(env, ENVIRONMENT_SCOPE)
            .await?
        else {
            return Ok((None, self.default_provider.clone()));
        };
        let plaintext = self.key.open(&stored.sealed, &owner(env, &stored.scope))?;
        let value: Value = serde_json::from_slice(&plaintext).map_err(|_| SecretError::Corrupt)?;
        let config = ProviderConfig::from_json(value)?;
        Ok((Some(stored.updated_at), config.build(&self.ctx).await?))
    }

    async fn resolve_cached(
        &self,
        env: &EnvironmentId,
    ) -> Result<Arc<dyn Provider>, RegistryError> {
        let cached_version = {
            let cache = self.cache.lock().expect("registry cache lock");
            match cache.get(env) {
                Some(c) if c.checked.elapsed() < self.recheck => return Ok(c.provider.clone()),
                Some(c) => Some(c.version),
                None => None,
            }
        };
        if let Some(version) = cached_version {
            if self
                .store
                .provider_config_version(env, ENVIRONMENT_SCOPE)
                .await?
                == version
            {
                let mut cache = self.cache.lock().expect("registry cache lock");
                if let Some(c) = cache.get_mut(env) {
                    c.checked = Instant::now();
                    return Ok(c.provider.clone());
                }
            }
        }
        let (version, provider) = self.load(env).await?;
        self.cache.lock().expect("registry cache lock").insert(
            *env,
            Cached {
                version,
                provider: provider.clone(),
                checked: Instant::now(),
            },
        );
        Ok(provider)
    }
}

#[async_trait]
impl ProviderResolver for ProviderRegistry {
    async fn resolve(&self, environment: &EnvironmentId) -> Result<Arc<dyn Provider>, SendError> {
        // Retryable: a misconfiguration is the operator's to fix, and the message should wait for
        // the fix rather than fail at once; it still fails after its last attempt.
        self.resolve_cached(environment).await.map_err(|e| match e {
            RegistryError::Store(_) => SendError::retryable(
                "provider_config_unavailable",
                "the provider configuration could not be read",
            ),
            other => SendError::retryable(
                "provider_misconfigured",
                format!("the environment's provider cannot be used: {other}"),
            ),
        })
    }
}

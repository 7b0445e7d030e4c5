//! The provider registry: which providers deliver each environment's messages. It stores each
//! environment's chain (and each organization's) sealed with the secret key, shows it only
//! redacted, builds routes on demand and caches them, re-checking the stored version every few
//! seconds so that a change made through any process reaches every process. An organization
//! without a chain of its own uses its environment's; an environment without one, the default.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailgate_core::environment::OrganizationName;
use mailgate_core::provider::{ProviderResolver, SendError, VerifyReport};
use mailgate_core::routing::{Route, RouteMember};
use mailgate_core::store::{ProviderConfigStore, StoreError, StoredProviderConfig};
use mailgate_core::{EnvironmentId, Timestamp};
use serde_json::Value;

use crate::chain::ChainConfig;
use crate::config::{BuildContext, ConfigError, ProviderConfig};
use crate::secrets::{SecretError, SecretKey};

/// Scope of an environment's own chain; an organization's chain is stored under its name.
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

/// Where a chain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderSource {
    /// Set for the environment.
    Environment,
    /// Set for one organization of the environment.
    Organization,
    /// The server's default (`provider.default`).
    Default,
}

impl ProviderSource {
    /// `environment`, `organization` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Environment => "environment",
            Self::Organization => "organization",
            Self::Default => "default",
        }
    }
}

/// A chain as shown to people: secrets masked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderView {
    /// Where it comes from.
    pub source: ProviderSource,
    /// The redacted configuration.
    pub config: Value,
    /// The providers' names and types, in order.
    pub members: Vec<(String, &'static str)>,
    /// When it was set (`None` for the default).
    pub updated_at: Option<Timestamp>,
}

/// One provider's verification within a chain.
#[derive(Debug, Clone)]
pub struct MemberReport {
    /// Its name in the chain.
    pub name: String,
    /// Its type.
    pub provider: &'static str,
    /// The report, or why the provider could not be asked.
    pub result: Result<VerifyReport, SendError>,
}

struct Cached {
    version: Option<Timestamp>,
    /// `None`: nothing stored for the scope.
    route: Option<Arc<Route>>,
    checked: Instant,
}

/// See the module documentation.
pub struct ProviderRegistry {
    store: Arc<dyn ProviderConfigStore>,
    key: SecretKey,
    ctx: BuildContext,
    default_config: ChainConfig,
    default_route: Arc<Route>,
    recheck: Duration,
    cache: Mutex<HashMap<(EnvironmentId, String), Cached>>,
    /// Each environment's webhook credentials (every chain that may send its messages), fresh
    /// for `recheck`: a webhook request would otherwise read and decrypt every stored chain.
    webhooks: Mutex<WebhookCopies>,
    /// Bumped by every change made through this registry; a read that overlapped one does not
    /// keep its copy of the webhook credentials.
    generation: AtomicU64,
}

/// Each environment's webhook credentials and when they were read.
type WebhookCopies = HashMap<EnvironmentId, (Arc<[ProviderConfig]>, Instant)>;

/// Environments whose webhook credentials are kept at most; past it the copies are dropped.
const MAX_WEBHOOK_COPIES: usize = 10_000;

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
        default_config: impl Into<ChainConfig>,
        recheck: Duration,
    ) -> Result<Self, ConfigError> {
        let default_config = default_config.into();
        let default_route = Arc::new(build_route(&default_config, "default", &ctx).await?);
        Ok(Self {
            store,
            key,
            ctx,
            default_config,
            default_route,
            recheck,
            cache: Mutex::new(HashMap::new()),
            webhooks: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// The key that seals secrets at rest (also used for notification secrets).
    pub fn secret_key(&self) -> &SecretKey {
        &self.key
    }

    /// Sets the chain of an environment (`org` = `None`) or of one of its organizations,
    /// replacing any earlier one.
    pub async fn set(
        &self,
        env: &EnvironmentId,
        org: Option<&OrganizationName>,
        config: &ChainConfig,
        now: Timestamp,
    ) -> Result<ProviderView, RegistryError> {
        let scope = scope(org);
        let plaintext = serde_json::to_vec(config)
            .map_err(|e| ConfigError::invalid("provider", e.to_string()))?;
        let stored = StoredProviderConfig {
            environment_id: *env,
            scope: scope.into(),
            sealed: self.key.seal(&plaintext, &owner(env, scope)),
            redacted: config.redacted(),
            updated_at: now,
        };
        self.store.put_provider_config(&stored).await?;
        self.forget(env, scope);
        Ok(ProviderView {
            source: source(org),
            config: stored.redacted,
            members: members_of(config),
            updated_at: Some(now),
        })
    }

    /// The chain of an environment (its own, else the default) or of an organization (`None`
    /// when the organization has none of its own), redacted.
    pub async fn show(
        &self,
        env: &EnvironmentId,
        org: Option<&OrganizationName>,
    ) -> Result<Option<ProviderView>, RegistryError> {
        match self.stored(env, scope(org)).await? {
            Some((chain, updated_at)) => Ok(Some(ProviderView {
                source: source(org),
                config: chain.redacted(),
                members: members_of(&chain),
                updated_at: Some(updated_at),
            })),
            None if org.is_some() => Ok(None),
            None => Ok(Some(ProviderView {
                source: ProviderSource::Default,
                config: self.default_config.redacted(),
                members: members_of(&self.default_config),
                updated_at: None,
            })),
        }
    }

    /// Removes an environment's chain (back to the default) or an organization's (back to the
    /// environment's); false if there was none.
    pub async fn remove(
        &self,
        env: &EnvironmentId,
        org: Option<&OrganizationName>,
    ) -> Result<bool, RegistryError> {
        let scope = scope(org);
        let removed = self.store.delete_provider_config(env, scope).await?;
        self.forget(env, scope);
        Ok(removed)
    }

    /// Verifies every provider of a chain (the environment's, its organization's, or the
    /// default), in order, concurrently.
    pub async fn verify(
        &self,
        env: &EnvironmentId,
        org: Option<&OrganizationName>,
    ) -> Result<Vec<MemberReport>, RegistryError> {
        let route = match self.stored(env, scope(org)).await? {
            Some((chain, _)) => build_route(&chain, &owner(env, scope(org)), &self.ctx).await?,
            None if org.is_some() => return Ok(Vec::new()),
            None => {
                return Ok(verify_route(&self.default_route).await);
            }
        };
        Ok(verify_route(&route).await)
    }

    /// Every provider configuration that may send an environment's messages (its chain or the
    /// default, and its organizations' chains), decrypted; for webhook verification only —
    /// never show or log them. A change made through this registry is seen at once, one made
    /// by another process within the recheck interval.
    pub async fn webhook_configs(
        &self,
        env: &EnvironmentId,
    ) -> Result<Arc<[ProviderConfig]>, RegistryError> {
        if let Some((configs, at)) = self.webhook_copies().get(env) {
            if at.elapsed() < self.recheck {
                return Ok(Arc::clone(configs));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let read_at = Instant::now();
        let mut out = Vec::new();
        let mut own = false;
        for stored in self.store.list_provider_configs().await? {
            if stored.environment_id != *env {
                continue;
            }
            own |= stored.scope == ENVIRONMENT_SCOPE;
            let chain = self.open(&stored)?;
            out.extend(chain.members.into_iter().map(|m| m.provider));
        }
        if !own {
            out.extend(
                self.default_config
                    .members
                    .iter()
                    .map(|m| m.provider.clone()),
            );
        }
        let configs: Arc<[ProviderConfig]> = out.into();
        let mut copies = self.webhook_copies();
        if self.generation.load(Ordering::Acquire) == generation {
            if copies.len() >= MAX_WEBHOOK_COPIES {
                copies.clear();
            }
            copies.insert(*env, (Arc::clone(&configs), read_at));
        }
        Ok(configs)
    }

    fn webhook_copies(&self) -> std::sync::MutexGuard<'_, WebhookCopies> {
        self.webhooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    fn forget(&self, env: &EnvironmentId, scope: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.webhook_copies().remove(env);
        self.cache
            .lock()
            .expect("registry cache lock")
            .remove(&(*env, scope.to_owned()));
    }

    fn open(&self, stored: &StoredProviderConfig) -> Result<ChainConfig, RegistryError> {
        let plaintext = self.key.open(
            &stored.sealed,
            &owner(&stored.environment_id, &stored.scope),
        )?;
        let value: Value = serde_json::from_slice(&plaintext).map_err(|_| SecretError::Corrupt)?;
        Ok(ChainConfig::from_stored(value)?)
    }

    /// The stored chain of (environment, scope) and when it was set.
    async fn stored(
        &self,
        env: &EnvironmentId,
        scope: &str,
    ) -> Result<Option<(ChainConfig, Timestamp)>, RegistryError> {
        match self.store.get_provider_config(env, scope).await? {
            Some(stored) => Ok(Some((self.open(&stored)?, stored.updated_at))),
            None => Ok(None),
        }
    }

    /// The route stored for (environment, scope), cached; `None` when nothing is stored.
    async fn scoped_route(
        &self,
        env: &EnvironmentId,
        scope: &str,
    ) -> Result<Option<Arc<Route>>, RegistryError> {
        let key = (*env, scope.to_owned());
        let cached_version = {
            let cache = self.cache.lock().expect("registry cache lock");
            match cache.get(&key) {
                Some(c) if c.checked.elapsed() < self.recheck => return Ok(c.route.clone()),
                Some(c) => Some(c.version),
                None => None,
            }
        };
        if let Some(version) = cached_version {
            if self.store.provider_config_version(env, scope).await? == version {
                let mut cache = self.cache.lock().expect("registry cache lock");
                if let Some(c) = cache.get_mut(&key) {
                    c.checked = Instant::now();
                    return Ok(c.route.clone());
                }
            }
        }
        let (version, route) = match self.stored(env, scope).await? {
            Some((chain, updated_at)) => (
                Some(updated_at),
                Some(Arc::new(
                    build_route(&chain, &owner(env, scope), &self.ctx).await?,
                )),
            ),
            None => (None, None),
        };
        let mut cache = self.cache.lock().expect("registry cache lock");
        // Workers that missed the cache together each built the route: keep the first one
        // cached, so that they all share its round-robin position and its circuits.
        if let Some(c) = cache.get(&key).filter(|c| c.version == version) {
            return Ok(c.route.clone());
        }
        cache.insert(
            key,
            Cached {
                version,
                route: route.clone(),
                checked: Instant::now(),
            },
        );
        Ok(route)
    }

    async fn resolve_route(
        &self,
        env: &EnvironmentId,
        org: Option<&OrganizationName>,
    ) -> Result<Arc<Route>, RegistryError> {
        if let Some(org) = org {
            if let Some(route) = self.scoped_route(env, org.as_str()).await? {
                return Ok(route);
            }
        }
        Ok(self
            .scoped_route(env, ENVIRONMENT_SCOPE)
            .await?
            .unwrap_or_else(|| self.default_route.clone()))
    }
}

fn scope(org: Option<&OrganizationName>) -> &str {
    org.map_or(ENVIRONMENT_SCOPE, OrganizationName::as_str)
}

fn source(org: Option<&OrganizationName>) -> ProviderSource {
    if org.is_some() {
        ProviderSource::Organization
    } else {
        ProviderSource::Environment
    }
}

fn members_of(chain: &ChainConfig) -> Vec<(String, &'static str)> {
    chain
        .members
        .iter()
        .map(|m| (m.name.clone(), m.provider.type_name()))
        .collect()
}

/// Builds every provider of a chain; `owner` prefixes the members' circuit and rate-limit keys.
async fn build_route(
    chain: &ChainConfig,
    owner: &str,
    ctx: &BuildContext,
) -> Result<Route, ConfigError> {
    let mut members = Vec::with_capacity(chain.members.len());
    for m in &chain.members {
        members.push(RouteMember {
            label: m.name.clone(),
            provider: m.provider.build(ctx).await?,
            rate: m.rate_limit,
            key: format!("{owner}/{}", m.name),
        });
    }
    Ok(Route::new(chain.mode, members, chain.circuit.policy()))
}

async fn verify_route(route: &Route) -> Vec<MemberReport> {
    let mut set = tokio::task::JoinSet::new();
    for (i, m) in route.members().iter().enumerate() {
        let provider = m.provider.clone();
        set.spawn(async move { (i, provider.verify().await) });
    }
    let mut results: Vec<Option<Result<VerifyReport, SendError>>> =
        route.members().iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            results[i] = Some(r);
        }
    }
    route
        .members()
        .iter()
        .zip(results)
        .map(|(m, r)| MemberReport {
            name: m.label.clone(),
            provider: provider_type(m.provider.name()),
            result: r.unwrap_or_else(|| {
                Err(SendError::retryable(
                    "verify_failed",
                    "the verification stopped unexpectedly",
                ))
            }),
        })
        .collect()
}

/// The static type name for a provider's `name()`.
fn provider_type(name: &str) -> &'static str {
    [
        "capture", "smtp", "ses", "mailgun", "postmark", "resend", "sendgrid",
    ]
    .into_iter()
    .find(|t| *t == name)
    .unwrap_or("custom")
}

#[async_trait]
impl ProviderResolver for ProviderRegistry {
    async fn route(
        &self,
        environment: &EnvironmentId,
        organization: Option<&OrganizationName>,
    ) -> Result<Arc<Route>, SendError> {
        // Retryable: a misconfiguration is the operator's to fix, and the message should wait for
        // the fix rather than fail at once; it still fails after its last attempt.
        self.resolve_route(environment, organization)
            .await
            .map_err(|e| match e {
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

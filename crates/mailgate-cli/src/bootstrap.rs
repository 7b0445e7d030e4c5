//! First-start setup: the `default` environment and the bootstrap admin key.

use mailgate_core::apikey::{ApiKeyRecord, ApiKeySecret, KeyScope, NewApiKey};
use mailgate_core::environment::{EnvironmentName, DEFAULT_ENVIRONMENT};
use mailgate_core::store::Storage;
use mailgate_core::{ApiKeyId, Timestamp};
use secrecy::{ExposeSecret, SecretString};

/// What bootstrapping did about the admin key.
#[derive(Debug)]
pub enum AdminKey {
    /// The configured key (`MAILGATE_ADMIN_KEY`) is registered.
    Configured,
    /// An admin key already existed.
    Existing,
    /// A key was generated; it must be shown once, now.
    Generated(ApiKeySecret),
}

/// Ensures the default environment and an admin key exist.
pub async fn bootstrap(
    storage: &dyn Storage,
    configured: Option<&SecretString>,
    now: Timestamp,
) -> anyhow::Result<AdminKey> {
    let default = EnvironmentName::parse(DEFAULT_ENVIRONMENT).map_err(|e| anyhow::anyhow!(e))?;
    storage.ensure_environment(&default, now).await?;

    if let Some(secret) = configured {
        let secret = ApiKeySecret::from_presented(secret.expose_secret());
        if secret.expose().len() < 16 {
            anyhow::bail!("MAILGATE_ADMIN_KEY must be at least 16 characters long");
        }
        if storage.find_api_key(&secret.hash()).await?.is_none() {
            insert_admin(storage, &secret, "configured admin key", now).await?;
        }
        return Ok(AdminKey::Configured);
    }
    if storage.has_admin_key().await? {
        return Ok(AdminKey::Existing);
    }
    let secret = ApiKeySecret::generate();
    insert_admin(storage, &secret, "generated admin key", now).await?;
    Ok(AdminKey::Generated(secret))
}

async fn insert_admin(
    storage: &dyn Storage,
    secret: &ApiKeySecret,
    name: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let record = ApiKeyRecord {
        id: ApiKeyId::new(),
        scope: KeyScope::Admin,
        name: name.into(),
        hint: secret.hint(),
        created_at: now,
    };
    storage
        .insert_api_key(&NewApiKey {
            record,
            hash: secret.hash(),
        })
        .await?;
    Ok(())
}

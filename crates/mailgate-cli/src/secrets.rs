//! The key that seals provider secrets: from `MAILGATE_SECRET_KEY`, or a key file generated once
//! in the data directory; and `mailgate secrets` (generate a key, rotate to a new one).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use mailgate_core::store::Storage;
use mailgate_providers::outbound::seal_owner;
use mailgate_providers::{ProviderRegistry, SecretKey};
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::runtime::open_database;

/// Where the key comes from.
pub enum KeySource {
    /// `MAILGATE_SECRET_KEY` / `secret_key`.
    Configured,
    /// The key file in the data directory.
    File(PathBuf),
}

fn key_file(config: &Config) -> PathBuf {
    config.data_dir.join("secret.key")
}

/// Writes `key` to a new file beside `path` (mode 0600, synced) and returns that file's path.
fn write_temp(path: &Path, key: &SecretKey) -> anyhow::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("key.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    writeln!(file, "{}", key.to_base64())?;
    file.sync_all()?;
    Ok(tmp)
}

/// Creates the key file only if none exists, atomically: of several processes starting at once,
/// one key wins and every process uses it.
fn create_key_file(path: &Path, key: &SecretKey) -> anyhow::Result<bool> {
    let tmp = write_temp(path, key)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// Replaces the key file (after a rotation).
fn replace_key_file(path: &Path, key: &SecretKey) -> anyhow::Result<()> {
    let tmp = write_temp(path, key)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn read_key_file(path: &Path) -> anyhow::Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SecretKey::from_base64(&text).with_context(|| format!("the key in {}", path.display()))
}

/// Loads the secret key, generating the key file on first use when none is configured.
pub fn load(config: &Config) -> anyhow::Result<(SecretKey, KeySource)> {
    if let Some(k) = &config.secret_key {
        let key = SecretKey::from_base64(k.expose_secret()).context("MAILGATE_SECRET_KEY")?;
        return Ok((key, KeySource::Configured));
    }
    let path = key_file(config);
    if path.exists() {
        return Ok((read_key_file(&path)?, KeySource::File(path)));
    }
    if create_key_file(&path, &SecretKey::generate())? {
        tracing::warn!(
            path = %path.display(),
            "generated a secret key for provider credentials; back it up, and give every process that shares this database the same key (MAILGATE_SECRET_KEY)"
        );
    }
    Ok((read_key_file(&path)?, KeySource::File(path)))
}

/// Re-encrypts every environment's sealed notification secrets (webhook and event-stream signing
/// secrets, the Slack URL) from `old` to `new`; returns how many environments had targets.
async fn reseal_notifications(
    storage: &dyn Storage,
    old: &SecretKey,
    new: &SecretKey,
) -> anyhow::Result<usize> {
    let mut count = 0;
    for env in storage.list_environments().await? {
        let Some(mut settings) = storage.notification_settings(&env.id).await? else {
            continue;
        };
        let reseal = |sealed: &str, what: &str| -> anyhow::Result<String> {
            let owner = seal_owner(&env.id, what);
            let plain = old
                .open(sealed, &owner)
                .with_context(|| format!("notification {what} of environment {}", env.name))?;
            Ok(new.seal(&plain, &owner))
        };
        for target in [settings.webhook.as_mut(), settings.stream.as_mut()]
            .into_iter()
            .flatten()
        {
            target.sealed_secret = reseal(&target.sealed_secret, "secret")?;
        }
        if let Some(url) = settings.sealed_slack_url.as_mut() {
            *url = reseal(url, "slack")?;
        }
        storage.put_notification_settings(&settings).await?;
        count += 1;
    }
    Ok(count)
}

/// Arguments of `mailgate secrets`.
#[derive(Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
    #[command(flatten)]
    server: crate::ServerArgs,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Print a new random key (base64), for MAILGATE_SECRET_KEY.
    GenerateKey,
    /// Re-encrypt every stored provider configuration with a new key.
    Rotate {
        /// The new key (base64); a new one is generated when omitted.
        #[arg(long, env = "MAILGATE_NEW_SECRET_KEY", hide_env_values = true)]
        new_key: Option<String>,
    },
}

/// Runs `mailgate secrets`.
pub async fn run(args: SecretsArgs) -> anyhow::Result<()> {
    match args.command {
        SecretsCommand::GenerateKey => {
            println!("{}", SecretKey::generate().to_base64());
            Ok(())
        }
        SecretsCommand::Rotate { new_key } => {
            let config = args.server.load()?;
            let (old, source) = load(&config)?;
            let new = match new_key {
                Some(k) => SecretKey::from_base64(&k).context("--new-key")?,
                None => SecretKey::generate(),
            };
            let db = open_database(&config, true).await?;
            let storage = db.storage();
            let count = ProviderRegistry::reseal_all(storage.as_ref(), &old, &new).await?;
            let targets = reseal_notifications(storage.as_ref(), &old, &new).await?;
            db.close().await;
            println!(
                "re-encrypted {count} provider configuration(s) and the notification targets of {targets} environment(s) with key id {}",
                new.id()
            );
            match source {
                KeySource::File(path) => {
                    replace_key_file(&path, &new)?;
                    println!("the new key is in {}", path.display());
                }
                KeySource::Configured => {
                    println!(
                        "set MAILGATE_SECRET_KEY to the new key on every process and restart them:"
                    );
                    println!("{}", new.to_base64());
                }
            }
            Ok(())
        }
    }
}

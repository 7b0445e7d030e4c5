//! Configuration: embedded commented defaults, then `mailgate.toml`, then `MAILGATE_*`
//! variables, then flags — typed, validated once at start, read only by the binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use mailgate_core::dispatcher::DispatcherConfig;
use mailgate_core::message::Limits;
use mailgate_core::retry::RetryPolicy;
use mailgate_core::suppression::SoftBouncePolicy;
use secrecy::SecretString;
use serde::Deserialize;

/// The embedded defaults, also printed by `mailgate config defaults`.
pub const DEFAULTS: &str = include_str!("../config.default.toml");

/// Top-level sections; only these are read from `MAILGATE_*` variables, so that client
/// variables such as `MAILGATE_URL` do not trip the unknown-key check.
const SECTIONS: &[&str] = &[
    "admin_key",
    "server",
    "database",
    "provider",
    "worker",
    "retry",
    "limits",
    "retention",
    "suppression",
    "log",
];

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The bootstrap admin key.
    #[serde(default)]
    pub admin_key: Option<SecretString>,
    /// The key sealing provider secrets (base64 of 32 bytes); `MAILGATE_SECRET_KEY`.
    #[serde(default)]
    pub secret_key: Option<SecretString>,
    /// Where mailgate keeps its files (the generated secret key; the SQLite database by default).
    pub data_dir: PathBuf,
    /// HTTP API.
    pub server: ServerSection,
    /// Storage.
    pub database: DatabaseSection,
    /// Default provider.
    pub provider: ProviderSection,
    /// Delivery workers.
    pub worker: WorkerSection,
    /// Retry schedule.
    pub retry: RetrySection,
    /// Message limits.
    pub limits: LimitsSection,
    /// Content retention.
    pub retention: RetentionSection,
    /// Automatic suppression.
    pub suppression: SuppressionSection,
    /// Logging.
    pub log: LogSection,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Request timeout.
    pub request_timeout_seconds: u64,
}

/// `[database]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// Connection URL.
    pub url: SecretString,
    /// Pool size.
    pub max_connections: u32,
    /// Group commit size.
    pub group_commit_max: usize,
    /// How long keys, environments and settings are reused (milliseconds; 0 turns it off).
    pub cache_ttl_ms: u64,
    /// Migrate at start.
    pub auto_migrate: bool,
}

/// `[provider]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// Default provider DSN (may hold credentials).
    pub default: SecretString,
}

/// `[worker]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// In-flight deliveries.
    pub concurrency: usize,
    /// Claim size.
    pub claim_batch: u32,
    /// Lease length.
    pub lease_seconds: u64,
    /// Idle poll interval.
    pub poll_interval_ms: u64,
    /// Provider call timeout.
    pub send_timeout_seconds: u64,
}

/// `[retry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts.
    pub max_attempts: u32,
    /// First delay.
    pub base_delay_ms: u64,
    /// Delay cap.
    pub max_delay_seconds: u64,
}

/// `[limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Recipients.
    pub max_recipients: usize,
    /// Subject and bodies.
    pub max_body_bytes: usize,
    /// Attachments, decoded.
    pub max_attachment_bytes: usize,
    /// Attachment count.
    pub max_attachments: usize,
}

/// `[retention]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Days to keep content after a final state; 0 = forever.
    pub content_days: u64,
}

/// `[suppression]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionSection {
    /// Soft bounces of one address that suppress it (0 turns the rule off).
    pub soft_bounce_count: u32,
    /// The window those soft bounces are counted in, in days.
    pub soft_bounce_window_days: u64,
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Filter directive.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

/// Flags that override the layered configuration.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config FILE` (instead of `./mailgate.toml`).
    pub config_file: Option<PathBuf>,
    /// `--listen ADDR`.
    pub listen: Option<SocketAddr>,
    /// `--database URL`.
    pub database: Option<String>,
}

impl Config {
    /// Loads and validates the configuration.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        match &overrides.config_file {
            Some(path) => {
                if !path.exists() {
                    bail!("configuration file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("mailgate.toml")),
        }
        // The filter sees the key as written (any case), before `__` becomes `.`.
        let env = Env::prefixed("MAILGATE_")
            .filter(|key| {
                let first = key.as_str().split("__").next().unwrap_or_default();
                SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(first))
            })
            .split("__");
        figment = figment.merge(env);
        if let Some(listen) = overrides.listen {
            figment = figment.merge(("server.listen", listen.to_string()));
        }
        if let Some(db) = &overrides.database {
            figment = figment.merge(("database.url", db.clone()));
        }
        let config: Config = figment.extract().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let w = &self.worker;
        if w.concurrency == 0 || w.claim_batch == 0 {
            bail!("worker.concurrency and worker.claim_batch must be at least 1");
        }
        if w.send_timeout_seconds == 0 || w.lease_seconds <= w.send_timeout_seconds {
            bail!("worker.lease_seconds must be longer than worker.send_timeout_seconds (a lease must outlive the provider call it covers)");
        }
        if self.retry.max_attempts == 0 {
            bail!("retry.max_attempts must be at least 1");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be \"text\" or \"json\"");
        }
        if self.limits.max_recipients == 0 {
            bail!("limits.max_recipients must be at least 1");
        }
        Ok(())
    }

    /// The SQLite file's directory, when the database is a SQLite file (created at start).
    pub fn sqlite_dir(&self) -> Option<PathBuf> {
        use secrecy::ExposeSecret;
        let url = self.database.url.expose_secret();
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = path.split('?').next().unwrap_or(path);
        Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
    }

    /// Message limits for the send service.
    pub fn limits(&self) -> Limits {
        Limits {
            max_recipients: self.limits.max_recipients,
            max_body_bytes: self.limits.max_body_bytes,
            max_attachment_bytes: self.limits.max_attachment_bytes,
            max_attachments: self.limits.max_attachments,
            ..Limits::default()
        }
    }

    /// The soft-bounce suppression rule.
    pub fn soft_bounces(&self) -> SoftBouncePolicy {
        SoftBouncePolicy {
            count: self.suppression.soft_bounce_count,
            window: Duration::from_secs(self.suppression.soft_bounce_window_days * 24 * 3600),
        }
    }

    /// The retry schedule.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.retry.max_attempts,
            base_delay: Duration::from_millis(self.retry.base_delay_ms),
            max_delay: Duration::from_secs(self.retry.max_delay_seconds),
        }
    }

    /// The dispatcher's settings.
    pub fn dispatcher(&self) -> DispatcherConfig {
        let w = &self.worker;
        DispatcherConfig {
            concurrency: w.concurrency,
            claim_batch: w.claim_batch,
            lease: Duration::from_secs(w.lease_seconds),
            poll_interval: Duration::from_millis(w.poll_interval_ms),
            send_timeout: Duration::from_secs(w.send_timeout_seconds),
            content_retention: (self.retention.content_days > 0)
                .then(|| Duration::from_secs(self.retention.content_days * 86_400)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_complete_and_valid() {
        let figment = Figment::from(Toml::string(DEFAULTS));
        let config: Config = figment.extract().expect("defaults parse");
        config.validate().expect("defaults valid");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.sqlite_dir(), Some(PathBuf::from("mailgate-data")));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let figment =
            Figment::from(Toml::string(DEFAULTS)).merge(Toml::string("[worker]\nconcurency = 3\n"));
        let err = figment.extract::<Config>().unwrap_err().to_string();
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours.
    fn layers_apply_in_order_file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("mailgate.toml", "[worker]\nconcurrency = 7\nlease_seconds = 300\n[server]\nlisten = \"127.0.0.1:9000\"\n")?;
            jail.set_env("MAILGATE_WORKER__LEASE_SECONDS", "90");
            jail.set_env("MAILGATE_ADMIN_KEY", "mg_configured_admin_key_0001");
            // Client variables share the prefix and must not trip the unknown-key check.
            jail.set_env("MAILGATE_URL", "http://example.invalid");
            jail.set_env("MAILGATE_API_KEY", "mg_x");
            let flags = Overrides {
                listen: Some("127.0.0.1:9100".parse().unwrap()),
                ..Overrides::default()
            };
            let config = Config::load(&flags).map_err(|e| e.to_string())?;
            assert_eq!(config.worker.concurrency, 7, "file overrides defaults");
            assert_eq!(
                config.worker.lease_seconds, 90,
                "environment overrides the file"
            );
            assert_eq!(
                config.server.listen.to_string(),
                "127.0.0.1:9100",
                "flags override everything"
            );
            assert!(config.admin_key.is_some());
            assert_eq!(config.dispatcher().lease, Duration::from_secs(90));
            Ok(())
        });
    }

    #[test]
    fn a_lease_shorter_than_the_send_timeout_is_refused() {
        let figment = Figment::from(Toml::string(DEFAULTS))
            .merge(Toml::string("[worker]\nlease_seconds = 10\n"));
        let config: Config = figment.extract().unwrap();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("lease_seconds"));
    }
}

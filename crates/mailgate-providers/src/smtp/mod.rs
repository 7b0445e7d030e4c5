//! SMTP provider (lettre over tokio and rustls): any SMTP server, Amazon SES SMTP included.
//!
//! DSNs:
//! - `smtp://USER:PASS@HOST:587` — STARTTLS required (default port 587); `disable_starttls=true`
//!   sends in plain text.
//! - `smtps://USER:PASS@HOST:465` — TLS from the first byte (default port 465).
//! - `ses+smtp://ACCESS_KEY_ID:SECRET_ACCESS_KEY@default?region=us-east-1` — SES SMTP: the host
//!   follows from the region and the SMTP password is derived from the secret.
//!
//! Options: `ca_file`, `tls_insecure`, `disable_starttls`, `helo`, `timeout_seconds`, `pool_max`,
//! `pool_idle_seconds` (and `region` for `ses+smtp`).

mod classify;
mod message;
mod ses_smtp;
mod transport;

use std::sync::Arc;

use mailgate_core::provider::Provider;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{mask, ConfigError};
use crate::dsn::Dsn;

const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
const DEFAULT_POOL_MAX: u32 = 4;
const DEFAULT_POOL_IDLE_SECONDS: u64 = 60;

/// How the connection to the server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; sending fails if the server does not offer it.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// No TLS at all (only for a trusted relay; chosen with `disable_starttls=true`).
    None,
}

/// SMTP configuration: the server, credentials, TLS and connection-pool settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's host name or IP address.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// The AUTH user; AUTH is used only when credentials are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The AUTH password (for SES SMTP, the derived SMTP password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// A PEM file of extra CA certificates to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Accept any server certificate: explicitly unsafe, for test servers only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_insecure: bool,
    /// The name sent with EHLO (default: this machine's host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    /// Connect and per-command timeout, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// At most this many connections at once.
    #[serde(default = "default_pool_max")]
    pub pool_max: u32,
    /// Idle connections are closed after this many seconds.
    #[serde(default = "default_pool_idle")]
    pub pool_idle_seconds: u64,
    /// Set for Amazon SES SMTP: its region (message ids from SES's reply, SES-specific advice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ses_region: Option<String>,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECONDS
}
fn default_pool_max() -> u32 {
    DEFAULT_POOL_MAX
}
fn default_pool_idle() -> u64 {
    DEFAULT_POOL_IDLE_SECONDS
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpConfig({})", self.redacted())
    }
}

impl SmtpConfig {
    /// Parses `smtp://`, `smtps://` and `ses+smtp://` DSNs; unknown options are refused.
    pub fn from_dsn(mut dsn: Dsn) -> Result<Self, ConfigError> {
        let scheme = dsn.scheme.clone();
        let disable_starttls = take_bool(&mut dsn, "disable_starttls")?;
        let tls_insecure = take_bool(&mut dsn, "tls_insecure")?;
        let ca_file = dsn.take("ca_file").filter(|s| !s.is_empty());
        let helo = dsn.take("helo").filter(|s| !s.is_empty());
        let timeout_seconds = dsn
            .take_parsed::<u64>("timeout_seconds", "a whole number")?
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        let pool_max = dsn
            .take_parsed::<u64>("pool_max", "a whole number")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(DEFAULT_POOL_MAX);
        let pool_idle_seconds = dsn
            .take_parsed::<u64>("pool_idle_seconds", "a whole number")?
            .unwrap_or(DEFAULT_POOL_IDLE_SECONDS);
        let (host, port, tls, username, password, ses_region) = match scheme.as_str() {
            "smtp" | "smtps" => {
                let host = dsn.host.clone().ok_or_else(|| {
                    ConfigError::invalid("host", format!("{scheme}:// needs a server host"))
                })?;
                let (tls, default_port) =
                    match (scheme.as_str(), disable_starttls) {
                        ("smtps", true) => return Err(ConfigError::invalid(
                            "disable_starttls",
                            "smtps:// uses TLS from the start; use smtp:// for plain or STARTTLS",
                        )),
                        ("smtps", false) => (SmtpTls::Implicit, 465),
                        (_, true) => (SmtpTls::None, 587),
                        (_, false) => (SmtpTls::Starttls, 587),
                    };
                let port = dsn.port.unwrap_or(default_port);
                (
                    host,
                    port,
                    tls,
                    dsn.user.clone(),
                    dsn.password.clone(),
                    None,
                )
            }
            "ses+smtp" => {
                let region = dsn.take("region").ok_or_else(|| {
                    ConfigError::invalid("region", "ses+smtp:// needs ?region=… (e.g. us-east-1)")
                })?;
                if !ses_smtp::is_region(&region) {
                    return Err(ConfigError::invalid("region", "not an AWS region name"));
                }
                if dsn.host.is_some() {
                    return Err(ConfigError::invalid(
                        "host",
                        "ses+smtp:// takes @default; the host follows from the region",
                    ));
                }
                if disable_starttls {
                    return Err(ConfigError::invalid(
                        "disable_starttls",
                        "SES SMTP requires TLS",
                    ));
                }
                let (Some(key_id), Some(secret)) = (dsn.user.clone(), dsn.password.clone()) else {
                    return Err(ConfigError::invalid(
                        "credentials",
                        "ses+smtp:// needs ACCESS_KEY_ID:SECRET_ACCESS_KEY@default (percent-encode '/' and '+' in the secret)",
                    ));
                };
                let port = dsn.port.unwrap_or(587);
                let tls = if matches!(port, 465 | 2465) {
                    SmtpTls::Implicit
                } else {
                    SmtpTls::Starttls
                };
                let password = ses_smtp::ses_smtp_password(&secret, &region);
                (
                    ses_smtp::ses_smtp_host(&region),
                    port,
                    tls,
                    Some(key_id),
                    Some(password),
                    Some(region),
                )
            }
            other => return Err(ConfigError::UnknownType(other.to_owned())),
        };
        dsn.finish()?;
        let config = Self {
            host,
            port,
            username,
            password,
            tls,
            ca_file,
            tls_insecure,
            helo,
            timeout_seconds,
            pool_max,
            pool_idle_seconds,
            ses_region,
        };
        config.validate()?;
        Ok(config)
    }

    /// The configuration as JSON with the password masked.
    pub fn redacted(&self) -> Value {
        let mut v = json!({
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": mask(&self.password),
            "tls": self.tls,
            "ca_file": self.ca_file,
            "tls_insecure": self.tls_insecure,
            "helo": self.helo,
            "timeout_seconds": self.timeout_seconds,
            "pool_max": self.pool_max,
            "pool_idle_seconds": self.pool_idle_seconds,
            "ses_region": self.ses_region,
        });
        if let Some(obj) = v.as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
        v
    }

    /// Builds the provider: reads `ca_file`, prepares TLS and the connection pool (no I/O to
    /// the server; `verify` checks it).
    pub async fn build(&self) -> Result<Arc<dyn Provider>, ConfigError> {
        self.validate()?;
        Ok(Arc::new(transport::SmtpProvider::new(self)?))
    }

    /// Checks what the JSON form could get wrong.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::invalid("host", "must not be empty"));
        }
        if self.port == 0 {
            return Err(ConfigError::invalid("port", "must be 1–65535"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(ConfigError::invalid(
                "credentials",
                "give both a user and a password, or neither",
            ));
        }
        if self.tls == SmtpTls::None && (self.ca_file.is_some() || self.tls_insecure) {
            return Err(ConfigError::invalid(
                if self.tls_insecure {
                    "tls_insecure"
                } else {
                    "ca_file"
                },
                "has no effect without TLS (disable_starttls=true)",
            ));
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > 3600 {
            return Err(ConfigError::invalid("timeout_seconds", "must be 1–3600"));
        }
        if self.pool_max == 0 || self.pool_max > 1000 {
            return Err(ConfigError::invalid("pool_max", "must be 1–1000"));
        }
        if let Some(helo) = &self.helo {
            if !helo
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
            {
                return Err(ConfigError::invalid(
                    "helo",
                    "must be a host name or an address literal",
                ));
            }
        }
        Ok(())
    }
}

fn take_bool(dsn: &mut Dsn, key: &str) -> Result<bool, ConfigError> {
    match dsn.take(key).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(_) => Err(ConfigError::invalid(key, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;

    fn parse(s: &str) -> Result<SmtpConfig, ConfigError> {
        SmtpConfig::from_dsn(Dsn::parse(s).unwrap())
    }

    #[test]
    fn schemes_ports_and_tls_modes() {
        let c = parse("smtp://u:p@mail.example.com").unwrap();
        assert_eq!((c.port, c.tls), (587, SmtpTls::Starttls));
        assert_eq!(c.username.as_deref(), Some("u"));
        let c = parse("smtp://mail.example.com:2525?disable_starttls=true").unwrap();
        assert_eq!((c.port, c.tls, c.username), (2525, SmtpTls::None, None));
        let c = parse("smtps://u:p@mail.example.com").unwrap();
        assert_eq!((c.port, c.tls), (465, SmtpTls::Implicit));
        assert!(parse("smtps://h?disable_starttls=true").is_err());
        assert!(parse("smtp://default").is_err(), "smtp needs a host");
    }

    #[test]
    fn options_are_taken_and_unknown_ones_refused() {
        let c = parse(
            "smtp://u:p@h:25?ca_file=/etc/ca.pem&tls_insecure=true&helo=gw.example.com\
             &timeout_seconds=5&pool_max=2&pool_idle_seconds=9",
        )
        .unwrap();
        assert_eq!(c.ca_file.as_deref(), Some("/etc/ca.pem"));
        assert!(c.tls_insecure);
        assert_eq!(c.helo.as_deref(), Some("gw.example.com"));
        assert_eq!(
            (c.timeout_seconds, c.pool_max, c.pool_idle_seconds),
            (5, 2, 9)
        );
        let e = parse("smtp://h?tls_insecur=true").unwrap_err();
        assert!(e.to_string().contains("tls_insecur"), "{e}");
        assert!(parse("smtp://h?timeout_seconds=soon").is_err());
        assert!(parse("smtp://h?pool_max=0").is_err());
        assert!(parse("smtp://h?tls_insecure=maybe").is_err());
        assert!(parse("smtp://u@h").is_err(), "user without password");
        assert!(parse("smtp://h?disable_starttls=true&ca_file=/x").is_err());
        assert!(parse("smtp://h?helo=bad%20name").is_err());
    }

    #[test]
    fn ses_smtp_derives_host_and_password() {
        let c = parse(
            "ses+smtp://AKIDEXAMPLE:wJalrXUtnFEMI%2FK7MDENG%2BbPxRfiCYEXAMPLEKEY@default?region=us-east-1",
        )
        .unwrap();
        assert_eq!(c.host, "email-smtp.us-east-1.amazonaws.com");
        assert_eq!((c.port, c.tls), (587, SmtpTls::Starttls));
        assert_eq!(c.username.as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(
            c.password.as_deref(),
            Some("BOntiZFm/r+5s3psZ/RpsjB+aSGsj2J0rXdiLuO0cQL7")
        );
        assert_eq!(c.ses_region.as_deref(), Some("us-east-1"));
        let c = parse("ses+smtp://K:S@default:465?region=eu-west-1").unwrap();
        assert_eq!(c.tls, SmtpTls::Implicit);
        assert!(parse("ses+smtp://K:S@default").is_err(), "region required");
        assert!(parse("ses+smtp://K@default?region=us-east-1").is_err());
        assert!(parse("ses+smtp://K:S@smtp.example.com?region=us-east-1").is_err());
    }

    #[test]
    fn secrets_never_show() {
        let c = parse("smtp://user:hunter2@h").unwrap();
        let shown = format!("{c:?} {} ", c.redacted());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(c.redacted()["password"], crate::config::MASK);
        let p = ProviderConfig::from_dsn("smtp://user:hunter2@h").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(p.redacted()["type"], "smtp");
    }

    #[test]
    fn json_form_round_trips() {
        let c = parse("smtps://u:p@h?helo=gw").unwrap();
        let json = serde_json::to_value(ProviderConfig::Smtp(c.clone())).unwrap();
        assert_eq!(json["type"], "smtp");
        assert_eq!(json["tls"], "implicit");
        assert_eq!(
            ProviderConfig::from_json(json).unwrap(),
            ProviderConfig::Smtp(c)
        );
        let minimal = serde_json::json!({"type": "smtp", "host": "h", "port": 25, "tls": "none"});
        let ProviderConfig::Smtp(c) = ProviderConfig::from_json(minimal).unwrap() else {
            panic!("not smtp")
        };
        assert_eq!((c.timeout_seconds, c.pool_max), (30, 4));
        let typo =
            serde_json::json!({"type": "smtp", "host": "h", "port": 25, "tls": "none", "tsl": 1});
        assert!(ProviderConfig::from_json(typo).is_err());
    }
}

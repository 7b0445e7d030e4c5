//! The API client behind `mailgate send`, `emails`, `events`, `environments` and `keys`.

mod admin;
mod alerts;
mod providers;
mod read;
mod send;
mod suppressions;
mod templates;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use admin::{environments, keys, EnvironmentsArgs, KeysArgs};
pub use alerts::{notifications, reputation, NotificationsArgs, ReputationArgs};
pub use providers::{providers, ProvidersArgs};
pub use read::{emails, events, EmailsArgs, EventsArgs};
pub use send::{send, SendArgs};
pub use suppressions::{recipients, suppressions, RecipientsArgs, SuppressionsArgs};
pub use templates::{templates, TemplatesArgs};

/// How to reach the server; shared by every client subcommand.
#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// Base URL of the mailgate server.
    #[arg(
        long,
        global = true,
        env = "MAILGATE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// API key (an environment key, or the admin key).
    #[arg(long, global = true, env = "MAILGATE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the server's JSON instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A thin JSON client that turns API errors into readable messages.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// A response the server accepted.
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Parsed body (`Null` for empty bodies).
    pub body: Value,
}

impl ApiClient {
    /// A client for `conn`; fails when no API key is given.
    pub fn new(conn: &Conn) -> anyhow::Result<Self> {
        let key = conn
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| anyhow!("no API key: set MAILGATE_API_KEY or pass --api-key"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("mailgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: conn.url.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// Sends a request and returns the parsed reply, or the server's error as text.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach mailgate at {}", self.base))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(Reply { status, body });
        }
        let err = &body["error"];
        match (err["code"].as_str(), err["message"].as_str()) {
            (Some(code), Some(message)) => match err["field"].as_str() {
                Some(field) => bail!("{message} ({code}, field {field}; HTTP {status})"),
                None => bail!("{message} ({code}; HTTP {status})"),
            },
            _ => bail!("the server answered HTTP {status}"),
        }
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A field of a JSON object as display text (`-` when absent).
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

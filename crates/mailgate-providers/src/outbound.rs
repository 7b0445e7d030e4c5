//! Outbound webhooks: Standard Webhooks (Svix) signing, and the HTTP sink that delivers
//! failure notifications, Slack messages and the event stream.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use mailgate_core::feeds::{SinkError, WebhookSink};
use mailgate_core::ids::EnvironmentId;
use mailgate_core::notify::SignedTarget;
use mailgate_core::Timestamp;
use sha2::Sha256;

use crate::secrets::SecretKey;

/// The prefix of Standard Webhooks secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh `whsec_…` secret: 32 random bytes, base64.
pub fn generate_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(rand::random::<[u8; 32]>())
    )
}

/// The `webhook-signature` value (`v1,<base64 HMAC-SHA256>`) of `id.timestamp.body` under a
/// `whsec_` secret; `None` if the secret is not valid base64.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The sealing owner of an environment's notification secret `what` (`webhook`, `slack`, `stream`).
pub fn seal_owner(env: &EnvironmentId, what: &str) -> String {
    format!("{env}/notifications.{what}")
}

/// POSTs over HTTP with reqwest; opens sealed secrets with the installation's key.
pub struct HttpWebhookSink {
    client: reqwest::Client,
    key: SecretKey,
}

impl HttpWebhookSink {
    /// A sink whose requests time out after `timeout`.
    pub fn new(key: SecretKey, timeout: Duration) -> Result<Self, crate::ConfigError> {
        Ok(Self {
            client: crate::http::client(timeout)?,
            key,
        })
    }

    fn open(&self, sealed: &str, env: &EnvironmentId, what: &str) -> Result<String, SinkError> {
        let bytes = self
            .key
            .open(sealed, &seal_owner(env, what))
            .map_err(|e| SinkError(format!("stored {what} secret unreadable: {e}")))?;
        String::from_utf8(bytes).map_err(|_| SinkError(format!("stored {what} secret corrupt")))
    }

    async fn post(&self, request: reqwest::RequestBuilder) -> Result<(), SinkError> {
        let response = request.send().await.map_err(|e| {
            // reqwest's message can quote the URL, which may carry a token: keep only the kind.
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            SinkError(kind.to_owned())
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SinkError(format!(
                "receiver answered HTTP {}",
                status.as_u16()
            )))
        }
    }
}

#[async_trait]
impl WebhookSink for HttpWebhookSink {
    async fn post_signed(
        &self,
        env: &EnvironmentId,
        target: &SignedTarget,
        id: &str,
        timestamp: Timestamp,
        body: &[u8],
    ) -> Result<(), SinkError> {
        let secret = self.open(&target.sealed_secret, env, "secret")?;
        let seconds = timestamp.millis() / 1000;
        let signature = sign(&secret, id, seconds, body)
            .ok_or_else(|| SinkError("stored secret is not a whsec_ secret".into()))?;
        let request = self
            .client
            .post(&target.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", seconds.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec());
        self.post(request).await
    }

    async fn post_slack(
        &self,
        env: &EnvironmentId,
        sealed_url: &str,
        text: &str,
    ) -> Result<(), SinkError> {
        let url = self.open(sealed_url, env, "slack")?;
        let request = self
            .client
            .post(url)
            .json(&serde_json::json!({ "text": text }));
        self.post(request).await
    }
}

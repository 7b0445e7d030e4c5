//! The SES provider: builds the AWS client from the configuration, sends under the account's
//! rate limit; `verify` (credentials, identities, quotas) is in `verify.rs`.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_sesv2::config::retry::{ReconnectMode, RetryConfig};
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::Region;
use aws_sdk_sesv2::config::StalledStreamProtectionConfig;
use aws_sdk_sesv2::Client;
use aws_smithy_http_client::tls;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{Provider, SendError, SendReceipt, VerifyReport};
use tokio::sync::OnceCell;
use tracing::instrument;

use super::classify::{classify_other, classify_send};
use super::mapping::fill_request;
use super::rate::TokenBucket;
use super::SesConfig;

/// How long one SES call may take, connection included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Amazon SES through the v2 API, sending no faster than the account's maximum send rate.
pub struct SesProvider {
    pub(super) client: Client,
    pub(super) region: String,
    pub(super) endpoint: Option<String>,
    configuration_set: Option<String>,
    tenant_from_organization: bool,
    pub(super) from: Option<Mailbox>,
    pub(super) configured_rate: Option<u32>,
    limiter: OnceCell<Option<TokenBucket>>,
}

impl std::fmt::Debug for SesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesProvider")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl SesProvider {
    /// Builds the client; no network call happens here (credentials resolve on first use).
    pub async fn new(config: &SesConfig) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let region = Region::new(config.region.clone());
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .http_client(http);
        if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                key,
                secret,
                None,
                None,
                "mailgate-config",
            ));
        }
        let base = loader.load().await;
        // The dispatcher owns retries, so the SDK must not retry on its own. The operation
        // timeout bounds a stalled request, so the SDK's stalled-stream check (a future wrapped
        // around every body, in the profile of each send) is off.
        //
        // A complete error answer (a 503, a 500) leaves its connection open, as the SDK's own
        // retry spec 2.1 does: by default the SDK closes ("poisons") the connection after any
        // transient error, so every 503 cost a new connection (a TCP handshake, and a TLS one
        // against SES): with the benchmark's 5 % of 503s the gateway spent ~24 % more CPU per
        // delivered message than without faults, ~1–6 % since. A timeout or a broken
        // connection still closes it: a request dropped mid-flight never goes back to the pool.
        let mut ses = aws_sdk_sesv2::config::Builder::from(&base)
            .retry_config(
                RetryConfig::disabled().with_reconnect_mode(ReconnectMode::ReuseAllConnections),
            )
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(role) = &config.role_arn {
            let assume = AssumeRoleProvider::builder(role)
                .session_name("mailgate")
                .region(region)
                .configure(&base);
            let assume = match &config.external_id {
                Some(id) => assume.external_id(id),
                None => assume,
            };
            ses = ses.credentials_provider(assume.build().await);
        }
        if let Some(endpoint) = &config.endpoint {
            ses = ses.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(ses.build()),
            region: config.region.clone(),
            endpoint: config.endpoint.clone(),
            configuration_set: config.configuration_set.clone(),
            tenant_from_organization: config.tenant_from_organization,
            from: config
                .from
                .as_deref()
                .and_then(|f| Mailbox::parse(f, "from").ok()),
            configured_rate: config.max_send_rate,
            limiter: OnceCell::new(),
        }
    }

    /// The send-rate limiter, set up on first use from `GetAccount` and `max_send_rate`.
    async fn limiter(&self) -> Option<&TokenBucket> {
        self.limiter
            .get_or_init(|| async {
                let discovered = match self.client.get_account().send().await {
                    Ok(account) => account
                        .send_quota()
                        .map(|q| q.max_send_rate())
                        .filter(|r| *r > 0.0),
                    Err(e) => {
                        let e = classify_other(e, &self.region);
                        tracing::info!(
                            code = e.code(),
                            "SES GetAccount failed; using max_send_rate if configured"
                        );
                        None
                    }
                };
                let configured = self.configured_rate.map(f64::from);
                let rate = match (discovered, configured) {
                    (Some(d), Some(c)) => Some(d.min(c)),
                    (d, c) => d.or(c),
                };
                rate.map(TokenBucket::new)
            })
            .await
            .as_ref()
    }

    /// The per-second send rate this provider enforces (`None`: no limit); discovers it first.
    pub async fn send_rate(&self) -> Option<f64> {
        self.limiter().await.map(TokenBucket::rate)
    }
}

#[async_trait]
impl Provider for SesProvider {
    fn name(&self) -> &str {
        "ses"
    }

    #[instrument(skip_all, fields(message.id = %message.id))]
    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        let tenant = message
            .delivery
            .organization
            .as_ref()
            .filter(|_| self.tenant_from_organization)
            .map(|o| o.as_str());
        let request = fill_request(
            self.client.send_email(),
            message,
            self.configuration_set.as_deref(),
            tenant,
        )?;
        if let Some(bucket) = self.limiter().await {
            bucket.acquire().await;
        }
        // The SDK's send future is several kilobytes: boxed here, so that this method's own
        // future (boxed again by `async_trait`, wrapped by `instrument`) stays small and is
        // not copied whole at each of those steps (`memcpy` was ~5 % of the gateway's CPU end
        // to end; bench/JOURNAL.md).
        match Box::pin(request.send()).await {
            Ok(out) => Ok(SendReceipt {
                provider_message_id: out.message_id().map(str::to_owned),
                final_delivery: false,
            }),
            Err(e) => {
                let e = classify_send(e, &self.region);
                tracing::debug!(
                    code = e.code(),
                    retryable = e.is_retryable(),
                    "SES send failed"
                );
                Err(e)
            }
        }
    }

    async fn verify(&self) -> Result<VerifyReport, SendError> {
        Ok(VerifyReport::from_checks(self.verify_checks().await))
    }
}

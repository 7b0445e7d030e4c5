//! The SES provider: builds the AWS client from the configuration, sends under the account's
//! rate limit, and verifies credentials, identities and quotas.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::Region;
use aws_sdk_sesv2::operation::get_account::GetAccountOutput;
use aws_sdk_sesv2::types::VerificationStatus;
use aws_sdk_sesv2::Client;
use aws_smithy_http_client::tls;
use mailgate_core::address::Mailbox;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, CheckStatus, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
};
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
/// The most identity pages `verify` reads.
const MAX_IDENTITY_PAGES: usize = 10;

/// Amazon SES through the v2 API, sending no faster than the account's maximum send rate.
pub struct SesProvider {
    client: Client,
    region: String,
    configuration_set: Option<String>,
    from: Option<Mailbox>,
    configured_rate: Option<u32>,
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
        // The dispatcher owns retries, so the SDK must not retry on its own.
        let mut ses = aws_sdk_sesv2::config::Builder::from(&base)
            .retry_config(RetryConfig::disabled())
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
            configuration_set: config.configuration_set.clone(),
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

    /// Whether an identity exists and is verified for sending; `None` when it does not exist.
    async fn identity_verified(&self, identity: &str) -> Result<Option<bool>, SendError> {
        match self
            .client
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.verified_for_sending_status()
                    || out.verification_status() == Some(&VerificationStatus::Success),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify_other(e, &self.region)),
        }
    }

    /// Checks the configured sender: the address, then its domain and each parent domain.
    async fn check_from(&self, from: &Mailbox, report: &mut VerifyReport) -> Result<(), SendError> {
        let address = from.email.to_string();
        let domain = from.email.domain();
        let mut candidates = vec![address.clone()];
        let mut d = domain;
        loop {
            candidates.push(d.to_owned());
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent,
                _ => break,
            }
        }
        let mut pending = None;
        for candidate in &candidates {
            match self.identity_verified(candidate).await? {
                Some(true) => {
                    let kind = if candidate.contains('@') {
                        "address"
                    } else {
                        "domain"
                    };
                    report.checks.push(VerifyCheck::new(
                        CheckAspect::Sender,
                        CheckStatus::Ok,
                        format!(
                            "sender {address}: {kind} {candidate} verified for sending in {}",
                            self.region
                        ),
                    ));
                    return Ok(());
                }
                Some(false) => pending = pending.or(Some(candidate.clone())),
                None => {}
            }
        }
        report.ok = false;
        report.checks.push(VerifyCheck::new(CheckAspect::Sender, CheckStatus::Failed, match pending {
            Some(p) => format!(
                "sender {address}: identity {p} exists in {} but is not verified yet — finish its DNS (or email) verification",
                self.region
            ),
            None => format!(
                "sender {address}: no verified identity covers it in {} — verify the domain {domain} (or the address) in this region",
                self.region
            ),
        }));
        Ok(())
    }

    /// Lists the region's identities and reports the verified ones.
    async fn check_identities(&self, report: &mut VerifyReport) -> Result<(), SendError> {
        let (mut verified, mut pending) = (Vec::new(), Vec::new());
        let mut token = None;
        for _ in 0..MAX_IDENTITY_PAGES {
            let out = match self
                .client
                .list_email_identities()
                .page_size(100)
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => out,
                // Listing is informational: an endpoint without it (moto answers 404) or a
                // policy without ses:ListEmailIdentities does not make sending fail.
                Err(e) => match classify_other(e, &self.region) {
                    SendError::Permanent { code, message } => {
                        report.checks.push(VerifyCheck::new(
                            CheckAspect::Sender,
                            CheckStatus::Ok,
                            format!(
                                "could not list identities in {} ({code}: {message})",
                                self.region
                            ),
                        ));
                        return Ok(());
                    }
                    retryable => return Err(retryable),
                },
            };
            for id in out.email_identities() {
                let name = id.identity_name().unwrap_or_default().to_owned();
                if id.verification_status() == Some(&VerificationStatus::Success)
                    && id.sending_enabled()
                {
                    verified.push(name);
                } else {
                    pending.push(name);
                }
            }
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        report.checks.push(VerifyCheck::new(
            CheckAspect::Sender,
            CheckStatus::Ok,
            if verified.is_empty() {
                format!(
                    "no verified identities in {} — verify a domain before sending",
                    self.region
                )
            } else {
                format!(
                    "verified identities in {}: {}",
                    self.region,
                    verified.join(", ")
                )
            },
        ));
        if !pending.is_empty() {
            report.checks.push(VerifyCheck::new(
                CheckAspect::Sender,
                CheckStatus::Ok,
                format!(
                    "identities not verified (or sending disabled) in {}: {}",
                    self.region,
                    pending.join(", ")
                ),
            ));
        }
        if verified.is_empty() {
            report.ok = false;
        }
        Ok(())
    }

    /// Reports sandbox state, quota and rate from `GetAccount`.
    fn describe_account(&self, account: &GetAccountOutput, report: &mut VerifyReport) {
        let quota = account.send_quota();
        let daily = quota.map(|q| q.max24_hour_send()).unwrap_or_default();
        let daily = if daily < 0.0 {
            "unlimited".to_owned()
        } else {
            format!("{} per day", number(daily))
        };
        let rate = quota.map(|q| q.max_send_rate()).unwrap_or_default();
        let sent = quota.map(|q| q.sent_last24_hours()).unwrap_or_default();
        report.checks.push(VerifyCheck::new(
            CheckAspect::Quota,
            CheckStatus::Ok,
            if account.production_access_enabled() {
                format!(
                    "production access: {daily}, {} per second ({} sent in the last 24 hours)",
                    number(rate),
                    number(sent)
                )
            } else {
                format!(
                    "account in sandbox: only verified recipients, {daily}, {} per second",
                    number(rate)
                )
            },
        ));
        if !account.sending_enabled() {
            report.ok = false;
            report.checks.push(VerifyCheck::new(
                CheckAspect::Quota,
                CheckStatus::Failed,
                format!(
                    "sending is paused for this account in {} — resume it in the SES console",
                    self.region
                ),
            ));
        }
    }
}

/// `200` rather than `200.0`; fractions kept.
fn number(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[async_trait]
impl Provider for SesProvider {
    fn name(&self) -> &str {
        "ses"
    }

    #[instrument(skip_all, fields(message.id = %message.id))]
    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        let request = fill_request(
            self.client.send_email(),
            message,
            self.configuration_set.as_deref(),
        )?;
        if let Some(bucket) = self.limiter().await {
            bucket.acquire().await;
        }
        match request.send().await {
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
        let mut report = VerifyReport {
            ok: true,
            checks: Vec::new(),
        };
        match self.client.get_account().send().await {
            Ok(account) => {
                report.checks.push(VerifyCheck::new(
                    CheckAspect::Credentials,
                    CheckStatus::Ok,
                    format!("credentials accepted by SES in {}", self.region),
                ));
                self.describe_account(&account, &mut report);
            }
            Err(e) => match classify_other(e, &self.region) {
                e @ SendError::Permanent { .. }
                    if e.code() != "http_404" && !e.code().starts_with("AccessDenied") =>
                {
                    report.ok = false;
                    report.checks.push(VerifyCheck::new(
                        CheckAspect::Sender,
                        CheckStatus::Failed,
                        e.to_string(),
                    ));
                    return Ok(report);
                }
                SendError::Permanent { code, message } => report.checks.push(VerifyCheck::new(
                    CheckAspect::Quota,
                    CheckStatus::Ok,
                    format!(
                        "account details unavailable ({code}: {message}); send rate: {}",
                        match self.configured_rate {
                            Some(r) => format!("max_send_rate {r} per second"),
                            None => "no limit configured".into(),
                        }
                    ),
                )),
                retryable => return Err(retryable),
            },
        }
        if let Some(from) = self.from.clone() {
            self.check_from(&from, &mut report).await?;
        }
        self.check_identities(&mut report).await?;
        Ok(report)
    }
}

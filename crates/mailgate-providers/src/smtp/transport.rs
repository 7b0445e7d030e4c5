//! The SMTP provider: connects (TLS, STARTTLS, AUTH), keeps a small pool of idle connections and
//! drives each transaction command by command, so that a failure is tied to its step and a
//! refused recipient to its index.
//!
//! lettre's own pool (`AsyncSmtpTransport`) is not used: it hides which step failed and has no
//! command timeouts for async connections. The SMTP protocol itself is lettre's
//! (`AsyncSmtpConnection`).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{
    CheckAspect, Provider, SendError, SendReceipt, VerifyCheck, VerifyReport,
};
use tokio::sync::{Mutex, Semaphore};

use super::classify::{failure_of, Context, Step};
use super::{message, ses_smtp, SmtpConfig, SmtpTls};
use crate::config::ConfigError;
use crate::verify::{not_checked, request_failed};

/// The end of DATA may take longer than a command: the body is being transferred.
const MIN_DATA_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a polite QUIT may take before the socket is simply closed.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

enum TlsSetup {
    None,
    StartTls(TlsParameters),
    Implicit(TlsParameters),
}

/// What to do with a connection after a failed transaction.
enum After {
    /// The transaction was reset; the connection can serve the next message.
    Reuse,
    /// Say QUIT and close.
    Quit,
    /// Close the socket at once (its state is unknown, e.g. after a timeout).
    Close,
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// Delivers messages to one SMTP server.
pub(crate) struct SmtpProvider {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    port: u16,
    tls: TlsSetup,
    tls_insecure: bool,
    hello: ClientId,
    username: Option<String>,
    credentials: Option<Credentials>,
    timeout: Duration,
    idle_timeout: Duration,
    ses_region: Option<String>,
    idle: Mutex<Vec<Idle>>,
    permits: Semaphore,
}

impl SmtpProvider {
    /// Prepares TLS and the pool; starts the idle reaper.
    pub(crate) fn new(config: &SmtpConfig) -> Result<Self, ConfigError> {
        let tls_params = || -> Result<TlsParameters, ConfigError> {
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path).map_err(|e| {
                    ConfigError::invalid("ca_file", format!("cannot read {path}: {e}"))
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|_| {
                    ConfigError::invalid("ca_file", format!("{path} holds no PEM certificate"))
                })?;
                builder = builder.add_root_certificate(cert);
            }
            if config.tls_insecure {
                tracing::warn!(
                    host = %config.host,
                    "SMTP tls_insecure=true: the server's certificate is NOT verified; use only for test servers"
                );
                builder = builder
                    .dangerous_accept_invalid_certs(true)
                    .dangerous_accept_invalid_hostnames(true);
            }
            builder
                .build_rustls()
                .map_err(|e| ConfigError::invalid("tls", format!("cannot set up TLS: {e}")))
        };
        let tls = match config.tls {
            SmtpTls::None => TlsSetup::None,
            SmtpTls::Starttls => TlsSetup::StartTls(tls_params()?),
            SmtpTls::Implicit => TlsSetup::Implicit(tls_params()?),
        };
        let credentials = match (&config.username, &config.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
            _ => None,
        };
        let inner = Arc::new(Inner {
            host: config.host.clone(),
            port: config.port,
            tls,
            tls_insecure: config.tls_insecure,
            hello: config
                .helo
                .clone()
                .map(ClientId::Domain)
                .unwrap_or_default(),
            username: config.username.clone(),
            credentials,
            timeout: Duration::from_secs(config.timeout_seconds),
            idle_timeout: Duration::from_secs(config.pool_idle_seconds),
            ses_region: config.ses_region.clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(config.pool_max as usize),
        });
        spawn_reaper(Arc::downgrade(&inner));
        Ok(Self { inner })
    }
}

/// Closes idle connections past their idle timeout; ends with the provider.
fn spawn_reaper(inner: Weak<Inner>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        loop {
            let period = match inner.upgrade() {
                Some(i) => (i.idle_timeout / 2).max(Duration::from_secs(1)),
                None => return,
            };
            tokio::time::sleep(period).await;
            let Some(inner) = inner.upgrade() else { return };
            let expired: Vec<Idle> = {
                let mut idle = inner.idle.lock().await;
                let (old, fresh) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|c| c.since.elapsed() >= inner.idle_timeout);
                *idle = fresh;
                old
            };
            for mut c in expired {
                let _ = tokio::time::timeout(QUIT_TIMEOUT, c.conn.quit()).await;
            }
        }
    });
}

impl Inner {
    fn context<'a>(&'a self, scrub: &'a [(String, String)]) -> Context<'a> {
        Context {
            host: &self.host,
            port: self.port,
            implicit_tls: matches!(self.tls, TlsSetup::Implicit(_)),
            ses_region: self.ses_region.as_deref(),
            timeout: self.timeout,
            scrub,
        }
    }

    /// Runs one step under the command timeout, classifying its failure.
    async fn step<T>(
        &self,
        ctx: &Context<'_>,
        step: Step,
        limit: Duration,
        fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(limit, fut).await {
            Err(_) => Err(ctx.timed_out(step)),
            Ok(Err(e)) => Err(ctx.classify(step, failure_of(&e))),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Opens a new connection: connect, (implicit) TLS, EHLO, STARTTLS, AUTH.
    async fn connect(&self, ctx: &Context<'_>) -> Result<AsyncSmtpConnection, SendError> {
        let mut checks = Vec::new();
        let mut conn = self.open(ctx, &mut checks).await?;
        self.authenticate(ctx, &mut conn, &mut checks).await?;
        Ok(conn)
    }

    /// Connect, (implicit) TLS, EHLO, STARTTLS. Each check that passes is described in
    /// `checks`.
    async fn open(
        &self,
        ctx: &Context<'_>,
        checks: &mut Vec<VerifyCheck>,
    ) -> Result<AsyncSmtpConnection, SendError> {
        let implicit = match &self.tls {
            TlsSetup::Implicit(p) => Some(p.clone()),
            _ => None,
        };
        let addr = (self.host.as_str(), self.port);
        let connect = AsyncSmtpConnection::connect_tokio1(
            addr,
            Some(self.timeout),
            &self.hello,
            implicit,
            None,
        );
        let mut conn = self
            .step(ctx, Step::Connect, self.timeout * 2, connect)
            .await?;
        let name = conn.server_info().name().to_owned();
        checks.push(VerifyCheck::ok(
            CheckAspect::Connection,
            match &self.tls {
                TlsSetup::Implicit(_) => format!(
                    "connected to {}:{} with TLS (server {name})",
                    self.host, self.port
                ),
                _ => format!("connected to {}:{} (server {name})", self.host, self.port),
            },
        ));
        match &self.tls {
            TlsSetup::StartTls(params) => {
                if !conn.can_starttls() {
                    let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.quit()).await;
                    return Err(ctx.starttls_unavailable());
                }
                let upgrade = conn.starttls(params.clone(), &self.hello);
                self.step(ctx, Step::StartTls, self.timeout * 2, upgrade)
                    .await?;
                checks.push(VerifyCheck::ok(CheckAspect::Connection, "STARTTLS ok"));
            }
            TlsSetup::None => checks.push(VerifyCheck::warning(
                CheckAspect::Connection,
                "plain connection without TLS (disable_starttls=true)",
            )),
            TlsSetup::Implicit(_) => {}
        }
        if self.tls_insecure {
            checks.push(VerifyCheck::warning(
                CheckAspect::Connection,
                "server certificate NOT verified (tls_insecure=true)",
            ));
        }
        Ok(conn)
    }

    /// AUTH with the configured credentials, if any.
    async fn authenticate(
        &self,
        ctx: &Context<'_>,
        conn: &mut AsyncSmtpConnection,
        checks: &mut Vec<VerifyCheck>,
    ) -> Result<(), SendError> {
        match (&self.credentials, &self.username) {
            (Some(creds), Some(user)) => {
                let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], creds);
                self.step(ctx, Step::Auth, self.timeout, auth).await?;
                checks.push(VerifyCheck::ok(
                    CheckAspect::Credentials,
                    format!("authenticated as {user}"),
                ));
            }
            _ => checks.push(VerifyCheck::skipped(
                CheckAspect::Credentials,
                "no credentials configured: not authenticating",
            )),
        }
        Ok(())
    }

    /// A pooled connection that still answers, or a new one.
    async fn checkout(&self, ctx: &Context<'_>) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let candidate = self.idle.lock().await.pop();
            let Some(mut idle) = candidate else { break };
            if idle.since.elapsed() >= self.idle_timeout || idle.conn.has_broken() {
                let _ = tokio::time::timeout(QUIT_TIMEOUT, idle.conn.quit()).await;
                continue;
            }
            let alive = tokio::time::timeout(self.timeout, idle.conn.test_connected()).await;
            if matches!(alive, Ok(true)) {
                return Ok(idle.conn);
            }
        }
        self.connect(ctx).await
    }

    async fn checkin(&self, conn: AsyncSmtpConnection) {
        if !conn.has_broken() {
            self.idle.lock().await.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// One transaction on `conn`: MAIL FROM, every RCPT TO, DATA, the message.
    async fn transact(
        &self,
        ctx: &Context<'_>,
        conn: &mut AsyncSmtpConnection,
        out: &message::Outgoing,
    ) -> Result<lettre::transport::smtp::response::Response, (SendError, After)> {
        let quit = |e: SendError| (e, After::Quit);
        let mut params = Vec::new();
        let ascii = |a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii();
        let non_ascii_envelope = !ascii(&out.from) || !out.recipients.iter().all(ascii);
        if non_ascii_envelope {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err((
                    SendError::permanent(
                        "smtp_smtputf8_unsupported",
                        "an address is not ASCII and the server does not support SMTPUTF8",
                    ),
                    After::Reuse,
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !out.raw.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err((
                    SendError::permanent(
                        "smtp_8bitmime_unsupported",
                        "the message is not ASCII and the server does not support 8BITMIME",
                    ),
                    After::Reuse,
                ));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = conn.command(Mail::new(Some(out.from.clone()), params));
        self.step(ctx, Step::MailFrom, self.timeout, mail)
            .await
            .map_err(quit)?;

        // Every recipient is tried so the error names all refusals; any refusal aborts the
        // whole transaction (no partial delivery).
        let mut refused = Vec::new();
        for (i, rcpt) in out.recipients.iter().enumerate() {
            let cmd = conn.command(Rcpt::new(rcpt.clone(), vec![]));
            match tokio::time::timeout(self.timeout, cmd).await {
                Err(_) => return Err((ctx.timed_out(Step::RcptTo), After::Close)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => match (e.status(), failure_of(&e)) {
                    (Some(code), super::classify::Failure::Reply(_, text)) => {
                        refused.push((i + 1, u16::from(code), text))
                    }
                    (_, other) => return Err(quit(ctx.classify(Step::RcptTo, other))),
                },
            }
        }
        if !refused.is_empty() {
            let reset = tokio::time::timeout(self.timeout, conn.command(Rset)).await;
            let after = if matches!(reset, Ok(Ok(_))) {
                After::Reuse
            } else {
                After::Close
            };
            return Err((
                ctx.recipients_refused(out.recipients.len(), &refused),
                after,
            ));
        }
        self.step(ctx, Step::Data, self.timeout, conn.command(Data))
            .await
            .map_err(quit)?;
        let body = conn.message(&out.raw);
        self.step(
            ctx,
            Step::EndOfData,
            self.timeout.max(MIN_DATA_TIMEOUT),
            body,
        )
        .await
        .map_err(|e| {
            let after = if e.code() == "smtp_timeout" {
                After::Close
            } else {
                After::Quit
            };
            (e, after)
        })
    }
}

#[async_trait]
impl Provider for SmtpProvider {
    fn name(&self) -> &str {
        "smtp"
    }

    #[tracing::instrument(skip_all, fields(message.id = %message.id))]
    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        let inner = &self.inner;
        let out = message::build(message)?;
        let scrub: Vec<(String, String)> = message
            .content
            .recipients()
            .enumerate()
            .map(|(i, m)| (m.email.to_string(), format!("recipient #{}", i + 1)))
            .chain(std::iter::once((
                message.content.from.email.to_string(),
                "the sender".to_owned(),
            )))
            .collect();
        let ctx = inner.context(&scrub);
        let _permit = inner.permits.acquire().await.map_err(|_| {
            SendError::retryable("smtp_closed", "the SMTP provider is shutting down")
        })?;
        let mut conn = inner.checkout(&ctx).await?;
        match inner.transact(&ctx, &mut conn, &out).await {
            Ok(reply) => {
                inner.checkin(conn).await;
                let ses_id = inner
                    .ses_region
                    .as_ref()
                    .and_then(|_| ses_smtp::ses_message_id(reply.message()));
                tracing::debug!(
                    recipients = out.recipients.len(),
                    "SMTP server accepted the message"
                );
                Ok(SendReceipt {
                    provider_message_id: Some(ses_id.unwrap_or(out.message_id)),
                    final_delivery: false,
                })
            }
            Err((e, after)) => {
                match after {
                    After::Reuse => inner.checkin(conn).await,
                    After::Quit => {
                        let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.quit()).await;
                    }
                    After::Close => drop(conn),
                }
                Err(e)
            }
        }
    }

    async fn verify(&self) -> Result<VerifyReport, SendError> {
        let inner = &self.inner;
        let ctx = inner.context(&[]);
        let mut checks = Vec::new();
        if let Some(region) = &inner.ses_region {
            checks.push(VerifyCheck::ok(
                CheckAspect::Region,
                format!("SES SMTP in region {region}"),
            ));
        }
        match inner.open(&ctx, &mut checks).await {
            Ok(mut conn) => {
                if let Err(e) = inner.authenticate(&ctx, &mut conn, &mut checks).await {
                    checks.push(request_failed(CheckAspect::Credentials, &e));
                }
                let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.quit()).await;
            }
            Err(e) => {
                checks.push(VerifyCheck::failed(CheckAspect::Connection, e.to_string()));
                checks.push(not_checked(
                    CheckAspect::Credentials,
                    "the connection failed before AUTH",
                ));
            }
        }
        checks.push(VerifyCheck::skipped(
            CheckAspect::Sender,
            "SMTP cannot check a sender without sending a message: send a test message",
        ));
        Ok(VerifyReport::from_checks(checks))
    }
}

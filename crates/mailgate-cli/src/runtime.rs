//! The composition root: opens the database, builds the provider, and runs the API server and
//! the delivery workers until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use mailgate_core::dispatcher::Dispatcher;
use mailgate_core::feeds::{FeedConfig, FeedWorker};
use mailgate_core::ingest::IngestService;
use mailgate_core::reputation::ReputationGate;
use mailgate_core::send::SendService;
use mailgate_core::{Clock, SystemClock};
use mailgate_providers::outbound::HttpWebhookSink;

use mailgate_providers::capture::CaptureConfig;
use mailgate_providers::{BuildContext, ChainConfig, ProviderRegistry, WebhookVerifier};
use mailgate_server::{AppState, ServerConfig};
use mailgate_store::{Database, StoreOptions};
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bootstrap::{bootstrap, AdminKey};
use crate::config::Config;

/// How often a cached provider is checked against the stored configuration, so that a change
/// made through one process reaches the others.
const PROVIDER_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest a notification or event-stream POST may take.
const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How old the dispatcher's answer to "is this environment paused?" may be.
const GATE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens (creating the SQLite directory if needed) and optionally migrates the database.
pub async fn open_database(config: &Config, migrate: bool) -> anyhow::Result<Database> {
    if let Some(dir) = config.sqlite_dir() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        group_commit_max: config.database.group_commit_max,
        cache_ttl: std::time::Duration::from_millis(config.database.cache_ttl_ms),
        ..StoreOptions::default()
    };
    let db = Database::connect(config.database.url.expose_secret(), &options)
        .await
        .context("opening the database")?;
    if migrate {
        db.migrate().await.context("migrating the database")?;
    }
    Ok(db)
}

/// Runs the API and, when `with_api` is false, only the workers.
pub async fn run(config: Config, with_api: bool) -> anyhow::Result<()> {
    let db = open_database(&config, config.database.auto_migrate).await?;
    let storage = db.storage();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let provider_config = ChainConfig::from_dsn(config.provider.default.expose_secret())
        .context("provider.default")?;
    let build = BuildContext {
        capture_store: storage.clone(),
        clock: clock.clone(),
    };
    let (secret_key, _) = crate::secrets::load(&config)?;
    let sink = HttpWebhookSink::new(secret_key.clone(), WEBHOOK_TIMEOUT)
        .context("notification HTTP client")?;
    let sandbox = CaptureConfig::default().build(&build);
    let registry = Arc::new(
        ProviderRegistry::new(
            storage.clone(),
            secret_key,
            build,
            provider_config.clone(),
            PROVIDER_RECHECK,
        )
        .await
        .context("provider.default")?,
    );
    tracing::info!(
        providers = ?provider_config.type_names(),
        "default provider ready"
    );

    // Bootstrap and bind before any worker starts: start-up never waits behind deliveries,
    // and a port already taken fails at once.
    let api = if with_api {
        let admin = bootstrap(storage.as_ref(), config.admin_key.as_ref(), clock.now()).await?;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        Some((admin, listener))
    } else {
        None
    };

    let shutdown = CancellationToken::new();
    tokio::spawn(forward_signals(shutdown.clone()));
    let wake = Arc::new(Notify::new());
    let dispatcher = Dispatcher::new(
        storage.clone(),
        registry.clone(),
        clock.clone(),
        config.retry(),
        config.dispatcher(),
        wake.clone(),
    )
    .with_gate(
        Arc::new(ReputationGate::new(
            storage.clone(),
            clock.clone(),
            GATE_TTL,
        )),
        storage.clone(),
    )
    .with_limits(storage.clone())
    .with_sandbox(sandbox);
    let workers = tokio::spawn(dispatcher.run(shutdown.clone()));
    // Every process that delivers also runs the feeds; their cursor leases make that safe.
    let send = SendService::new(
        storage.clone(),
        clock.clone(),
        config.limits(),
        config.retry(),
        wake,
    );
    let feeds = FeedWorker::new(
        storage.clone(),
        Arc::new(sink),
        clock.clone(),
        FeedConfig::default(),
    )
    .with_mailer(send.clone());
    let feeds = tokio::spawn(feeds.run(shutdown.clone()));

    if let Some((admin, listener)) = api {
        let state = AppState {
            ingest: IngestService::new(
                storage.clone(),
                storage.clone(),
                clock.clone(),
                config.soft_bounces(),
            ),
            webhooks: Arc::new(WebhookVerifier::new(clock.clone())),
            storage: storage.clone(),
            send,
            clock: clock.clone(),
            providers: registry.clone(),
            config: Arc::new(ServerConfig {
                max_request_bytes: config.server.max_request_bytes,
                request_timeout: std::time::Duration::from_secs(
                    config.server.request_timeout_seconds,
                ),
            }),
        };
        let addr = listener.local_addr()?;
        if let AdminKey::Generated(secret) = &admin {
            println!(
                "admin key (shown once, only its hash is stored): {}",
                secret.expose()
            );
        }
        if let Some(dir) = config.sqlite_dir() {
            println!("data directory: {}", dir.display());
        }
        // Printed last: once it appears, the API accepts connections.
        println!("mailgate listening on http://{addr}");
        tracing::info!(%addr, "API listening");
        mailgate_server::serve(listener, state, shutdown.clone())
            .await
            .context("serving the API")?;
    } else {
        println!("mailgate worker started");
        shutdown.cancelled().await;
    }
    workers.await.context("worker task")?;
    feeds.await.context("feed task")?;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn forward_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing in-flight deliveries");
    shutdown.cancel();
}

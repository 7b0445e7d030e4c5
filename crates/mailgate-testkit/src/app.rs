//! The HTTP `TestApp`: the API server on a random loopback port over a fresh database, with an
//! admin key and the `default` environment, plus request helpers for tests.
//!
//! It runs only the HTTP server unless the builder is given a provider resolver
//! ([`TestAppBuilder::with_dispatcher`]), in which case a dispatcher shares the send service's
//! wake-up signal and delivers what the API accepts.

use std::sync::Arc;
use std::time::Duration;

use mailgate_core::apikey::{ApiKeyRecord, ApiKeySecret, KeyScope, NewApiKey};
use mailgate_core::dispatcher::{Dispatcher, DispatcherConfig};
use mailgate_core::environment::{EnvironmentName, DEFAULT_ENVIRONMENT};
use mailgate_core::feeds::{FeedConfig, FeedWorker};
use mailgate_core::ingest::IngestService;
use mailgate_core::message::Limits;
use mailgate_core::provider::ProviderResolver;
use mailgate_core::reputation::ReputationGate;
use mailgate_core::retry::RetryPolicy;
use mailgate_core::send::SendService;
use mailgate_core::store::Storage;
use mailgate_core::suppression::SoftBouncePolicy;
use mailgate_core::{ApiKeyId, Clock, SystemClock};
use mailgate_providers::{
    BuildContext, ProviderConfig, ProviderRegistry, SecretKey, WebhookVerifier,
};
use mailgate_server::{AppState, ServerConfig};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::TestDatabase;

/// A running API server for one test. Dropping it stops the server (and the dispatcher).
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// A bootstrap admin key's secret.
    pub admin_key: String,
    /// The per-test database (kept alive for the test's duration).
    pub db: TestDatabase,
    /// The open database the server uses.
    pub database: mailgate_store::Database,
    /// The storage behind the server, for direct checks.
    pub storage: Arc<dyn Storage>,
    /// The provider registry the server uses (default provider: `capture://`).
    pub providers: Arc<ProviderRegistry>,
    /// The key that seals provider secrets in this app's database.
    pub secret_key: SecretKey,
    /// An HTTP client.
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// A dispatcher to run beside the server.
struct DispatcherSpec {
    /// `None`: the app's own provider registry.
    providers: Option<Arc<dyn ProviderResolver>>,
    retry: RetryPolicy,
    config: DispatcherConfig,
}

/// Configures a [`TestApp`] before it starts.
pub struct TestAppBuilder {
    limits: Limits,
    server: ServerConfig,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    dispatcher: Option<DispatcherSpec>,
    feeds: Option<(FeedConfig, usize)>,
    soft_bounces: SoftBouncePolicy,
}

impl Default for TestAppBuilder {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            server: ServerConfig::default(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            dispatcher: None,
            feeds: None,
            soft_bounces: SoftBouncePolicy::default(),
        }
    }
}

impl TestAppBuilder {
    /// The message limits the send service enforces.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The largest request body the server accepts.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.server.max_request_bytes = bytes;
        self
    }

    /// The request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.server.request_timeout = timeout;
        self
    }

    /// The retry policy of the send service (its `max_attempts`) when no dispatcher is given.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The soft-bounce suppression rule of the webhook ingestion.
    pub fn soft_bounces(mut self, policy: SoftBouncePolicy) -> Self {
        self.soft_bounces = policy;
        self
    }

    /// The clock the server and the dispatcher read.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Also runs a dispatcher delivering through `providers`; its retry policy is the send
    /// service's too.
    pub fn with_dispatcher(
        mut self,
        providers: Arc<dyn ProviderResolver>,
        retry: RetryPolicy,
        config: DispatcherConfig,
    ) -> Self {
        self.retry = retry;
        self.dispatcher = Some(DispatcherSpec {
            providers: Some(providers),
            retry,
            config,
        });
        self
    }

    /// Also runs a dispatcher delivering through the app's provider registry, so providers set
    /// with `PUT /v1/environments/{env}/provider` are used.
    pub fn with_registry_dispatcher(
        mut self,
        retry: RetryPolicy,
        config: DispatcherConfig,
    ) -> Self {
        self.retry = retry;
        self.dispatcher = Some(DispatcherSpec {
            providers: None,
            retry,
            config,
        });
        self
    }

    /// Also runs `workers` feed workers (event stream and notifications), posting over HTTP.
    pub fn with_feeds(mut self, config: FeedConfig, workers: usize) -> Self {
        self.feeds = Some((config, workers));
        self
    }

    /// Opens a fresh database (backend from `MAILGATE_TEST_BACKEND`), seeds it and starts the
    /// server on a random port.
    pub async fn spawn(self) -> TestApp {
        let db = TestDatabase::from_env().await;
        let database = db.open().await;
        let storage = database.storage();
        let now = self.clock.now();
        let default =
            EnvironmentName::parse(DEFAULT_ENVIRONMENT).expect("default environment name");
        storage
            .ensure_environment(&default, now)
            .await
            .expect("create the default environment");
        let admin = ApiKeySecret::generate();
        let record = ApiKeyRecord {
            id: ApiKeyId::new(),
            scope: KeyScope::Admin,
            name: "test admin".into(),
            hint: admin.hint(),
            created_at: now,
        };
        storage
            .insert_api_key(&NewApiKey {
                record,
                hash: admin.hash(),
            })
            .await
            .expect("insert the admin key");

        let wake = Arc::new(Notify::new());
        let send = SendService::new(
            storage.clone(),
            Arc::clone(&self.clock),
            self.limits,
            self.retry,
            Arc::clone(&wake),
        );
        let secret_key = SecretKey::generate();
        let build = BuildContext {
            capture_store: storage.clone(),
            clock: Arc::clone(&self.clock),
        };
        let default_provider = ProviderConfig::from_dsn("capture://").expect("capture DSN");
        let sandbox = default_provider
            .build(&build)
            .await
            .expect("capture provider");
        let providers = Arc::new(
            ProviderRegistry::new(
                storage.clone(),
                secret_key.clone(),
                build,
                default_provider,
                Duration::from_millis(100),
            )
            .await
            .expect("provider registry"),
        );
        let mailer = send.clone();
        let state = AppState {
            ingest: IngestService::new(
                storage.clone(),
                storage.clone(),
                Arc::clone(&self.clock),
                self.soft_bounces,
            ),
            webhooks: Arc::new(WebhookVerifier::new(Arc::clone(&self.clock))),
            storage: Arc::clone(&storage),
            send,
            clock: Arc::clone(&self.clock),
            providers: Arc::clone(&providers),
            config: Arc::new(self.server),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            mailgate_server::serve(listener, state, token)
                .await
                .expect("server failed");
        }));
        if let Some(spec) = self.dispatcher {
            let queue: Arc<dyn mailgate_core::store::QueueStore> = storage.clone();
            let dispatcher = Dispatcher::new(
                queue,
                spec.providers
                    .unwrap_or_else(|| Arc::clone(&providers) as Arc<dyn ProviderResolver>),
                Arc::clone(&self.clock),
                spec.retry,
                spec.config,
                wake,
            )
            .with_gate(
                Arc::new(ReputationGate::new(
                    storage.clone(),
                    Arc::clone(&self.clock),
                    Duration::from_millis(50),
                )),
                storage.clone(),
            )
            .with_limits(storage.clone())
            .with_sandbox(sandbox);
            tasks.push(tokio::spawn(dispatcher.run(shutdown.clone())));
        }
        if let Some((config, workers)) = self.feeds {
            for _ in 0..workers {
                let sink = mailgate_providers::outbound::HttpWebhookSink::new(
                    secret_key.clone(),
                    Duration::from_secs(5),
                )
                .expect("webhook HTTP client");
                let worker = FeedWorker::new(
                    storage.clone(),
                    Arc::new(sink),
                    Arc::clone(&self.clock),
                    config,
                )
                .with_mailer(mailer.clone());
                tasks.push(tokio::spawn(worker.run(shutdown.clone())));
            }
        }
        TestApp {
            address,
            admin_key: admin.expose().to_owned(),
            db,
            database,
            storage,
            providers,
            secret_key,
            client: reqwest::Client::new(),
            shutdown,
            tasks,
        }
    }
}

impl TestApp {
    /// A server with default settings.
    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    /// A builder for other settings.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `POST path` with a JSON body and a bearer key.
    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("POST failed")
    }

    /// `PUT` a JSON body with a bearer key.
    pub async fn put_json(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("PUT request")
    }

    /// `GET path` with a bearer key.
    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET failed")
    }

    /// `DELETE path` with a bearer key.
    pub async fn delete(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("DELETE failed")
    }

    /// Creates an environment with the admin key; returns its id.
    pub async fn create_env(&self, name: &str) -> String {
        let response = self
            .post_json("/v1/environments", &self.admin_key, &json!({"name": name}))
            .await;
        assert_eq!(response.status(), 201, "creating environment {name}");
        let body: Value = response.json().await.expect("environment JSON");
        body["id"].as_str().expect("environment id").to_owned()
    }

    /// Creates a key for environment `env` (name or id) with the admin key; returns its secret.
    pub async fn create_key(&self, env: &str) -> String {
        let path = format!("/v1/environments/{env}/keys");
        let response = self
            .post_json(&path, &self.admin_key, &json!({"name": "test key"}))
            .await;
        assert_eq!(response.status(), 201, "creating a key for {env}");
        let body: Value = response.json().await.expect("key JSON");
        body["key"].as_str().expect("key secret").to_owned()
    }

    /// Stops the server (and dispatcher) and waits for them to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

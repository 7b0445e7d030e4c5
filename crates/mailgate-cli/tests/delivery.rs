//! The send service and the dispatcher together on a real database (SQLite, or PostgreSQL with
//! MAILGATE_TEST_BACKEND=postgres): retries, backoff, terminal states and the capture provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate_core::dispatcher::{Dispatcher, DispatcherConfig};
use mailgate_core::environment::{Environment, EnvironmentName};
use mailgate_core::event::{EventQuery, EventType};
use mailgate_core::message::{Content, Limits, MessageRecord, MessageStatus};
use mailgate_core::provider::{Provider, SendError, SingleProvider};
use mailgate_core::retry::RetryPolicy;
use mailgate_core::send::{SendOutcome, SendRequest, SendService};
use mailgate_core::store::Storage;
use mailgate_core::{Clock, Mailbox, MessageId, SystemClock};
use mailgate_providers::CaptureProvider;
use mailgate_store::Database;
use mailgate_testkit::db::TestDatabase;
use mailgate_testkit::fake_provider::{FakeProvider, Scripted};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Harness {
    _db: TestDatabase,
    _database: Database,
    storage: Arc<dyn Storage>,
    send: SendService,
    env: Environment,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(2),
    }
}

async fn harness(
    provider: Option<Arc<dyn Provider>>,
    retry: RetryPolicy,
    send_timeout: Duration,
) -> Harness {
    let db = TestDatabase::from_env().await;
    let database = db.open().await;
    let storage = database.storage();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let env = storage
        .ensure_environment(&EnvironmentName::parse("default").unwrap(), clock.now())
        .await
        .unwrap();
    let provider =
        provider.unwrap_or_else(|| Arc::new(CaptureProvider::new(storage.clone(), clock.clone())));
    let wake = Arc::new(Notify::new());
    let send = SendService::new(
        storage.clone(),
        clock.clone(),
        Limits::default(),
        retry,
        wake.clone(),
    );
    let config = DispatcherConfig {
        concurrency: 8,
        claim_batch: 8,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        send_timeout,
        content_retention: None,
    };
    let dispatcher = Dispatcher::new(
        storage.clone(),
        Arc::new(SingleProvider(provider)),
        clock,
        retry,
        config,
        wake,
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(dispatcher.run(shutdown.clone()));
    Harness {
        _db: db,
        _database: database,
        storage,
        send,
        env,
        shutdown,
    }
}

fn request(subject: &str) -> SendRequest {
    SendRequest {
        tags: vec!["signin".into()],
        ..SendRequest::new(Content {
            from: Mailbox::parse("Acme <noreply@acme.example>", "from").unwrap(),
            to: vec![Mailbox::parse("ann@example.com", "to").unwrap()],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: subject.into(),
            text: Some("Your code is 123456".into()),
            html: None,
            headers: vec![],
            attachments: vec![],
        })
    }
}

async fn send(h: &Harness, subject: &str) -> MessageId {
    match h.send.send(&h.env, request(subject), None).await.unwrap() {
        SendOutcome::Accepted(id) => id,
        other => panic!("expected a new message, got {other:?}"),
    }
}

async fn wait_for(h: &Harness, id: MessageId, status: MessageStatus) -> MessageRecord {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = h
            .storage
            .get_message(Some(&h.env.id), &id)
            .await
            .unwrap()
            .expect("message exists");
        if m.status == status {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "message stuck in {} (wanted {status}); last error {:?}",
            m.status,
            m.last_error
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn event_types(h: &Harness, id: MessageId) -> Vec<EventType> {
    let q = EventQuery {
        environment_id: Some(h.env.id),
        message_id: Some(id),
        types: vec![],
        since: None,
        after_seq: None,
        limit: 100,
    };
    h.storage
        .list_events(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

fn unavailable() -> SendError {
    SendError::retryable("503", "service unavailable")
}

#[tokio::test]
async fn retries_then_succeeds_honouring_retry_after() {
    let fake = FakeProvider::new();
    fake.script([
        Scripted::Fail(unavailable()),
        Scripted::Fail(SendError::Retryable {
            code: "429".into(),
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(400)),
        }),
        Scripted::Accept,
    ]);
    let h = harness(
        Some(Arc::new(fake.clone())),
        retry(5),
        Duration::from_secs(5),
    )
    .await;
    let id = send(&h, "retry then success").await;

    let m = wait_for(&h, id, MessageStatus::Sent).await;
    assert_eq!(m.attempts, 3);
    assert_eq!(m.provider.as_deref(), Some("fake"));
    assert_eq!(m.provider_message_id, Some(format!("fake-{id}")));
    assert_eq!(m.last_error, None);
    assert_eq!(
        event_types(&h, id).await,
        [
            EventType::Queued,
            EventType::Deferred,
            EventType::Deferred,
            EventType::Sent
        ]
    );

    let calls = fake.calls_for(id);
    assert_eq!(
        calls.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let waited = calls[2].at - calls[1].at;
    assert!(
        waited >= Duration::from_millis(400),
        "retry-after of 400 ms not honoured: waited {waited:?}"
    );
}

#[tokio::test]
async fn gives_up_after_the_last_attempt_with_the_reason() {
    let fake = FakeProvider::new();
    fake.script([
        Scripted::Fail(unavailable()),
        Scripted::Fail(unavailable()),
        Scripted::Fail(unavailable()),
        Scripted::Accept,
    ]);
    let h = harness(
        Some(Arc::new(fake.clone())),
        retry(3),
        Duration::from_secs(5),
    )
    .await;
    let id = send(&h, "retry then fail").await;

    let m = wait_for(&h, id, MessageStatus::Failed).await;
    assert_eq!(m.attempts, 3);
    assert!(
        m.last_error
            .as_deref()
            .unwrap()
            .contains("service unavailable"),
        "{:?}",
        m.last_error
    );
    assert_eq!(
        event_types(&h, id).await,
        [
            EventType::Queued,
            EventType::Deferred,
            EventType::Deferred,
            EventType::Failed
        ]
    );
    // Stays failed: no fourth attempt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.calls_for(id).len(), 3);
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried() {
    let fake = FakeProvider::new();
    fake.script([Scripted::Fail(SendError::permanent(
        "MessageRejected",
        "sender address not verified",
    ))]);
    let h = harness(
        Some(Arc::new(fake.clone())),
        retry(5),
        Duration::from_secs(5),
    )
    .await;
    let id = send(&h, "permanent").await;

    let m = wait_for(&h, id, MessageStatus::Failed).await;
    assert_eq!(m.attempts, 1);
    assert!(m.last_error.unwrap().contains("MessageRejected"));
    assert_eq!(
        event_types(&h, id).await,
        [EventType::Queued, EventType::Failed]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.calls_for(id).len(), 1);
}

#[tokio::test]
async fn a_provider_that_hangs_times_out_and_is_retried() {
    let fake = FakeProvider::new();
    fake.script([Scripted::Delay(
        Duration::from_secs(5),
        Box::new(Scripted::Accept),
    )]);
    let h = harness(
        Some(Arc::new(fake.clone())),
        retry(3),
        Duration::from_millis(300),
    )
    .await;
    let id = send(&h, "slow provider").await;

    let m = wait_for(&h, id, MessageStatus::Sent).await;
    assert_eq!(m.attempts, 2);
    let q = EventQuery {
        environment_id: Some(h.env.id),
        message_id: Some(id),
        types: vec![EventType::Deferred],
        since: None,
        after_seq: None,
        limit: 10,
    };
    let deferred = h.storage.list_events(&q).await.unwrap();
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0].data["code"], "timeout");
}

#[tokio::test]
async fn capture_delivers_and_keeps_a_readable_copy() {
    let h = harness(None, retry(3), Duration::from_secs(5)).await;
    let id = send(&h, "captured").await;

    let m = wait_for(&h, id, MessageStatus::Delivered).await;
    assert_eq!(m.provider.as_deref(), Some("capture"));
    assert_eq!(
        event_types(&h, id).await,
        [EventType::Queued, EventType::Sent, EventType::Delivered]
    );
    let captured = h.storage.list_captured(&h.env.id, 10).await.unwrap();
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].message_id, id);
    assert_eq!(captured[0].content.subject, "captured");
    assert_eq!(
        captured[0].content.text.as_deref(),
        Some("Your code is 123456")
    );
}

#[tokio::test]
async fn many_concurrent_sends_are_all_delivered_once() {
    let h = Arc::new(harness(None, retry(3), Duration::from_secs(5)).await);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let h = Arc::clone(&h);
        tasks.push(tokio::spawn(
            async move { send(&h, &format!("bulk {i}")).await },
        ));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    for id in &ids {
        wait_for(&h, *id, MessageStatus::Delivered).await;
    }
    let captured = h.storage.list_captured(&h.env.id, 1000).await.unwrap();
    assert_eq!(captured.len(), 300, "each message captured exactly once");
}

//! The real `mailgate` binary as separate processes: the embedded default end to end with a
//! restart, two workers sharing one queue, and a worker killed with SIGKILL mid-delivery.
//! The queue tests run on the backend named by MAILGATE_TEST_BACKEND (SQLite or PostgreSQL).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate_core::environment::{Environment, EnvironmentName};
use mailgate_core::message::{EnqueueOutcome, MessageStatus};
use mailgate_core::store::Storage;
use mailgate_core::{Clock, MessageId, SystemClock};
use mailgate_testkit::db::TestDatabase;
use serde_json::{json, Value};

use common::{mailgate, start_server, stop_gracefully, Proc};

#[tokio::test]
async fn embedded_default_delivers_through_capture_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key) = start_server(dir.path());
    let key = key.expect("first start prints a generated admin key");
    assert!(
        dir.path().join("mailgate-data/mailgate.db").exists(),
        "SQLite database created under ./mailgate-data"
    );

    let http = reqwest::Client::new();
    let sent = Instant::now();
    let resp = http
        .post(format!("{url}/v1/emails"))
        .bearer_auth(&key)
        .json(&json!({
            "environment": "default",
            "from": "Acme <noreply@acme.example>",
            "to": "ann@example.com",
            "subject": "Your sign-in code",
            "text": "123456"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["status"], "queued");

    let get = |http: reqwest::Client, url: String, key: String, id: String| async move {
        let r = http
            .get(format!("{url}/v1/emails/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let mut m = get(http.clone(), url.clone(), key.clone(), id.clone()).await;
    while m["status"] != "delivered" {
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "not delivered within a second: {m}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        m = get(http.clone(), url.clone(), key.clone(), id.clone()).await;
    }
    assert_eq!(m["provider"], "capture");
    stop_gracefully(server);

    let (_server, url, second_key) = start_server(dir.path());
    assert_eq!(
        second_key, None,
        "the admin key is printed only on the first start"
    );
    let m = get(http.clone(), url.clone(), key.clone(), id.clone()).await;
    assert_eq!(m["status"], "delivered");
    let types: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["queued", "sent", "delivered"]);
    let content: Value = http
        .get(format!("{url}/v1/emails/{id}/content"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(content["subject"], "Your sign-in code");
}

async fn enqueue_many(storage: &Arc<dyn Storage>, env: &Environment, n: usize) -> Vec<MessageId> {
    let now = SystemClock.now();
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let storage = Arc::clone(storage);
                let m = common::message(env.id, i, now);
                tokio::spawn(async move { storage.enqueue(m).await })
            })
            .collect();
        for t in tasks {
            match t.await.unwrap().unwrap() {
                EnqueueOutcome::Created(id) => ids.push(id),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    ids
}

/// A worker process. `lease_seconds` must outlive the longest stall of a claim-to-completion
/// round trip, or a second worker may take a message the first is still finishing.
fn start_worker(dir: &Path, url: &str, provider: &str, lease_seconds: u32) -> Proc {
    let lease = lease_seconds.to_string();
    // A provider call that outlives the send timeout counts as failed and is tried again even if
    // it went through, so a loaded machine needs room here for exactly-once to hold.
    let send_timeout = (lease_seconds / 2).min(10).to_string();
    let env = [
        ("MAILGATE_PROVIDER__DEFAULT", provider),
        ("MAILGATE_WORKER__POLL_INTERVAL_MS", "50"),
        ("MAILGATE_WORKER__LEASE_SECONDS", lease.as_str()),
        (
            "MAILGATE_WORKER__SEND_TIMEOUT_SECONDS",
            send_timeout.as_str(),
        ),
        ("MAILGATE_WORKER__CONCURRENCY", "32"),
        ("MAILGATE_RETENTION__CONTENT_DAYS", "0"),
    ];
    Proc(
        mailgate(dir, &["worker", "--database", url], &env)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits until every message has been captured at least once; returns captures per message.
async fn wait_captured(
    storage: &Arc<dyn Storage>,
    env: &Environment,
    ids: &[MessageId],
    within: Duration,
) -> HashMap<MessageId, usize> {
    let deadline = Instant::now() + within;
    loop {
        let captured = storage
            .list_captured(&env.id, (ids.len() * 2) as u32)
            .await
            .unwrap();
        let mut counts = HashMap::new();
        for c in &captured {
            *counts.entry(c.message_id).or_insert(0) += 1;
        }
        if ids.iter().all(|id| counts.contains_key(id)) {
            return counts;
        }
        if Instant::now() > deadline {
            let mut statuses: HashMap<String, usize> = HashMap::new();
            for id in ids.iter().filter(|id| !counts.contains_key(id)) {
                let m = storage
                    .get_message(Some(&env.id), id)
                    .await
                    .unwrap()
                    .unwrap();
                *statuses
                    .entry(format!(
                        "{} attempts={} error={:?}",
                        m.status, m.attempts, m.last_error
                    ))
                    .or_insert(0) += 1;
            }
            panic!(
                "only {} of {} messages delivered in time; the others: {statuses:?}",
                counts.len(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn assert_all_delivered(storage: &Arc<dyn Storage>, env: &Environment, ids: &[MessageId]) {
    for id in ids {
        let m = storage
            .get_message(Some(&env.id), id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            m.status,
            MessageStatus::Delivered,
            "{id} ended {} ({:?})",
            m.status,
            m.last_error
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_worker_processes_deliver_ten_thousand_messages_exactly_once() {
    let db = TestDatabase::from_env().await;
    let database = db.open().await;
    let storage = database.storage();
    let env = storage
        .ensure_environment(
            &EnvironmentName::parse("default").unwrap(),
            SystemClock.now(),
        )
        .await
        .unwrap();
    let ids = enqueue_many(&storage, &env, 10_000).await;

    let dir = tempfile::tempdir().unwrap();
    // Two processes writing one SQLite file wait on each other's locks for up to seconds, so the
    // lease is generous here; the kill test below uses a short one.
    let _a = start_worker(dir.path(), &db.url, "capture://", 60);
    let _b = start_worker(dir.path(), &db.url, "capture://", 60);
    let counts = wait_captured(&storage, &env, &ids, Duration::from_secs(240)).await;

    let duplicates: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "{} messages delivered more than once",
        duplicates.len()
    );
    assert_eq!(counts.len(), 10_000);
    assert_all_delivered(&storage, &env, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_delivery_loses_nothing() {
    let db = TestDatabase::from_env().await;
    let database = db.open().await;
    let storage = database.storage();
    let env = storage
        .ensure_environment(
            &EnvironmentName::parse("default").unwrap(),
            SystemClock.now(),
        )
        .await
        .unwrap();
    let ids = enqueue_many(&storage, &env, 300).await;
    let dir = tempfile::tempdir().unwrap();

    // A slow worker: each delivery takes 300 ms, 32 at a time.
    let mut slow = start_worker(dir.path(), &db.url, "capture://?delay_ms=300", 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_flight: HashSet<MessageId> = loop {
        let mut sending = HashSet::new();
        let mut delivered = 0;
        for id in &ids {
            match storage
                .get_message(Some(&env.id), id)
                .await
                .unwrap()
                .unwrap()
                .status
            {
                MessageStatus::Sending => {
                    sending.insert(*id);
                }
                MessageStatus::Delivered => delivered += 1,
                _ => {}
            }
        }
        if delivered > 0 && !sending.is_empty() {
            slow.0.kill().unwrap(); // SIGKILL: no chance to finish or release anything
            slow.0.wait().unwrap();
            // What was in flight at the kill: the statuses are frozen until the rescuer starts
            // (a scan before the kill races the worker's claims on a loaded machine).
            let mut at_kill = HashSet::new();
            for id in &ids {
                let m = storage
                    .get_message(Some(&env.id), id)
                    .await
                    .unwrap()
                    .unwrap();
                if m.status == MessageStatus::Sending {
                    at_kill.insert(*id);
                }
            }
            break at_kill;
        }
        assert!(Instant::now() < deadline, "the slow worker never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Its claimed messages stay leased until the lease (10 s) expires; then another worker
    // takes them.
    let _rescuer = start_worker(dir.path(), &db.url, "capture://", 10);
    let counts = wait_captured(&storage, &env, &ids, Duration::from_secs(60)).await;
    assert_all_delivered(&storage, &env, &ids).await;
    for (id, n) in &counts {
        assert!(
            *n == 1 || in_flight.contains(id),
            "{id} was delivered {n} times but was not in flight at the kill"
        );
    }
    let retaken = ids.iter().filter(|id| in_flight.contains(id)).count();
    assert!(retaken > 0);
}

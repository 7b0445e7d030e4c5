//! Reliability of the real `mailgate serve` process against the mock provider (SES v2 API):
//! a SIGKILL during a 10,000-message load loses no acknowledged message, and a provider outage
//! (every send answered 503 for two minutes, then recovery) loses nothing and shows its backoff in
//! the attempts.
//! Both run on SQLite (the embedded default); the multi-process PostgreSQL cases are in
//! `processes.rs`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate_core::Timestamp;
use mailgate_mock_provider::{Behavior, Faults, Latency, MockHandle};
use serde_json::{json, Value};

use common::{mailgate, Proc};

const KEY: &str = "mg_reliability_admin_key_000000000000000000";
/// Deliveries in flight per process: the most messages a kill can leave sent but unrecorded.
const CONCURRENCY: usize = 32;

/// Starts `mailgate serve` in `dir` delivering to `mock`; returns it and its base URL.
fn serve(dir: &Path, mock: &MockHandle, extra: &[(&str, &str)]) -> (Proc, String) {
    let dsn = format!(
        "ses+api://AKIDTEST:SECRETTEST@default?region=us-east-1&endpoint={}",
        mock.url()
    );
    let concurrency = CONCURRENCY.to_string();
    let mut env = vec![
        ("MAILGATE_ADMIN_KEY", KEY),
        ("MAILGATE_PROVIDER__DEFAULT", dsn.as_str()),
        ("MAILGATE_WORKER__CONCURRENCY", concurrency.as_str()),
        ("MAILGATE_WORKER__POLL_INTERVAL_MS", "50"),
        ("MAILGATE_WORKER__LEASE_SECONDS", "3"),
        ("MAILGATE_WORKER__SEND_TIMEOUT_SECONDS", "2"),
    ];
    env.extend_from_slice(extra);
    let mut child = mailgate(dir, &["serve", "--listen", "127.0.0.1:0"], &env)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("mailgate listening on ").map(str::to_owned))
        .expect("server printed its address");
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), url)
}

fn body(i: usize) -> Value {
    json!({
        "environment": "default",
        "from": "Acme <noreply@acme.example>",
        "to": format!("user{i}@example.com"),
        "subject": format!("reliability {i}"),
        "text": "hello"
    })
}

/// Waits until the mock has accepted every id in `ids`; panics with the missing count after
/// `within`.
async fn wait_accepted(
    mock: &MockHandle,
    ids: &[String],
    within: Duration,
) -> HashMap<String, u32> {
    let deadline = Instant::now() + within;
    loop {
        let seen = mock.accepted_by_id();
        let missing = ids
            .iter()
            .filter(|id| seen.get(*id).copied().unwrap_or(0) == 0)
            .count();
        if missing == 0 {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged messages never reached the provider; mock: {:?}",
            ids.len(),
            mock.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_load_loses_no_acknowledged_message() {
    let mock = mailgate_mock_provider::spawn(
        "127.0.0.1:0".parse().unwrap(),
        Behavior {
            latency: Latency::Fixed { ms: 2.0 },
            ..Behavior::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = serve(dir.path(), &mock, &[]);
    let server = Arc::new(Mutex::new(Some(server)));

    // 10,000 sends from 32 concurrent clients; the server is killed once 3,000 are acknowledged.
    const TOTAL: usize = 10_000;
    const KILL_AFTER: usize = 3_000;
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (http, url, next, acked, killed, server) = (
                http.clone(),
                url.clone(),
                Arc::clone(&next),
                Arc::clone(&acked),
                Arc::clone(&killed),
                Arc::clone(&server),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= TOTAL {
                        return;
                    }
                    let resp = http
                        .post(format!("{url}/v1/emails"))
                        .bearer_auth(KEY)
                        .json(&body(i))
                        .send()
                        .await;
                    let Ok(resp) = resp else { return };
                    if resp.status() != 202 {
                        return;
                    }
                    let Ok(v) = resp.json::<Value>().await else {
                        return;
                    };
                    let n = {
                        let mut a = acked.lock().unwrap();
                        a.push(v["id"].as_str().unwrap().to_owned());
                        a.len()
                    };
                    if n >= KILL_AFTER && !killed.swap(true, Ordering::SeqCst) {
                        // SIGKILL: nothing is flushed, no lease released.
                        let mut p = server.lock().unwrap().take().unwrap();
                        p.0.kill().unwrap();
                        p.0.wait().unwrap();
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        killed.load(Ordering::SeqCst),
        "the load ended before the kill"
    );
    let acked = acked.lock().unwrap().clone();
    let at_kill = mock.stats();
    assert!(acked.len() >= KILL_AFTER && acked.len() < TOTAL);

    // Restart on the same data directory: leases of the dead process expire after 3 s.
    let (_server, _url) = serve(dir.path(), &mock, &[]);
    let seen = wait_accepted(&mock, &acked, Duration::from_secs(60)).await;
    let duplicates: u32 = acked.iter().map(|id| seen[id].saturating_sub(1)).sum();
    assert!(
        duplicates as usize <= CONCURRENCY,
        "{duplicates} duplicate deliveries, more than the {CONCURRENCY} that can be in flight; \
         mock at the kill: {at_kill:?}, now: {:?}",
        mock.stats()
    );
}

/// How long the provider refuses everything (issue 8: two minutes).
const OUTAGE: Duration = Duration::from_secs(120);
/// The retry schedule of the outage test: 2 s doubling (jittered to half..full), capped at 30 s,
/// 20 attempts — enough to outlast the outage whatever the jitter draws (at least 1 + 2 + 4 + 8 +
/// 15 × 15 s before the last attempt).
const OUTAGE_BASE: Duration = Duration::from_secs(2);
const OUTAGE_CAP: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_outage_then_recovery_loses_nothing_and_backs_off() {
    let outage = Behavior {
        faults: Faults {
            unavailable: 1.0,
            ..Faults::default()
        },
        ..Behavior::default()
    };
    let mock = mailgate_mock_provider::spawn("127.0.0.1:0".parse().unwrap(), outage)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base_ms = OUTAGE_BASE.as_millis().to_string();
    let cap_s = OUTAGE_CAP.as_secs().to_string();
    let (_server, url) = serve(
        dir.path(),
        &mock,
        &[
            ("MAILGATE_RETRY__BASE_DELAY_MS", base_ms.as_str()),
            ("MAILGATE_RETRY__MAX_DELAY_SECONDS", cap_s.as_str()),
            ("MAILGATE_RETRY__MAX_ATTEMPTS", "20"),
        ],
    );
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..200 {
        let resp = http
            .post(format!("{url}/v1/emails"))
            .bearer_auth(KEY)
            .json(&body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        ids.push(
            resp.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    // The outage: every attempt is refused, nothing is accepted.
    tokio::time::sleep(OUTAGE).await;
    let during = mock.stats();
    assert_eq!(during.unique_ids_2xx, 0);
    assert!(
        during.by_outcome.get("503").copied().unwrap_or(0) >= 200 * 5,
        "every message retried during the outage: {during:?}"
    );
    mock.set_behavior(Behavior::default());

    // Recovery: each message goes at its next retry, at most one capped delay away.
    let seen = wait_accepted(&mock, &ids, OUTAGE_CAP + Duration::from_secs(30)).await;
    assert!(
        ids.iter().all(|id| seen[id] == 1),
        "a message was delivered twice"
    );
    let tolerance = Duration::from_millis(1_500); // claim polling and the send timeout
    for id in ids.iter().step_by(20) {
        let m: Value = http
            .get(format!("{url}/v1/emails/{id}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m["status"], "sent", "{m}");
        let attempts = m["attempts"].as_u64().unwrap();
        // 120 s of refusals under a 30 s cap: at least 1 + 2 + 4 + 8 + 16 + 30 + 30 s between
        // the first attempt and recovery at the longest draws, so 7 attempts or more.
        assert!(attempts >= 7, "backoff shows in the attempts: {m}");
        let deferred: Vec<Timestamp> = m["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "deferred")
            .map(|e| Timestamp::parse(e["created_at"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(
            deferred.len() as u64,
            attempts - 1,
            "one deferred event per failed attempt: {m}"
        );
        // The gap after failed attempt k is the jittered backoff: between half and all of
        // min(base * 2^(k-1), cap), plus the claim's polling.
        let gaps: Vec<Duration> = deferred
            .windows(2)
            .map(|w| Duration::from_millis(u64::try_from(w[1].millis() - w[0].millis()).unwrap()))
            .collect();
        for (k, gap) in gaps.iter().enumerate() {
            let full = OUTAGE_BASE.saturating_mul(1 << k).min(OUTAGE_CAP);
            assert!(
                *gap + tolerance >= full / 2 && *gap <= full + tolerance,
                "gap {} of {gaps:?} is outside {:?}..{full:?}",
                k + 1,
                full / 2
            );
        }
    }
}

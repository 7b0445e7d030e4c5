//! A provider's maximum send rate is one bucket shared by every process on the database: two
//! `mailgate worker` processes with a 20/s limit together send at 20/s, not 40/s. Runs on the
//! backend named by MAILGATE_TEST_BACKEND (PostgreSQL in the scale-out case).

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate_core::environment::EnvironmentName;
use mailgate_core::message::EnqueueOutcome;
use mailgate_core::store::Storage;
use mailgate_core::{Clock, SystemClock};
use mailgate_mock_provider::{spawn, Behavior};
use mailgate_testkit::db::TestDatabase;

use common::{mailgate, Proc};

const LIMIT: f64 = 20.0;
const MESSAGES: usize = 160;

fn worker(dir: &std::path::Path, url: &str, provider: &str) -> Proc {
    let env = [
        ("MAILGATE_PROVIDER__DEFAULT", provider),
        ("MAILGATE_WORKER__POLL_INTERVAL_MS", "20"),
        ("MAILGATE_WORKER__LEASE_SECONDS", "60"),
        ("MAILGATE_WORKER__SEND_TIMEOUT_SECONDS", "5"),
        ("MAILGATE_WORKER__CONCURRENCY", "16"),
    ];
    Proc(
        mailgate(dir, &["worker", "--database", url], &env)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_worker_processes_share_one_provider_rate_limit() {
    let db = TestDatabase::from_env().await;
    let database = db.open().await;
    let storage: Arc<dyn Storage> = database.storage();
    let env = storage
        .ensure_environment(
            &EnvironmentName::parse("default").unwrap(),
            SystemClock.now(),
        )
        .await
        .unwrap();
    let now = SystemClock.now();
    for i in 0..MESSAGES {
        let m = common::message(env.id, i, now);
        assert!(matches!(
            storage.enqueue(m).await.unwrap(),
            EnqueueOutcome::Created(_)
        ));
    }

    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mock = spawn(addr, Behavior::default()).await.unwrap();
    let provider = format!(
        "postmark+api://pm-token@default?message_stream=outbound&endpoint={}&max_per_second={LIMIT}",
        mock.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let _a = worker(dir.path(), &db.url, &provider);
    let _b = worker(dir.path(), &db.url, &provider);

    // Watch the provider's count; the rate is measured from its first to its last acceptance.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first: Option<Instant> = None;
    let last = loop {
        let n = mock.stats().unique_ids_2xx;
        if n >= 1 && first.is_none() {
            first = Some(Instant::now());
        }
        if n as usize >= MESSAGES {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of {MESSAGES} delivered in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = last.duration_since(first.unwrap()).as_secs_f64();
    // The first token is free (burst 1); each further one waits an interval.
    let rate = (MESSAGES - 1) as f64 / elapsed;
    eprintln!("two workers, limit {LIMIT}/s: {rate:.2}/s over {elapsed:.2} s");
    // The bucket's property is the ceiling: two unshared buckets would reach 40/s. Below the
    // limit, the rate a loaded machine reaches depends on the polling and the database's
    // latency, so the floor is only loose (a limiter that over-throttles badly still fails).
    assert!(
        rate <= LIMIT * 1.1,
        "measured {rate:.2}/s over {elapsed:.2} s: above the shared limit of {LIMIT}/s"
    );
    assert!(
        rate >= LIMIT * 0.6,
        "measured {rate:.2}/s over {elapsed:.2} s: far below the limit of {LIMIT}/s"
    );
    let stats = mock.stats();
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    assert_eq!(
        stats.requests, MESSAGES as u64,
        "no request beyond the limit: {stats:?}"
    );
}

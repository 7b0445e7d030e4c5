//! The queue-claim benchmark: fills a fresh database with N queued messages through the store's
//! own enqueue (group commit), then times K claims of B messages each — the query every worker
//! runs in a loop — and prints one JSON object. Run at 10k and at 1M queued, the ratio of the
//! p99s says whether a claim's cost depends on the queue's length (it should not: the claim
//! walks the `messages_due` index from its start).
//!
//! ```sh
//! claim-bench --database sqlite:///tmp/q.db --queued 1000000 --claims 300 --batch 16
//! ```
//! The database is left in place (a data dir for `mailgate serve` cold-start measurements).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mailgate_core::address::Mailbox;
use mailgate_core::environment::EnvironmentName;
use mailgate_core::message::{Content, EnqueueOutcome, NewMessage};
use mailgate_core::store::Storage;
use mailgate_core::{MessageId, Timestamp};
use mailgate_store::{Database, StoreOptions};

#[derive(Parser)]
struct Args {
    /// `sqlite://PATH` (parent directory must exist) or `postgres://…` (an empty database).
    #[arg(long)]
    database: String,
    /// Messages to queue before claiming.
    #[arg(long, default_value_t = 10_000)]
    queued: usize,
    /// Claims to time.
    #[arg(long, default_value_t = 300)]
    claims: usize,
    /// Messages per claim.
    #[arg(long, default_value_t = 16)]
    batch: u32,
    /// Enqueues in flight while filling.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
}

fn content(i: usize) -> Content {
    Content {
        from: Mailbox::parse("Bench <bench@example.com>", "from").expect("valid"),
        to: vec![Mailbox::parse(&format!("user{i}@example.com"), "to").expect("valid")],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: format!("Your sign-in code {i}"),
        // About 1 KB, like the HTTP benchmarks' messages.
        text: Some("x".repeat(1000)),
        html: None,
        headers: vec![],
        attachments: vec![],
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = Database::connect(&args.database, &StoreOptions::default()).await?;
    db.migrate().await?;
    let storage: Arc<dyn Storage> = db.storage();
    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
    );
    let env = storage
        .ensure_environment(&EnvironmentName::parse("default")?, now)
        .await?;

    // Fill: every message due in the past, oldest first, as a backlog would be.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (storage, next, n) = (Arc::clone(&storage), Arc::clone(&next), args.queued);
        let env_id = env.id;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let created = Timestamp(now.0 - (n - i) as i64);
                let m = NewMessage {
                    id: MessageId::new(),
                    environment_id: env_id,
                    content: content(i),
                    tags: vec![],
                    metadata: BTreeMap::new(),
                    provider_options: None,
                    idempotency: None,
                    max_attempts: 5,
                    created_at: created,
                    delivery: Default::default(),
                    secrets: Vec::new(),
                    template: None,
                };
                match storage.enqueue(m).await? {
                    EnqueueOutcome::Created(_) => {}
                    other => anyhow::bail!("unexpected enqueue outcome {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let fill = started.elapsed().as_secs_f64();

    // Claims, one after another, as one worker would.
    let mut ms = Vec::with_capacity(args.claims);
    let mut claimed = 0usize;
    for _ in 0..args.claims {
        let t = Instant::now();
        let got = storage
            .claim(args.batch, now, Duration::from_secs(600))
            .await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        claimed += got.len();
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "queued": args.queued,
            "fill_seconds": fill,
            "fill_per_s": args.queued as f64 / fill,
            "claims": args.claims,
            "batch": args.batch,
            "claimed": claimed,
            "claim_ms": {
                "p50": percentile(&ms, 0.50),
                "p99": percentile(&ms, 0.99),
                "max": ms.last().copied().unwrap_or(0.0),
            },
        })
    );
    db.close().await;
    Ok(())
}

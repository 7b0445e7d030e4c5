//! A small HTTP/1.1 load generator: `--connections` keep-alive connections, closed loop (as fast
//! as answers come) or open loop at `--rate` requests/s, where latency is measured from each
//! request's intended start (no coordinated omission). Bodies are 1 KB send requests with a
//! unique subject (`--body send`), none (`--body none`, a GET), or provider webhooks about the
//! messages listed in `--ids-in`: one Postmark `Delivery` record per request with `--basic`
//! credentials (`--body postmark`), or signed SendGrid batches of `--batch` events
//! (`--body sendgrid`; `--print-sendgrid-key` prints the key to configure). Prints one JSON
//! report; with `--ids-out FILE` writes the `id` of every 2xx answer, one a line.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use mailgate_core::{Clock as _, SystemClock};

#[derive(Debug, Parser, Clone)]
struct Args {
    /// Full URL, e.g. http://127.0.0.1:8080/v1/emails
    #[arg(
        long,
        required_unless_present = "print_sendgrid_key",
        default_value = ""
    )]
    url: String,
    /// Prints the SendGrid webhook verification key (base64 DER) the `sendgrid` bodies are
    /// signed for, and exits.
    #[arg(long)]
    print_sendgrid_key: bool,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Open loop at this many requests per second (0: closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many requests (0: no limit).
    #[arg(long, default_value_t = 0)]
    requests: u64,
    /// Bearer token.
    #[arg(long)]
    auth: Option<String>,
    /// send (POST a 1 KB send request), none (GET), postmark or sendgrid (webhooks).
    #[arg(long, default_value = "send")]
    body: String,
    /// Events per SendGrid webhook request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Message ids the webhook events are about, one a line (an `--ids-out` file).
    #[arg(long)]
    ids_in: Option<std::path::PathBuf>,
    /// HTTP Basic credentials `user:password` (Postmark webhooks).
    #[arg(long)]
    basic: Option<String>,
    /// Distinguishes this run's subjects from other runs'.
    #[arg(long, default_value = "run")]
    run_id: String,
    #[arg(long)]
    ids_out: Option<std::path::PathBuf>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    non2xx: u64,
    errors: u64,
    ids: Vec<String>,
}

struct Shared {
    args: Args,
    message_ids: Vec<String>,
    signer: mailgate_bench::webhooks::SendgridSigner,
    host: String,
    path: String,
    addr: String,
    seq: AtomicU64,
    stop: AtomicBool,
    start: Instant,
    measure_from: Instant,
    measure_until: Instant,
}

fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_owned(), path.to_owned()))
}

fn extract_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["id"].as_str().map(str::to_owned)
}

async fn connect(addr: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker(s: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    let mut sender = None;
    let keep_ids = s.args.ids_out.is_some();
    loop {
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        let seq = s.seq.fetch_add(1, Ordering::Relaxed);
        if s.args.requests > 0 && seq >= s.args.requests {
            break;
        }
        let intended = if s.args.rate > 0.0 {
            let at = s.start + Duration::from_secs_f64(seq as f64 / s.args.rate);
            tokio::time::sleep_until(at.into()).await;
            at
        } else {
            Instant::now()
        };
        if s.args.requests == 0 && intended >= s.measure_until {
            break;
        }
        if sender.is_none() {
            match connect(&s.addr).await {
                Ok(c) => sender = Some(c),
                Err(_) => {
                    t.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let sd = sender.as_mut().expect("connected above");
        let mut req = hyper::Request::builder()
            .uri(&s.path)
            .header("host", &s.host);
        if let Some(a) = &s.args.auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        let req = match build_request(&s, req, seq) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("loadgen: {e}");
                s.stop.store(true, Ordering::Relaxed);
                break;
            }
        };
        let outcome = async {
            sd.ready().await?;
            let resp = sd.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        let done = Instant::now();
        let counted = intended >= s.measure_from || s.args.requests > 0;
        match outcome {
            Ok((status, body)) if status.is_success() => {
                if keep_ids {
                    if let Some(id) = extract_id(&body) {
                        t.ids.push(id);
                    }
                }
                if counted {
                    t.ok += 1;
                    let us = done.duration_since(intended).as_micros();
                    t.latencies_us.push(us.min(u32::MAX as u128) as u32);
                }
            }
            Ok(_) => {
                if counted {
                    t.non2xx += 1;
                }
            }
            Err(_) => {
                if counted {
                    t.errors += 1;
                }
                sender = None;
            }
        }
    }
    t
}

/// The request `seq` of this run, as `--body` says.
fn build_request(
    s: &Shared,
    req: hyper::http::request::Builder,
    seq: u64,
) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
    use mailgate_bench::webhooks;
    let id = |i: u64| {
        let ids = &s.message_ids;
        ids[(i % ids.len().max(1) as u64) as usize].clone()
    };
    let json = |r: hyper::http::request::Builder| {
        r.method("POST").header("content-type", "application/json")
    };
    let run = &s.args.run_id;
    Ok(match s.args.body.as_str() {
        "none" => req.method("GET").body(Full::new(Bytes::new()))?,
        "send" => json(req).body(Full::new(Bytes::from(mailgate_bench::send_body(run, seq))))?,
        "postmark" => {
            let basic = s.args.basic.as_deref().unwrap_or_default();
            json(req)
                .header("authorization", format!("Basic {}", BASE64.encode(basic)))
                .body(Full::new(Bytes::from(webhooks::postmark_delivery(
                    run,
                    seq,
                    SystemClock.now(),
                    &id(seq),
                ))))?
        }
        "sendgrid" => {
            let n = s.args.batch.max(1);
            let first = seq * n as u64;
            let body =
                webhooks::sendgrid_batch(run, seq, n, SystemClock.now(), |i| id(first + i as u64));
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
                .to_string();
            json(req)
                .header("x-twilio-email-event-webhook-timestamp", &ts)
                .header(
                    "x-twilio-email-event-webhook-signature",
                    s.signer.sign(&ts, body.as_bytes()),
                )
                .body(Full::new(Bytes::from(body)))?
        }
        other => anyhow::bail!("unknown --body {other}"),
    })
}

/// Events per request of this `--body`.
fn events_per_request(args: &Args) -> u64 {
    match args.body.as_str() {
        "sendgrid" => args.batch.max(1) as u64,
        _ => 1,
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signer = mailgate_bench::webhooks::SendgridSigner::default();
    if args.print_sendgrid_key {
        println!("{}", signer.public_key_b64());
        return Ok(());
    }
    let message_ids: Vec<String> = match &args.ids_in {
        Some(p) => std::fs::read_to_string(p)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
            .collect(),
        None => Vec::new(),
    };
    if matches!(args.body.as_str(), "postmark" | "sendgrid") && message_ids.is_empty() {
        anyhow::bail!(
            "--body {} needs --ids-in with at least one message id",
            args.body
        );
    }
    let (host, path) = parse_url(&args.url)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(args.warmup);
        let shared = Arc::new(Shared {
            host: host.clone(),
            path,
            addr: host,
            seq: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            start,
            measure_from,
            measure_until: measure_from + Duration::from_secs_f64(args.duration),
            args: args.clone(),
            message_ids,
            signer,
        });
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| tokio::spawn(worker(Arc::clone(&shared))))
            .collect();
        if args.requests == 0 {
            let s = Arc::clone(&shared);
            tokio::spawn(async move {
                tokio::time::sleep_until(s.measure_until.into()).await;
                s.stop.store(true, Ordering::Relaxed);
            });
        }
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await?;
            all.latencies_us.extend(t.latencies_us);
            all.ok += t.ok;
            all.non2xx += t.non2xx;
            all.errors += t.errors;
            all.ids.extend(t.ids);
        }
        let end = Instant::now();
        let elapsed = if args.requests > 0 {
            end.duration_since(start).as_secs_f64()
        } else {
            end.min(shared.measure_until)
                .duration_since(measure_from)
                .as_secs_f64()
        };
        all.latencies_us.sort_unstable();
        let l = &all.latencies_us;
        let report = serde_json::json!({
            "url": args.url,
            "connections": args.connections,
            "offered_rate": args.rate,
            "elapsed_s": elapsed,
            "ok": all.ok,
            "non2xx": all.non2xx,
            "errors": all.errors,
            "rps": all.ok as f64 / elapsed.max(1e-9),
            "events_per_s": (all.ok * events_per_request(&args)) as f64 / elapsed.max(1e-9),
            "latency_ms": {
                "p50": pct(l, 0.50), "p90": pct(l, 0.90), "p99": pct(l, 0.99),
                "p999": pct(l, 0.999), "max": pct(l, 1.0)
            }
        });
        println!("{report}");
        if let Some(path) = &args.ids_out {
            let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
            for id in &all.ids {
                writeln!(f, "{id}")?;
            }
        }
        anyhow::Ok(())
    })
}

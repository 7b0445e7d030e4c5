//! A small HTTP/1.1 load generator: `--connections` keep-alive connections, closed loop (as fast
//! as answers come) or open loop at `--rate` requests/s, where latency is measured from each
//! request's intended start (no coordinated omission). Bodies are 1 KB send requests with a
//! unique subject (`--body send`) or none (`--body none`, a GET). Prints one JSON report; with
//! `--ids-out FILE` writes the `id` of every 2xx answer, one a line.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

#[derive(Debug, Parser, Clone)]
struct Args {
    /// Full URL, e.g. http://127.0.0.1:8080/v1/emails
    #[arg(long)]
    url: String,
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
    /// send (POST a 1 KB send request) or none (GET).
    #[arg(long, default_value = "send")]
    body: String,
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
        let req = if s.args.body == "none" {
            req.method("GET").body(Full::new(Bytes::new()))
        } else {
            req.method("POST")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(mailgate_bench::send_body(
                    &s.args.run_id,
                    seq,
                ))))
        }
        .expect("valid request");
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

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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

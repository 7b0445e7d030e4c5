//! `mailgate-mock-provider`: the mock provider as a process (see the crate docs).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use mailgate_mock_provider::{Behavior, Faults, Latency};

/// A mock email provider: SES v2, Mailgun, Postmark, Resend and SendGrid send endpoints and an
/// SMTP sink, with latency, faults and a rate limit; `GET /stats` counts ids and duplicates.
#[derive(Debug, Parser)]
struct Args {
    /// HTTP address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Also run an SMTP sink on this address.
    #[arg(long)]
    smtp_listen: Option<SocketAddr>,
    /// fixed:0ms | uniform:50..150ms | lognormal:p50=200ms,p99=1s
    #[arg(long, default_value = "fixed:0ms")]
    latency: Latency,
    /// Fault fractions, e.g. 503:0.05,429:0.01,reset:0.001 (also 500 and 400).
    #[arg(long, default_value = "")]
    errors: Faults,
    /// Requests per second allowed (token bucket); 429 above it.
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let behavior = Behavior {
            latency: args.latency,
            faults: args.errors,
            rate_limit: args.rate_limit,
        };
        let handle = mailgate_mock_provider::spawn(args.listen, behavior).await?;
        println!("mock provider listening on {}", handle.url());
        let handle = Arc::new(handle);
        if let Some(addr) = args.smtp_listen {
            let sink = mailgate_mock_provider::smtp::spawn(addr, handle.shared()).await?;
            println!("smtp sink listening on {sink}");
        }
        tokio::signal::ctrl_c().await?;
        anyhow::Ok(())
    })
}

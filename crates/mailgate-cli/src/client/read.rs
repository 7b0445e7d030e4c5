//! `mailgate emails` and `mailgate events`.

use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::{encode, print_json, text, ApiClient, Conn};

/// Arguments of `mailgate emails`.
#[derive(Args, Debug)]
pub struct EmailsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: EmailsCommand,
}

#[derive(Subcommand, Debug)]
enum EmailsCommand {
    /// A message's status, attempts and event timeline.
    Get {
        /// The message id (`msg_…`).
        id: String,
    },
    /// A message's stored content.
    Content {
        /// The message id (`msg_…`).
        id: String,
    },
}

/// Runs `mailgate emails`.
pub async fn emails(args: EmailsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    match args.command {
        EmailsCommand::Get { id } => {
            let reply = client
                .call(
                    Method::GET,
                    &format!("/v1/emails/{}", encode(&id)),
                    None,
                    &[],
                )
                .await?;
            if args.conn.json {
                print_json(&reply.body);
                return Ok(());
            }
            let m = &reply.body;
            println!("{}  {}", text(&m["id"]), text(&m["status"]));
            println!("  environment  {}", text(&m["environment"]));
            println!(
                "  attempts     {} of {}",
                text(&m["attempts"]),
                text(&m["max_attempts"])
            );
            println!(
                "  provider     {}  ({})",
                text(&m["provider"]),
                text(&m["provider_message_id"])
            );
            if !m["last_error"].is_null() {
                println!("  last error   {}", text(&m["last_error"]));
            }
            println!("  created      {}", text(&m["created_at"]));
            for e in m["events"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {:<10} {}",
                    text(&e["created_at"]),
                    text(&e["type"]),
                    summary(&e["data"])
                );
            }
        }
        EmailsCommand::Content { id } => {
            let reply = client
                .call(
                    Method::GET,
                    &format!("/v1/emails/{}/content", encode(&id)),
                    None,
                    &[],
                )
                .await?;
            print_json(&reply.body);
        }
    }
    Ok(())
}

fn summary(data: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["attempt", "provider", "code", "reason", "next_attempt_at"] {
        if let Some(v) = data.get(key).filter(|v| !v.is_null()) {
            parts.push(format!("{key}={}", text(v)));
        }
    }
    parts.join(" ")
}

/// Arguments of `mailgate events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Only this environment's events.
    #[arg(long)]
    environment: Option<String>,
    /// Only these types (comma-separated, e.g. `failed,bounced`).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Only this message's events.
    #[arg(long)]
    message: Option<String>,
    /// Only events at or after this instant (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// At most this many per page.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Keep polling for new events.
    #[arg(long)]
    follow: bool,
}

/// Runs `mailgate events`.
pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let mut query = vec![format!("limit={}", args.limit)];
    for (k, v) in [
        ("environment", &args.environment),
        ("type", &args.event_type),
        ("message_id", &args.message),
        ("since", &args.since),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={}", encode(v)));
        }
    }
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.clone();
        if let Some(c) = &cursor {
            q.push(format!("cursor={}", encode(c)));
        }
        let reply = client
            .call(
                Method::GET,
                &format!("/v1/events?{}", q.join("&")),
                None,
                &[],
            )
            .await?;
        let page = reply.body["data"].as_array().cloned().unwrap_or_default();
        for e in &page {
            if args.conn.json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            } else {
                println!(
                    "{}  {:<12} {}  {}",
                    text(&e["created_at"]),
                    text(&e["type"]),
                    text(&e["message_id"]),
                    summary(&e["data"])
                );
            }
        }
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None if args.follow => tokio::time::sleep(Duration::from_secs(1)).await,
            None => return Ok(()),
        }
        if page.is_empty() && args.follow {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

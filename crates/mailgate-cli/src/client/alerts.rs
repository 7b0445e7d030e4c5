//! `mailgate notifications` (targets and delivery state) and `mailgate reputation`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::{encode, print_json, text, ApiClient, Conn};

/// Arguments of `mailgate notifications`.
#[derive(Args, Debug)]
pub struct NotificationsArgs {
    #[command(flatten)]
    conn: Conn,
    /// The environment.
    #[arg(long, global = true, default_value = "default")]
    environment: String,
    #[command(subcommand)]
    command: NotificationsCommand,
}

#[derive(Subcommand, Debug)]
enum NotificationsCommand {
    /// Show the targets and the delivery state of the notifier and the event stream.
    Show,
    /// Replace the targets; targets not given are removed. New secrets are printed once.
    Set {
        /// A URL receiving failure notifications, signed with Standard Webhooks.
        #[arg(long)]
        webhook: Option<String>,
        /// A Slack incoming-webhook URL.
        #[arg(long)]
        slack: Option<String>,
        /// A URL receiving every event, signed with Standard Webhooks.
        #[arg(long)]
        event_stream: Option<String>,
        /// An address receiving failure notifications by email (through this environment).
        #[arg(long)]
        email: Option<String>,
        /// The sender of notification emails (default: the environment's default sender).
        #[arg(long, requires = "email")]
        email_from: Option<String>,
        /// Generate new secrets for the webhook and the event stream.
        #[arg(long)]
        rotate_secrets: bool,
    },
}

/// Runs `mailgate notifications`.
pub async fn notifications(args: NotificationsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let path = format!(
        "/v1/environments/{}/notifications",
        encode(&args.environment)
    );
    let reply = match args.command {
        NotificationsCommand::Show => client.call(Method::GET, &path, None, &[]).await?,
        NotificationsCommand::Set {
            webhook,
            slack,
            event_stream,
            email,
            email_from,
            rotate_secrets,
        } => {
            let target = |url: Option<String>| {
                url.map_or(
                    Value::Null,
                    |u| json!({"url": u, "rotate_secret": rotate_secrets}),
                )
            };
            let body = json!({
                "webhook": target(webhook),
                "slack": slack.map_or(Value::Null, |u| json!({"url": u})),
                "event_stream": target(event_stream),
                "email": email.map_or(Value::Null, |to| json!({"to": to, "from": email_from})),
            });
            client.call(Method::PUT, &path, Some(&body), &[]).await?
        }
    };
    if args.conn.json {
        print_json(&reply.body);
        return Ok(());
    }
    let b = &reply.body;
    println!("environment   {}", text(&b["environment"]));
    println!("webhook       {}", text(&b["webhook"]["url"]));
    println!(
        "slack         {}",
        if b["slack"].is_null() {
            "-"
        } else {
            "configured"
        }
    );
    println!("event stream  {}", text(&b["event_stream"]["url"]));
    println!("email         {}", text(&b["email"]["to"]));
    for (name, key) in [("notifier", "notifications"), ("stream", "event_stream")] {
        let d = &b["delivery"][key];
        if !d.is_null() {
            println!(
                "{name:<13} last seq {}, last delivered {}, failures {}, last error {}",
                text(&d["last_seq"]),
                text(&d["last_delivered_at"]),
                text(&d["failures"]),
                text(&d["last_error"])
            );
        }
    }
    for key in ["webhook", "event_stream"] {
        if let Some(secret) = b[key]["secret"].as_str() {
            println!("{key} secret (shown once): {secret}");
        }
    }
    Ok(())
}

/// Arguments of `mailgate reputation`.
#[derive(Args, Debug)]
pub struct ReputationArgs {
    #[command(flatten)]
    conn: Conn,
    /// The environment.
    env: String,
    /// Pause sending while the reputation is critical (`true`/`false`).
    #[arg(long)]
    pause_on_critical: Option<bool>,
}

/// Runs `mailgate reputation ENV`.
pub async fn reputation(args: ReputationArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let path = format!("/v1/environments/{}/reputation", encode(&args.env));
    let reply = match args.pause_on_critical {
        Some(p) => {
            let body = json!({"pause_on_critical": p});
            client.call(Method::PATCH, &path, Some(&body), &[]).await?
        }
        None => client.call(Method::GET, &path, None, &[]).await?,
    };
    if args.conn.json {
        print_json(&reply.body);
        return Ok(());
    }
    let b = &reply.body;
    let line = |name: &str, r: &Value| {
        println!(
            "{name:<12} {:<8} sent {:>7}  bounces {:>6.2}%  complaints {:>6.3}%{}",
            text(&r["level"]),
            text(&r["sent"]),
            r["bounce_rate"].as_f64().unwrap_or(0.0) * 100.0,
            r["complaint_rate"].as_f64().unwrap_or(0.0) * 100.0,
            if r["judged"] == json!(false) {
                "  (below minimum volume)"
            } else {
                ""
            }
        );
    };
    println!(
        "{}: {}{} (window {} s)",
        text(&b["environment"]),
        text(&b["level"]),
        if b["paused"] == json!(true) {
            ", sending paused"
        } else {
            ""
        },
        text(&b["window"]["seconds"])
    );
    line("overall", &b["overall"]);
    if let Some(providers) = b["providers"].as_object() {
        for (name, r) in providers {
            line(name, r);
        }
    }
    Ok(())
}

//! `mailgate providers`: an environment's provider — show, set, remove, verify, test.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::{encode, print_json, text, ApiClient, Conn};

/// Arguments of `mailgate providers`.
#[derive(Args, Debug)]
pub struct ProvidersArgs {
    #[command(flatten)]
    conn: Conn,
    /// The environment whose provider to manage.
    #[arg(long, global = true, default_value = "default")]
    environment: String,
    #[command(subcommand)]
    command: ProvidersCommand,
}

#[derive(Subcommand, Debug)]
enum ProvidersCommand {
    /// Show the provider in use (secrets masked).
    Show {
        /// The environment (instead of --environment).
        env: Option<String>,
    },
    /// Set the provider from a DSN (e.g. smtp://user:pass@host:587) or a JSON file.
    Set {
        /// The provider DSN.
        #[arg(conflicts_with = "json_file", required_unless_present = "json_file")]
        dsn: Option<String>,
        /// A JSON file with `{"type": …}` (`-` reads standard input).
        #[arg(long = "from-json", value_name = "FILE")]
        json_file: Option<PathBuf>,
    },
    /// Go back to the server's default provider.
    Remove {
        /// The environment (instead of --environment).
        env: Option<String>,
    },
    /// Check the configuration against the provider.
    Verify {
        /// The environment (instead of --environment).
        env: Option<String>,
    },
    /// Send a test message through the provider.
    Test {
        /// Recipient.
        #[arg(long)]
        to: String,
        /// Sender (the environment's default sender when left out).
        #[arg(long)]
        from: Option<String>,
    },
}

fn show_view(body: &Value) {
    println!(
        "{} provider ({})",
        text(&body["provider"]["type"]),
        text(&body["source"])
    );
    if let Some(obj) = body["provider"].as_object() {
        for (k, v) in obj.iter().filter(|(k, v)| *k != "type" && !v.is_null()) {
            println!("  {k:<20} {}", text(v));
        }
    }
}

/// Runs `mailgate providers`.
pub async fn providers(args: ProvidersArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let environment = match &args.command {
        ProvidersCommand::Show { env: Some(e) }
        | ProvidersCommand::Remove { env: Some(e) }
        | ProvidersCommand::Verify { env: Some(e) } => e.clone(),
        _ => args.environment.clone(),
    };
    let base = format!("/v1/environments/{}/provider", encode(&environment));
    let reply = match &args.command {
        ProvidersCommand::Show { .. } => client.call(Method::GET, &base, None, &[]).await?,
        ProvidersCommand::Set { dsn, json_file } => {
            let body = match (dsn, json_file) {
                (Some(dsn), _) => json!({ "dsn": dsn }),
                (None, Some(path)) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(path)
                            .with_context(|| format!("reading {}", path.display()))?
                    };
                    serde_json::from_str(&text).context("the provider JSON")?
                }
                (None, None) => unreachable!("clap requires a DSN or --from-json"),
            };
            client.call(Method::PUT, &base, Some(&body), &[]).await?
        }
        ProvidersCommand::Remove { .. } => client.call(Method::DELETE, &base, None, &[]).await?,
        ProvidersCommand::Verify { .. } => {
            client
                .call(
                    Method::POST,
                    &format!("{base}/verify"),
                    Some(&json!({})),
                    &[],
                )
                .await?
        }
        ProvidersCommand::Test { to, from } => {
            client
                .call(
                    Method::POST,
                    &format!("{base}/test"),
                    Some(&json!({ "to": to, "from": from })),
                    &[],
                )
                .await?
        }
    };
    if args.conn.json {
        print_json(&reply.body);
        return Ok(());
    }
    match &args.command {
        ProvidersCommand::Show { .. } | ProvidersCommand::Set { .. } => show_view(&reply.body),
        ProvidersCommand::Remove { .. } => println!("{environment} now uses the default provider"),
        ProvidersCommand::Verify { .. } => {
            let ok = reply.body["ok"].as_bool().unwrap_or(false);
            println!(
                "{} provider: {}",
                text(&reply.body["provider"]["type"]),
                if ok { "OK" } else { "NOT OK" }
            );
            for check in reply.body["checks"].as_array().into_iter().flatten() {
                println!("  - {}", text(check));
            }
            if !reply.body["error"].is_null() {
                println!("  error: {}", text(&reply.body["error"]["message"]));
            }
            if !ok {
                anyhow::bail!("verification failed");
            }
        }
        ProvidersCommand::Test { .. } => {
            let b = &reply.body;
            println!(
                "test message {}: {} via {}",
                text(&b["id"]),
                text(&b["status"]),
                text(&b["provider"])
            );
            if !b["reason"].is_null() {
                println!("  reason: {}", text(&b["reason"]));
            }
            if b["finished"] == false {
                println!("  (no outcome yet; follow it with `mailgate emails get`)");
            } else if b["ok"] != true {
                anyhow::bail!("the test message was not sent");
            }
        }
    }
    Ok(())
}

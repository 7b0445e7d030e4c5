//! `mailgate providers`: an environment's (or an organization's) provider chain — show, set,
//! remove, verify, test.

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
    /// Manage this organization's own chain instead of the environment's.
    #[arg(long, global = true)]
    organization: Option<String>,
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
    /// Set the provider from a DSN (e.g. smtp://user:pass@host:587, or
    /// 'failover(postmark+api://… ses+api://…?max_per_second=14)', 'roundrobin(…)') or a JSON file.
    Set {
        /// The provider DSN.
        #[arg(conflicts_with = "json_file", required_unless_present = "json_file")]
        dsn: Option<String>,
        /// A JSON file with `{"type": …}` or `{"primary": …, "failovers": […]}` (`-` reads
        /// standard input).
        #[arg(long = "from-json", value_name = "FILE")]
        json_file: Option<PathBuf>,
        /// The sender for messages that name none (an organization's own sender).
        #[arg(long, conflicts_with = "json_file")]
        sender: Option<String>,
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

fn show_fields(value: &Value, indent: &str) {
    if let Some(obj) = value.as_object() {
        for (k, v) in obj.iter().filter(|(k, v)| *k != "type" && !v.is_null()) {
            println!("{indent}{k:<20} {}", text(v));
        }
    }
}

fn show_view(body: &Value) {
    let provider = &body["provider"];
    let members: Vec<&Value> = match (&provider["primary"], &provider["providers"]) {
        (Value::Object(_), _) => std::iter::once(&provider["primary"])
            .chain(provider["failovers"].as_array().into_iter().flatten())
            .collect(),
        (_, Value::Array(list)) => list.iter().collect(),
        _ => {
            println!(
                "{} provider ({})",
                text(&provider["type"]),
                text(&body["source"])
            );
            show_fields(provider, "  ");
            return;
        }
    };
    println!(
        "{} chain of {} providers ({})",
        text(&provider["mode"]),
        members.len(),
        text(&body["source"])
    );
    if !provider["sender"].is_null() {
        println!("  sender: {}", text(&provider["sender"]));
    }
    for m in members {
        println!("  {} ({})", text(&m["name"]), text(&m["type"]));
        show_fields(m, "    ");
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
    let base = match (&args.organization, &args.command) {
        (Some(org), c) if !matches!(c, ProvidersCommand::Test { .. }) => format!(
            "/v1/environments/{}/organizations/{}/provider",
            encode(&environment),
            encode(org)
        ),
        _ => format!("/v1/environments/{}/provider", encode(&environment)),
    };
    let reply = match &args.command {
        ProvidersCommand::Show { .. } => client.call(Method::GET, &base, None, &[]).await?,
        ProvidersCommand::Set {
            dsn,
            json_file,
            sender,
        } => {
            let body = match (dsn, json_file) {
                (Some(dsn), _) if sender.is_some() => json!({ "dsn": dsn, "sender": sender }),
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
                    Some(&json!({ "to": to, "from": from, "organization": args.organization })),
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
        ProvidersCommand::Remove { .. } => match &args.organization {
            Some(org) => println!("{org} now uses the provider chain of {environment}"),
            None => println!("{environment} now uses the default provider"),
        },
        ProvidersCommand::Verify { .. } => {
            let ok = reply.body["ok"].as_bool().unwrap_or(false);
            println!("chain: {}", if ok { "OK" } else { "NOT OK" });
            for p in reply.body["providers"].as_array().into_iter().flatten() {
                let status = if p["ok"] == true { "OK" } else { "NOT OK" };
                println!("  {} ({}): {status}", text(&p["name"]), text(&p["type"]));
                for check in p["checks"].as_array().into_iter().flatten() {
                    println!(
                        "    {:<12} {:<8} {}",
                        text(&check["aspect"]),
                        text(&check["status"]),
                        text(&check["detail"])
                    );
                }
                if !p["error"].is_null() {
                    println!("    error: {}", text(&p["error"]["message"]));
                }
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

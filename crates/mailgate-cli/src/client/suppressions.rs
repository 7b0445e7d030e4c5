//! `mailgate suppressions` (list, check, add, remove) and `mailgate recipients show`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::{encode, print_json, text, ApiClient, Conn};

/// Arguments of `mailgate suppressions`.
#[derive(Args, Debug)]
pub struct SuppressionsArgs {
    #[command(flatten)]
    conn: Conn,
    /// The environment whose suppression list to use.
    #[arg(long, global = true, default_value = "default")]
    environment: String,
    #[command(subcommand)]
    command: SuppressionsCommand,
}

#[derive(Subcommand, Debug)]
enum SuppressionsCommand {
    /// List suppressed addresses.
    List {
        /// Only this reason: hard_bounce, complaint, soft_bounces, manual.
        #[arg(long)]
        reason: Option<String>,
        /// Only addresses containing this text.
        #[arg(long)]
        contains: Option<String>,
        /// Only suppressions added since this instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// At most this many (1–500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Tell whether an address is suppressed, and why.
    Check {
        /// The address.
        address: String,
    },
    /// Suppress an address by hand.
    Add {
        /// The address.
        address: String,
        /// The reason (default manual).
        #[arg(long)]
        reason: Option<String>,
        /// A note for people.
        #[arg(long)]
        note: Option<String>,
    },
    /// Remove an address from the list: sends to it are accepted again.
    Remove {
        /// The address.
        address: String,
    },
}

fn base(env: &str) -> String {
    format!("/v1/environments/{}/suppressions", encode(env))
}

fn line(s: &Value) -> String {
    format!(
        "{:<40} {:<13} {}  {}",
        text(&s["address"]),
        text(&s["reason"]),
        text(&s["created_at"]),
        s["note"].as_str().unwrap_or("")
    )
}

/// Runs `mailgate suppressions`.
pub async fn suppressions(args: SuppressionsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let base = base(&args.environment);
    match args.command {
        SuppressionsCommand::List {
            reason,
            contains,
            since,
            limit,
        } => {
            let mut query = format!("?limit={limit}");
            for (k, v) in [("reason", reason), ("contains", contains), ("since", since)] {
                if let Some(v) = v {
                    query.push_str(&format!("&{k}={}", encode(&v)));
                }
            }
            let reply = client
                .call(Method::GET, &format!("{base}{query}"), None, &[])
                .await?;
            if args.conn.json {
                print_json(&reply.body);
            } else {
                for s in reply.body["data"].as_array().into_iter().flatten() {
                    println!("{}", line(s));
                }
            }
        }
        SuppressionsCommand::Check { address } => {
            let reply = client
                .call(
                    Method::GET,
                    &format!("{base}/{}", encode(&address)),
                    None,
                    &[],
                )
                .await?;
            if args.conn.json {
                print_json(&reply.body);
            } else if reply.body["suppressed"].as_bool() == Some(true) {
                println!("suppressed: {}", line(&reply.body["suppression"]));
            } else {
                println!("not suppressed: {}", text(&reply.body["address"]));
            }
        }
        SuppressionsCommand::Add {
            address,
            reason,
            note,
        } => {
            let body = json!({"address": address, "reason": reason, "note": note});
            let reply = client.call(Method::POST, &base, Some(&body), &[]).await?;
            if args.conn.json {
                print_json(&reply.body);
            } else {
                println!("added: {}", line(&reply.body));
            }
        }
        SuppressionsCommand::Remove { address } => {
            client
                .call(
                    Method::DELETE,
                    &format!("{base}/{}", encode(&address)),
                    None,
                    &[],
                )
                .await?;
            if !args.conn.json {
                println!("removed");
            }
        }
    }
    Ok(())
}

/// Arguments of `mailgate recipients`.
#[derive(Args, Debug)]
pub struct RecipientsArgs {
    #[command(flatten)]
    conn: Conn,
    /// The environment.
    #[arg(long, global = true, default_value = "default")]
    environment: String,
    #[command(subcommand)]
    command: RecipientsCommand,
}

#[derive(Subcommand, Debug)]
enum RecipientsCommand {
    /// Why did (or didn't) an address get its mail: suppression, last messages, their events.
    Show {
        /// The address.
        address: String,
    },
}

/// Runs `mailgate recipients`.
pub async fn recipients(args: RecipientsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let RecipientsCommand::Show { address } = args.command;
    let path = format!(
        "/v1/environments/{}/recipients/{}",
        encode(&args.environment),
        encode(&address)
    );
    let reply = client.call(Method::GET, &path, None, &[]).await?;
    let b = &reply.body;
    if args.conn.json {
        print_json(b);
        return Ok(());
    }
    if b["suppressed"].as_bool() == Some(true) {
        println!(
            "{}: SUPPRESSED ({}, since {})",
            text(&b["address"]),
            text(&b["suppression"]["reason"]),
            text(&b["suppression"]["created_at"])
        );
    } else {
        println!("{}: not suppressed", text(&b["address"]));
    }
    for m in b["messages"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<10} {}",
            text(&m["id"]),
            text(&m["status"]),
            text(&m["created_at"])
        );
        for e in m["events"].as_array().into_iter().flatten() {
            let detail = &e["data"]["detail"];
            let why = detail["mta_response"]
                .as_str()
                .or(detail["reason"].as_str())
                .unwrap_or("");
            println!(
                "    {}  {:<12} {why}",
                text(&e["created_at"]),
                text(&e["type"])
            );
        }
    }
    Ok(())
}

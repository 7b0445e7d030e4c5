//! `mailgate environments` and `mailgate keys`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::{encode, print_json, text, ApiClient, Conn};

/// Arguments of `mailgate environments`.
#[derive(Args, Debug)]
pub struct EnvironmentsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: EnvironmentsCommand,
}

#[derive(Subcommand, Debug)]
enum EnvironmentsCommand {
    /// List environments.
    List,
    /// Create an environment.
    Create {
        /// Its name (lower-case letters, digits, hyphens).
        name: String,
    },
    /// Delete an environment with all its keys, messages and events.
    Delete {
        /// Its name or id.
        name: String,
    },
}

/// Runs `mailgate environments`.
pub async fn environments(args: EnvironmentsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    match args.command {
        EnvironmentsCommand::List => {
            let reply = client
                .call(Method::GET, "/v1/environments", None, &[])
                .await?;
            if args.conn.json {
                print_json(&reply.body);
            } else {
                for e in reply.body["data"].as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {}  created {}",
                        text(&e["name"]),
                        text(&e["id"]),
                        text(&e["created_at"])
                    );
                }
            }
        }
        EnvironmentsCommand::Create { name } => {
            let reply = client
                .call(
                    Method::POST,
                    "/v1/environments",
                    Some(&json!({ "name": name })),
                    &[],
                )
                .await?;
            if args.conn.json {
                print_json(&reply.body);
            } else {
                println!(
                    "created environment {} ({})",
                    text(&reply.body["name"]),
                    text(&reply.body["id"])
                );
            }
        }
        EnvironmentsCommand::Delete { name } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/environments/{}", encode(&name)),
                    None,
                    &[],
                )
                .await?;
            if !args.conn.json {
                println!("deleted environment {name}");
            }
        }
    }
    Ok(())
}

/// Arguments of `mailgate keys`.
#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    conn: Conn,
    /// The environment whose keys to manage.
    #[arg(long, global = true, default_value = "default")]
    environment: String,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// List the environment's keys (never their secrets).
    List,
    /// Create a key; its secret is shown once.
    Create {
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Delete a key.
    Delete {
        /// The key id (`key_…`).
        id: String,
    },
}

/// Runs `mailgate keys`.
pub async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let base = format!("/v1/environments/{}/keys", encode(&args.environment));
    match args.command {
        KeysCommand::List => {
            let reply = client.call(Method::GET, &base, None, &[]).await?;
            if args.conn.json {
                print_json(&reply.body);
            } else {
                for k in reply.body["data"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {}…  {:<20} created {}",
                        text(&k["id"]),
                        text(&k["hint"]),
                        text(&k["name"]),
                        text(&k["created_at"])
                    );
                }
            }
        }
        KeysCommand::Create { name } => {
            let reply = client
                .call(Method::POST, &base, Some(&json!({ "name": name })), &[])
                .await?;
            if args.conn.json {
                print_json(&reply.body);
            } else {
                println!(
                    "created key {} in {}",
                    text(&reply.body["id"]),
                    args.environment
                );
                println!("secret (shown once): {}", text(&reply.body["key"]));
            }
        }
        KeysCommand::Delete { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("{base}/{}", encode(&id)),
                    None,
                    &[],
                )
                .await?;
            if !args.conn.json {
                println!("deleted key {id}");
            }
        }
    }
    Ok(())
}

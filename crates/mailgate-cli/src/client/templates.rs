//! `mailgate templates`: an environment's templates — set, get, list, preview, delete.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::{encode, print_json, text, ApiClient, Conn};

/// Arguments of `mailgate templates`.
#[derive(Args, Debug)]
pub struct TemplatesArgs {
    #[command(flatten)]
    conn: Conn,
    /// The environment whose templates to manage.
    #[arg(long, global = true, default_value = "default")]
    environment: String,
    /// The locale (the environment's default locale when left out).
    #[arg(long, global = true)]
    locale: Option<String>,
    #[command(subcommand)]
    command: TemplatesCommand,
}

#[derive(Subcommand, Debug)]
enum TemplatesCommand {
    /// Create or replace the template of a usage type (validated by the server).
    Set {
        /// The usage type (SignIn, MagicLink, … or a custom name).
        usage: String,
        /// The subject template.
        #[arg(long)]
        subject: Option<String>,
        /// A file with the HTML template.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// A file with the text template.
        #[arg(long, value_name = "FILE")]
        text: Option<PathBuf>,
        /// The sender template.
        #[arg(long)]
        from: Option<String>,
        /// A JSON file with the whole template (`-` reads standard input).
        #[arg(long = "from-json", value_name = "FILE", conflicts_with_all = ["subject", "html", "text", "from"])]
        json_file: Option<PathBuf>,
    },
    /// Show the template of a usage type (the built-in one when the environment has none).
    Get {
        /// The usage type.
        usage: String,
    },
    /// List the environment's templates.
    List,
    /// Render a usage type's template with sample data; nothing is sent.
    Preview {
        /// The usage type.
        usage: String,
        /// Data as JSON, over the sample data (e.g. '{"code": "123456"}').
        #[arg(long)]
        data: Option<String>,
    },
    /// Delete the template of a usage type.
    Delete {
        /// The usage type.
        usage: String,
    },
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        Ok(std::io::read_to_string(std::io::stdin())?)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Runs `mailgate templates`.
pub async fn templates(args: TemplatesArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let base = format!("/v1/environments/{}/templates", encode(&args.environment));
    let query = args
        .locale
        .as_deref()
        .map(|l| format!("?locale={}", encode(l)))
        .unwrap_or_default();
    let one = |usage: &str| format!("{base}/{}{query}", encode(usage));
    let reply = match &args.command {
        TemplatesCommand::Set {
            usage,
            subject,
            html,
            text,
            from,
            json_file,
        } => {
            let body = match json_file {
                Some(path) => serde_json::from_str(&read(path)?).context("the template JSON")?,
                None => {
                    let mut t = Map::new();
                    if let Some(s) = subject {
                        t.insert("subject".into(), s.clone().into());
                    }
                    if let Some(p) = html {
                        t.insert("html".into(), read(p)?.into());
                    }
                    if let Some(p) = text {
                        t.insert("text".into(), read(p)?.into());
                    }
                    if let Some(f) = from {
                        t.insert("from".into(), f.clone().into());
                    }
                    Value::Object(t)
                }
            };
            client
                .call(Method::PUT, &one(usage), Some(&body), &[])
                .await?
        }
        TemplatesCommand::Get { usage } => client.call(Method::GET, &one(usage), None, &[]).await?,
        TemplatesCommand::List => client.call(Method::GET, &base, None, &[]).await?,
        TemplatesCommand::Preview { usage, data } => {
            let mut body = json!({});
            if let Some(d) = data {
                body["data"] = serde_json::from_str(d).context("--data must be a JSON object")?;
            }
            if let Some(l) = &args.locale {
                body["locale"] = l.clone().into();
            }
            let path = format!("{base}/{}/preview", encode(usage));
            client.call(Method::POST, &path, Some(&body), &[]).await?
        }
        TemplatesCommand::Delete { usage } => {
            client.call(Method::DELETE, &one(usage), None, &[]).await?
        }
    };
    if args.conn.json {
        print_json(&reply.body);
        return Ok(());
    }
    let b = &reply.body;
    match &args.command {
        TemplatesCommand::Set { usage, .. } => {
            println!("template {usage} ({}) saved", text(&b["locale"]))
        }
        TemplatesCommand::Get { .. } => {
            println!(
                "{} ({}, {})",
                text(&b["usage"]),
                text(&b["locale"]),
                text(&b["source"])
            );
            for (k, v) in b["template"].as_object().into_iter().flatten() {
                println!("--- {k}\n{}", text(v));
            }
        }
        TemplatesCommand::List => {
            for t in b["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<8} {}",
                    text(&t["usage"]),
                    text(&t["locale"]),
                    text(&t["updated_at"])
                );
            }
            println!(
                "built-in: {}",
                b["builtin"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        TemplatesCommand::Preview { .. } => {
            println!(
                "template: {} ({}, {})",
                text(&b["usage"]),
                text(&b["locale"]),
                text(&b["source"])
            );
            for k in ["from", "subject", "text", "html"] {
                if !b[k].is_null() {
                    println!("--- {k}\n{}", text(&b[k]));
                }
            }
        }
        TemplatesCommand::Delete { usage } => println!("template {usage} deleted"),
    }
    Ok(())
}

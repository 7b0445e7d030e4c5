//! `mailgate send`.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::{print_json, text, ApiClient, Conn};

/// Arguments of `mailgate send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    conn: Conn,
    /// Sender, `addr` or `Name <addr>`.
    #[arg(long)]
    from: String,
    /// Recipient (repeatable).
    #[arg(long, required = true)]
    to: Vec<String>,
    /// Carbon-copy recipient (repeatable).
    #[arg(long)]
    cc: Vec<String>,
    /// Blind carbon-copy recipient (repeatable).
    #[arg(long)]
    bcc: Vec<String>,
    /// Reply-To address (repeatable).
    #[arg(long)]
    reply_to: Vec<String>,
    /// Subject line.
    #[arg(long)]
    subject: String,
    /// Plain-text body.
    #[arg(long, conflicts_with = "text_file")]
    text: Option<String>,
    /// Plain-text body from a file.
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// HTML body.
    #[arg(long, conflicts_with = "html_file")]
    html: Option<String>,
    /// HTML body from a file.
    #[arg(long)]
    html_file: Option<PathBuf>,
    /// Attach a file (repeatable).
    #[arg(long)]
    attach: Vec<PathBuf>,
    /// Custom header `Name: value` (repeatable).
    #[arg(long)]
    header: Vec<String>,
    /// Tag (repeatable).
    #[arg(long)]
    tag: Vec<String>,
    /// Metadata `key=value` (repeatable).
    #[arg(long)]
    metadata: Vec<String>,
    /// Environment (needed with the admin key).
    #[arg(long)]
    environment: Option<String>,
    /// Idempotency key: resending with the same key returns the original message.
    #[arg(long)]
    idempotency_key: Option<String>,
}

fn read_file(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn content_type_for(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("csv") => "text/csv",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("json") => "application/json",
        Some("ics") => "text/calendar",
        _ => "application/octet-stream",
    }
}

impl SendArgs {
    fn body(&self) -> anyhow::Result<Value> {
        use base64::Engine as _;
        let mut body = Map::new();
        body.insert("from".into(), json!(self.from));
        body.insert("to".into(), json!(self.to));
        for (name, list) in [
            ("cc", &self.cc),
            ("bcc", &self.bcc),
            ("reply_to", &self.reply_to),
        ] {
            if !list.is_empty() {
                body.insert(name.into(), json!(list));
            }
        }
        body.insert("subject".into(), json!(self.subject));
        let text = match (&self.text, &self.text_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => Some(read_file(p)?),
            (None, None) => None,
        };
        let html = match (&self.html, &self.html_file) {
            (Some(h), _) => Some(h.clone()),
            (None, Some(p)) => Some(read_file(p)?),
            (None, None) => None,
        };
        if let Some(t) = text {
            body.insert("text".into(), json!(t));
        }
        if let Some(h) = html {
            body.insert("html".into(), json!(h));
        }
        if !self.attach.is_empty() {
            let mut list = Vec::new();
            for path in &self.attach {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let filename = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| anyhow!("bad file name {}", path.display()))?;
                list.push(json!({
                    "filename": filename,
                    "content_type": content_type_for(path),
                    "content": base64::engine::general_purpose::STANDARD.encode(bytes),
                }));
            }
            body.insert("attachments".into(), Value::Array(list));
        }
        if !self.header.is_empty() {
            let mut headers = Map::new();
            for h in &self.header {
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| anyhow!("--header must be 'Name: value', got {h:?}"))?;
                headers.insert(k.trim().to_owned(), json!(v.trim()));
            }
            body.insert("headers".into(), Value::Object(headers));
        }
        if !self.tag.is_empty() {
            body.insert("tags".into(), json!(self.tag));
        }
        if !self.metadata.is_empty() {
            let mut meta = Map::new();
            for m in &self.metadata {
                let (k, v) = m
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--metadata must be key=value, got {m:?}"))?;
                meta.insert(k.to_owned(), json!(v));
            }
            body.insert("metadata".into(), Value::Object(meta));
        }
        if let Some(env) = &self.environment {
            body.insert("environment".into(), json!(env));
        }
        Ok(Value::Object(body))
    }
}

/// Runs `mailgate send`.
pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.conn)?;
    let body = args.body()?;
    let headers: Vec<(&str, String)> = args
        .idempotency_key
        .iter()
        .map(|k| ("Idempotency-Key", k.clone()))
        .collect();
    let reply = client
        .call(Method::POST, "/v1/emails", Some(&body), &headers)
        .await?;
    if args.conn.json {
        print_json(&reply.body);
    } else {
        let replayed = if reply.status.as_u16() == 200 {
            " (idempotent replay of an earlier send)"
        } else {
            ""
        };
        println!(
            "{} {}{replayed}",
            text(&reply.body["status"]),
            text(&reply.body["id"])
        );
    }
    Ok(())
}

//! An SMTP sink sharing the HTTP mock's behaviour and counters: it accepts every message (250
//! after DATA) unless a fault is drawn (`503`/`500`/`429` → `451`, `400` → `550`, `reset` →
//! the connection is closed). The message id is the `X-Mailgate-Message-Id` header, else the
//! `Message-ID`, else the subject.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::behavior::Fault;
use crate::server::Shared;

/// Starts the sink on `addr`; returns the bound address.
pub async fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            shared.stats().connection();
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let _ = session(stream, shared).await;
            });
        }
    });
    Ok(local)
}

fn message_id(data: &str) -> Option<String> {
    let headers = data.split("\r\n\r\n").next().unwrap_or("");
    let get = |name: &str| {
        headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    get("X-Mailgate-Message-Id")
        .or_else(|| get("Message-ID"))
        .or_else(|| get("Subject").map(|s| format!("subject:{s}")))
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 mock ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                w.write_all(b"250-mock\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    .await?
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => w.write_all(b"250 OK\r\n").await?,
            "QUIT" => {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "DATA" => {
                w.write_all(b"354 go ahead\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                let ids = [message_id(&data)];
                shared.stats().begin();
                let (delay, fault) = shared.draw();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                match fault {
                    None => {
                        shared.stats().end(&ids, "250", true);
                        w.write_all(b"250 2.0.0 queued\r\n").await?;
                    }
                    Some(Fault::Reset) => {
                        shared.stats().end(&ids, "reset", false);
                        return Ok(());
                    }
                    Some(Fault::Rejected) => {
                        shared.stats().end(&ids, "550", false);
                        w.write_all(b"550 5.1.1 mailbox unavailable\r\n").await?;
                    }
                    Some(_) => {
                        shared.stats().end(&ids, "451", false);
                        w.write_all(b"451 4.3.0 try again later\r\n").await?;
                    }
                }
            }
            _ => w.write_all(b"502 command not implemented\r\n").await?,
        }
    }
}

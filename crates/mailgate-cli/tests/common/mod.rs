//! Helpers shared by the process-level tests: spawning the real `mailgate` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};

use mailgate_core::message::{Content, NewMessage};
use mailgate_core::{EnvironmentId, Mailbox, MessageId};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mailgate");

/// A child process that is killed when the test ends, whatever happens.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn mailgate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("MAILGATE_ADMIN_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts `mailgate serve` and returns it with its base URL and the admin key it printed (if any).
pub fn start_server(dir: &Path) -> (Proc, String, Option<String>) {
    let mut child = mailgate(dir, &["serve", "--listen", "127.0.0.1:0"], &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut key) = (None, None);
    // The admin key (first start only) and the data directory come first; the address last.
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((_, k)) = line.split_once("admin key (shown once, only its hash is stored): ") {
            key = Some(k.to_owned());
        }
        if let Some(u) = line.strip_prefix("mailgate listening on ") {
            url = Some(u.to_owned());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), url.expect("server printed its address"), key)
}

pub fn stop_gracefully(mut p: Proc) {
    let pid = p.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain text message to `user{i}@example.com`, as the queue tests enqueue directly.
pub fn message(env: EnvironmentId, i: usize, now: mailgate_core::Timestamp) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        environment_id: env,
        content: Content {
            from: Mailbox::parse("noreply@acme.example", "from").unwrap(),
            to: vec![Mailbox::parse(&format!("user{i}@example.com"), "to").unwrap()],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: format!("message {i}"),
            text: Some("hello".into()),
            html: None,
            headers: vec![],
            attachments: vec![],
        },
        tags: vec![],
        metadata: Default::default(),
        provider_options: None,
        idempotency: None,
        max_attempts: 5,
        created_at: now,
        delivery: Default::default(),
        secrets: Vec::new(),
        template: None,
    }
}

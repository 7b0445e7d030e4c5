//! Launcher for a real SMTP server (aiosmtpd, PyPI) on loopback: STARTTLS or implicit TLS with a
//! certificate made at start, AUTH PLAIN/LOGIN, scripted refusals, and every accepted message
//! spooled as a raw `.eml` file with its envelope.
//!
//! The server is `peers/smtp_server.py` in this crate, run by `$MAILGATE_TEST_PYTHON` (default
//! `python3`); `scripts/test` installs `aiosmtpd`. Recipients whose address contains `tempfail`
//! are refused with 451, those containing `reject` with 550.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How the peer speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpPeerTls {
    /// Plain SMTP; STARTTLS is not offered.
    #[default]
    None,
    /// STARTTLS offered on a plain connection.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// What the peer should do.
#[derive(Debug, Clone, Default)]
pub struct SmtpPeerOptions {
    /// TLS mode.
    pub tls: SmtpPeerTls,
    /// Refuse mail until STARTTLS (only with `SmtpPeerTls::StartTls`).
    pub require_starttls: bool,
    /// Require AUTH with these credentials (user, password).
    pub auth: Option<(String, String)>,
    /// Refuse AUTH before STARTTLS (only with `SmtpPeerTls::StartTls`).
    pub auth_require_tls: bool,
    /// Answer MAIL FROM with this code (e.g. 451, 550).
    pub mail_code: Option<u16>,
    /// Answer the end of DATA with this code.
    pub data_code: Option<u16>,
    /// The text after `250 ` in the reply to DATA (e.g. `Ok 0100-abc` to play SES SMTP).
    pub data_reply: Option<String>,
}

/// One message the peer accepted.
#[derive(Debug, Clone)]
pub struct CapturedMail {
    /// The MAIL FROM address.
    pub envelope_from: String,
    /// The RCPT TO addresses the peer accepted.
    pub envelope_to: Vec<String>,
    /// The message exactly as received.
    pub raw: Vec<u8>,
}

/// A running aiosmtpd on 127.0.0.1; killed when dropped.
pub struct SmtpPeer {
    /// The port it listens on.
    pub port: u16,
    /// The CA certificate (PEM) that signed the server's certificate, in TLS modes.
    pub ca_pem_path: Option<PathBuf>,
    /// Where accepted messages are written.
    pub spool_dir: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

impl SmtpPeer {
    /// Starts the server and waits until it listens. Panics (test setup) if Python or aiosmtpd is
    /// missing.
    pub fn start(options: SmtpPeerOptions) -> SmtpPeer {
        let dir = tempfile::tempdir().expect("temp dir for the SMTP peer");
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir(&spool_dir).expect("spool dir");
        let (user, password) = options.auth.clone().unzip();
        let config = json!({
            "spool": spool_dir,
            "cert_dir": dir.path(),
            "tls": match options.tls {
                SmtpPeerTls::None => "none",
                SmtpPeerTls::StartTls => "starttls",
                SmtpPeerTls::Implicit => "implicit",
            },
            "require_starttls": options.require_starttls,
            "auth_user": user,
            "auth_password": password,
            "auth_require_tls": options.auth_require_tls,
            "mail_code": options.mail_code,
            "data_code": options.data_code,
            "data_reply": options.data_reply,
        });
        let config = strip_nulls(config);
        let python = std::env::var("MAILGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/smtp_server.py");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("peer log");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(config.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} for the SMTP peer: {e}"));
        let stdout = child.stdout.take().expect("peer stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let port = match read.ok().and_then(|_| line.trim().parse::<u16>().ok()) {
            Some(p) => p,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("the SMTP peer did not start (is aiosmtpd installed for {python}?):\n{log}");
            }
        };
        let ca = dir.path().join("ca.pem");
        SmtpPeer {
            port,
            ca_pem_path: (options.tls != SmtpPeerTls::None).then_some(ca),
            spool_dir,
            child,
            dir,
        }
    }

    /// The messages accepted so far, in order.
    pub fn messages(&self) -> Vec<CapturedMail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.spool_dir)
            .expect("read spool")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|eml| {
                let envelope: Value = serde_json::from_slice(
                    &std::fs::read(eml.with_extension("json")).expect("envelope json"),
                )
                .expect("envelope json parses");
                CapturedMail {
                    envelope_from: envelope["mail_from"].as_str().unwrap_or("").to_owned(),
                    envelope_to: envelope["rcpt_tos"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    raw: std::fs::read(&eml).expect("eml"),
                }
            })
            .collect()
    }

    /// Waits up to `timeout` for at least `n` messages and returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<CapturedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's stderr so far (for failing tests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

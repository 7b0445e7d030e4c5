//! No leaks (issue 8): the real `mailgate serve` process, logging at `debug` in JSON, runs a
//! realistic scenario — provider configurations with distinctive secrets (an SMTP password
//! against a real SMTP server with STARTTLS and AUTH, API keys and webhook secrets of HTTP
//! providers pointing at the mock provider), sign-in codes, magic links and tokens sent through
//! templates and delivered to a final state, provider webhooks authenticated with their
//! credentials — and then every secret and every code is searched for, in each of the forms it
//! could take (as given, JSON- and HTML-escaped, percent-encoded, base64, SMTP AUTH blobs), in:
//! the log (stdout and stderr), every API answer, and the database (each file of the SQLite
//! database: the main file, `-wal` and `-shm`; on PostgreSQL, every row of every table).
//! None may be found. A control search proves the search itself finds what is there.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_mock_provider::Behavior;
use mailgate_testkit::db::TestDatabase;
use mailgate_testkit::peers::smtp::{SmtpPeer, SmtpPeerOptions, SmtpPeerTls};
use serde_json::{json, Value};

use common::{mailgate, Proc};

const ADMIN_KEY: &str = "mg_noleaks_admin_CANARYadminkey0000000000000";
const SMTP_USER: &str = "mailer";
const SMTP_PASSWORD: &str = "smtpCANARYpw-5b1e9d";
const MAILGUN_KEY: &str = "key-CANARYmailgunapi7c41";
const MAILGUN_SIGNING: &str = "CANARYmailgunsigning93a0f";
const POSTMARK_TOKEN: &str = "CANARYpostmarktoken-2d77";
const POSTMARK_HOOK_USER: &str = "CANARYpostmarkuser-40b3";
const POSTMARK_HOOK_PASSWORD: &str = "CANARYpostmarkhook-8e12";
const RESEND_KEY: &str = "re_CANARYresendapi_4f0c";
const RESEND_ORG_KEY: &str = "re_CANARYresendorg_19bd";

/// The sign-in secrets sent as `data` (codes, links, tokens).
const CODES: &[&str] = &["CANARYcode-731904", "CANARYcode-558213"];
const LINK: &str = "https://app.acme.example/magic?token=CANARYlinktoken-a81f&next=/home";
const TOKEN: &str = "CANARYresettoken-0c6e";

/// The Resend webhook secret (`whsec_` + base64 of its key).
fn resend_hook_secret() -> String {
    format!("whsec_{}", STANDARD.encode(b"CANARYresendwebhooksecret-77"))
}

/// Every form a value could be written in.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![
        secret.to_owned(),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        secret
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
            .replace('/', "&#x2f;"),
        secret.replace('&', "&amp;"),
        secret
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
    ];
    // Base64 at each of the three alignments (a secret inside a longer encoded string).
    for pad in 0..3 {
        let mut bytes = vec![b'x'; pad];
        bytes.extend_from_slice(secret.as_bytes());
        let enc = STANDARD.encode(&bytes);
        let skip = (pad * 4).div_ceil(3);
        // Keep the characters that depend on the secret alone.
        let core: String = enc
            .chars()
            .skip(skip + 1)
            .take(enc.len().saturating_sub(skip + 4))
            .collect();
        if core.len() >= 8 {
            out.push(core);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The secrets with a name, each with the forms to look for.
fn needles() -> Vec<(String, Vec<String>)> {
    let mut named: Vec<(String, String)> = vec![
        ("admin key".into(), ADMIN_KEY.into()),
        ("SMTP password".into(), SMTP_PASSWORD.into()),
        ("Mailgun API key".into(), MAILGUN_KEY.into()),
        ("Mailgun signing key".into(), MAILGUN_SIGNING.into()),
        ("Postmark token".into(), POSTMARK_TOKEN.into()),
        ("Postmark webhook user".into(), POSTMARK_HOOK_USER.into()),
        (
            "Postmark webhook password".into(),
            POSTMARK_HOOK_PASSWORD.into(),
        ),
        ("Resend API key".into(), RESEND_KEY.into()),
        ("Resend organization key".into(), RESEND_ORG_KEY.into()),
        ("Resend webhook secret".into(), resend_hook_secret()),
        ("magic link".into(), LINK.into()),
        ("magic link token".into(), "CANARYlinktoken-a81f".into()),
        ("reset token".into(), TOKEN.into()),
    ];
    for (i, code) in CODES.iter().enumerate() {
        named.push((format!("sign-in code {i}"), (*code).to_owned()));
    }
    let mut out: Vec<(String, Vec<String>)> =
        named.into_iter().map(|(n, s)| (n, forms(&s))).collect();
    // SMTP AUTH PLAIN and LOGIN carry the password in base64.
    out.push((
        "SMTP AUTH PLAIN".into(),
        vec![STANDARD.encode(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}"))],
    ));
    out
}

/// The names of the needles found in `haystack`.
fn found(haystack: &[u8], needles: &[(String, Vec<String>)]) -> Vec<String> {
    let text = String::from_utf8_lossy(haystack);
    needles
        .iter()
        .filter_map(|(name, forms)| {
            forms
                .iter()
                .find(|f| text.contains(f.as_str()) || contains(haystack, f.as_bytes()))
                .map(|f| format!("{name} (as {f:?})"))
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every API answer, kept to be searched.
struct Api {
    http: reqwest::Client,
    url: String,
    answers: Vec<(String, String)>,
}

impl Api {
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let mut headers = String::new();
        for (k, v) in resp.headers() {
            headers.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        let text = resp.text().await.unwrap();
        self.answers.push((
            format!("{method} {path} → {status}"),
            format!("{headers}\n{text}"),
        ));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&mut self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// Posts a provider webhook (no API key) and keeps the answer.
    async fn hook(&mut self, provider: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
        let path = format!("/webhooks/default/{provider}");
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        self.answers.push((format!("POST {path} → {status}"), text));
        status
    }
}

/// Waits for the `mailgate listening on` line in the log file.
fn wait_for_address(stdout: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(stdout).unwrap_or_default();
        if let Some(url) = text
            .lines()
            .find_map(|l| l.strip_prefix("mailgate listening on "))
        {
            return url.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the server never listened:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every row of every table of a PostgreSQL database, as text.
async fn dump_postgres(url: &str) -> Vec<u8> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(tables.iter().any(|t| t == "messages"), "{tables:?}");
    let mut out = Vec::new();
    for t in tables {
        let rows = sqlx::query(&format!("SELECT row_to_json(x)::text FROM \"{t}\" x"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        for r in rows {
            let s: String = r.get(0);
            out.extend_from_slice(s.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

async fn wait_final(api: &mut Api, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = api
            .ok(reqwest::Method::GET, &format!("/v1/emails/{id}"), None)
            .await;
        let status = m["status"].as_str().unwrap_or_default().to_owned();
        if !matches!(status.as_str(), "queued" | "sending") {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached a final state: {m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_code_reaches_the_logs_the_api_or_the_database() {
    use reqwest::Method;

    let smtp = SmtpPeer::start(SmtpPeerOptions {
        tls: SmtpPeerTls::StartTls,
        require_starttls: true,
        auth: Some((SMTP_USER.into(), SMTP_PASSWORD.into())),
        auth_require_tls: true,
        ..SmtpPeerOptions::default()
    });
    let ca = smtp
        .ca_pem_path
        .clone()
        .expect("the STARTTLS peer has a CA");
    let mock = mailgate_mock_provider::spawn("127.0.0.1:0".parse().unwrap(), Behavior::default())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::from_env().await;
    let stdout_path = dir.path().join("stdout.log");
    let stderr_path = dir.path().join("stderr.log");
    let child = mailgate(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--database", &db.url],
        &[
            ("MAILGATE_ADMIN_KEY", ADMIN_KEY),
            ("RUST_LOG", "debug"),
            ("MAILGATE_LOG__FORMAT", "json"),
            ("MAILGATE_WORKER__POLL_INTERVAL_MS", "50"),
        ],
    )
    .stdout(Stdio::from(std::fs::File::create(&stdout_path).unwrap()))
    .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()))
    .spawn()
    .unwrap();
    let server = Proc(child);
    let url = wait_for_address(&stdout_path);
    let mut api = Api {
        http: reqwest::Client::new(),
        url,
        answers: Vec::new(),
    };

    // The environment delivers over SMTP; organization `acme` through Mailgun, then Postmark,
    // then Resend (all at the mock provider); organization `beta` through Resend.
    let smtp_dsn = format!(
        "smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{}?ca_file={}&helo=gw.acme.example",
        smtp.port,
        ca.display()
    );
    api.ok(
        Method::PUT,
        "/v1/environments/default/provider",
        Some(&json!({"dsn": smtp_dsn})),
    )
    .await;
    let m = mock.url();
    let chain = json!({
        "primary": {"dsn": format!("mailgun+api://{MAILGUN_KEY}@mg.acme.example?endpoint={m}&webhook_signing_key={MAILGUN_SIGNING}")},
        "failovers": [
            {"type": "postmark", "server_token": POSTMARK_TOKEN, "endpoint": m,
             "webhook_username": POSTMARK_HOOK_USER, "webhook_password": POSTMARK_HOOK_PASSWORD},
            {"type": "resend", "api_key": RESEND_KEY, "endpoint": m, "webhook_secret": resend_hook_secret()},
        ],
        "sender": "Acme <noreply@acme.example>",
    });
    api.ok(
        Method::PUT,
        "/v1/environments/default/organizations/acme/provider",
        Some(&chain),
    )
    .await;
    let beta = json!({"dsn": format!("resend+api://{RESEND_ORG_KEY}@default?endpoint={m}"), "sender": "Beta <noreply@beta.example>"});
    api.ok(
        Method::PUT,
        "/v1/environments/default/organizations/beta/provider",
        Some(&beta),
    )
    .await;
    for path in [
        "/v1/environments/default/provider",
        "/v1/environments/default/organizations/acme/provider",
        "/v1/environments/default/organizations/beta/provider",
    ] {
        api.ok(Method::GET, path, None).await;
        api.call(Method::POST, &format!("{path}/verify"), None)
            .await;
    }

    // Sign-in codes, a magic link and a reset token, through the templates.
    let sends = [
        json!({"environment": "default", "from": "Acme <noreply@acme.example>", "to": "ann@example.com",
               "usage": "SignIn", "data": {"code": CODES[0], "app_name": "Acme"}, "ttl": 600}),
        json!({"environment": "default", "to": "bob@example.com", "organization": "acme",
               "usage": "SignIn", "locale": "fr-CA", "data": {"code": CODES[1]}}),
        json!({"environment": "default", "to": "cy@example.com", "organization": "acme",
               "usage": "MagicLink", "data": {"link": LINK}}),
        json!({"environment": "default", "to": "dee@example.com", "organization": "beta",
               "usage": "ForgotPassword", "data": {"token": TOKEN, "link": format!("https://beta.example/reset?t={TOKEN}")}}),
    ];
    let mut ids = Vec::new();
    for s in &sends {
        let out = api.ok(Method::POST, "/v1/emails", Some(s)).await;
        ids.push(out["id"].as_str().unwrap().to_owned());
    }
    // A preview shows its own data back (nothing is sent): it uses a code of its own.
    api.ok(
        Method::POST,
        "/v1/environments/default/templates/SignIn/preview",
        Some(&json!({"data": {"code": "preview-only-000"}})),
    )
    .await;

    let mut finals = Vec::new();
    for id in &ids {
        finals.push(wait_final(&mut api, id).await);
    }
    for (id, m) in ids.iter().zip(&finals) {
        assert_eq!(m["status"], "sent", "{id}: {m}");
    }
    assert_eq!(finals[0]["provider"], "smtp");
    assert_eq!(finals[1]["provider"], "mailgun");
    assert_eq!(finals[3]["provider"], "resend");
    // They were delivered with their secrets: the SMTP server got the code.
    let mail = smtp.wait_for(1, Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&mail[0].raw).contains(CODES[0]),
        "the code was delivered"
    );

    // After the final state, the stored content is redacted.
    for id in &ids {
        let c = api
            .ok(Method::GET, &format!("/v1/emails/{id}/content"), None)
            .await;
        assert!(c.to_string().contains("[redacted]"), "{id}: {c}");
        api.ok(Method::GET, &format!("/v1/events?message_id={id}"), None)
            .await;
    }
    api.ok(Method::GET, "/v1/events?limit=1000", None).await;
    api.ok(Method::GET, "/v1/environments/default", None).await;
    api.ok(
        Method::GET,
        "/v1/environments/default/recipients/bob@example.com",
        None,
    )
    .await;

    // Webhooks authenticated with the configured secrets (Postmark: Basic; Mailgun: HMAC), and
    // one with a wrong password.
    let pm = finals[1]["provider_message_id"]
        .as_str()
        .unwrap_or("pm")
        .to_owned();
    let postmark = serde_json::to_vec(&json!({"RecordType": "Delivery", "MessageID": pm, "Recipient": "bob@example.com",
        "DeliveredAt": "2026-01-01T00:00:00Z", "Details": "ok", "Metadata": {"mailgate_message_id": ids[1]}}))
    .unwrap();
    let basic = |p: &str| {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{POSTMARK_HOOK_USER}:{p}"))
        )
    };
    assert_eq!(
        api.hook(
            "postmark",
            &[("Authorization", basic(POSTMARK_HOOK_PASSWORD))],
            &postmark
        )
        .await,
        200
    );
    assert_eq!(
        api.hook(
            "postmark",
            &[("Authorization", basic("CANARYwrongguess"))],
            &postmark
        )
        .await,
        401
    );
    let ts = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs())
    .to_string();
    let token = "0".repeat(50);
    let sig = mailgun_signature(&ts, &token);
    let mailgun = serde_json::to_vec(&json!({"signature": {"timestamp": ts, "token": token, "signature": sig},
        "event-data": {"event": "delivered", "id": "mg-evt-1", "timestamp": 1.0, "recipient": "cy@example.com",
        "user-variables": {"mailgate_message_id": ids[2]}}}))
    .unwrap();
    assert_eq!(api.hook("mailgun", &[], &mailgun).await, 200);
    api.ok(Method::GET, "/v1/events?limit=1000", None).await;

    // Stop the server so that everything it writes is written.
    common::stop_gracefully(server);

    let needles = needles();
    let mut leaks = Vec::new();
    let mut log = Vec::new();
    for p in [&stdout_path, &stderr_path] {
        std::fs::File::open(p)
            .unwrap()
            .read_to_end(&mut log)
            .unwrap();
    }
    assert!(
        String::from_utf8_lossy(&log).contains("\"level\":\"DEBUG\""),
        "the log is JSON at debug level"
    );
    for f in found(&log, &needles) {
        leaks.push(format!("log: {f}"));
    }
    for (what, answer) in &api.answers {
        for f in found(answer.as_bytes(), &needles) {
            leaks.push(format!("API answer {what}: {f}"));
        }
    }
    let database: Vec<(String, Vec<u8>)> = if db.url.starts_with("postgres") {
        vec![("PostgreSQL rows".into(), dump_postgres(&db.url).await)]
    } else {
        let path = db.url.trim_start_matches("sqlite://");
        let dbdir = Path::new(path).parent().unwrap();
        // The database's directory, and the server's own (its data directory).
        let mut files = files_under(dbdir);
        files.extend(files_under(dir.path()));
        files
            .into_iter()
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect()
    };
    assert!(!database.is_empty());
    // A debugging aid: NO_LEAKS_KEEP=DIR keeps a copy of the database files to inspect.
    if let Ok(keep) = std::env::var("NO_LEAKS_KEEP") {
        for (what, bytes) in &database {
            let name = Path::new(what).file_name().unwrap();
            std::fs::write(Path::new(&keep).join(name), bytes).unwrap();
        }
    }
    for (what, bytes) in &database {
        for f in found(bytes, &needles) {
            leaks.push(format!("database {what}: {f}"));
        }
    }

    // The search finds what is there: the redaction marker, and the preview's own code (which
    // its answer shows on purpose).
    assert!(
        database.iter().any(|(_, b)| contains(b, b"[redacted]")),
        "the database holds the redacted content"
    );
    let preview = &needles_for("preview code", "preview-only-000");
    assert!(
        api.answers
            .iter()
            .any(|(_, a)| !found(a.as_bytes(), preview).is_empty()),
        "the search finds a value in the API answers"
    );
    assert!(
        !found(&mail[0].raw, &needles).is_empty(),
        "the search finds the code in the delivered mail"
    );

    assert!(
        leaks.is_empty(),
        "secrets or codes leaked:\n{}",
        leaks.join("\n")
    );
}

fn needles_for(name: &str, value: &str) -> Vec<(String, Vec<String>)> {
    vec![(name.to_owned(), forms(value))]
}

fn mailgun_signature(ts: &str, token: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(MAILGUN_SIGNING.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

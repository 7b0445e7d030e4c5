//! Launcher for moto_server (PyPI `moto[server]`) on loopback, playing Amazon SES v2 with
//! SigV4 signature checking on.
//!
//! moto checks signatures once `INITIAL_NO_AUTH_ACTION_COUNT` unauthenticated actions have been
//! spent. The peer starts with exactly three and spends them creating an IAM user, its
//! allow-all policy and an access key: every later request must be signed with that key
//! (`access_key_id`/`secret_access_key`). Setup steps after that (`verify_identity`) pause the
//! checking through `/moto-api/reset-auth` and turn it back on; sent messages are read from
//! `/moto-api/data.json`. The server runs under `$MAILGATE_TEST_PYTHON` (default `python3`).
//!
//! Known moto 5.2 limits: signed `GET` requests to SES v2 always fail the signature check (moto
//! signs the request's headers as if they were the query), `GetAccount` is not implemented (404),
//! and a simple send records only the subject and one body (the HTML one when both are given).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The number of unauthenticated actions the setup spends (CreateUser, PutUserPolicy,
/// CreateAccessKey).
const SETUP_ACTIONS: u32 = 3;
/// The IAM user the peer creates.
const USER: &str = "mailgate";

/// One message moto recorded from a simple `SendEmail`.
#[derive(Debug, Clone, PartialEq)]
pub struct MotoSentMessage {
    /// moto's message id (the `MessageId` SendEmail returned).
    pub id: String,
    /// The `FromEmailAddress` as sent.
    pub source: String,
    /// The subject.
    pub subject: String,
    /// The recorded body (HTML when present, else text).
    pub body: String,
    /// `ToAddresses`, `CcAddresses`, `BccAddresses` as sent.
    pub destinations: Value,
}

/// A running moto_server on 127.0.0.1 with signature checking on; killed when dropped.
pub struct MotoPeer {
    /// The base URL, e.g. `http://127.0.0.1:40123`; use it as the SES endpoint override.
    pub endpoint: String,
    /// The access key id of the IAM user the peer created.
    pub access_key_id: String,
    /// The secret access key of that user.
    pub secret_access_key: String,
    child: Child,
    http: reqwest::Client,
}

impl Drop for MotoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// An `Authorization` header that only names the service, for moto's unauthenticated actions.
fn unsigned(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDMOTOSETUP/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}

fn xml_field(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_owned())
}

impl MotoPeer {
    /// Starts moto on a free port, waits until it answers and creates the signing user; panics
    /// with moto's output when it cannot.
    pub async fn start() -> Self {
        let python = std::env::var("MAILGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let http = reqwest::Client::new();
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&python)
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_ACTIONS.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run {python} -m moto.server (pip install 'moto[server]'): {e}")
                });
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("moto_server exited with {status} (port {port} taken, or moto not installed)");
                    break;
                }
                let ready = http
                    .get(format!("{endpoint}/moto-api/data.json"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    let mut peer = Self {
                        endpoint,
                        access_key_id: String::new(),
                        secret_access_key: String::new(),
                        child,
                        http,
                    };
                    peer.create_user().await;
                    return peer;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = "moto_server did not answer within 30 s".into();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("could not start moto_server: {last_error}");
    }

    async fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut form = vec![("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let resp = self
            .http
            .post(&self.endpoint)
            .header("Authorization", unsigned("iam"))
            .form(&form)
            .send()
            .await
            .expect("moto IAM request failed");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "moto IAM {params:?}: {status} {body}");
        body
    }

    /// Spends the unauthenticated actions on a user with an allow-all policy and an access key.
    async fn create_user(&mut self) {
        self.iam(&[("Action", "CreateUser"), ("UserName", USER)])
            .await;
        let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", USER),
            ("PolicyName", "all"),
            ("PolicyDocument", &policy.to_string()),
        ])
        .await;
        let body = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", USER)])
            .await;
        self.access_key_id = xml_field(&body, "AccessKeyId").expect("no AccessKeyId from moto");
        self.secret_access_key =
            xml_field(&body, "SecretAccessKey").expect("no SecretAccessKey from moto");
    }

    /// Sets how many further requests moto accepts unsigned (`f64::INFINITY`: checking off,
    /// `0.0`: every request must be signed).
    pub async fn set_unauthenticated_actions(&self, count: f64) {
        let body = if count.is_infinite() {
            "inf".to_owned()
        } else {
            count.to_string()
        };
        let resp = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .body(body)
            .send()
            .await
            .expect("moto reset-auth failed");
        assert!(resp.status().is_success());
    }

    /// Creates an SES identity (a domain or an address), which moto treats as verified.
    pub async fn verify_identity(&self, identity: &str) {
        self.set_unauthenticated_actions(f64::INFINITY).await;
        let resp = self
            .http
            .post(format!("{}/v2/email/identities", self.endpoint))
            .header("Authorization", unsigned("ses"))
            .json(&json!({"EmailIdentity": identity}))
            .send()
            .await
            .expect("moto CreateEmailIdentity failed");
        let status = resp.status();
        self.set_unauthenticated_actions(0.0).await;
        assert!(status.is_success(), "moto CreateEmailIdentity: {status}");
    }

    /// Every message moto recorded from simple sends, oldest first.
    pub async fn sent_messages(&self) -> Vec<MotoSentMessage> {
        let data: Value = self
            .http
            .get(format!("{}/moto-api/data.json", self.endpoint))
            .send()
            .await
            .expect("moto data.json failed")
            .json()
            .await
            .expect("moto data.json is not JSON");
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        data["ses"]["Message"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|m| MotoSentMessage {
                        id: s(m, "id"),
                        source: s(m, "source"),
                        subject: s(m, "subject"),
                        body: s(m, "body"),
                        destinations: m["destinations"].clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

//! The API client subcommands (`environments`, `keys`, `send`, `emails`, `events`) against a real
//! `mailgate serve` process.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{mailgate, start_server};

fn client(dir: &Path, url: &str, key: &str, args: &[&str]) -> Output {
    mailgate(
        dir,
        args,
        &[("MAILGATE_URL", url), ("MAILGATE_API_KEY", key)],
    )
    .output()
    .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(out: Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn the_client_manages_environments_and_keys_and_sends() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, admin) = start_server(dir.path());
    let admin = admin.unwrap();
    let d = dir.path();

    let created = ok(client(
        d,
        &url,
        &admin,
        &["environments", "create", "staging"],
    ));
    assert!(
        created.starts_with("created environment staging (env_"),
        "{created}"
    );
    let list = json(client(d, &url, &admin, &["environments", "list", "--json"]));
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"default") && names.contains(&"staging"),
        "{names:?}"
    );

    let key = json(client(
        d,
        &url,
        &admin,
        &[
            "keys",
            "--environment",
            "staging",
            "create",
            "--name",
            "backend",
            "--json",
        ],
    ));
    let secret = key["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("mg_"));
    let listed = ok(client(
        d,
        &url,
        &admin,
        &["keys", "--environment", "staging", "list"],
    ));
    assert!(
        listed.contains("backend") && !listed.contains(&secret),
        "keys list must not show secrets: {listed}"
    );

    // The environment key sends without naming its environment.
    let sent = ok(client(
        d,
        &url,
        &secret,
        &[
            "send",
            "--from",
            "Acme <noreply@acme.example>",
            "--to",
            "ann@example.com",
            "--subject",
            "Hello",
            "--text",
            "Hi Ann",
            "--tag",
            "welcome",
        ],
    ));
    let id = sent.split_whitespace().nth(1).unwrap().to_owned();
    assert!(sent.starts_with("queued msg_"), "{sent}");

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = json(client(d, &url, &secret, &["emails", "--json", "get", &id]));
        if m["status"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let readable = ok(client(d, &url, &secret, &["emails", "get", &id]));
    assert!(
        readable.contains("delivered") && readable.contains("capture"),
        "{readable}"
    );

    let events = ok(client(
        d,
        &url,
        &secret,
        &["events", "--json", "--type", "delivered"],
    ));
    let lines: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message_id"], id.as_str());

    // Errors come back readable, with the code and the field, and a failing exit status.
    let bad = client(
        d,
        &url,
        &secret,
        &[
            "send",
            "--from",
            "not-an-address",
            "--to",
            "ann@example.com",
            "--subject",
            "x",
            "--text",
            "y",
        ],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("invalid_address") && stderr.contains("from"),
        "{stderr}"
    );

    let forbidden = client(d, &url, &secret, &["environments", "list"]);
    assert!(!forbidden.status.success());
    assert!(String::from_utf8_lossy(&forbidden.stderr).contains("HTTP 403"));

    let revoked = ok(client(
        d,
        &url,
        &admin,
        &[
            "keys",
            "--environment",
            "staging",
            "delete",
            key["id"].as_str().unwrap(),
        ],
    ));
    assert!(revoked.starts_with("deleted key"));
    let after = client(d, &url, &secret, &["emails", "get", &id]);
    assert!(String::from_utf8_lossy(&after.stderr).contains("HTTP 401"));
}

#[test]
fn the_client_refuses_to_run_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = mailgate(dir.path(), &["events"], &[])
        .env_remove("MAILGATE_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAILGATE_API_KEY"));
}

#[test]
fn the_client_configures_an_smtp_provider_verifies_it_and_sends_through_it() {
    use mailgate_testkit::peers::smtp::{SmtpPeer, SmtpPeerOptions, SmtpPeerTls};

    let smtp = SmtpPeer::start(SmtpPeerOptions {
        tls: SmtpPeerTls::StartTls,
        require_starttls: true,
        auth: Some(("mailer".into(), "s3cret-pass".into())),
        auth_require_tls: true,
        ..SmtpPeerOptions::default()
    });
    let ca = smtp
        .ca_pem_path
        .clone()
        .expect("the STARTTLS peer has a CA");
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, admin) = start_server(dir.path());
    let admin = admin.unwrap();
    let d = dir.path();

    let dsn = format!(
        "smtp://mailer:s3cret-pass@127.0.0.1:{}?ca_file={}&helo=gw.acme.example",
        smtp.port,
        ca.display()
    );
    let set = ok(client(
        d,
        &url,
        &admin,
        &["providers", "--environment", "default", "set", &dsn],
    ));
    assert!(set.starts_with("smtp provider (environment)"), "{set}");
    assert!(
        !set.contains("s3cret-pass"),
        "the password is never shown: {set}"
    );
    let shown = json(client(
        d,
        &url,
        &admin,
        &["providers", "show", "default", "--json"],
    ));
    assert_eq!(shown["provider"]["type"], "smtp");
    assert!(!shown.to_string().contains("s3cret-pass"));

    let report = ok(client(d, &url, &admin, &["providers", "verify", "default"]));
    assert!(
        report.contains("primary (smtp): OK") && report.contains("mailer"),
        "{report}"
    );

    let sent = ok(client(
        d,
        &url,
        &admin,
        &[
            "send",
            "--environment",
            "default",
            "--from",
            "Acme <noreply@acme.example>",
            "--to",
            "ann@example.com",
            "--subject",
            "Over SMTP",
            "--text",
            "hi",
        ],
    ));
    let id = sent.split_whitespace().nth(1).unwrap().to_owned();
    let mail = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(mail[0].envelope_to, ["ann@example.com"]);
    assert!(String::from_utf8_lossy(&mail[0].raw).contains("Subject: Over SMTP"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = json(client(d, &url, &admin, &["emails", "--json", "get", &id]));
        if m["status"] == "sent" {
            assert_eq!(m["provider"], "smtp");
            break;
        }
        assert!(Instant::now() < deadline, "not sent: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A wrong password: verify says so, and the command fails.
    let bad = format!(
        "smtp://mailer:wrong@127.0.0.1:{}?ca_file={}",
        smtp.port,
        ca.display()
    );
    ok(client(d, &url, &admin, &["providers", "set", &bad]));
    let out = client(d, &url, &admin, &["providers", "verify"]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("NOT OK") && !report.contains("wrong"),
        "{report}"
    );

    let removed = ok(client(d, &url, &admin, &["providers", "remove", "default"]));
    assert!(removed.contains("default now uses the default provider"));
    let shown = json(client(d, &url, &admin, &["providers", "show", "--json"]));
    assert_eq!(shown["source"], "default");

    // An organization's own chain and sender.
    let chain = "failover(capture:// capture://?delay_ms=1&max_per_second=5)";
    let set = ok(client(
        d,
        &url,
        &admin,
        &[
            "providers",
            "--organization",
            "acme",
            "set",
            chain,
            "--sender",
            "Acme <no-reply@acme.example>",
        ],
    ));
    assert!(
        set.starts_with("failover chain of 2 providers (organization)")
            && set.contains("sender: Acme <no-reply@acme.example>")
            && set.contains("failover-1 (capture)"),
        "{set}"
    );
    let report = ok(client(
        d,
        &url,
        &admin,
        &["providers", "--organization", "acme", "verify"],
    ));
    assert!(
        report.contains("primary (capture): OK") && report.contains("failover-1 (capture): OK"),
        "{report}"
    );
    let removed = ok(client(
        d,
        &url,
        &admin,
        &["providers", "--organization", "acme", "remove"],
    ));
    assert!(
        removed.contains("acme now uses the provider chain of default"),
        "{removed}"
    );
}

#[test]
fn the_client_sets_gets_lists_previews_and_deletes_templates() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, admin) = start_server(dir.path());
    let admin = admin.unwrap();
    let d = dir.path();
    let html = d.join("signin.html");
    std::fs::write(&html, "<p>Code: {{ code }}</p>").unwrap();
    let html = html.to_str().unwrap();

    let bad = client(
        d,
        &url,
        &admin,
        &[
            "templates",
            "set",
            "SignIn",
            "--subject",
            "{{ code",
            "--html",
            html,
        ],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid_template"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let saved = ok(client(
        d,
        &url,
        &admin,
        &[
            "templates",
            "--locale",
            "fr",
            "set",
            "SignIn",
            "--subject",
            "Code {{ code }}",
            "--html",
            html,
        ],
    ));
    assert!(saved.contains("template SignIn (fr) saved"), "{saved}");
    let list = json(client(d, &url, &admin, &["templates", "list", "--json"]));
    assert_eq!(list["data"][0]["locale"], "fr");
    let got = json(client(
        d,
        &url,
        &admin,
        &["templates", "--locale", "fr", "get", "SignIn", "--json"],
    ));
    assert_eq!(got["template"]["subject"], "Code {{ code }}");
    let preview = json(client(
        d,
        &url,
        &admin,
        &[
            "templates",
            "--locale",
            "fr-CA",
            "preview",
            "SignIn",
            "--data",
            r#"{"code": "424242"}"#,
            "--json",
        ],
    ));
    assert_eq!(preview["subject"], "Code 424242");
    assert_eq!(preview["locale"], "fr");
    ok(client(
        d,
        &url,
        &admin,
        &["templates", "--locale", "fr", "delete", "SignIn"],
    ));
    let builtin = json(client(
        d,
        &url,
        &admin,
        &["templates", "get", "SignIn", "--json"],
    ));
    assert_eq!(builtin["source"], "builtin");
}

#[test]
fn rotating_the_secret_key_keeps_provider_credentials_and_notification_secrets_readable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server, url, admin) = start_server(d);
    let admin = admin.unwrap();
    ok(client(
        d,
        &url,
        &admin,
        &["providers", "set", "capture://?delay_ms=1"],
    ));
    ok(client(
        d,
        &url,
        &admin,
        &[
            "notifications",
            "set",
            "--webhook",
            "https://hooks.example.com/mailgate",
            "--email",
            "ops@acme.example",
        ],
    ));
    let shown = ok(client(d, &url, &admin, &["notifications", "show"]));
    assert!(
        shown.contains("ops@acme.example") && shown.contains("https://hooks.example.com/mailgate"),
        "{shown}"
    );
    let before = std::fs::read_to_string(d.join("mailgate-data/secret.key")).unwrap();
    common::stop_gracefully(server);

    let rotated = ok(mailgate(d, &["secrets", "rotate"], &[]).output().unwrap());
    assert!(rotated.contains("re-encrypted 1 provider configuration(s) and the notification targets of 1 environment(s)"), "{rotated}");
    let after = std::fs::read_to_string(d.join("mailgate-data/secret.key")).unwrap();
    assert_ne!(before, after, "the key file holds the new key");

    // With the new key, the stored provider still opens (verify builds it from the sealed form).
    let (_server, url, _) = start_server(d);
    let report = ok(client(d, &url, &admin, &["providers", "verify"]));
    assert!(report.contains("primary (capture): OK"), "{report}");
}

#[test]
fn the_client_manages_suppressions_and_shows_a_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, admin) = start_server(dir.path());
    let admin = admin.unwrap();
    let d = dir.path();
    let added = ok(client(
        d,
        &url,
        &admin,
        &["suppressions", "add", "Ann@Example.net", "--note", "asked"],
    ));
    assert!(added.starts_with("added: ann@example.net"), "{added}");
    ok(client(
        d,
        &url,
        &admin,
        &[
            "suppressions",
            "add",
            "bo@example.net",
            "--reason",
            "complaint",
        ],
    ));
    let list = json(client(
        d,
        &url,
        &admin,
        &["suppressions", "list", "--reason", "complaint", "--json"],
    ));
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let check = ok(client(
        d,
        &url,
        &admin,
        &["suppressions", "check", "ann@example.net"],
    ));
    assert!(
        check.starts_with("suppressed: ann@example.net") && check.contains("manual"),
        "{check}"
    );
    let refused = client(
        d,
        &url,
        &admin,
        &[
            "send",
            "--environment",
            "default",
            "--from",
            "noreply@acme.example",
            "--to",
            "ann@example.net",
            "--subject",
            "Hi",
            "--text",
            "x",
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("recipient_suppressed"));
    let shown = ok(client(
        d,
        &url,
        &admin,
        &["recipients", "show", "ann@example.net"],
    ));
    assert!(
        shown.starts_with("ann@example.net: SUPPRESSED (manual"),
        "{shown}"
    );
    ok(client(
        d,
        &url,
        &admin,
        &["suppressions", "remove", "ann@example.net"],
    ));
    let check = ok(client(
        d,
        &url,
        &admin,
        &["suppressions", "check", "ann@example.net"],
    ));
    assert!(check.starts_with("not suppressed"), "{check}");
    ok(client(
        d,
        &url,
        &admin,
        &[
            "send",
            "--environment",
            "default",
            "--from",
            "noreply@acme.example",
            "--to",
            "ann@example.net",
            "--subject",
            "Hi",
            "--text",
            "x",
        ],
    ));
    let shown = json(client(
        d,
        &url,
        &admin,
        &["recipients", "show", "ann@example.net", "--json"],
    ));
    assert_eq!(shown["messages"].as_array().unwrap().len(), 1);
}

//! Provider chains end to end (issue 7): failover past a real HTTP provider answering 503, the
//! circuit breaker's cool-down and probe, no failover for a refused recipient, round-robin,
//! organizations with their own chain and sender, the sandbox, and the per-recipient cap. The
//! providers are `mailgate-mock-provider` servers on loopback speaking Postmark's API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::dispatcher::DispatcherConfig;
use mailgate_core::provider::ProviderResolver;
use mailgate_core::retry::RetryPolicy;
use mailgate_mock_provider::{spawn, Behavior, Faults, MockHandle};
use mailgate_testkit::app::TestApp;
use serde_json::{json, Value};

use super::support::{body, default_environment, email_with, error, expect, wait_for_status};

async fn mock(faults: Faults) -> MockHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    spawn(
        addr,
        Behavior {
            faults,
            ..Behavior::default()
        },
    )
    .await
    .expect("mock provider")
}

fn unavailable() -> Faults {
    Faults {
        unavailable: 1.0,
        ..Faults::default()
    }
}

/// Sets the `default` environment's provider chain to `dsn` through the API; the answer.
async fn set_provider(app: &TestApp, dsn: &str) -> Value {
    body(
        app.put_json(
            "/v1/environments/default/provider",
            &app.admin_key,
            &json!({"dsn": dsn}),
        )
        .await,
        200,
    )
    .await
}

fn postmark(m: &MockHandle, token: &str) -> String {
    format!(
        "postmark+api://{token}@default?message_stream=outbound&endpoint={}",
        m.url()
    )
}

async fn app(concurrency: usize) -> TestApp {
    let retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(200),
    };
    let config = DispatcherConfig {
        concurrency,
        poll_interval: Duration::from_millis(20),
        ..DispatcherConfig::default()
    };
    TestApp::builder()
        .with_registry_dispatcher(retry, config)
        .spawn()
        .await
}

/// `email_with(changes)` for the default environment (the tests use the admin key).
fn mail(changes: Value) -> Value {
    let mut m = email_with(changes);
    m["environment"] = json!("default");
    m
}

async fn send(app: &TestApp, changes: Value) -> String {
    let r = body(
        app.post_json("/v1/emails", &app.admin_key, &mail(changes))
            .await,
        202,
    )
    .await;
    r["id"].as_str().unwrap().to_owned()
}

async fn events(app: &TestApp, id: &str) -> Vec<Value> {
    let m = body(
        app.get(&format!("/v1/emails/{id}"), &app.admin_key).await,
        200,
    )
    .await;
    m["events"].as_array().cloned().unwrap_or_default()
}

fn sent_event(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["type"] == "sent")
        .unwrap_or_else(|| panic!("no sent event in {events:?}"))
}

#[tokio::test]
async fn a_503_primary_fails_over_and_is_probed_after_its_cool_down() {
    let primary = mock(unavailable()).await;
    let secondary = mock(Faults::default()).await;
    let app = app(1).await;
    let chain = json!({
        "primary": {"dsn": postmark(&primary, "pm-primary")},
        "failovers": [{"dsn": postmark(&secondary, "pm-secondary"), "name": "backup"}],
        "circuit": {"failure_threshold": 1, "cooldown_seconds": 2},
    });
    let set = body(
        app.put_json("/v1/environments/default/provider", &app.admin_key, &chain)
            .await,
        200,
    )
    .await;
    assert_eq!(set["provider"]["mode"], "failover");
    assert_eq!(set["providers"][1]["name"], "backup");

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&app, json!({"subject": format!("failover {i}")})).await);
    }
    for id in &ids {
        wait_for_status(&app, id, "sent").await;
    }
    // Every message went through the second provider, once each.
    let accepted = secondary.accepted_by_id();
    for id in &ids {
        assert_eq!(
            accepted.get(id),
            Some(&1),
            "{id} at the secondary: {accepted:?}"
        );
    }
    // The first message found the primary failing and opened its circuit; the rest skipped it.
    assert_eq!(primary.stats().requests, 1, "{:?}", primary.stats());
    let first = events(&app, &ids[0]).await;
    let sent = sent_event(&first);
    assert_eq!(sent["data"]["route"], "backup");
    assert_eq!(sent["data"]["provider"], "postmark");
    assert_eq!(sent["data"]["failovers"][0]["route"], "primary");
    assert_eq!(sent["data"]["failovers"][0]["code"], "http_503");
    let later = events(&app, &ids[4]).await;
    assert_eq!(
        sent_event(&later)["data"]["failovers"][0]["code"],
        "circuit_open"
    );

    // The primary recovers; after the cool-down one message probes it and it takes traffic again.
    primary.set_behavior(Behavior::default());
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let probe = send(&app, json!({"subject": "probe"})).await;
    wait_for_status(&app, &probe, "sent").await;
    let e = events(&app, &probe).await;
    assert_eq!(sent_event(&e)["data"]["route"], "primary");
    assert!(sent_event(&e)["data"]["failovers"].is_null());
    assert_eq!(primary.accepted_by_id().get(&probe), Some(&1));
    app.stop().await;
}

#[tokio::test]
async fn a_refused_recipient_is_not_sent_through_another_provider() {
    // Postmark 406: the recipient is inactive (hard-bounced before).
    let primary = mock(Faults {
        rejected: 1.0,
        ..Faults::default()
    })
    .await;
    let secondary = mock(Faults::default()).await;
    let app = app(4).await;
    let dsn = format!(
        "failover({} {})",
        postmark(&primary, "pm-a"),
        postmark(&secondary, "pm-b")
    );
    set_provider(&app, &dsn).await;
    let id = send(&app, json!({"to": "gone@example.net"})).await;
    let m = wait_for_status(&app, &id, "failed").await;
    assert_eq!(m["attempts"], 1, "a permanent refusal is not retried: {m}");
    assert_eq!(primary.requests_by_id().get(&id), Some(&1));
    assert_eq!(secondary.stats().requests, 0, "{:?}", secondary.stats());
    let e = events(&app, &id).await;
    let failed = e.iter().find(|e| e["type"] == "failed").unwrap();
    assert_eq!(failed["data"]["route"], "primary");
    assert_eq!(failed["data"]["retryable"], false);
    app.stop().await;
}

#[tokio::test]
async fn roundrobin_spreads_messages_evenly() {
    let mocks = [
        mock(Faults::default()).await,
        mock(Faults::default()).await,
        mock(Faults::default()).await,
    ];
    let app = app(8).await;
    let dsn = format!(
        "roundrobin({} {} {})",
        postmark(&mocks[0], "pm-1"),
        postmark(&mocks[1], "pm-2"),
        postmark(&mocks[2], "pm-3")
    );
    let set = set_provider(&app, &dsn).await;
    assert_eq!(set["provider"]["mode"], "roundrobin");
    assert_eq!(set["provider"]["providers"].as_array().unwrap().len(), 3);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(send(&app, json!({"subject": format!("rr {i}")})).await);
    }
    for id in &ids {
        wait_for_status(&app, id, "sent").await;
    }
    let counts: Vec<u64> = mocks.iter().map(|m| m.stats().unique_ids_2xx).collect();
    assert_eq!(counts.iter().sum::<u64>(), 30, "{counts:?}");
    for c in &counts {
        assert!((9..=11).contains(c), "uneven spread: {counts:?}");
    }
    let mut routes: HashMap<String, u32> = HashMap::new();
    for id in &ids {
        let e = events(&app, id).await;
        *routes
            .entry(sent_event(&e)["data"]["route"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(routes.len(), 3, "{routes:?}");
    app.stop().await;
}

/// Workers that look up a route the registry has not cached yet, all at once, get one route:
/// with one each, every worker's first message went to the first provider of a round-robin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_lookups_share_one_route() {
    let mocks = [mock(Faults::default()).await, mock(Faults::default()).await];
    let app = app(1).await;
    let dsn = format!(
        "roundrobin({} {})",
        postmark(&mocks[0], "pm-1"),
        postmark(&mocks[1], "pm-2")
    );
    set_provider(&app, &dsn).await;
    let env = default_environment(&app).await;
    let mut lookups = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let providers = Arc::clone(&app.providers);
        lookups.spawn(async move { providers.route(&env, None).await.unwrap() });
    }
    let routes = lookups.join_all().await;
    assert_eq!(routes[0].members().len(), 2);
    for route in &routes {
        assert!(Arc::ptr_eq(&routes[0], route));
    }
    app.stop().await;
}

#[tokio::test]
async fn an_organization_is_routed_to_its_own_provider_and_sender() {
    let shared = mock(Faults::default()).await;
    let acme = mock(Faults::default()).await;
    let app = app(4).await;
    set_provider(&app, &postmark(&shared, "pm-shared")).await;
    let path = "/v1/environments/default/organizations/acme/provider";
    let r = app.get(path, &app.admin_key).await;
    assert_eq!(error(r).await, expect(404, "not_found", None));
    let set = body(
        app.put_json(
            path,
            &app.admin_key,
            &json!({"dsn": postmark(&acme, "pm-acme-secret"), "sender": "Acme <no-reply@acme.example>"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(set["source"], "organization");
    assert_eq!(set["organization"], "acme");
    assert!(!set.to_string().contains("pm-acme-secret"), "{set}");

    let mut with_org = mail(json!({"organization": "acme"}));
    with_org.as_object_mut().unwrap().remove("from");
    let r = body(
        app.post_json("/v1/emails", &app.admin_key, &with_org).await,
        202,
    )
    .await;
    let org_id = r["id"].as_str().unwrap().to_owned();
    let plain_id = send(&app, json!({})).await;
    wait_for_status(&app, &org_id, "sent").await;
    wait_for_status(&app, &plain_id, "sent").await;
    assert_eq!(acme.accepted_by_id().get(&org_id), Some(&1));
    assert!(!acme.accepted_by_id().contains_key(&plain_id));
    assert_eq!(shared.accepted_by_id().get(&plain_id), Some(&1));
    assert!(!shared.accepted_by_id().contains_key(&org_id));
    let content = body(
        app.get(&format!("/v1/emails/{org_id}/content"), &app.admin_key)
            .await,
        200,
    )
    .await;
    assert!(
        content.to_string().contains("no-reply@acme.example"),
        "{content}"
    );

    // An unknown organization uses the environment's chain; a bad name is refused.
    let other = send(&app, json!({"organization": "globex"})).await;
    wait_for_status(&app, &other, "sent").await;
    assert_eq!(shared.accepted_by_id().get(&other), Some(&1));
    let r = app
        .post_json(
            "/v1/emails",
            &app.admin_key,
            &mail(json!({"organization": "bad name"})),
        )
        .await;
    assert_eq!(
        error(r).await,
        expect(422, "invalid_organization", Some("organization"))
    );

    assert_eq!(app.delete(path, &app.admin_key).await.status(), 204);
    assert_eq!(app.delete(path, &app.admin_key).await.status(), 404);
    app.stop().await;
}

async fn patch(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url("/v1/environments/default"))
        .bearer_auth(&app.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sandbox_delivers_allow_listed_recipients_and_captures_the_rest() {
    let provider = mock(Faults::default()).await;
    let app = app(4).await;
    set_provider(&app, &postmark(&provider, "pm-sandbox")).await;
    let r = patch(
        &app,
        json!({"sandbox": {"enabled": true, "allow": ["Ann@Example.com", "@team.example"]}}),
    )
    .await;
    let env = body(r, 200).await;
    assert_eq!(env["settings"]["sandbox"]["enabled"], true, "{env}");

    let allowed = send(&app, json!({"to": "ann@example.com"})).await;
    let team = send(
        &app,
        json!({"to": ["bo@team.example"], "cc": ["ann@example.com"]}),
    )
    .await;
    let held = send(
        &app,
        json!({"to": ["ann@example.com", "eve@elsewhere.example"]}),
    )
    .await;
    wait_for_status(&app, &allowed, "sent").await;
    wait_for_status(&app, &team, "sent").await;
    let m = wait_for_status(&app, &held, "sandboxed").await;
    assert_eq!(m["provider"], "capture", "{m}");
    let e = events(&app, &held).await;
    assert!(e.iter().any(|e| e["type"] == "sandboxed"), "{e:?}");
    assert!(!provider.requests_by_id().contains_key(&held));
    assert_eq!(provider.accepted_by_id().get(&allowed), Some(&1));
    let env_id = default_environment(&app).await;
    let captured = app.storage.list_captured(&env_id, 10).await.unwrap();
    assert!(
        captured.iter().any(|c| c.message_id.to_string() == held),
        "the sandboxed message is captured"
    );

    let r = patch(
        &app,
        json!({"sandbox": {"enabled": true, "allow": ["not an address"]}}),
    )
    .await;
    assert_eq!(
        error(r).await,
        expect(422, "invalid_sandbox_entry", Some("sandbox.allow[0]"))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_recipient_cap_answers_429_with_the_retry_time() {
    let app = app(4).await;
    let r = patch(
        &app,
        json!({"recipient_rate_limit": {"max": 2, "window_seconds": 600}}),
    )
    .await;
    body(r, 200).await;
    send(&app, json!({"to": "victim@example.net"})).await;
    send(&app, json!({"cc": ["victim@example.net"]})).await;
    let r = app
        .post_json(
            "/v1/emails",
            &app.admin_key,
            &mail(json!({"to": ["other@example.net", "Victim@example.net"]})),
        )
        .await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((595..=600).contains(&retry_after), "{retry_after}");
    let err = body(r, 429).await;
    assert_eq!(err["error"]["code"], "recipient_rate_limited");
    assert_eq!(err["error"]["field"], "to[1]");
    assert_eq!(err["error"]["details"]["retry_after_seconds"], retry_after);
    send(&app, json!({"to": "other@example.net"})).await;

    // Suppressed and over the cap: the lasting reason wins (422, not "retry later").
    body(
        app.post_json(
            "/v1/environments/default/suppressions",
            &app.admin_key,
            &json!({"address": "victim@example.net"}),
        )
        .await,
        201,
    )
    .await;
    let r = app
        .post_json(
            "/v1/emails",
            &app.admin_key,
            &mail(json!({"to": ["other@example.net", "victim@example.net"]})),
        )
        .await;
    let err = body(r, 422).await;
    assert_eq!(err["error"]["code"], "recipient_suppressed");
    assert_eq!(err["error"]["field"], "to[1]");
    body(
        app.delete(
            "/v1/environments/default/suppressions/victim@example.net",
            &app.admin_key,
        )
        .await,
        204,
    )
    .await;

    // Per usage type: sign-in codes have their own count.
    body(
        patch(
            &app,
            json!({"recipient_rate_limit": {"max": 1, "window_seconds": 60, "per_usage": true}}),
        )
        .await,
        200,
    )
    .await;
    let code = |usage: &str| json!({"environment": "default", "from": "auth@acme.example", "to": "user@example.net", "usage": usage, "data": {"code": "123456"}});
    body(
        app.post_json("/v1/emails", &app.admin_key, &code("SignIn"))
            .await,
        202,
    )
    .await;
    let r = app
        .post_json("/v1/emails", &app.admin_key, &code("SignIn"))
        .await;
    assert_eq!(r.status(), 429);
    body(
        app.post_json("/v1/emails", &app.admin_key, &code("ForgotPassword"))
            .await,
        202,
    )
    .await;
    // Removing the cap lets everything through again.
    body(
        patch(&app, json!({"recipient_rate_limit": null})).await,
        200,
    )
    .await;
    body(
        app.post_json("/v1/emails", &app.admin_key, &code("SignIn"))
            .await,
        202,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn chains_are_validated_shown_masked_and_verified_per_provider() {
    let a = mock(Faults::default()).await;
    let b = mock(Faults::default()).await;
    let app = app(1).await;
    let path = "/v1/environments/default/provider";
    for (bad, field) in [
        (
            json!({"dsn": format!("failover({})", postmark(&a, "x"))}),
            "dsn",
        ),
        (json!({"dsn": "failover(capture:// capture://"}), "dsn"),
        (
            json!({"primary": {"dsn": "capture://"}, "failovers": "capture://"}),
            "failovers",
        ),
        (
            json!({"primary": {"dsn": "capture://"}, "extra": 1}),
            "extra",
        ),
        (
            json!({"primary": {"dsn": "capture://", "max_per_second": 0}}),
            "primary.max_per_second",
        ),
        (
            json!({"providers": [{"dsn": "capture://", "name": "x"}, {"dsn": "capture://", "name": "x"}], "mode": "roundrobin"}),
            "name",
        ),
    ] {
        let r = app.put_json(path, &app.admin_key, &bad).await;
        assert_eq!(
            error(r).await,
            expect(422, "invalid_provider_config", Some(field))
        );
    }
    let chain = json!({
        "primary": {"dsn": format!("{}&max_per_second=5&burst=2", postmark(&a, "pm-first-secret"))},
        "failovers": [{"type": "postmark", "server_token": "pm-second-secret", "endpoint": b.url(), "max_per_second": 1.5}],
    });
    let set = body(app.put_json(path, &app.admin_key, &chain).await, 200).await;
    let text = set.to_string();
    assert!(
        !text.contains("pm-first-secret") && !text.contains("pm-second-secret"),
        "{text}"
    );
    assert_eq!(set["provider"]["primary"]["max_per_second"], 5.0);
    assert_eq!(set["provider"]["primary"]["burst"], 2);
    assert_eq!(set["provider"]["failovers"][0]["max_per_second"], 1.5);
    assert_eq!(set["provider"]["failovers"][0]["name"], "failover-1");

    let report = body(
        app.post_json(&format!("{path}/verify"), &app.admin_key, &json!({}))
            .await,
        200,
    )
    .await;
    let providers = report["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 2, "{report}");
    assert_eq!(providers[0]["name"], "primary");
    assert_eq!(providers[1]["name"], "failover-1");
    for p in providers {
        assert_eq!(p["type"], "postmark");
        let checks = p["checks"].as_array().unwrap();
        assert!(
            checks
                .iter()
                .all(|c| c["aspect"].is_string() && c["status"].is_string()),
            "{p}"
        );
    }
    assert!(!report.to_string().contains("pm-first-secret"));

    // At rest: neither secret is in the database file in clear.
    if let Some(file) = app.db.url.strip_prefix("sqlite://") {
        for f in [file.to_owned(), format!("{file}-wal")] {
            if let Ok(bytes) = std::fs::read(&f) {
                for needle in ["pm-first-secret", "pm-second-secret"] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                        "{needle} in clear in {f}"
                    );
                }
            }
        }
    }
    app.stop().await;
}

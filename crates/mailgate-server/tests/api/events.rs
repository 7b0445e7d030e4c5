//! `GET /v1/events`: filters, cursor pagination and environment scoping.

use mailgate_testkit::app::TestApp;
use serde_json::Value;

use super::support::{body, email, error, expect};

async fn send_n(app: &TestApp, key: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let accepted = body(app.post_json("/v1/emails", key, &email()).await, 202).await;
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn message_ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn events_page_by_cursor_and_filter_by_type_and_message() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let ids = send_n(&app, &key, 5).await;

    let first = body(app.get("/v1/events?type=queued&limit=2", &key).await, 200).await;
    assert_eq!(message_ids(&first), ids[..2]);
    assert_eq!(first["data"][0]["type"], "queued");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = body(
        app.get(
            &format!("/v1/events?type=queued&limit=2&cursor={cursor}"),
            &key,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(message_ids(&second), ids[2..4]);
    let cursor = second["next_cursor"].as_str().unwrap().to_owned();
    let last = body(
        app.get(&format!("/v1/events?limit=2&cursor={cursor}"), &key)
            .await,
        200,
    )
    .await;
    assert_eq!(message_ids(&last), ids[4..]);
    assert!(last["next_cursor"].is_null(), "{last}");

    let all = body(app.get("/v1/events", &key).await, 200).await;
    assert_eq!(message_ids(&all), ids);
    assert!(all["next_cursor"].is_null());
    let exact = body(app.get("/v1/events?limit=5", &key).await, 200).await;
    assert!(
        exact["next_cursor"].is_null(),
        "a full last page has no next cursor"
    );

    let sent = body(app.get("/v1/events?type=sent,delivered", &key).await, 200).await;
    assert_eq!(sent["data"].as_array().unwrap().len(), 0);
    let one = body(
        app.get(&format!("/v1/events?message_id={}", ids[3]), &key)
            .await,
        200,
    )
    .await;
    assert_eq!(message_ids(&one), [ids[3].clone()]);
    let since = body(
        app.get("/v1/events?since=2000-01-01T00:00:00Z", &key).await,
        200,
    )
    .await;
    assert_eq!(message_ids(&since).len(), 5);
    let future = body(app.get("/v1/events?since=4102444800000", &key).await, 200).await;
    assert_eq!(message_ids(&future).len(), 0);
}

#[tokio::test]
async fn invalid_event_queries_name_their_parameter() {
    let app = TestApp::spawn().await;
    let key = &app.admin_key;
    let cases = [
        ("type=queued,nonsense", "invalid_event_type", "type"),
        ("since=yesterday", "invalid_timestamp", "since"),
        ("cursor=abc", "invalid_cursor", "cursor"),
        ("limit=0", "invalid_limit", "limit"),
        ("limit=1001", "invalid_limit", "limit"),
        ("message_id=evt_1", "invalid_id", "message_id"),
    ];
    for (query, code, field) in cases {
        let response = app.get(&format!("/v1/events?{query}"), key).await;
        assert_eq!(
            error(response).await,
            expect(422, code, Some(field)),
            "{query}"
        );
    }
}

#[tokio::test]
async fn events_are_scoped_to_the_keys_environment() {
    let app = TestApp::spawn().await;
    app.create_env("staging").await;
    let staging = app.create_key("staging").await;
    let default = app.create_key("default").await;
    let staging_ids = send_n(&app, &staging, 2).await;
    let default_ids = send_n(&app, &default, 1).await;

    let page = body(app.get("/v1/events", &staging).await, 200).await;
    assert_eq!(message_ids(&page), staging_ids);
    let page = body(
        app.get("/v1/events?environment=staging", &staging).await,
        200,
    )
    .await;
    assert_eq!(message_ids(&page), staging_ids);
    let other = app.get("/v1/events?environment=default", &staging).await;
    assert_eq!(
        error(other).await,
        expect(403, "forbidden_environment", Some("environment"))
    );

    // An admin sees everything, or one environment when it asks.
    let all = body(app.get("/v1/events", &app.admin_key).await, 200).await;
    assert_eq!(
        message_ids(&all),
        [staging_ids.clone(), default_ids.clone()].concat()
    );
    let one = body(
        app.get("/v1/events?environment=default", &app.admin_key)
            .await,
        200,
    )
    .await;
    assert_eq!(message_ids(&one), default_ids);
    let unknown = app
        .get("/v1/events?environment=nowhere", &app.admin_key)
        .await;
    assert_eq!(
        error(unknown).await,
        expect(404, "not_found", Some("environment"))
    );
}

//! `/healthz` and `/readyz`.

use mailgate_testkit::app::TestApp;
use serde_json::json;

use super::support::{body, error, expect};

#[tokio::test]
async fn health_and_readiness_need_no_key() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(body(health, 200).await, json!({"status": "ok"}));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(body(ready, 200).await, json!({"status": "ok"}));

    // Once the database is gone, the server is alive but not ready.
    app.database.close().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(error(ready).await, expect(503, "not_ready", None));
    // Other requests fail without internals.
    let events = app.get("/v1/events", &app.admin_key).await;
    assert_eq!(error(events).await, expect(503, "unavailable", None));
}

//! `/v1/environments`: admin-only CRUD.

use mailgate_testkit::app::TestApp;
use serde_json::json;

use super::support::{body, error, expect};

#[tokio::test]
async fn environments_can_be_created_listed_shown_and_deleted() {
    let app = TestApp::spawn().await;
    let admin = &app.admin_key;
    let created = body(
        app.post_json("/v1/environments", admin, &json!({"name": "staging"}))
            .await,
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("env_"));
    assert_eq!(created["name"], "staging");
    assert!(created["created_at"].as_str().is_some());

    let list = body(app.get("/v1/environments", admin).await, 200).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "staging"]);

    let mut shown = body(app.get("/v1/environments/staging", admin).await, 200).await;
    assert_eq!(
        shown["settings"]["secret_fields"],
        json!(["code", "link", "token", "url"])
    );
    shown.as_object_mut().unwrap().remove("settings");
    assert_eq!(shown, created);
    let by_id = body(app.get(&format!("/v1/environments/{id}"), admin).await, 200).await;
    assert_eq!(by_id["name"], "staging");

    let conflict = app
        .post_json("/v1/environments", admin, &json!({"name": "staging"}))
        .await;
    assert_eq!(
        error(conflict).await,
        expect(409, "environment_exists", Some("name"))
    );
    let invalid = app
        .post_json("/v1/environments", admin, &json!({"name": "Not Valid"}))
        .await;
    assert_eq!(
        error(invalid).await,
        expect(422, "invalid_environment_name", Some("name"))
    );
    let unknown = app
        .post_json(
            "/v1/environments",
            admin,
            &json!({"name": "x", "region": "eu"}),
        )
        .await;
    assert_eq!(
        error(unknown).await,
        expect(422, "unknown_field", Some("region"))
    );

    let deleted = app.delete("/v1/environments/staging", admin).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        error(app.get("/v1/environments/staging", admin).await).await,
        expect(404, "not_found", None)
    );
    assert_eq!(
        error(app.delete(&format!("/v1/environments/{id}"), admin).await).await,
        expect(404, "not_found", None)
    );
}

#[tokio::test]
async fn environment_keys_may_not_manage_environments() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let create = app
        .post_json("/v1/environments", &key, &json!({"name": "mine"}))
        .await;
    assert_eq!(error(create).await, expect(403, "admin_required", None));
    assert_eq!(
        error(app.get("/v1/environments", &key).await).await,
        expect(403, "admin_required", None)
    );
    assert_eq!(
        error(app.get("/v1/environments/default", &key).await).await,
        expect(403, "admin_required", None)
    );
    assert_eq!(
        error(app.delete("/v1/environments/default", &key).await).await,
        expect(403, "admin_required", None)
    );
}

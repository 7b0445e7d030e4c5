//! `/v1/environments/{env}/keys`: creating, listing and deleting an environment's keys.

use mailgate_testkit::app::TestApp;
use serde_json::json;

use super::support::{body, email, error, expect};

#[tokio::test]
async fn keys_can_be_created_listed_used_and_deleted() {
    let app = TestApp::spawn().await;
    let env_id = app.create_env("staging").await;
    let created = app
        .post_json(
            "/v1/environments/staging/keys",
            &app.admin_key,
            &json!({"name": "ci"}),
        )
        .await;
    let created = body(created, 201).await;
    let secret = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("mg_"));
    assert!(key_id.starts_with("key_"));
    assert_eq!(created["name"], "ci");
    assert_eq!(created["environment"], env_id);
    assert_eq!(created["hint"], secret[..7]);

    let list = body(
        app.get(&format!("/v1/environments/{env_id}/keys"), &app.admin_key)
            .await,
        200,
    )
    .await;
    let keys = list["data"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], key_id.as_str());
    assert!(
        keys[0].get("key").is_none(),
        "secrets are shown only once: {list}"
    );
    assert!(!list.to_string().contains(&secret[7..]));

    // The new key works, and manages its own environment's keys.
    body(app.post_json("/v1/emails", &secret, &email()).await, 202).await;
    let second = body(
        app.post_json(
            "/v1/environments/staging/keys",
            &secret,
            &json!({"name": "second"}),
        )
        .await,
        201,
    )
    .await;
    body(app.get("/v1/environments/staging/keys", &secret).await, 200).await;

    let deleted = app
        .delete(
            &format!("/v1/environments/staging/keys/{key_id}"),
            second["key"].as_str().unwrap(),
        )
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        error(app.post_json("/v1/emails", &secret, &email()).await).await,
        expect(401, "unauthorized", None)
    );
    let again = app
        .delete(
            &format!("/v1/environments/staging/keys/{key_id}"),
            &app.admin_key,
        )
        .await;
    assert_eq!(error(again).await, expect(404, "not_found", None));
    let bad_id = app
        .delete("/v1/environments/staging/keys/nonsense", &app.admin_key)
        .await;
    assert_eq!(error(bad_id).await, expect(404, "not_found", None));
}

#[tokio::test]
async fn keys_of_one_environment_cannot_touch_another() {
    let app = TestApp::spawn().await;
    app.create_env("staging").await;
    let staging = app.create_key("staging").await;
    let default_key = app.create_key("default").await;
    let create = app
        .post_json(
            "/v1/environments/default/keys",
            &staging,
            &json!({"name": "x"}),
        )
        .await;
    assert_eq!(
        error(create).await,
        expect(403, "forbidden_environment", Some("env"))
    );
    let list = app.get("/v1/environments/default/keys", &staging).await;
    assert_eq!(
        error(list).await,
        expect(403, "forbidden_environment", Some("env"))
    );
    // Unknown environments look the same as other environments to an environment key.
    let unknown = app.get("/v1/environments/nowhere/keys", &staging).await;
    assert_eq!(
        error(unknown).await,
        expect(403, "forbidden_environment", Some("env"))
    );
    let unknown = app
        .get("/v1/environments/nowhere/keys", &app.admin_key)
        .await;
    assert_eq!(error(unknown).await, expect(404, "not_found", Some("env")));
    // Sending into another environment.
    let send = app
        .post_json(
            "/v1/emails",
            &default_key,
            &super::support::email_with(json!({"environment": "staging"})),
        )
        .await;
    assert_eq!(
        error(send).await,
        expect(403, "forbidden_environment", Some("environment"))
    );
    let invalid = app
        .post_json(
            "/v1/environments/staging/keys",
            &staging,
            &json!({"name": ""}),
        )
        .await;
    assert_eq!(
        error(invalid).await,
        expect(422, "invalid_name", Some("name"))
    );
}

#[tokio::test]
async fn deleting_an_environment_revokes_its_keys() {
    let app = TestApp::spawn().await;
    app.create_env("temp").await;
    let key = app.create_key("temp").await;
    body(app.post_json("/v1/emails", &key, &email()).await, 202).await;
    assert_eq!(
        app.delete("/v1/environments/temp", &app.admin_key)
            .await
            .status(),
        204
    );
    assert_eq!(
        error(app.post_json("/v1/emails", &key, &email()).await).await,
        expect(401, "unauthorized", None)
    );
}

//! The suppression list and the recipient view over the API.

use mailgate_testkit::app::TestApp;
use serde_json::json;

use super::support::{body, error};

#[tokio::test]
async fn add_list_check_remove_and_the_recipient_view() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let base = "/v1/environments/default/suppressions";
    let added = body(
        app.post_json(
            base,
            &key,
            &json!({"address": "Ann@Example.NET", "note": "asked by phone"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        (added["address"].as_str(), added["reason"].as_str()),
        (Some("ann@example.net"), Some("manual"))
    );
    body(
        app.post_json(
            base,
            &key,
            &json!({"address": "bo@example.net", "reason": "complaint"}),
        )
        .await,
        201,
    )
    .await;
    body(
        app.post_json(
            base,
            &key,
            &json!({"address": "cy@example.org", "reason": "hard_bounce"}),
        )
        .await,
        201,
    )
    .await;
    let e = error(
        app.post_json(base, &key, &json!({"address": "not an address"}))
            .await,
    )
    .await;
    assert_eq!((e.status, e.code.as_str()), (422, "invalid_address"));

    let all = body(app.get(base, &key).await, 200).await;
    let addresses: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        ["ann@example.net", "bo@example.net", "cy@example.org"]
    );
    let page = body(app.get(&format!("{base}?limit=2"), &key).await, 200).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = body(
        app.get(&format!("{base}?limit=2&cursor={cursor}"), &key)
            .await,
        200,
    )
    .await;
    assert_eq!(rest["data"][0]["address"], "cy@example.org");
    assert!(rest["next_cursor"].is_null());
    let complaints = body(
        app.get(&format!("{base}?reason=complaint"), &key).await,
        200,
    )
    .await;
    assert_eq!(complaints["data"].as_array().unwrap().len(), 1);
    let org = body(
        app.get(&format!("{base}?contains=example.org"), &key).await,
        200,
    )
    .await;
    assert_eq!(org["data"][0]["address"], "cy@example.org");

    let check = body(app.get(&format!("{base}/ANN@example.net"), &key).await, 200).await;
    assert_eq!(
        (
            check["suppressed"].as_bool(),
            check["suppression"]["note"].as_str()
        ),
        (Some(true), Some("asked by phone"))
    );
    let send = json!({"from": "noreply@acme.example", "to": "ann@example.net", "cc": "dee@example.net", "subject": "s", "text": "t"});
    let e = error(app.post_json("/v1/emails", &key, &send).await).await;
    assert_eq!(
        (e.status, e.code.as_str(), e.field.as_deref()),
        (422, "recipient_suppressed", Some("to[0]"))
    );

    // The recipient view: suppressed, no message yet (the refused send stored nothing).
    let view = body(
        app.get("/v1/environments/default/recipients/ann@example.net", &key)
            .await,
        200,
    )
    .await;
    assert_eq!(
        (
            view["suppressed"].as_bool(),
            view["messages"].as_array().map(Vec::len)
        ),
        (Some(true), Some(0)),
        "{view}"
    );

    assert_eq!(
        app.delete(&format!("{base}/ann@example.net"), &key)
            .await
            .status()
            .as_u16(),
        204
    );
    assert_eq!(
        app.delete(&format!("{base}/ann@example.net"), &key)
            .await
            .status()
            .as_u16(),
        404
    );
    let sent = body(app.post_json("/v1/emails", &key, &send).await, 202).await;
    let view = body(
        app.get("/v1/environments/default/recipients/DEE@example.net", &key)
            .await,
        200,
    )
    .await;
    assert_eq!(view["suppressed"], false);
    assert_eq!(view["messages"][0]["id"], sent["id"]);
    assert_eq!(view["messages"][0]["events"][0]["type"], "queued");

    // Another environment's key sees nothing of this one.
    app.create_env("staging").await;
    let other = app.create_key("staging").await;
    assert_eq!(app.get(base, &other).await.status().as_u16(), 403);
    app.stop().await;
}

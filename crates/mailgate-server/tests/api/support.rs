//! Helpers shared by the API tests.

use mailgate_core::ids::EnvironmentId;
use mailgate_testkit::app::TestApp;
use reqwest::Response;
use serde_json::{json, Value};

/// An error answer: status, code and field.
#[derive(Debug, PartialEq, Eq)]
pub struct ErrorBody {
    pub status: u16,
    pub code: String,
    pub field: Option<String>,
}

/// Reads an error answer, checking its shape.
pub async fn error(response: Response) -> ErrorBody {
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        ct.as_deref(),
        Some("application/json"),
        "error bodies are JSON (status {status})"
    );
    let body: Value = response.json().await.expect("error JSON");
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object in {body}"));
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error has a message: {body}"
    );
    ErrorBody {
        status,
        code: error["code"].as_str().expect("error code").to_owned(),
        field: error["field"].as_str().map(str::to_owned),
    }
}

/// The expected error.
pub fn expect(status: u16, code: &str, field: Option<&str>) -> ErrorBody {
    ErrorBody {
        status,
        code: code.to_owned(),
        field: field.map(str::to_owned),
    }
}

/// A JSON body of a successful answer, after checking its status.
pub async fn body(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    }
}

/// A minimal valid send.
pub fn email() -> Value {
    json!({
        "from": "Sender <sender@example.com>",
        "to": ["ann@example.com"],
        "subject": "Hello",
        "text": "Hi Ann",
    })
}

/// `email()` with `changes` merged in (a `null` removes the field).
pub fn email_with(changes: Value) -> Value {
    let mut body = email();
    let map = body.as_object_mut().unwrap();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    body
}

/// Polls `GET /v1/emails/{id}` until the message reaches `status` (20 s at most) and returns it.
pub async fn wait_for_status(
    app: &mailgate_testkit::app::TestApp,
    id: &str,
    status: &str,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = body(
            app.get(&format!("/v1/emails/{id}"), &app.admin_key).await,
            200,
        )
        .await;
        if m["status"] == status {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message never reached {status}: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The `default` environment's id.
pub async fn default_environment(app: &TestApp) -> EnvironmentId {
    app.storage
        .find_environment("default")
        .await
        .unwrap()
        .unwrap()
        .id
}

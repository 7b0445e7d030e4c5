//! Every refusal of `POST /v1/emails` (and the API's generic errors): status, code and field.

use mailgate_core::message::Limits;
use mailgate_testkit::app::TestApp;
use serde_json::{json, Value};

use super::support::{email, email_with, error, expect, ErrorBody};

async fn refused(app: &TestApp, key: &str, body: Value) -> ErrorBody {
    error(app.post_json("/v1/emails", key, &body).await).await
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_refused_with_their_field() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let raw = |body: &'static str| {
        app.client
            .post(app.url("/v1/emails"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        error(raw("{\"to\": ").await.unwrap()).await,
        expect(400, "invalid_json", None)
    );
    assert_eq!(
        error(raw("").await.unwrap()).await,
        expect(400, "invalid_json", None)
    );

    let unknown = refused(&app, &key, email_with(json!({"tracking": true}))).await;
    assert_eq!(unknown, expect(422, "unknown_field", Some("tracking")));
    let nested = email_with(
        json!({"attachments": [{"filename": "a", "content": "", "content_type": "text/plain", "size": 1}]}),
    );
    assert_eq!(
        refused(&app, &key, nested).await,
        expect(422, "unknown_field", Some("attachments[0].size"))
    );
    let in_address = email_with(json!({"to": [{"email": "ann@example.com", "nmae": "Ann"}]}));
    assert_eq!(
        refused(&app, &key, in_address).await,
        expect(422, "unknown_field", Some("to[0].nmae"))
    );

    let wrong_type = refused(&app, &key, email_with(json!({"subject": 5}))).await;
    assert_eq!(wrong_type, expect(422, "invalid_field", Some("subject")));
    let wrong_tag = refused(&app, &key, email_with(json!({"tags": ["a", 2]}))).await;
    assert_eq!(wrong_tag, expect(422, "invalid_field", Some("tags[1]")));
    let wrong_meta = refused(&app, &key, email_with(json!({"metadata": {"n": 1}}))).await;
    assert_eq!(wrong_meta, expect(422, "invalid_field", Some("metadata.n")));
    let not_object = refused(&app, &key, json!(["not", "an", "object"])).await;
    assert_eq!(
        (not_object.status, not_object.code.as_str()),
        (422, "invalid_field")
    );

    let missing =
        email_with(json!({"attachments": [{"content": "", "content_type": "text/plain"}]}));
    assert_eq!(
        refused(&app, &key, missing).await,
        expect(422, "missing_field", Some("attachments[0].filename"))
    );

    let unsupported = app
        .client
        .post(app.url("/v1/emails"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(email().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error(unsupported).await,
        expect(415, "unsupported_media_type", None)
    );
    let no_content_type = app
        .client
        .post(app.url("/v1/emails"))
        .bearer_auth(&key)
        .body(email().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        no_content_type.status(),
        202,
        "a missing content type is read as JSON"
    );
}

#[tokio::test]
async fn addresses_and_header_injection_are_refused() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let bad_to = email_with(json!({"to": ["ann@example.com", "not an address"]}));
    assert_eq!(
        refused(&app, &key, bad_to).await,
        expect(422, "invalid_address", Some("to[1]"))
    );
    let bad_cc = email_with(json!({"cc": "carl@"}));
    assert_eq!(
        refused(&app, &key, bad_cc).await,
        expect(422, "invalid_address", Some("cc"))
    );
    let bad_from = email_with(json!({"from": {"email": "nobody"}}));
    assert_eq!(
        refused(&app, &key, bad_from).await,
        expect(422, "invalid_address", Some("from"))
    );
    let wrong_shape = email_with(json!({"to": [1]}));
    assert_eq!(
        refused(&app, &key, wrong_shape).await,
        expect(422, "invalid_field", Some("to[0]"))
    );

    let subject = email_with(json!({"subject": "Hi\r\nBcc: evil@example.com"}));
    assert_eq!(
        refused(&app, &key, subject).await,
        expect(422, "header_injection", Some("subject"))
    );
    let header = email_with(json!({"headers": {"X-Campaign": "a\nBcc: evil@example.com"}}));
    assert_eq!(
        refused(&app, &key, header).await,
        expect(422, "header_injection", Some("headers.X-Campaign"))
    );
    let name = email_with(json!({"from": "Ann\r\nBcc: evil@example.com <ann@example.com>"}));
    assert_eq!(
        refused(&app, &key, name).await,
        expect(422, "header_injection", Some("from"))
    );
    let object_name = email_with(
        json!({"to": ["ann@example.com", {"email": "bob@example.com", "name": "Bob\nX: y"}]}),
    );
    assert_eq!(
        refused(&app, &key, object_name).await,
        expect(422, "header_injection", Some("to[1]"))
    );
    let reserved = email_with(json!({"headers": {"Bcc": "evil@example.com"}}));
    assert_eq!(
        refused(&app, &key, reserved).await,
        expect(422, "reserved_header", Some("headers.Bcc"))
    );
    let filename = email_with(
        json!({"attachments": [{"filename": "a\r\n.txt", "content": "", "content_type": "text/plain"}]}),
    );
    assert_eq!(
        refused(&app, &key, filename).await,
        expect(422, "header_injection", Some("attachments[0].filename"))
    );
    let path = email_with(
        json!({"attachments": [{"filename": "../etc/passwd", "content": "", "content_type": "text/plain"}]}),
    );
    assert_eq!(
        refused(&app, &key, path).await,
        expect(422, "invalid_filename", Some("attachments[0].filename"))
    );
    let ctype = email_with(
        json!({"attachments": [{"filename": "a.txt", "content": "", "content_type": "text"}]}),
    );
    assert_eq!(
        refused(&app, &key, ctype).await,
        expect(
            422,
            "invalid_content_type",
            Some("attachments[0].content_type")
        )
    );
    let b64 = email_with(
        json!({"attachments": [{"filename": "a.txt", "content": "%%%", "content_type": "text/plain"}]}),
    );
    assert_eq!(
        refused(&app, &key, b64).await,
        expect(422, "invalid_base64", Some("attachments[0].content"))
    );
    let tag = email_with(json!({"tags": ["ok", "x".repeat(129)]}));
    assert_eq!(
        refused(&app, &key, tag).await,
        expect(422, "invalid_tag", Some("tags[1]"))
    );
    let meta = email_with(json!({"metadata": {"k": "v".repeat(513)}}));
    assert_eq!(
        refused(&app, &key, meta).await,
        expect(422, "invalid_metadata", Some("metadata.k"))
    );
}

#[tokio::test]
async fn incomplete_sends_and_templates_are_refused() {
    let app = TestApp::spawn().await;
    let key = app.create_key("default").await;
    let cases = [
        (
            json!({"text": null}),
            expect(422, "missing_content", Some("text")),
        ),
        (
            json!({"to": null}),
            expect(422, "missing_recipient", Some("to")),
        ),
        (
            json!({"to": []}),
            expect(422, "missing_recipient", Some("to")),
        ),
        (
            json!({"subject": null}),
            expect(422, "missing_subject", Some("subject")),
        ),
        (
            json!({"from": null}),
            expect(422, "missing_sender", Some("from")),
        ),
        (
            json!({"usage": "SignIn", "data": {"code": "1"}}),
            expect(422, "conflicting_content", Some("subject")),
        ),
        (
            json!({"locale": "de"}),
            expect(422, "usage_required", Some("locale")),
        ),
    ];
    for (changes, expected) in cases {
        assert_eq!(
            refused(&app, &key, email_with(changes.clone())).await,
            expected,
            "{changes}"
        );
    }
}

#[tokio::test]
async fn size_limits_answer_413() {
    let limits = Limits {
        max_attachment_bytes: 1024,
        max_body_bytes: 2048,
        ..Limits::default()
    };
    let app = TestApp::builder()
        .limits(limits)
        .max_request_bytes(16 * 1024)
        .spawn()
        .await;
    let key = app.create_key("default").await;
    let big = base64_of(2000);
    let attachment = email_with(
        json!({"attachments": [{"filename": "big.bin", "content": big, "content_type": "application/octet-stream"}]}),
    );
    assert_eq!(
        refused(&app, &key, attachment).await,
        expect(413, "attachments_too_large", Some("attachments"))
    );
    let body = email_with(json!({"text": "x".repeat(3000)}));
    assert_eq!(
        refused(&app, &key, body).await,
        expect(413, "body_too_large", Some("html"))
    );
    let request = email_with(json!({"text": "x".repeat(20 * 1024)}));
    assert_eq!(
        refused(&app, &key, request).await,
        expect(413, "payload_too_large", None)
    );
}

fn base64_of(bytes: usize) -> String {
    // Every 3 zero bytes are "AAAA" in base64.
    "AAAA".repeat(bytes.div_ceil(3))
}

#[tokio::test]
async fn keys_are_checked() {
    let app = TestApp::spawn().await;
    let missing = app
        .client
        .post(app.url("/v1/emails"))
        .json(&email())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers().get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(error(missing).await, expect(401, "unauthorized", None));
    let unknown = app
        .post_json("/v1/emails", "mg_notarealkey", &email())
        .await;
    assert_eq!(unknown.headers().get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(error(unknown).await, expect(401, "unauthorized", None));
    let malformed = app
        .client
        .get(app.url("/v1/events"))
        .header("authorization", format!("Basic {}", app.admin_key))
        .send()
        .await
        .unwrap();
    assert_eq!(error(malformed).await, expect(401, "unauthorized", None));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::spawn().await;
    assert_eq!(
        error(app.get("/v1/nothing", &app.admin_key).await).await,
        expect(404, "not_found", None)
    );
    let wrong_method = app.delete("/v1/emails", &app.admin_key).await;
    assert_eq!(
        error(wrong_method).await,
        expect(405, "method_not_allowed", None)
    );
}

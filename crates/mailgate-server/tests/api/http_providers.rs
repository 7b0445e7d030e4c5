//! Mailgun, Postmark, Resend and SendGrid configured per environment over the API (DSN form),
//! delivering through the whole pipeline to a wiremock stand-in of each provider, and the
//! provider's verify report through `POST …/provider/verify`.

use std::time::Duration;

use mailgate_core::dispatcher::DispatcherConfig;
use mailgate_core::retry::RetryPolicy;
use mailgate_testkit::app::TestApp;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{body, wait_for_status};

struct Case {
    name: &'static str,
    dsn: fn(&str) -> String,
    send_path: &'static str,
    accepted: fn() -> ResponseTemplate,
    message_id: Option<&'static str>,
    verify_path: &'static str,
    verify_answer: fn() -> ResponseTemplate,
    /// Whether the report is `ok`, and a finding it must contain.
    verify: (bool, &'static str),
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "mailgun",
            dsn: |ep| format!("mailgun+api://key-test@mg.acme.example?region=eu&endpoint={ep}"),
            send_path: "/v3/mg.acme.example/messages",
            accepted: || {
                ResponseTemplate::new(200).set_body_json(
                    json!({"id": "<20261128.1@mg.acme.example>", "message": "Queued. Thank you."}),
                )
            },
            message_id: Some("20261128.1@mg.acme.example"),
            verify_path: "/v4/domains/mg.acme.example",
            verify_answer: || {
                ResponseTemplate::new(200).set_body_json(json!({"domain": {"name": "mg.acme.example", "state": "active", "type": "custom", "is_disabled": false}}))
            },
            verify: (true, "domain mg.acme.example is active in region eu"),
        },
        Case {
            name: "postmark",
            dsn: |ep| {
                format!("postmark+api://server-token@default?message_stream=outbound&endpoint={ep}")
            },
            send_path: "/email",
            accepted: || {
                ResponseTemplate::new(200).set_body_json(json!({"To": "ann@example.net", "SubmittedAt": "2026-11-28T07:25:01Z", "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d", "ErrorCode": 0, "Message": "OK"}))
            },
            message_id: Some("0a129aee-e1cd-480d-b08d-4f48548ff48d"),
            verify_path: "/server",
            verify_answer: || {
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ID": 1, "Name": "Acme production"}))
            },
            // The stand-in knows no message streams, and without an account token senders
            // cannot be checked: both are reported.
            verify: (false, "message stream 'outbound' not found"),
        },
        Case {
            name: "resend",
            dsn: |ep| format!("resend+api://re_test@default?endpoint={ep}"),
            send_path: "/emails",
            accepted: || {
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}))
            },
            message_id: Some("49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"),
            verify_path: "/domains",
            verify_answer: || ResponseTemplate::new(200).set_body_json(json!({"data": []})),
            verify: (false, "no verified domain in this Resend account"),
        },
        Case {
            name: "sendgrid",
            dsn: |ep| format!("sendgrid+api://SG.test@default?endpoint={ep}"),
            send_path: "/v3/mail/send",
            accepted: || ResponseTemplate::new(202).insert_header("X-Message-Id", "sg-abc123"),
            message_id: Some("sg-abc123"),
            verify_path: "/v3/whitelabel/domains",
            verify_answer: || ResponseTemplate::new(200).set_body_json(json!([])),
            // The stand-in answers only the domains list: the scopes and senders are reported
            // unreadable (skipped), the missing domain as a warning.
            verify: (true, "no authenticated (valid) domain in SendGrid"),
        },
    ]
}

#[tokio::test]
async fn each_http_provider_set_over_the_api_delivers_and_verifies() {
    let retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    };
    let config = DispatcherConfig {
        poll_interval: Duration::from_millis(20),
        ..DispatcherConfig::default()
    };
    let app = TestApp::builder()
        .with_registry_dispatcher(retry, config)
        .spawn()
        .await;

    for case in cases() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(case.send_path))
            .respond_with((case.accepted)())
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(case.verify_path))
            .respond_with((case.verify_answer)())
            .mount(&server)
            .await;
        let env = format!("env-{}", case.name);
        app.create_env(&env).await;
        let key = app.create_key(&env).await;
        let provider_path = format!("/v1/environments/{env}/provider");

        let set = body(
            app.put_json(
                &provider_path,
                &key,
                &json!({"dsn": (case.dsn)(&server.uri())}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(set["provider"]["type"], case.name, "{set}");
        let secret_fragment = match case.name {
            "mailgun" => "key-test",
            "postmark" => "server-token",
            "resend" => "re_test",
            _ => "SG.test",
        };
        assert!(
            !set.to_string().contains(secret_fragment),
            "{} secret shown: {set}",
            case.name
        );

        let email = json!({"from": "Acme <noreply@acme.example>", "to": ["ann@example.net", "bo@example.net"], "cc": "cc@example.net",
                           "subject": "Through the API", "text": "hello", "html": "<p>hello</p>", "tags": ["welcome"], "metadata": {"order": "42"}});
        let id = body(app.post_json("/v1/emails", &key, &email).await, 202).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let m = wait_for_status(&app, &id, "sent").await;
        assert_eq!(m["provider"], case.name);
        assert_eq!(
            m["provider_message_id"].as_str(),
            case.message_id,
            "{}",
            case.name
        );
        let sends = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == case.send_path)
            .count();
        assert_eq!(sends, 1, "{}", case.name);

        let report = body(
            app.post_json(&format!("{provider_path}/verify"), &key, &json!({}))
                .await,
            200,
        )
        .await;
        assert_eq!(report["provider"]["type"], case.name);
        assert_eq!(
            report["ok"], case.verify.0,
            "{} verify: {report}",
            case.name
        );
        assert_eq!(report["providers"][0]["type"], case.name);
        let checks = report["providers"][0]["checks"].to_string();
        assert!(
            checks.contains(case.verify.1),
            "{} verify: {report}",
            case.name
        );
        assert!(!report.to_string().contains(secret_fragment));
    }
}

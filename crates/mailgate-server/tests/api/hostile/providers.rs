//! Bad provider configurations (DSNs, composite DSNs, JSON chains).

use reqwest::Method;
use serde_json::{json, Value};

use super::{Auth, Case, Rng};

pub(super) fn bad_provider_configs(r: &mut Rng, out: &mut Vec<Case>) {
    const F: &str = "bad_provider_config";
    let nine = (0..9)
        .map(|i| format!("capture://?delay_ms={i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let dsns: Vec<String> = [
        "",
        " ",
        "capture",
        "://",
        "carrier-pigeon://coop",
        "capture://?dealy_ms=5",
        "capture://?delay_ms=soon",
        "capture://?delay_ms=-5",
        "capture://?delay_ms=1e99",
        "capture://?delay_ms=99999999999999999999999",
        "capture://\r\nX-Injected: 1",
        "smtp://",
        "smtp://user:pass@",
        "smtp://host:99999",
        "smtp://host:port",
        "smtp://ho st:25",
        "smtp://host:25?unknown=1",
        "smtp://host:25?timeout_seconds=abc",
        "smtp://host:25?pool_max=-1",
        "smtp://host:25?disable_starttls=maybe",
        "smtps://%zz@host:465",
        "smtp://[::1:25",
        "mailgun+api://key@mg.example.com?region=mars",
        "mailgun+api://key@mg.example.com?webhook_signing_ky=x",
        "sendgrid+api://SG.x@default?region=moon",
        "ses+api://AKIA:secret@default?region=us-east-1&bogus=1",
        "ses+smtp://AKIA:secret@default?region=",
        "resend+api://re_x@default?timeout_seconds=-1",
        "postmark+api://token@default?message_stream=a&message_stream=b&nope=1",
        "failover(",
        "failover()",
        "failover(capture://",
        "roundrobin()",
        "failover(capture:// carrier-pigeon://x)",
        "failover(failover(capture://))",
        "roundrobin(capture:// capture://?delay_ms=x)",
        "sideways(capture://)",
        "failover(capture://))",
        "failover capture://",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        format!("failover({nine})"),
        format!("roundrobin({nine})"),
        format!("capture://?{}", "a=1&".repeat(200)),
    ])
    .collect();
    let capture = json!({"dsn": "capture://"});
    let bodies: Vec<Value> = vec![
        json!({"dsn": 42}),
        json!({"dsn": null}),
        json!({"dsn": []}),
        json!({"dsn": {"dsn": "capture://"}}),
        json!({}),
        json!({"type": 5}),
        json!({"type": "smtp"}),
        json!({"type": "carrier-pigeon"}),
        json!({"type": "capture", "delay": 5}),
        json!({"type": "capture", "delay_ms": "soon"}),
        json!({"type": "mailgun"}),
        json!({"type": "sendgrid", "api_key": 5}),
        json!({"dsn": "capture://", "type": "capture"}),
        json!({"primary": "x"}),
        json!({"primary": capture, "failovers": "x"}),
        json!({"primary": capture, "failovers": [{"dsn": "nope://"}]}),
        json!({"failovers": [capture]}),
        json!({"mode": "roundrobin", "providers": []}),
        json!({"mode": "sideways", "providers": [capture]}),
        json!({"mode": "roundrobin", "providers": "capture://"}),
        json!({"primary": {"dsn": "capture://", "max_per_second": -1}}),
        json!({"primary": {"dsn": "capture://", "max_per_second": "fast"}}),
        json!({"primary": {"dsn": "capture://", "burst": "x"}}),
        json!({"primary": {"dsn": "capture://", "name": 5}}),
        json!({"primary": capture, "circuit": {"failure_threshold": "x"}}),
        json!({"primary": capture, "circuit": {"unknown": 1}}),
        json!({"primary": capture, "failovers": vec![capture.clone(); 8]}),
        json!({"primary": capture, "sender": "not an address"}),
    ];
    for i in 0..250 {
        let (body, what) = if i % 2 == 0 {
            let dsn = if i / 2 < dsns.len() {
                dsns[i / 2].clone()
            } else {
                r.pick(&dsns).clone()
            };
            (json!({ "dsn": dsn }), format!("dsn {dsn:?}"))
        } else {
            let b = if i / 2 < bodies.len() {
                bodies[i / 2].clone()
            } else {
                r.pick(&bodies).clone()
            };
            let what = format!("body {b}");
            (b, what)
        };
        let path = match r.below(4) {
            0 => "/v1/environments/default/organizations/acme/provider",
            1 => "/v1/environments/hooks/provider",
            _ => "/v1/environments/default/provider",
        };
        out.push(
            Case::new(F, format!("{path}: {what}"), Method::PUT, path)
                .auth(Auth::Admin)
                .json(&body)
                .expect(422, "invalid_provider_config")
                .expect(422, "unknown_provider_type"),
        );
    }
    for body in ["[]", "\"capture://\"", "null", "5"] {
        out.push(
            Case::new(
                F,
                format!("non-object {body}"),
                Method::PUT,
                "/v1/environments/default/provider",
            )
            .auth(Auth::Admin)
            .raw(body)
            .expect(400, "invalid_json"),
        );
    }
}

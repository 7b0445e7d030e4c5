//! Provider chains from JSON and DSNs: every accepted form, the refusals, and the redacted view.

use mailgate_core::routing::RouteMode;
use mailgate_providers::{ChainConfig, ConfigError};
use serde_json::json;

fn field_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { field, .. } => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn a_single_provider_is_a_chain_of_one_shown_as_before() {
    let chain = ChainConfig::from_json(json!({"dsn": "postmark+api://tok-1@default"})).unwrap();
    assert_eq!(chain.members.len(), 1);
    assert_eq!(chain.members[0].name, "primary");
    assert_eq!(chain.mode, RouteMode::Failover);
    let shown = chain.redacted();
    assert_eq!(shown["type"], "postmark");
    assert!(!shown.to_string().contains("tok-1"));
}

#[test]
fn composite_dsns_name_their_members_and_take_rate_options() {
    let chain = ChainConfig::from_dsn(
        "failover(postmark+api://tok-a@default?max_per_second=10&burst=5 resend+api://re_b@default?name=backup)",
    )
    .unwrap();
    assert_eq!(chain.mode, RouteMode::Failover);
    let names: Vec<&str> = chain.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["primary", "backup"]);
    let rate = chain.members[0].rate_limit.unwrap();
    assert_eq!((rate.per_second, rate.burst), (10.0, 5));
    assert!(chain.members[1].rate_limit.is_none());
    let shown = chain.redacted().to_string();
    assert!(
        !shown.contains("tok-a") && !shown.contains("re_b"),
        "{shown}"
    );

    let rr = ChainConfig::from_json(
        json!({"dsn": "roundrobin(capture:// capture://?delay_ms=1 capture://)"}),
    )
    .unwrap();
    assert_eq!(rr.mode, RouteMode::Roundrobin);
    let names: Vec<&str> = rr.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["provider-1", "provider-2", "provider-3"]);
    assert_eq!(rr.redacted()["providers"].as_array().unwrap().len(), 3);
}

#[test]
fn the_object_form_takes_typed_members_options_and_a_sender() {
    let chain = ChainConfig::from_json(json!({
        "primary": {"type": "postmark", "server_token": "tok-p", "max_per_second": 2.5},
        "failovers": [{"dsn": "capture://", "name": "local"}],
        "sender": "Acme <no-reply@acme.example>",
        "circuit": {"failure_threshold": 5, "cooldown_seconds": 60},
    }))
    .unwrap();
    assert_eq!(chain.members[0].rate_limit.unwrap().per_second, 2.5);
    assert_eq!(chain.members[1].name, "local");
    assert_eq!(chain.circuit.failure_threshold, 5);
    let shown = chain.redacted();
    assert_eq!(shown["sender"], "Acme <no-reply@acme.example>");
    assert_eq!(shown["primary"]["max_per_second"], 2.5);
    assert_eq!(shown["failovers"][0]["name"], "local");
    assert!(!shown.to_string().contains("tok-p"));

    // What is stored reads back to the same chain, and a stored single provider still reads.
    let stored = serde_json::to_value(&chain).unwrap();
    assert!(ChainConfig::from_stored(stored).unwrap() == chain);
    let legacy = ChainConfig::from_stored(json!({"type": "capture"})).unwrap();
    assert_eq!(legacy.members[0].provider.type_name(), "capture");
}

#[test]
fn broken_chains_are_refused_with_the_field() {
    let cases = [
        (json!({"dsn": "failover(capture://)"}), "dsn"),
        (json!({"dsn": "failover(capture:// capture://"}), "dsn"),
        (
            json!({"dsn": "failover(capture:// roundrobin(capture:// capture://))"}),
            "dsn",
        ),
        (json!({"dsn": "chain(capture:// capture://)"}), "dsn"),
        (
            json!({"primary": {"dsn": "capture://"}, "failovers": {}}),
            "failovers",
        ),
        (
            json!({"primary": {"dsn": "capture://"}, "providers": []}),
            "providers",
        ),
        (
            json!({"primary": {"dsn": "capture://"}, "surprise": true}),
            "surprise",
        ),
        (
            json!({"primary": {"dsn": "capture://", "burst": 3}}),
            "primary.burst",
        ),
        (
            json!({"primary": {"dsn": "capture://", "max_per_second": -1}}),
            "primary.max_per_second",
        ),
        (
            json!({"primary": {"dsn": "failover(capture:// capture://)"}}),
            "primary.dsn",
        ),
        (
            json!({"dsn": "capture://", "sender": "not an address"}),
            "sender",
        ),
        (json!({"dsn": "capture://", "mode": "random"}), "mode"),
        (
            json!({"dsn": "capture://", "circuit": {"cooldown_seconds": 0}}),
            "circuit.cooldown_seconds",
        ),
        (
            json!({"providers": [{"dsn": "capture://", "name": "a b"}], "mode": "roundrobin"}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let e = ChainConfig::from_json(body.clone()).expect_err(&body.to_string());
        assert_eq!(field_of(e), field, "{body}");
    }
    let nine: Vec<_> = (0..9).map(|_| json!({"dsn": "capture://"})).collect();
    let e = ChainConfig::from_json(json!({"providers": nine, "mode": "roundrobin"})).unwrap_err();
    assert_eq!(field_of(e), "providers");
}

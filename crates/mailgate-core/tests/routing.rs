//! One delivery attempt through a route: which failures move to the next provider, the circuit
//! breaker, round-robin order and rate-limit tokens, with scripted providers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mailgate_core::ids::EnvironmentId;
use mailgate_core::limits::{Grant, LimitStore, RateLimit};
use mailgate_core::message::{ClaimedMessage, Content, Delivery};
use mailgate_core::provider::{Provider, SendError, SendReceipt};
use mailgate_core::routing::{
    BreakerPolicy, Circuits, Route, RouteContext, RouteMember, RouteMode,
};
use mailgate_core::store::StoreError;
use mailgate_core::{Mailbox, MessageId, SystemClock, Timestamp};

/// Answers from a script (then successes), counting calls.
struct Scripted {
    name: &'static str,
    script: Mutex<VecDeque<Result<(), SendError>>>,
    calls: Mutex<u32>,
}

impl Scripted {
    fn new(name: &'static str, script: Vec<Result<(), SendError>>) -> Arc<Self> {
        Arc::new(Self {
            name,
            script: Mutex::new(script.into()),
            calls: Mutex::new(0),
        })
    }

    fn calls(&self) -> u32 {
        *self.calls.lock().unwrap()
    }
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    async fn send(&self, _message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        *self.calls.lock().unwrap() += 1;
        let next = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
        next.map(|()| SendReceipt {
            provider_message_id: Some(format!("{}-id", self.name)),
            final_delivery: false,
        })
    }
}

fn message() -> ClaimedMessage {
    ClaimedMessage {
        id: MessageId::new(),
        environment_id: EnvironmentId::new(),
        attempt: 1,
        max_attempts: 5,
        lease_token: "lease".into(),
        content: Content {
            from: Mailbox::parse("a@example.com", "from").unwrap(),
            to: vec![Mailbox::parse("b@example.com", "to").unwrap()],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
            headers: vec![],
            attachments: vec![],
        },
        tags: vec![],
        metadata: BTreeMap::new(),
        provider_options: None,
        idempotency_key: None,
        delivery: Delivery::default(),
    }
}

fn member(label: &str, p: &Arc<Scripted>, rate: Option<RateLimit>) -> RouteMember {
    RouteMember {
        label: label.into(),
        provider: p.clone(),
        rate,
        key: format!("env/{label}"),
    }
}

fn policy(threshold: u32, cooldown_ms: u64) -> BreakerPolicy {
    BreakerPolicy {
        failure_threshold: threshold,
        cooldown: Duration::from_millis(cooldown_ms),
    }
}

fn ctx<'a>(circuits: &'a Circuits, limits: Option<&'a dyn LimitStore>) -> RouteContext<'a> {
    RouteContext {
        circuits,
        limits,
        clock: &SystemClock,
        send_timeout: Duration::from_secs(5),
        max_rate_wait: Duration::from_millis(200),
    }
}

fn outage() -> SendError {
    SendError::retryable("http_503", "unavailable")
}

#[tokio::test]
async fn provider_failures_move_on_and_recipient_failures_do_not() {
    let a = Scripted::new("postmark", vec![Err(outage())]);
    let b = Scripted::new("ses", vec![]);
    let route = Route::new(
        RouteMode::Failover,
        vec![member("primary", &a, None), member("backup", &b, None)],
        policy(3, 1000),
    );
    let circuits = Circuits::default();
    let out = route.deliver(&message(), &ctx(&circuits, None)).await;
    assert!(out.result.is_ok());
    assert_eq!(out.handled_by, Some(("ses".into(), "backup".into())));
    assert_eq!(out.tried.len(), 1);
    assert_eq!(out.tried[0].code, "http_503");
    assert_eq!(out.tried[0].route, "primary");

    // A refused recipient: the first provider's answer stands.
    let a = Scripted::new(
        "postmark",
        vec![Err(SendError::permanent(
            "postmark_406",
            "inactive recipient",
        ))],
    );
    let b = Scripted::new("ses", vec![]);
    let route = Route::new(
        RouteMode::Failover,
        vec![member("primary", &a, None), member("backup", &b, None)],
        policy(3, 1000),
    );
    let out = route.deliver(&message(), &ctx(&circuits, None)).await;
    assert_eq!(out.result.unwrap_err().code(), "postmark_406");
    assert_eq!(b.calls(), 0);
}

#[tokio::test]
async fn unusable_everywhere_fails_but_a_temporary_failure_keeps_the_message_waiting() {
    let bad_key = || SendError::unusable("http_401", "bad key");
    let a = Scripted::new("postmark", vec![Err(bad_key())]);
    let b = Scripted::new("ses", vec![Err(bad_key())]);
    let route = Route::new(
        RouteMode::Failover,
        vec![member("primary", &a, None), member("backup", &b, None)],
        policy(3, 1000),
    );
    let circuits = Circuits::default();
    let out = route.deliver(&message(), &ctx(&circuits, None)).await;
    assert!(matches!(out.result, Err(SendError::Unusable { .. })));

    let a = Scripted::new("postmark", vec![Err(outage())]);
    let b = Scripted::new("ses", vec![Err(bad_key())]);
    let route = Route::new(
        RouteMode::Failover,
        vec![member("primary", &a, None), member("backup", &b, None)],
        policy(3, 1000),
    );
    let out = route
        .deliver(&message(), &ctx(&Circuits::default(), None))
        .await;
    assert!(
        out.result.as_ref().unwrap_err().is_retryable(),
        "{:?}",
        out.result
    );
}

#[tokio::test]
async fn a_circuit_opens_after_the_threshold_and_one_probe_closes_it() {
    let a = Scripted::new("postmark", vec![Err(outage()), Err(outage())]);
    let b = Scripted::new("ses", vec![]);
    let route = Route::new(
        RouteMode::Failover,
        vec![member("primary", &a, None), member("backup", &b, None)],
        policy(2, 300),
    );
    let circuits = Circuits::default();
    for _ in 0..2 {
        route.deliver(&message(), &ctx(&circuits, None)).await;
    }
    assert!(circuits.is_open("env/primary"));
    let out = route.deliver(&message(), &ctx(&circuits, None)).await;
    assert_eq!(a.calls(), 2, "skipped while open");
    assert_eq!(out.tried[0].code, "circuit_open");

    tokio::time::sleep(Duration::from_millis(350)).await;
    let out = route.deliver(&message(), &ctx(&circuits, None)).await;
    assert_eq!(a.calls(), 3, "probed after the cool-down");
    assert_eq!(out.handled_by.unwrap().1, "primary");
    assert!(!circuits.is_open("env/primary"));
}

#[tokio::test]
async fn every_circuit_open_defers_until_the_first_cool_down_ends() {
    let a = Scripted::new("postmark", vec![Err(outage())]);
    let b = Scripted::new("ses", vec![Err(outage())]);
    let route = Route::new(
        RouteMode::Failover,
        vec![member("primary", &a, None), member("backup", &b, None)],
        policy(1, 5000),
    );
    let circuits = Circuits::default();
    route.deliver(&message(), &ctx(&circuits, None)).await;
    let out = route.deliver(&message(), &ctx(&circuits, None)).await;
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert!(out.handled_by.is_none(), "no provider was called");
    match out.result {
        Err(SendError::Retryable {
            code, retry_after, ..
        }) => {
            assert_eq!(code, "providers_unavailable");
            let after = retry_after.unwrap();
            assert!(after > Duration::from_secs(4) && after <= Duration::from_secs(5));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_lone_provider_has_no_circuit_to_open() {
    let a = Scripted::new(
        "postmark",
        vec![Err(outage()), Err(outage()), Err(outage())],
    );
    let route = Route::new(
        RouteMode::Failover,
        vec![member("primary", &a, None)],
        policy(1, 60_000),
    );
    let circuits = Circuits::default();
    for _ in 0..3 {
        let out = route.deliver(&message(), &ctx(&circuits, None)).await;
        assert_eq!(out.result.unwrap_err().code(), "http_503");
    }
    assert_eq!(a.calls(), 3, "every attempt reaches the provider");
    assert!(!circuits.is_open("env/primary"));
}

#[tokio::test]
async fn roundrobin_starts_each_message_at_the_next_provider() {
    let ps = [
        Scripted::new("a", vec![]),
        Scripted::new("b", vec![]),
        Scripted::new("c", vec![]),
    ];
    let route = Route::new(
        RouteMode::Roundrobin,
        ps.iter()
            .enumerate()
            .map(|(i, p)| member(&format!("p{i}"), p, None))
            .collect(),
        BreakerPolicy::default(),
    );
    let circuits = Circuits::default();
    for _ in 0..9 {
        route.deliver(&message(), &ctx(&circuits, None)).await;
    }
    assert_eq!(ps.iter().map(|p| p.calls()).collect::<Vec<_>>(), [3, 3, 3]);
}

/// A bucket that grants a delay, then refuses.
struct Buckets(Mutex<VecDeque<Grant>>);

#[async_trait]
impl LimitStore for Buckets {
    async fn take_token(
        &self,
        _key: &str,
        _limit: &RateLimit,
        _now: Timestamp,
        _max_delay: Duration,
    ) -> Result<Grant, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Grant::Refused(Duration::from_secs(9))))
    }

    async fn recent_sends_to(
        &self,
        _env: &EnvironmentId,
        _address: &str,
        _usage: Option<&str>,
        _since: Timestamp,
        _limit: u32,
    ) -> Result<Vec<Timestamp>, StoreError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_provider_out_of_tokens_is_passed_over_and_a_reserved_token_is_waited_for() {
    let limited = Scripted::new("postmark", vec![]);
    let spare = Scripted::new("ses", vec![]);
    let limit = RateLimit::new(1.0, 1).unwrap();
    let route = Route::new(
        RouteMode::Failover,
        vec![
            member("primary", &limited, Some(limit)),
            member("spare", &spare, None),
        ],
        BreakerPolicy::default(),
    );
    let buckets = Buckets(Mutex::new(
        vec![Grant::Taken(Duration::from_millis(120))].into(),
    ));
    let circuits = Circuits::default();
    let started = std::time::Instant::now();
    let out = route
        .deliver(&message(), &ctx(&circuits, Some(&buckets)))
        .await;
    assert_eq!(out.handled_by.unwrap().1, "primary");
    assert!(started.elapsed() >= Duration::from_millis(120));

    let out = route
        .deliver(&message(), &ctx(&circuits, Some(&buckets)))
        .await;
    assert_eq!(out.handled_by.unwrap().1, "spare");
    assert_eq!(out.tried[0].code, "rate_limited");
    assert_eq!(limited.calls(), 1);
    assert!(
        !circuits.is_open("env/primary"),
        "a rate limit is not a failure"
    );
}

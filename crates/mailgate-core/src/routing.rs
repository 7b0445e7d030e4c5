//! Provider routes: the chain of providers a message may go through (a primary and its
//! failovers, or a round-robin set), each with an optional shared rate limit, and the circuit
//! breakers that skip a failing provider for a cool-down.
//!
//! One delivery attempt walks the route: a provider-side failure (outage, throttling, timeout,
//! bad credentials, paused sending) moves it to the next provider and counts against that
//! provider's circuit; a failure of the message itself (a refused recipient or content) ends the
//! attempt at once, because another provider would refuse it too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::limits::{Grant, LimitStore, RateLimit};
use crate::message::ClaimedMessage;
use crate::provider::{Provider, SendError, SendReceipt};
use crate::time::Clock;

/// How a route picks its first provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMode {
    /// Always the primary first, the failovers in order after it.
    #[default]
    Failover,
    /// Each message starts at the next provider in turn; the others are its failovers.
    Roundrobin,
}

/// When a provider's circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive provider-side failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit skips the provider before one message probes it.
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// One provider of a route.
pub struct RouteMember {
    /// Its name in the route (`primary`, `failover-1`, or the operator's own), shown in events.
    pub label: String,
    /// The provider.
    pub provider: Arc<dyn Provider>,
    /// Its maximum send rate, shared by every process on the database.
    pub rate: Option<RateLimit>,
    /// Identifies its circuit and its rate-limit bucket (`{environment}/{scope}/{label}`).
    pub key: String,
}

/// An ordered set of providers for one environment (or one organization of it).
pub struct Route {
    mode: RouteMode,
    members: Vec<RouteMember>,
    breaker: BreakerPolicy,
    next: AtomicUsize,
}

impl Route {
    /// A route over `members` (at least one).
    pub fn new(mode: RouteMode, members: Vec<RouteMember>, breaker: BreakerPolicy) -> Self {
        assert!(!members.is_empty(), "a route needs a provider");
        Self {
            mode,
            members,
            breaker,
            next: AtomicUsize::new(0),
        }
    }

    /// A route of one provider without a rate limit.
    pub fn single(provider: Arc<dyn Provider>) -> Self {
        let label = provider.name().to_owned();
        Self::new(
            RouteMode::Failover,
            vec![RouteMember {
                key: format!("single/{label}"),
                label,
                provider,
                rate: None,
            }],
            BreakerPolicy::default(),
        )
    }

    /// The providers, primary first.
    pub fn members(&self) -> &[RouteMember] {
        &self.members
    }

    /// The mode.
    pub fn mode(&self) -> RouteMode {
        self.mode
    }

    /// The circuit breaker policy.
    pub fn breaker(&self) -> BreakerPolicy {
        self.breaker
    }

    /// The order in which one message tries the providers.
    fn order(&self) -> Vec<&RouteMember> {
        let n = self.members.len();
        let start = match self.mode {
            RouteMode::Failover => 0,
            RouteMode::Roundrobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        (0..n).map(|i| &self.members[(start + i) % n]).collect()
    }
}

#[derive(Debug, Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
}

/// Whether a provider may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Closed: try it.
    Closed,
    /// The cool-down is over: this message probes it; others skip it until the probe ends.
    Probe,
    /// Open until then.
    Open(Instant),
}

/// The circuit breakers of one process, by route member key. A process learns a provider's
/// health from its own attempts; nothing here needs to be shared for correctness.
#[derive(Debug, Default)]
pub struct Circuits {
    map: Mutex<HashMap<String, Circuit>>,
}

impl Circuits {
    fn admit(&self, key: &str, policy: &BreakerPolicy) -> Admission {
        let now = Instant::now();
        let mut map = self.map.lock().expect("circuit lock");
        let Some(c) = map.get_mut(key) else {
            return Admission::Closed;
        };
        match c.open_until {
            None => Admission::Closed,
            Some(until) if until > now => Admission::Open(until),
            Some(_) => {
                // Half-open: one probe; the others wait out another cool-down unless it succeeds.
                c.open_until = Some(now + policy.cooldown);
                Admission::Probe
            }
        }
    }

    fn success(&self, key: &str) {
        self.map.lock().expect("circuit lock").remove(key);
    }

    fn failure(&self, key: &str, policy: &BreakerPolicy, retry_after: Option<Duration>) -> bool {
        let now = Instant::now();
        let mut map = self.map.lock().expect("circuit lock");
        let c = map.entry(key.to_owned()).or_default();
        c.failures = c.failures.saturating_add(1);
        let probing = c.open_until.is_some();
        if probing || c.failures >= policy.failure_threshold.max(1) {
            let cooldown = policy.cooldown.max(retry_after.unwrap_or_default());
            c.open_until = Some(now + cooldown);
            return true;
        }
        false
    }

    /// Whether the circuit of `key` is open now (for reports and tests).
    pub fn is_open(&self, key: &str) -> bool {
        self.map
            .lock()
            .expect("circuit lock")
            .get(key)
            .and_then(|c| c.open_until)
            .is_some_and(|u| u > Instant::now())
    }
}

/// A provider tried before the one that decided the attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tried {
    /// The member's label.
    pub route: String,
    /// The provider type.
    pub provider: String,
    /// The failure's code (`circuit_open`, `rate_limited`, or the provider's).
    pub code: String,
    /// The failure in words.
    pub reason: String,
}

/// How one attempt through a route came out.
pub struct RouteOutcome {
    /// The provider type and route label that decided the attempt (`None` when none was tried).
    pub handled_by: Option<(String, String)>,
    /// The providers passed over on the way, in order.
    pub tried: Vec<Tried>,
    /// The receipt, or the failure that decides the message's next state.
    pub result: Result<SendReceipt, SendError>,
}

/// Moves the last provider failure into the list of providers passed over.
fn flush(tried: &mut Vec<Tried>, last: &mut Option<(String, String, SendError)>) {
    if let Some((provider, route, e)) = last.take() {
        tried.push(Tried {
            route,
            provider,
            code: e.code().to_owned(),
            reason: e.to_string(),
        });
    }
}

/// What walking a route needs from the process.
pub struct RouteContext<'a> {
    /// This process's circuit breakers.
    pub circuits: &'a Circuits,
    /// The shared rate-limit buckets, if any route uses them.
    pub limits: Option<&'a dyn LimitStore>,
    /// The clock (for rate-limit buckets).
    pub clock: &'a dyn Clock,
    /// Longest one provider call may take.
    pub send_timeout: Duration,
    /// Longest an attempt waits for a rate-limit token before passing the provider over.
    pub max_rate_wait: Duration,
}

impl Route {
    /// One delivery attempt of `message` through this route. A route of one provider has no
    /// circuit breaker: with nothing to fail over to, the retry schedule alone paces attempts.
    pub async fn deliver(&self, message: &ClaimedMessage, ctx: &RouteContext<'_>) -> RouteOutcome {
        let breaker = self.members.len() > 1;
        let mut tried = Vec::new();
        // Why the attempt may succeed later even though no provider took it now.
        let mut retry_after: Option<Duration> = None;
        let mut last: Option<(String, String, SendError)> = None;
        let mut any_retryable = false;
        for member in self.order() {
            let name = member.provider.name().to_owned();
            let admission = if breaker {
                ctx.circuits.admit(&member.key, &self.breaker)
            } else {
                Admission::Closed
            };
            match admission {
                Admission::Open(until) => {
                    let wait = until.saturating_duration_since(Instant::now());
                    retry_after = Some(retry_after.map_or(wait, |r| r.min(wait)));
                    flush(&mut tried, &mut last);
                    tried.push(Tried {
                        route: member.label.clone(),
                        provider: name,
                        code: "circuit_open".into(),
                        reason: format!(
                            "skipped: the provider failed repeatedly and is cooling down for {} s",
                            wait.as_secs()
                        ),
                    });
                    continue;
                }
                Admission::Closed | Admission::Probe => {}
            }
            if let Some(wait) = self.wait_for_token(member, ctx).await {
                retry_after = Some(retry_after.map_or(wait, |r| r.min(wait)));
                flush(&mut tried, &mut last);
                tried.push(Tried {
                    route: member.label.clone(),
                    provider: name,
                    code: "rate_limited".into(),
                    reason: format!(
                        "skipped: the provider's rate limit has no token for {} ms",
                        wait.as_millis()
                    ),
                });
                continue;
            }
            let result =
                match tokio::time::timeout(ctx.send_timeout, member.provider.send(message)).await {
                    Ok(r) => r,
                    Err(_) => Err(SendError::retryable(
                        "timeout",
                        format!(
                            "the provider did not answer within {} s",
                            ctx.send_timeout.as_secs()
                        ),
                    )),
                };
            match result {
                Ok(receipt) => {
                    ctx.circuits.success(&member.key);
                    flush(&mut tried, &mut last);
                    return RouteOutcome {
                        handled_by: Some((name, member.label.clone())),
                        tried,
                        result: Ok(receipt),
                    };
                }
                Err(e) if e.is_provider_fault() => {
                    let hint = match &e {
                        SendError::Retryable { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    if e.is_retryable() {
                        any_retryable = true;
                        if let Some(h) = hint {
                            retry_after = Some(retry_after.map_or(h, |r| r.min(h)));
                        }
                    }
                    if breaker && ctx.circuits.failure(&member.key, &self.breaker, hint) {
                        tracing::warn!(route = %member.label, provider = %name, code = e.code(), "provider circuit opened");
                    }
                    flush(&mut tried, &mut last);
                    last = Some((name, member.label.clone(), e));
                }
                Err(e) => {
                    // The message's own fault: no other provider would take it.
                    ctx.circuits.success(&member.key);
                    flush(&mut tried, &mut last);
                    return RouteOutcome {
                        handled_by: Some((name, member.label.clone())),
                        tried,
                        result: Err(e),
                    };
                }
            }
        }
        let passed_over = tried
            .iter()
            .any(|t| t.code == "circuit_open" || t.code == "rate_limited");
        match last {
            // The last provider tried failed on its side; if others were only passed over for a
            // while, or any failure was temporary, the message waits for a retry.
            Some((name, label, e)) => {
                let any_retryable = any_retryable || passed_over;
                let result = match e {
                    SendError::Retryable { code, message, .. } => Err(SendError::Retryable {
                        code,
                        message,
                        retry_after,
                    }),
                    SendError::Unusable { code, message } if any_retryable => {
                        Err(SendError::Retryable {
                            code,
                            message,
                            retry_after,
                        })
                    }
                    other => Err(other),
                };
                RouteOutcome {
                    handled_by: Some((name, label)),
                    tried,
                    result,
                }
            }
            None => RouteOutcome {
                handled_by: None,
                tried,
                result: Err(SendError::Retryable {
                    code: "providers_unavailable".into(),
                    message:
                        "every provider of the route is cooling down or out of rate-limit tokens"
                            .into(),
                    retry_after,
                }),
            },
        }
    }

    /// Takes a rate-limit token and waits until it is free; `Some(wait)` when the next token is
    /// further away than `max_rate_wait` (the provider is passed over), `None` when the
    /// provider may be called.
    async fn wait_for_token(
        &self,
        member: &RouteMember,
        ctx: &RouteContext<'_>,
    ) -> Option<Duration> {
        let (Some(limit), Some(store)) = (member.rate.as_ref(), ctx.limits) else {
            return None;
        };
        match store
            .take_token(&member.key, limit, ctx.clock.now(), ctx.max_rate_wait)
            .await
        {
            Ok(Grant::Taken(delay)) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                None
            }
            Ok(Grant::Refused(wait)) => Some(wait),
            Err(e) => {
                // Without the shared bucket the limit cannot be kept: pass over for now.
                tracing::warn!(error = %e, "rate-limit bucket unavailable");
                Some(Duration::from_secs(1))
            }
        }
    }
}

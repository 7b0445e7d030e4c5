//! Reputation: bounce and complaint rates per environment and per provider over a rolling
//! window, judged against the SES thresholds, and the gate that holds an environment's messages
//! while its reputation is critical and the operator asked to pause sending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::NewEvent;
use crate::ids::{EnvironmentId, MessageId};
use crate::store::StoreError;
use crate::time::{Clock, Timestamp};

/// A reputation level, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Below every threshold, or too little volume to judge.
    Ok,
    /// At or above a warning threshold (5% bounces or 0.1% complaints).
    Warning,
    /// At or above a critical threshold (10% bounces or 0.5% complaints).
    Critical,
}

impl Level {
    /// The stable name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ok, Self::Warning, Self::Critical]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// The SES thresholds, as fractions.
pub const BOUNCE_WARNING: f64 = 0.05;
/// Bounce rate at which the level is critical.
pub const BOUNCE_CRITICAL: f64 = 0.10;
/// Complaint rate at which the level is warning.
pub const COMPLAINT_WARNING: f64 = 0.001;
/// Complaint rate at which the level is critical.
pub const COMPLAINT_CRITICAL: f64 = 0.005;

/// An environment's reputation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationSettings {
    /// The rolling window, in seconds.
    pub window_seconds: u64,
    /// Sends in the window below which rates are shown but not judged.
    pub min_volume: u64,
    /// Whether the dispatcher holds the environment's messages while it is critical.
    pub pause_on_critical: bool,
}

impl Default for ReputationSettings {
    fn default() -> Self {
        Self {
            window_seconds: 24 * 3600,
            min_volume: 100,
            pause_on_critical: false,
        }
    }
}

impl ReputationSettings {
    /// The window as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_seconds)
    }
}

/// Event counts of one provider in the window (`provider` is `data.provider` of the events).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderCounts {
    /// The provider's name (`""` when events named none).
    pub provider: String,
    /// `sent` events (each accepted attempt once): the volume.
    pub sent: u64,
    /// `bounced` events with `bounce_type` `hard`.
    pub hard_bounces: u64,
    /// `complained` events.
    pub complaints: u64,
}

/// Rates and level of one scope (the whole environment, or one provider).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    /// Sends in the window.
    pub sent: u64,
    /// Hard bounces in the window.
    pub hard_bounces: u64,
    /// Complaints in the window.
    pub complaints: u64,
    /// Hard bounces / sends (0 without sends).
    pub bounce_rate: f64,
    /// Complaints / sends (0 without sends).
    pub complaint_rate: f64,
    /// Whether the volume reaches `min_volume`, so that the level means something.
    pub judged: bool,
    /// The level (`ok` when not judged).
    pub level: Level,
}

impl Rates {
    fn of(sent: u64, hard_bounces: u64, complaints: u64, min_volume: u64) -> Self {
        let ratio = |n: u64| {
            if sent == 0 {
                0.0
            } else {
                n as f64 / sent as f64
            }
        };
        let (bounce_rate, complaint_rate) = (ratio(hard_bounces), ratio(complaints));
        let judged = sent > 0 && sent >= min_volume;
        let level = if !judged {
            Level::Ok
        } else if bounce_rate >= BOUNCE_CRITICAL || complaint_rate >= COMPLAINT_CRITICAL {
            Level::Critical
        } else if bounce_rate >= BOUNCE_WARNING || complaint_rate >= COMPLAINT_WARNING {
            Level::Warning
        } else {
            Level::Ok
        };
        Self {
            sent,
            hard_bounces,
            complaints,
            bounce_rate,
            complaint_rate,
            judged,
            level,
        }
    }
}

/// An environment's reputation at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The worst level of the environment as a whole and of each provider.
    pub level: Level,
    /// Whether sending is paused (critical and `pause_on_critical`).
    pub paused: bool,
    /// The whole environment.
    pub overall: Rates,
    /// Each provider that sent or received events in the window, by name.
    pub providers: Vec<(String, Rates)>,
    /// The settings judged with.
    pub settings: ReputationSettings,
    /// The start of the window.
    pub since: Timestamp,
}

/// Judges counts against the thresholds.
pub fn assess(counts: &[ProviderCounts], settings: ReputationSettings, since: Timestamp) -> Report {
    let total = |f: fn(&ProviderCounts) -> u64| counts.iter().map(f).sum::<u64>();
    let overall = Rates::of(
        total(|c| c.sent),
        total(|c| c.hard_bounces),
        total(|c| c.complaints),
        settings.min_volume,
    );
    let mut providers: Vec<(String, Rates)> = counts
        .iter()
        .map(|c| {
            let r = Rates::of(c.sent, c.hard_bounces, c.complaints, settings.min_volume);
            (c.provider.clone(), r)
        })
        .collect();
    providers.sort_by(|a, b| a.0.cmp(&b.0));
    let level = providers
        .iter()
        .map(|(_, r)| r.level)
        .fold(overall.level, Level::max);
    Report {
        level,
        paused: settings.pause_on_critical && level == Level::Critical,
        overall,
        providers,
        settings,
        since,
    }
}

/// Storage of reputation: counts over a window, settings, the last level notified, and the
/// hold of a claimed message while sending is paused.
#[async_trait]
pub trait ReputationStore: Send + Sync {
    /// Counts per provider of `sent`, hard `bounced` and `complained` events since `since`.
    async fn reputation_counts(
        &self,
        env: &EnvironmentId,
        since: Timestamp,
    ) -> Result<Vec<ProviderCounts>, StoreError>;
    /// The environment's settings (defaults when never set).
    async fn reputation_settings(
        &self,
        env: &EnvironmentId,
    ) -> Result<ReputationSettings, StoreError>;
    /// Replaces the environment's settings.
    async fn put_reputation_settings(
        &self,
        env: &EnvironmentId,
        settings: &ReputationSettings,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// The level last notified for the environment (`Ok` when never).
    async fn notified_level(&self, env: &EnvironmentId) -> Result<Level, StoreError>;
    /// Moves the notified level from `from` to `to`; false when another process moved it first
    /// (so that exactly one process notifies a crossing).
    async fn swap_notified_level(
        &self,
        env: &EnvironmentId,
        from: Level,
        to: Level,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Puts a claimed message back in the queue without counting the attempt, due at `until`,
    /// and appends `event` — if the lease `lease_token` still holds.
    async fn hold_message(
        &self,
        id: &MessageId,
        lease_token: &str,
        until: Timestamp,
        event: &NewEvent,
    ) -> Result<bool, StoreError>;
}

/// Computes an environment's report now.
pub async fn report(
    store: &dyn ReputationStore,
    env: &EnvironmentId,
    now: Timestamp,
) -> Result<Report, StoreError> {
    let settings = store.reputation_settings(env).await?;
    let since = now.minus(settings.window());
    let counts = store.reputation_counts(env, since).await?;
    Ok(assess(&counts, settings, since))
}

/// Whether an environment's sending is paused; the dispatcher asks before each delivery.
#[async_trait]
pub trait SendingGate: Send + Sync + 'static {
    /// True when the environment's messages must be held.
    async fn paused(&self, env: &EnvironmentId) -> bool;
}

/// The gate from stored reputation, with answers cached for a few seconds per environment so
/// that a busy dispatcher does not count events for every message.
pub struct ReputationGate {
    store: Arc<dyn ReputationStore>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Mutex<HashMap<EnvironmentId, (Timestamp, bool)>>,
}

impl ReputationGate {
    /// A gate whose answers are at most `ttl` old.
    pub fn new(store: Arc<dyn ReputationStore>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            store,
            clock,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl SendingGate for ReputationGate {
    async fn paused(&self, env: &EnvironmentId) -> bool {
        let now = self.clock.now();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, paused)) = cache.get(env) {
                if now < at.plus(self.ttl) {
                    return *paused;
                }
            }
        }
        let paused = match self.store.reputation_settings(env).await {
            Ok(s) if !s.pause_on_critical => false,
            Ok(_) => match report(self.store.as_ref(), env, now).await {
                Ok(r) => r.paused,
                Err(e) => {
                    tracing::warn!(error = %e, "reputation unavailable; not pausing");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "reputation settings unavailable; not pausing");
                false
            }
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*env, (now, paused));
        paused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(provider: &str, sent: u64, bounces: u64, complaints: u64) -> ProviderCounts {
        ProviderCounts {
            provider: provider.into(),
            sent,
            hard_bounces: bounces,
            complaints,
        }
    }

    #[test]
    fn judges_against_the_ses_thresholds() {
        let s = ReputationSettings::default();
        let t = Timestamp(0);
        assert_eq!(assess(&[counts("ses", 1000, 49, 0)], s, t).level, Level::Ok);
        assert_eq!(
            assess(&[counts("ses", 1000, 50, 0)], s, t).level,
            Level::Warning
        );
        assert_eq!(
            assess(&[counts("ses", 1000, 100, 0)], s, t).level,
            Level::Critical
        );
        assert_eq!(
            assess(&[counts("ses", 1000, 0, 1)], s, t).level,
            Level::Warning
        );
        assert_eq!(
            assess(&[counts("ses", 1000, 0, 5)], s, t).level,
            Level::Critical
        );
    }

    #[test]
    fn too_little_volume_is_not_judged_and_the_worst_provider_counts() {
        let s = ReputationSettings::default();
        let r = assess(&[counts("ses", 10, 5, 5)], s, Timestamp(0));
        assert!(!r.overall.judged);
        assert_eq!(r.level, Level::Ok);
        let r = assess(
            &[counts("ses", 400, 0, 0), counts("smtp", 200, 30, 0)],
            ReputationSettings {
                pause_on_critical: true,
                ..s
            },
            Timestamp(0),
        );
        assert_eq!(r.overall.level, Level::Warning);
        assert_eq!(r.level, Level::Critical);
        assert!(r.paused);
    }
}

//! Rate limits: a provider's maximum send rate (a token bucket shared by every process on one
//! database, kept as a GCRA "theoretical arrival time") and the store queries behind the
//! per-recipient cap.
//!
//! GCRA keeps one number per bucket, `tat`: the moment the bucket would be empty again if no
//! further token were taken. Taking a token moves it by one emission interval. A caller may
//! reserve a token that becomes free within `max_delay` (it then waits that long before
//! sending), so waiting callers queue in one transaction each instead of polling; a token further
//! away is refused. The arithmetic lives here, so both backends share it; the store only reads
//! and writes `tat` inside one transaction.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::EnvironmentId;
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::validation::FieldError;

/// A maximum send rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens per second (fractions allowed: 0.5 is one every two seconds).
    pub per_second: f64,
    /// Tokens that may be taken at once after a quiet period (at least 1).
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl RateLimit {
    /// A checked limit.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, FieldError> {
        let limit = Self { per_second, burst };
        limit.validate()?;
        Ok(limit)
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(self.per_second.is_finite() && self.per_second >= 0.001 && self.per_second <= 1e6) {
            return Err(FieldError::new(
                "invalid_rate_limit",
                "max_per_second",
                "must be a number between 0.001 and 1000000",
            ));
        }
        if self.burst == 0 || self.burst > 1_000_000 {
            return Err(FieldError::new(
                "invalid_rate_limit",
                "burst",
                "must be between 1 and 1000000",
            ));
        }
        Ok(())
    }

    /// The emission interval in microseconds.
    pub fn interval_micros(&self) -> i64 {
        ((1_000_000.0 / self.per_second).round() as i64).max(1)
    }
}

/// What the GCRA decided for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gcra {
    /// The token is taken: store this new `tat` (microseconds since the epoch); the caller
    /// waits `delay` before using it.
    Take {
        /// The bucket's new `tat`.
        tat: i64,
        /// How long until the reserved token is free (zero: now).
        delay: Duration,
    },
    /// Refused: the next token is further away than the caller would wait.
    Wait(Duration),
}

/// One GCRA step: `tat` is the stored value (`None` for a new bucket), `now` in microseconds;
/// a token free within `max_delay` is reserved.
pub fn gcra(tat: Option<i64>, now_micros: i64, limit: &RateLimit, max_delay: Duration) -> Gcra {
    let interval = limit.interval_micros();
    let tolerance = interval.saturating_mul(i64::from(limit.burst));
    let tat = tat.unwrap_or(now_micros).max(now_micros);
    let new_tat = tat.saturating_add(interval);
    let allowed_at = new_tat - tolerance;
    let delay = Duration::from_micros(allowed_at.saturating_sub(now_micros).max(0) as u64);
    if delay <= max_delay {
        Gcra::Take {
            tat: new_tat,
            delay,
        }
    } else {
        Gcra::Wait(delay)
    }
}

/// A token from a shared bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Taken; use it after this delay (zero: at once).
    Taken(Duration),
    /// Refused; the next token is this far away.
    Refused(Duration),
}

/// The store side of rate limiting.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Takes (or reserves, within `max_delay`) one token from the bucket `key`, shared by every
    /// process on the database, applying [`gcra`] inside one transaction.
    async fn take_token(
        &self,
        key: &str,
        limit: &RateLimit,
        now: Timestamp,
        max_delay: Duration,
    ) -> Result<Grant, StoreError>;

    /// When the newest messages to `address` (normalized) in `env` were accepted, newest first,
    /// counting only those accepted at or after `since` and, when `usage` is given, only those
    /// of that usage type (`Some("")`: only messages without one); at most `limit`.
    async fn recent_sends_to(
        &self,
        env: &EnvironmentId,
        address: &str,
        usage: Option<&str>,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<Timestamp>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_spaces_tokens_by_the_interval() {
        let limit = RateLimit::new(10.0, 3).unwrap();
        let now = 1_000_000_000;
        let mut tat = None;
        for _ in 0..3 {
            match gcra(tat, now, &limit, Duration::ZERO) {
                Gcra::Take { tat: t, delay } => {
                    assert_eq!(delay, Duration::ZERO);
                    tat = Some(t);
                }
                Gcra::Wait(w) => panic!("refused within the burst, wait {w:?}"),
            }
        }
        assert_eq!(
            gcra(tat, now, &limit, Duration::ZERO),
            Gcra::Wait(Duration::from_millis(100))
        );
        // 100 ms later exactly one more token is free.
        let later = now + 100_000;
        let Gcra::Take { tat: t, .. } = gcra(tat, later, &limit, Duration::ZERO) else {
            panic!("a token should be free after one interval");
        };
        assert!(matches!(
            gcra(Some(t), later, &limit, Duration::ZERO),
            Gcra::Wait(_)
        ));
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_its_burst() {
        let limit = RateLimit::new(2.0, 2).unwrap();
        let long_ago = Some(0);
        let now = 3_600_000_000;
        let Gcra::Take { tat: t1, .. } = gcra(long_ago, now, &limit, Duration::ZERO) else {
            panic!()
        };
        let Gcra::Take { tat: t2, .. } = gcra(Some(t1), now, &limit, Duration::ZERO) else {
            panic!()
        };
        assert_eq!(
            gcra(Some(t2), now, &limit, Duration::ZERO),
            Gcra::Wait(Duration::from_millis(500))
        );
    }

    #[test]
    fn waiting_callers_reserve_consecutive_slots() {
        let limit = RateLimit::new(10.0, 1).unwrap();
        let now = 5_000_000;
        let mut tat = None;
        let mut delays = Vec::new();
        for _ in 0..4 {
            let Gcra::Take { tat: t, delay } = gcra(tat, now, &limit, Duration::from_secs(1))
            else {
                panic!("within the caller's wait")
            };
            tat = Some(t);
            delays.push(delay.as_millis());
        }
        assert_eq!(delays, [0, 100, 200, 300]);
        // A slot beyond the caller's patience is refused and not reserved.
        assert_eq!(
            gcra(tat, now, &limit, Duration::from_millis(350)),
            Gcra::Wait(Duration::from_millis(400))
        );
    }

    #[test]
    fn nonsense_rates_are_refused() {
        assert!(RateLimit::new(0.0, 1).is_err());
        assert!(RateLimit::new(f64::NAN, 1).is_err());
        assert!(RateLimit::new(5.0, 0).is_err());
        assert_eq!(RateLimit::new(4.0, 1).unwrap().interval_micros(), 250_000);
    }
}

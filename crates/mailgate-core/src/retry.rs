//! When to try a failed message again: exponential backoff with jitter that honours a
//! provider's retry-after.

use std::time::Duration;

use rand::Rng;

/// The retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a message fails (the first attempt included).
    pub max_attempts: u32,
    /// Delay after the first failure; doubled after each further failure.
    pub base_delay: Duration,
    /// Upper bound of any delay (a provider's retry-after included).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before the attempt that follows failed attempt number `attempt` (1-based).
    ///
    /// Without a hint: "equal jitter", a uniform draw in [d/2, d] where d = base × 2^(attempt−1),
    /// capped at `max_delay`, so that a burst of failures does not retry in lock-step. With a
    /// provider's `retry_after`, never earlier than it asked, plus up to 10 % jitter.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::thread_rng();
        if let Some(hint) = retry_after {
            let hint = hint.min(self.max_delay);
            let extra = hint.as_millis() as u64 / 10;
            return hint + Duration::from_millis(rng.gen_range(0..=extra));
        }
        let exp = attempt.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = full / 2;
        let spread = (full - half).as_millis() as u64;
        half + Duration::from_millis(rng.gen_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        };
        for _ in 0..200 {
            let d1 = p.delay(1, None);
            assert!(
                d1 >= Duration::from_secs(1) && d1 <= Duration::from_secs(2),
                "{d1:?}"
            );
            let d3 = p.delay(3, None);
            assert!(
                d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(8),
                "{d3:?}"
            );
            let d20 = p.delay(20, None);
            assert!(
                d20 >= Duration::from_secs(30) && d20 <= Duration::from_secs(60),
                "{d20:?}"
            );
        }
    }

    #[test]
    fn honours_retry_after_but_not_beyond_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        };
        for _ in 0..200 {
            let d = p.delay(1, Some(Duration::from_secs(20)));
            assert!(
                d >= Duration::from_secs(20) && d <= Duration::from_secs(22),
                "{d:?}"
            );
            let capped = p.delay(1, Some(Duration::from_secs(3600)));
            assert!(
                capped >= Duration::from_secs(60) && capped <= Duration::from_secs(66),
                "{capped:?}"
            );
        }
    }
}

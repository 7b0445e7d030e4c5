//! A small async token bucket that keeps one process under SES's maximum send rate.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Hands out at most `rate` permits per second, with a burst of at most one second's worth.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket allowing `rate` sends per second (fractional rates such as 0.5 work too).
    pub(crate) fn new(rate: f64) -> Self {
        let rate = rate.max(0.01);
        Self {
            rate,
            state: Mutex::new(State {
                tokens: rate.max(1.0),
                last: Instant::now(),
            }),
        }
    }

    /// The permitted sends per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Waits until one send is permitted.
    pub(crate) async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                let elapsed = now.duration_since(s.last).as_secs_f64();
                s.tokens = (s.tokens + elapsed * self.rate).min(self.rate.max(1.0));
                s.last = now;
                if s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_exceeds_the_rate() {
        let bucket = TokenBucket::new(20.0);
        let start = std::time::Instant::now();
        // 20 come from the initial burst; the next 10 need half a second.
        for _ in 0..30 {
            bucket.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[tokio::test]
    async fn concurrent_callers_share_the_budget() {
        let bucket = std::sync::Arc::new(TokenBucket::new(10.0));
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..15)
            .map(|_| {
                let b = bucket.clone();
                tokio::spawn(async move { b.acquire().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(start.elapsed() >= Duration::from_millis(450));
    }
}

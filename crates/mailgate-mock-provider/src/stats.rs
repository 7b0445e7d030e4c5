//! What the mock has seen: requests by outcome, and per message id how often it was requested
//! and accepted, so that losses and duplicates can be counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

#[derive(Debug, Default, Clone, Copy)]
struct IdState {
    requests: u32,
    accepted: u32,
}

#[derive(Debug, Default)]
struct Inner {
    requests: u64,
    by_outcome: BTreeMap<String, u64>,
    ids: HashMap<String, IdState>,
    unique_2xx: u64,
    last_new_2xx_at: Option<SystemTime>,
    without_id: u64,
    duplicates: u64,
    requests_after_2xx: u64,
    in_flight: u64,
    max_in_flight: u64,
    connections: u64,
}

/// The counters, shared by every connection.
#[derive(Debug)]
pub struct Stats {
    inner: Mutex<Inner>,
    /// The count of distinct ids answered with a 2xx, for [`Stats::wait_for_2xx`].
    unique_2xx: watch::Sender<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            unique_2xx: watch::Sender::new(0),
        }
    }
}

/// A snapshot of the counters, as `GET /stats` returns it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StatsSnapshot {
    /// Every send request received (a batch counts once per message).
    pub requests: u64,
    /// Requests by outcome: the HTTP status (`"200"`, `"503"`, …) or `"reset"`.
    pub by_outcome: BTreeMap<String, u64>,
    /// Distinct message ids seen in any request.
    pub unique_ids: u64,
    /// Distinct message ids answered with a 2xx at least once.
    pub unique_ids_2xx: u64,
    /// 2xx answers beyond the first one for the same id (deliveries made twice).
    pub duplicates: u64,
    /// Requests for an id that had already been answered with a 2xx.
    pub requests_after_2xx: u64,
    /// When the last id answered with a 2xx for the first time was answered (Unix seconds):
    /// the moment a run's last message was delivered, exact to the microsecond, however late
    /// the counters are read.
    #[serde(default)]
    pub last_new_2xx_at: Option<f64>,
    /// Requests in which no message id could be found.
    pub without_id: u64,
    /// Requests being handled now.
    pub in_flight: u64,
    /// The most requests handled at once.
    pub max_in_flight: u64,
    /// TCP connections accepted (HTTP and SMTP): a client that drops its connection after
    /// each failure opens many.
    #[serde(default)]
    pub connections: u64,
}

impl Stats {
    /// A client opened a connection.
    pub fn connection(&self) {
        self.inner.lock().unwrap().connections += 1;
    }

    /// A request starts being handled.
    pub fn begin(&self) {
        let mut s = self.inner.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
    }

    /// A request ends with `outcome` for each of `ids` (one per message of the request).
    pub fn end(&self, ids: &[Option<String>], outcome: &str, accepted: bool) {
        let mut s = self.inner.lock().unwrap();
        let unique_2xx = s.unique_2xx;
        s.in_flight = s.in_flight.saturating_sub(1);
        for id in ids {
            s.requests += 1;
            *s.by_outcome.entry(outcome.to_owned()).or_insert(0) += 1;
            let Some(id) = id else {
                s.without_id += 1;
                continue;
            };
            let state = s.ids.entry(id.clone()).or_default();
            let before = *state;
            state.requests += 1;
            if accepted {
                state.accepted += 1;
            }
            if before.accepted > 0 {
                s.requests_after_2xx += 1;
                if accepted {
                    s.duplicates += 1;
                }
            } else if accepted {
                s.unique_2xx += 1;
                s.last_new_2xx_at = Some(SystemTime::now());
            }
        }
        // Published under the lock: two requests ending at once must not publish their counts
        // in the wrong order (a lower count last would leave a waiter for the higher waiting).
        if s.unique_2xx != unique_2xx {
            self.unique_2xx.send_replace(s.unique_2xx);
        }
    }

    /// Waits until at least `n` distinct ids were answered with a 2xx, or `timeout` passed;
    /// true when they were. A benchmark asks once instead of polling [`Stats::snapshot`], so
    /// that its waiting neither takes CPU from the run nor adds a polling interval to it.
    pub async fn wait_for_2xx(&self, n: u64, timeout: Duration) -> bool {
        let mut rx = self.unique_2xx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let s = self.inner.lock().unwrap();
        StatsSnapshot {
            requests: s.requests,
            by_outcome: s.by_outcome.clone(),
            unique_ids: s.ids.len() as u64,
            unique_ids_2xx: s.unique_2xx,
            last_new_2xx_at: s
                .last_new_2xx_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            duplicates: s.duplicates,
            requests_after_2xx: s.requests_after_2xx,
            without_id: s.without_id,
            in_flight: s.in_flight,
            max_in_flight: s.max_in_flight,
            connections: s.connections,
        }
    }

    /// Per message id: how many times it was answered with a 2xx (0: only failures).
    pub fn accepted_by_id(&self) -> HashMap<String, u32> {
        let s = self.inner.lock().unwrap();
        s.ids.iter().map(|(k, v)| (k.clone(), v.accepted)).collect()
    }

    /// Per message id: how many requests carried it.
    pub fn requests_by_id(&self) -> HashMap<String, u32> {
        let s = self.inner.lock().unwrap();
        s.ids.iter().map(|(k, v)| (k.clone(), v.requests)).collect()
    }

    /// Forgets everything.
    pub fn reset(&self) {
        *self.inner.lock().unwrap() = Inner::default();
        self.unique_2xx.send_replace(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_only_after_a_2xx() {
        let s = Stats::default();
        let a = Some("msg_a".to_owned());
        for (outcome, ok) in [("503", false), ("200", true), ("200", true), ("429", false)] {
            s.begin();
            s.end(std::slice::from_ref(&a), outcome, ok);
        }
        s.begin();
        s.end(&[None], "200", true);
        let snap = s.snapshot();
        assert_eq!(snap.requests, 5);
        assert_eq!(snap.unique_ids, 1);
        assert_eq!(snap.unique_ids_2xx, 1);
        assert_eq!(snap.duplicates, 1);
        assert_eq!(snap.requests_after_2xx, 2);
        assert_eq!(snap.without_id, 1);
        assert_eq!(snap.by_outcome["200"], 3);
        assert_eq!(snap.max_in_flight, 1);
        assert!(snap.last_new_2xx_at.is_some());
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_count_is_reached_and_not_before() {
        let s = std::sync::Arc::new(Stats::default());
        assert!(!s.wait_for_2xx(1, Duration::from_millis(20)).await);
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait_for_2xx(2, Duration::from_secs(10)).await }
        });
        let (a, b) = (Some("msg_a".to_owned()), Some("msg_b".to_owned()));
        s.end(std::slice::from_ref(&a), "200", true);
        s.end(std::slice::from_ref(&a), "200", true); // a duplicate is not a new id
        s.end(std::slice::from_ref(&b), "503", false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "one id of two was delivered");
        s.end(std::slice::from_ref(&b), "200", true);
        assert!(waiter.await.unwrap());
        let snap = s.snapshot();
        assert_eq!(snap.unique_ids_2xx, 2);
        let at = snap.last_new_2xx_at.unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(at <= now && now - at < 5.0, "{at} vs {now}");
        s.reset();
        assert!(!s.wait_for_2xx(1, Duration::from_millis(20)).await);
    }
}

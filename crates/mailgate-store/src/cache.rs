//! A short-lived, in-process copy of the rows every request reads: API keys by hash,
//! environments by name or id, and environment settings.
//!
//! Every send reads all three before its message is queued. On SQLite each read is a round trip
//! to one of sqlx's connection threads, and those hops — not the SQL — were most of what a send
//! cost (the accept-path profile in bench/JOURNAL.md). The copies are fresh for `ttl`:
//!
//! - a write through this store (revoking a key, deleting an environment, saving settings) drops
//!   the affected copies at once, so this process never acts on what it changed;
//! - a write by another process on the same database is seen within `ttl`.
//!
//! A read that overlaps a write through this store does not keep its copy (a generation counter
//! tells), so a stale row read just before the write cannot be put back after it.
//! Only rows that exist are kept: a key or environment created by another process works at once.
//! Each map is bounded; when one is full it is emptied rather than grown.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mailgate_core::apikey::{ApiKeyRecord, KeyHash};
use mailgate_core::environment::Environment;
use mailgate_core::ids::EnvironmentId;
use mailgate_core::settings::EnvironmentSettings;

/// Entries a map holds at most before it is emptied.
const MAX_ENTRIES: usize = 10_000;

/// One bounded map of copies with their fetch time.
struct Copies<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Copies<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &K, ttl: Duration) -> Option<V> {
        let map = self.lock();
        let (value, at) = map.get(key)?;
        (at.elapsed() < ttl).then(|| value.clone())
    }

    fn put(&self, key: K, value: V, fetched: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (value, fetched));
    }

    fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        self.lock().retain(|k, (v, _)| keep(k, v));
    }
}

/// When a cacheable read started: its time and the store's write generation then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadStart {
    at: Instant,
    generation: u64,
}

/// The copies of one store. A `ttl` of zero turns the cache off.
pub(crate) struct HotCache {
    ttl: Duration,
    /// Bumped by every write that drops copies.
    generation: AtomicU64,
    keys: Copies<String, ApiKeyRecord>,
    environments: Copies<String, Environment>,
    settings: Copies<EnvironmentId, EnvironmentSettings>,
}

impl HotCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            generation: AtomicU64::new(0),
            keys: Copies::new(),
            environments: Copies::new(),
            settings: Copies::new(),
        }
    }

    /// Call when a read that may be cached starts. Its copy is dated from then, so another
    /// process's write that lands during the read is outlived by the copy for at most `ttl`;
    /// and it is not kept at all if this store wrote in the meantime.
    pub(crate) fn now(&self) -> ReadStart {
        ReadStart {
            at: Instant::now(),
            generation: self.generation.load(Ordering::Acquire),
        }
    }

    /// Whether a read that started at `start` may keep its copy.
    fn keeps(&self, start: ReadStart) -> bool {
        !self.ttl.is_zero() && self.generation.load(Ordering::Acquire) == start.generation
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    fn written(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn key(&self, hash: &KeyHash) -> Option<ApiKeyRecord> {
        self.enabled()
            .then(|| self.keys.get(&hash.0, self.ttl))
            .flatten()
    }

    pub(crate) fn put_key(&self, hash: &KeyHash, record: &ApiKeyRecord, start: ReadStart) {
        if self.keeps(start) {
            self.keys.put(hash.0.clone(), record.clone(), start.at);
        }
    }

    pub(crate) fn environment(&self, name_or_id: &str) -> Option<Environment> {
        self.enabled()
            .then(|| self.environments.get(&name_or_id.to_owned(), self.ttl))
            .flatten()
    }

    pub(crate) fn put_environment(&self, name_or_id: &str, env: &Environment, start: ReadStart) {
        if self.keeps(start) {
            self.environments
                .put(name_or_id.to_owned(), env.clone(), start.at);
        }
    }

    pub(crate) fn settings(&self, env: &EnvironmentId) -> Option<EnvironmentSettings> {
        self.enabled()
            .then(|| self.settings.get(env, self.ttl))
            .flatten()
    }

    pub(crate) fn put_settings(
        &self,
        env: &EnvironmentId,
        settings: &EnvironmentSettings,
        start: ReadStart,
    ) {
        if self.keeps(start) {
            self.settings.put(*env, settings.clone(), start.at);
        }
    }

    /// Forgets every copy of a key (it was deleted).
    pub(crate) fn forget_key(&self, id: &mailgate_core::ids::ApiKeyId) {
        self.written();
        self.keys.retain(|_, record| record.id != *id);
    }

    /// Forgets an environment, its settings and its keys (it was deleted).
    pub(crate) fn forget_environment(&self, id: &EnvironmentId) {
        self.written();
        self.environments.retain(|_, env| env.id != *id);
        self.settings.retain(|env, _| env != id);
        self.keys.retain(|_, record| {
            !matches!(record.scope, mailgate_core::apikey::KeyScope::Environment(e) if e == *id)
        });
    }

    /// Forgets an environment's settings (they were saved).
    pub(crate) fn forget_settings(&self, id: &EnvironmentId) {
        self.written();
        self.settings.retain(|env, _| env != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::apikey::KeyScope;
    use mailgate_core::ids::ApiKeyId;
    use mailgate_core::time::Timestamp;

    fn record(scope: KeyScope) -> ApiKeyRecord {
        ApiKeyRecord {
            id: ApiKeyId::new(),
            scope,
            name: "k".into(),
            hint: "mg_…abcd".into(),
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn a_copy_is_served_until_its_ttl_then_not() {
        let cache = HotCache::new(Duration::from_millis(50));
        let hash = KeyHash("h".into());
        let r = record(KeyScope::Admin);
        cache.put_key(&hash, &r, cache.now());
        assert_eq!(cache.key(&hash).map(|k| k.id), Some(r.id));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.key(&hash).is_none());
    }

    #[test]
    fn a_copy_dated_before_a_slow_read_expires_from_that_date() {
        let cache = HotCache::new(Duration::from_millis(50));
        let hash = KeyHash("h".into());
        let started = cache.now();
        std::thread::sleep(Duration::from_millis(60));
        cache.put_key(&hash, &record(KeyScope::Admin), started);
        assert!(cache.key(&hash).is_none());
    }

    #[test]
    fn a_read_overlapping_a_write_keeps_no_copy() {
        let cache = HotCache::new(Duration::from_secs(60));
        let env = EnvironmentId::new();
        let started = cache.now();
        // The write lands (and drops copies) while the read is in flight …
        cache.forget_settings(&env);
        // … so the value the read saw, possibly from before the write, is not kept.
        cache.put_settings(&env, &EnvironmentSettings::default(), started);
        assert!(cache.settings(&env).is_none());
        let again = cache.now();
        cache.put_settings(&env, &EnvironmentSettings::default(), again);
        assert!(cache.settings(&env).is_some());
    }

    #[test]
    fn deleting_an_environment_forgets_its_keys_settings_and_names() {
        let cache = HotCache::new(Duration::from_secs(60));
        let env = Environment {
            id: EnvironmentId::new(),
            name: mailgate_core::environment::EnvironmentName::parse("prod").unwrap(),
            created_at: Timestamp(0),
        };
        let other = EnvironmentId::new();
        let (own, foreign, admin) = (
            KeyHash("own".into()),
            KeyHash("foreign".into()),
            KeyHash("admin".into()),
        );
        let now = cache.now();
        cache.put_key(&own, &record(KeyScope::Environment(env.id)), now);
        cache.put_key(&foreign, &record(KeyScope::Environment(other)), now);
        cache.put_key(&admin, &record(KeyScope::Admin), now);
        cache.put_environment("prod", &env, now);
        cache.put_environment(&env.id.to_string(), &env, now);
        cache.put_settings(&env.id, &EnvironmentSettings::default(), now);
        cache.put_settings(&other, &EnvironmentSettings::default(), now);

        cache.forget_environment(&env.id);

        assert!(cache.key(&own).is_none());
        assert!(cache.key(&foreign).is_some());
        assert!(cache.key(&admin).is_some());
        assert!(cache.environment("prod").is_none());
        assert!(cache.environment(&env.id.to_string()).is_none());
        assert!(cache.settings(&env.id).is_none());
        assert!(cache.settings(&other).is_some());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = HotCache::new(Duration::ZERO);
        let hash = KeyHash("h".into());
        cache.put_key(&hash, &record(KeyScope::Admin), cache.now());
        assert!(cache.key(&hash).is_none());
    }

    #[test]
    fn a_full_map_is_emptied_not_grown() {
        let copies: Copies<u32, u32> = Copies::new();
        let now = Instant::now();
        for i in 0..MAX_ENTRIES as u32 {
            copies.put(i, i, now);
        }
        assert_eq!(copies.lock().len(), MAX_ENTRIES);
        copies.put(u32::MAX, 1, now);
        assert_eq!(copies.lock().len(), 1);
    }
}

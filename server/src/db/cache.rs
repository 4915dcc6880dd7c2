//! A TTL cache for heavy aggregates with single-flight: concurrent misses on one key run the query once;
//! the others wait for its result instead of piling onto the database. Keys come from request
//! parameters, so their number is capped: past the cap, idle expired keys go first, then any idle key.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Slot<V> = Arc<tokio::sync::Mutex<Option<(Instant, V)>>>;

/// Keys kept before eviction starts: far more than models × windows anyone watches.
const MAX_KEYS: usize = 1024;

pub struct TtlCache<V> {
    ttl: Duration,
    max_keys: usize,
    slots: Mutex<HashMap<String, Slot<V>>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration) -> TtlCache<V> {
        TtlCache::with_max_keys(ttl, MAX_KEYS)
    }

    pub fn with_max_keys(ttl: Duration, max_keys: usize) -> TtlCache<V> {
        TtlCache { ttl, max_keys, slots: Mutex::new(HashMap::new()) }
    }

    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for one more key. A slot someone holds (a load in flight, a waiter) is never
    /// evicted: its Arc is shared.
    fn evict(&self, slots: &mut HashMap<String, Slot<V>>) {
        let idle = |slot: &Slot<V>| Arc::strong_count(slot) == 1;
        let expired = |slot: &Slot<V>| {
            slot.try_lock().is_ok_and(|held| held.as_ref().is_none_or(|(at, _)| at.elapsed() >= self.ttl))
        };
        slots.retain(|_, slot| !(idle(slot) && expired(slot)));
        if slots.len() >= self.max_keys {
            slots.retain(|_, slot| !idle(slot));
        }
    }

    /// The cached value for `key`, or the result of `load` (stored when it succeeds). The bool says
    /// whether the value came from the cache.
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> Result<(V, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.len() >= self.max_keys && !slots.contains_key(key) {
                self.evict(&mut slots);
            }
            slots.entry(key.to_string()).or_default().clone()
        };
        // Holding the slot's lock across the load is the single flight: later callers queue here.
        let mut guard = slot.lock().await;
        if let Some((stored, value)) = guard.as_ref()
            && stored.elapsed() < self.ttl
        {
            return Ok((value.clone(), true));
        }
        let value = load().await?;
        *guard = Some((Instant::now(), value.clone()));
        Ok((value, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_second_call_within_the_ttl_is_served_from_the_cache() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(42)
        };
        assert_eq!(cache.get_or_load("k", load).await, Ok((42, false)));
        assert_eq!(cache.get_or_load("k", load).await, Ok((42, true)));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_expired_entry_is_loaded_again() {
        let cache = TtlCache::new(Duration::ZERO);
        assert_eq!(cache.get_or_load("k", || async { Ok::<_, ()>(1) }).await, Ok((1, false)));
        assert_eq!(cache.get_or_load("k", || async { Ok::<_, ()>(2) }).await, Ok((2, false)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_run_the_load_once() {
        let cache = Arc::new(TtlCache::new(Duration::from_secs(60)));
        let loads = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load("k", || async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, ()>(7)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().0, 7);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn past_the_key_cap_expired_keys_are_evicted_first_then_idle_ones() {
        let cache = TtlCache::with_max_keys(Duration::from_secs(60), 3);
        for key in ["a", "b", "c"] {
            cache.get_or_load(key, || async { Ok::<_, ()>(1) }).await.unwrap();
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get_or_load("d", || async { Ok::<_, ()>(4) }).await, Ok((4, false)));
        assert_eq!(cache.len(), 1, "every idle key went to make room");
        assert_eq!(cache.get_or_load("d", || async { Ok::<_, ()>(5) }).await, Ok((4, true)));

        let expiring = TtlCache::with_max_keys(Duration::ZERO, 2);
        for key in ["a", "b", "c", "d", "e"] {
            expiring.get_or_load(key, || async { Ok::<_, ()>(1) }).await.unwrap();
        }
        assert_eq!(expiring.len(), 1, "expired keys are evicted as new ones arrive");
    }

    #[tokio::test]
    async fn a_failed_load_is_not_cached() {
        let cache = TtlCache::new(Duration::from_secs(60));
        assert_eq!(cache.get_or_load("k", || async { Err::<i32, _>("down") }).await, Err("down"));
        assert_eq!(cache.get_or_load("k", || async { Ok::<_, &str>(3) }).await, Ok((3, false)));
    }
}

//! Model shards at the edge: a byte-bounded LRU of decoded shards per isolate, filled by one
//! KV bulk read per decision for the shards the core's plan names and the cache lacks.
//!
//! Memory used by the model is the head plus this cache, whatever the catalog's size
//! (`SHARD_CACHE_BYTES`). A bulk read that fails, times out or finds a key missing leaves those
//! shards out: the core decides without them and says so (`missing`), never an error. While
//! the config KV breaker is open no read is tried at all. Keys are content-addressed, so a
//! cached shard stays valid across releases (an incremental release keeps its base's shards).

use crate::breaker::{self, Dep};
use crate::budget::within;
use crate::settings::Settings;
use crate::stats::{self, Counter};
use edgerec::model::{Head, Shard, ShardRef, ShardSource};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use worker::KvStore;

/// A byte-bounded least-recently-used cache of decoded shards, by KV key. (A few lines over a
/// map and an ordered index; a crate would add size to the worker for little.)
#[derive(Default)]
pub struct Lru {
    entries: HashMap<String, (Rc<Shard>, u64)>,
    order: BTreeMap<u64, String>,
    tick: u64,
    bytes: usize,
}

impl Lru {
    /// The shard under `key`, marking it used.
    pub fn get(&mut self, key: &str) -> Option<Rc<Shard>> {
        self.tick += 1;
        let (shard, at) = self.entries.get_mut(key)?;
        let key = self.order.remove(at)?;
        *at = self.tick;
        self.order.insert(self.tick, key);
        Some(shard.clone())
    }

    /// Adds a shard, then evicts the least recently used until within `cap` bytes (a shard
    /// larger than `cap` is still kept until the next insert: the decision at hand needs it).
    pub fn put(&mut self, key: String, shard: Rc<Shard>, cap: usize) {
        self.tick += 1;
        self.bytes += shard.heap_bytes();
        if let Some((old, at)) = self.entries.insert(key.clone(), (shard, self.tick)) {
            self.bytes -= old.heap_bytes();
            self.order.remove(&at);
        }
        self.order.insert(self.tick, key);
        while self.bytes > cap && self.order.len() > 1 {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            if let Some((s, _)) = self.entries.remove(&k) {
                self.bytes -= s.heap_bytes();
                stats::inc(Counter::ShardEvictions);
            }
        }
    }

    /// Bytes held (estimated) and shards held.
    pub fn usage(&self) -> (usize, usize) {
        (self.bytes, self.entries.len())
    }
}

thread_local! {
    static CACHE: RefCell<Lru> = RefCell::new(Lru::default());
}

/// The shards one decision reads.
#[derive(Default)]
pub struct Loaded(Vec<(ShardRef, Rc<Shard>)>);

impl ShardSource for Loaded {
    fn shard(&self, at: ShardRef) -> Option<&Shard> {
        self.0.iter().find(|(r, _)| *r == at).map(|(_, s)| &**s)
    }
}

/// Loads the planned shards: from the isolate's cache, the rest with one KV bulk read.
pub async fn load(kv: &KvStore, head: &Head, plan: &[ShardRef], s: &Settings, now: u64) -> Loaded {
    let mut loaded = Loaded::default();
    let mut wanted: Vec<(ShardRef, String)> = Vec::new();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        for &at in plan {
            let Some(key) = head.key(at) else { continue };
            match c.get(&key) {
                Some(shard) => loaded.0.push((at, shard)),
                None => wanted.push((at, key)),
            }
        }
    });
    stats::add(Counter::ShardCacheHits, loaded.0.len() as u64);
    if wanted.is_empty() {
        return loaded;
    }
    if !breaker::allow(Dep::ConfigKv, now) {
        stats::add(Counter::ShardsMissing, wanted.len() as u64);
        return loaded;
    }
    stats::inc(Counter::ShardReads);
    let keys: Vec<&str> = wanted.iter().map(|(_, k)| k.as_str()).collect();
    let read = within(s.shard_budget_ms, kv.get_bulk(&keys).text()).await;
    let found = match read {
        Some(Ok(map)) => {
            breaker::success(Dep::ConfigKv);
            map
        }
        failed => {
            if let Some(Err(e)) = failed {
                worker::console_warn!("edgerec: shard read failed: {e}");
            }
            stats::inc(Counter::ShardReadFailures);
            breaker::failure(
                Dep::ConfigKv,
                now,
                s.breaker_threshold,
                s.breaker_cooldown_ms,
            );
            stats::add(Counter::ShardsMissing, wanted.len() as u64);
            return loaded;
        }
    };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        for (at, key) in wanted {
            let shard = found
                .get(&key)
                .and_then(|t| t.as_deref())
                .map(Shard::decode_stored);
            match shard {
                Some(Ok(shard)) => {
                    let shard = Rc::new(shard);
                    c.put(key, shard.clone(), s.shard_cache_bytes);
                    loaded.0.push((at, shard));
                }
                Some(Err(e)) => {
                    worker::console_warn!("edgerec: shard {key} does not load: {e}");
                    stats::inc(Counter::ShardsInvalid);
                }
                None => stats::inc(Counter::ShardsMissing),
            }
        }
    });
    loaded
}

/// What the cache holds, for /v1/health.
pub fn usage() -> serde_json::Value {
    let (bytes, shards) = CACHE.with(|c| c.borrow().usage());
    serde_json::json!({"bytes": bytes, "shards": shards})
}

/// Makes a decision with the shards its plan names: cached ones, the rest read in one bulk read
/// of the config KV. Whatever could not be read, the decision goes without (`missing`).
pub async fn decide(
    kv: &KvStore,
    engine: &edgerec::Engine,
    req: &edgerec::DecideRequest<'_>,
    s: &Settings,
    now: u64,
) -> edgerec::Decision {
    decide_timed(kv, engine, req, s, now).await.0
}

/// [`decide`], and the µs the core's decision took (reads excluded; 0 where the platform's
/// timers only advance on I/O, as deployed Workers' do).
pub async fn decide_timed(
    kv: &KvStore,
    engine: &edgerec::Engine,
    req: &edgerec::DecideRequest<'_>,
    s: &Settings,
    now: u64,
) -> (edgerec::Decision, u64) {
    let plan = engine.plan(req);
    let loaded = load(kv, engine.head(), &plan, s, now).await;
    let started = crate::shadow::now_us();
    let d = engine.decide_with(req, &loaded);
    let spent = (crate::shadow::now_us() - started).max(0.0) as u64;
    if d.missing > 0 {
        stats::inc(Counter::DecisionsPartial);
    }
    (d, spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards() -> Vec<Rc<Shard>> {
        let doc = edgerec::model::synthetic::Synthetic::new(3000, 1).to_doc();
        let cat = edgerec::catalog::Catalog::from_doc(&doc).unwrap();
        let (_, map) = edgerec::model::build::in_memory(&cat).unwrap();
        let mut v: Vec<(ShardRef, Shard)> = map.0.into_iter().collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|(_, s)| Rc::new(s)).collect()
    }

    #[test]
    fn the_cache_stays_within_its_bytes_and_drops_the_least_recently_used() {
        let all = shards();
        let one = all[0].heap_bytes();
        let cap = one * 5;
        let mut lru = Lru::default();
        for (i, s) in all.iter().take(40).enumerate() {
            lru.put(format!("k{i}"), s.clone(), cap);
            // Touching k0 keeps it in.
            assert!(lru.get("k0").is_some(), "k0 evicted at {i}");
            assert!(
                lru.usage().0 <= cap + one * 2,
                "{:?} over {cap}",
                lru.usage()
            );
        }
        assert!(
            lru.get("k1").is_none(),
            "an old, untouched shard was evicted"
        );
        assert!(lru.get("k39").is_some());
        // Re-adding a key replaces it without double counting.
        let before = lru.usage();
        lru.put("k39".into(), all[39].clone(), cap);
        assert_eq!(lru.usage(), before);
    }
}

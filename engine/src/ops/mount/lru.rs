//! A least-recently-used map bounded by the summed weight of its values
//! (bytes), not by their count: a mount's caches hold blobs from 1 byte to
//! several MiB and trees from a few entries to a million, and only their
//! bytes say what they cost.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// One value with its weight and the tick of its last use.
struct Slot<V> {
    value: V,
    weight: usize,
    tick: u64,
}

/// A map that forgets its least recently used values once their weights
/// add up to more than its budget.
pub(crate) struct Lru<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Last use → key, oldest first: the order of eviction.
    order: BTreeMap<u64, K>,
    next_tick: u64,
    weight: usize,
    budget: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An empty map holding at most `budget` of weight.
    pub(crate) fn new(budget: usize) -> Self {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_tick: 0,
            weight: 0,
            budget,
        }
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// The value of `key`, which becomes the most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let tick = self.tick();
        let slot = self.map.get_mut(key)?;
        self.order.remove(&slot.tick);
        slot.tick = tick;
        self.order.insert(tick, key.clone());
        Some(slot.value.clone())
    }

    /// True when `key` is held (without making it recently used).
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Holds `value` under `key` as the most recently used, then forgets the
    /// least recently used values until the budget holds. A value heavier
    /// than the whole budget is not kept: it would only evict everything.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: usize) {
        self.remove(&key);
        if weight > self.budget {
            return;
        }
        let tick = self.tick();
        self.order.insert(tick, key.clone());
        self.map.insert(
            key,
            Slot {
                value,
                weight,
                tick,
            },
        );
        self.weight += weight;
        while self.weight > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.map.remove(&oldest) {
                self.weight -= slot.weight;
            }
        }
    }

    /// Forgets `key`.
    pub(crate) fn remove(&mut self, key: &K) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.tick);
            self.weight -= slot.weight;
        }
    }

    /// The summed weight of the values held.
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }

    /// The number of values held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_never_exceeds_the_budget() {
        let mut lru = Lru::new(1000);
        for i in 0..10_000u32 {
            lru.insert(i, i, (i as usize * 7919) % 300 + 1);
            assert!(lru.weight() <= 1000, "weight {} after {i}", lru.weight());
        }
        assert!(lru.len() >= 1000 / 300, "it still holds what fits");
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let mut lru = Lru::new(30);
        lru.insert("a", 1, 10);
        lru.insert("b", 2, 10);
        lru.insert("c", 3, 10);
        assert_eq!(lru.get(&"a"), Some(1), "a is now the most recent");
        lru.insert("d", 4, 10);
        assert!(!lru.contains(&"b"), "b was the least recently used");
        assert!(lru.contains(&"a") && lru.contains(&"c") && lru.contains(&"d"));
        assert_eq!(lru.weight(), 30);
    }

    #[test]
    fn a_value_heavier_than_the_budget_is_not_kept() {
        let mut lru = Lru::new(100);
        lru.insert(1, (), 60);
        lru.insert(2, (), 101);
        assert!(!lru.contains(&2));
        assert!(lru.contains(&1), "nothing was evicted for it");
        lru.insert(1, (), 100);
        assert_eq!((lru.len(), lru.weight()), (1, 100), "replaced, not added");
        lru.remove(&1);
        assert_eq!((lru.len(), lru.weight()), (0, 0));
    }
}

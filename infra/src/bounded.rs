//! A map of at most `capacity` entries shared between tasks: the command side's memory of what it
//! read or stored before (an aggregate's last state, the copy that holds a rental). When full, an
//! arbitrary entry is evicted: a miss costs one read of the store, never a wrong answer, so only
//! what is true until replaced by something newer may be kept in it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

pub struct Bounded<V> {
    entries: Mutex<HashMap<String, V>>,
    capacity: usize,
}

impl<V: Clone> Bounded<V> {
    /// A map that keeps at most `capacity` entries (none with 0).
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, V>> {
        // A panic while holding the lock leaves a whole map (no operation here can tear an entry).
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<V> {
        self.entries().get(key).cloned()
    }

    /// Keeps `value` under `key`, unless the entry already there is to stay (`keep` says so).
    pub fn insert_unless(&self, key: &str, value: V, keep: impl FnOnce(&V) -> bool) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries();
        match entries.get_mut(key) {
            Some(existing) if keep(existing) => {}
            Some(existing) => *existing = value,
            None => {
                if entries.len() >= self.capacity {
                    if let Some(evicted) = entries.keys().next().cloned() {
                        entries.remove(&evicted);
                    }
                }
                entries.insert(key.to_string(), value);
            }
        }
    }

    pub fn insert(&self, key: &str, value: V) {
        self.insert_unless(key, value, |_| false);
    }

    pub fn remove(&self, key: &str) -> Option<V> {
        self.entries().remove(key)
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn never_holds_more_than_its_capacity() {
        let map = Bounded::new(3);
        for n in 0..10 {
            map.insert(&n.to_string(), n);
        }
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("9"), Some(9), "the newest entry is kept");
    }

    #[test]
    fn replacing_an_entry_evicts_nothing() {
        let map = Bounded::new(2);
        map.insert("a", 1);
        map.insert("b", 2);
        map.insert("a", 3);
        assert_eq!((map.get("a"), map.get("b")), (Some(3), Some(2)));
    }

    #[test]
    fn an_entry_that_is_to_stay_is_not_replaced() {
        let map = Bounded::new(2);
        map.insert("a", 5);
        map.insert_unless("a", 4, |known| *known > 4);
        assert_eq!(map.get("a"), Some(5));
        map.insert_unless("a", 6, |known| *known > 6);
        assert_eq!(map.get("a"), Some(6));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let map = Bounded::new(0);
        map.insert("a", 1);
        assert!(map.is_empty());
        assert_eq!(map.get("a"), None);
    }
}

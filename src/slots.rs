//! Per-key occupancy caps: at most `max` things held at once for any one key (connections
//! per source address, requests in flight per caller). A slot is a guard; dropping it frees it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// Counts what each key holds; keys with nothing held take no memory.
#[derive(Debug)]
pub struct KeyedSlots<K: Hash + Eq> {
    max: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Clone> KeyedSlots<K> {
    /// At most `max` slots per key (0 refuses everything).
    pub fn new(max: usize) -> Self {
        KeyedSlots {
            max,
            held: Arc::default(),
        }
    }

    /// A slot for `key`, or `None` when `key` already holds `max`.
    pub fn try_acquire(&self, key: &K) -> Option<KeyedSlot<K>> {
        let mut held = lock(&self.held);
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            if *count == 0 {
                held.remove(key);
            }
            return None;
        }
        *count += 1;
        Some(KeyedSlot {
            key: key.clone(),
            held: Arc::clone(&self.held),
        })
    }

    /// How many slots `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        lock(&self.held).get(key).copied().unwrap_or(0)
    }
}

/// One held slot; freed on drop.
#[derive(Debug)]
pub struct KeyedSlot<K: Hash + Eq> {
    key: K,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq> Drop for KeyedSlot<K> {
    fn drop(&mut self) {
        let mut held = lock(&self.held);
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// The map is only ever left consistent (no code between lock and unlock can panic), so a
/// poisoned lock still holds good counts.
fn lock<K>(m: &Mutex<HashMap<K, usize>>) -> MutexGuard<'_, HashMap<K, usize>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_capped_on_its_own_and_dropping_frees() {
        let slots = KeyedSlots::new(2);
        let a1 = slots.try_acquire(&"a").unwrap();
        let _a2 = slots.try_acquire(&"a").unwrap();
        assert!(slots.try_acquire(&"a").is_none(), "a is full");
        let _b = slots.try_acquire(&"b").expect("b is not affected by a");
        assert_eq!(slots.held(&"a"), 2);
        drop(a1);
        assert_eq!(slots.held(&"a"), 1);
        assert!(slots.try_acquire(&"a").is_some(), "a freed one");
    }

    #[test]
    fn keys_with_nothing_held_are_forgotten() {
        let slots = KeyedSlots::new(1);
        drop(slots.try_acquire(&1u32));
        assert!(lock(&slots.held).is_empty());
        let zero = KeyedSlots::new(0);
        assert!(zero.try_acquire(&1u32).is_none());
        assert!(lock(&zero.held).is_empty(), "a refusal leaves no entry");
    }
}

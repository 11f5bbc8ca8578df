//! The rentals of one copy that have ended, and how: what lets a late command get a precise
//! answer ("already returned") and a retried rent be recognised.
//!
//! A copy's history only grows, and the write side clones the copy's state for every command it
//! decides (its aggregate cache hands out a copy and keeps its own). As a plain map, that clone
//! was a copy of every rental the copy ever had: 170 µs at 15,000 rentals, so commands on a busy
//! copy slowed down as it was rented (BENCHMARKS.md, sixth session). Here the history is a list of
//! full chunks that are shared, never changed once sealed, and one open chunk: a clone copies at
//! most [`CHUNK`] entries and counts one more owner of the rest.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::RentalStatus;

/// Entries per sealed chunk. A look-up searches the open chunk, then each sealed one: at 15,000
/// rentals that is 59 searches of 256 entries, about a microsecond.
pub const CHUNK: usize = 256;

type Chunk = BTreeMap<Uuid, RentalStatus>;

#[derive(Debug, Clone, Default)]
pub struct ClosedRentals {
    /// Full chunks, oldest first.
    sealed: Arc<Vec<Arc<Chunk>>>,
    /// The newest entries, fewer than [`CHUNK`].
    open: Chunk,
}

impl ClosedRentals {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, rental_id: &Uuid) -> Option<&RentalStatus> {
        self.open.get(rental_id).or_else(|| self.sealed.iter().rev().find_map(|chunk| chunk.get(rental_id)))
    }

    pub fn contains_key(&self, rental_id: &Uuid) -> bool {
        self.get(rental_id).is_some()
    }

    /// Records how `rental_id` ended. A rental ends once; ending it again changes nothing.
    pub fn insert(&mut self, rental_id: Uuid, status: RentalStatus) {
        if self.contains_key(&rental_id) {
            return;
        }
        self.open.insert(rental_id, status);
        if self.open.len() >= CHUNK {
            let full = std::mem::take(&mut self.open);
            Arc::make_mut(&mut self.sealed).push(Arc::new(full));
        }
    }

    pub fn len(&self) -> usize {
        self.sealed.iter().map(|chunk| chunk.len()).sum::<usize>() + self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.sealed.is_empty()
    }

    /// Every entry, oldest chunk first (within a chunk, in id order).
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &RentalStatus)> {
        self.sealed.iter().flat_map(|chunk| chunk.iter()).chain(self.open.iter())
    }
}

/// The same rentals with the same endings, however they are chunked.
impl PartialEq for ClosedRentals {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(id, status)| other.get(id) == Some(status))
    }
}

/// Stored as the map it stands for (`{"<rental id>": "RETURNED", …}`).
impl Serialize for ClosedRentals {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for ClosedRentals {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Chunk::deserialize(deserializer)?;
        let mut closed = Self::new();
        for (rental_id, status) in map {
            closed.insert(rental_id, status);
        }
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(count: usize) -> (ClosedRentals, Vec<Uuid>) {
        let mut closed = ClosedRentals::new();
        let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
        for (n, id) in ids.iter().enumerate() {
            let status = if n % 3 == 0 { RentalStatus::Cancelled } else { RentalStatus::Returned };
            closed.insert(*id, status);
        }
        (closed, ids)
    }

    #[test]
    fn it_should_find_every_ended_rental_across_chunks() {
        let (closed, ids) = history(3 * CHUNK + 10);
        assert_eq!(closed.len(), 3 * CHUNK + 10);
        assert_eq!(closed.sealed.len(), 3, "full chunks are sealed");
        for (n, id) in ids.iter().enumerate() {
            let wanted = if n % 3 == 0 { RentalStatus::Cancelled } else { RentalStatus::Returned };
            assert_eq!(closed.get(id), Some(&wanted), "rental {n}");
        }
        assert!(!closed.contains_key(&Uuid::now_v7()));
    }

    #[test]
    fn it_should_keep_a_clone_apart_from_what_the_original_records_later() {
        let (mut original, _) = history(CHUNK - 1);
        let copy = original.clone();
        let (later, sealing) = (Uuid::now_v7(), Uuid::now_v7());
        original.insert(later, RentalStatus::Returned); // seals the open chunk
        original.insert(sealing, RentalStatus::Returned);
        assert!(!copy.contains_key(&later) && !copy.contains_key(&sealing));
        assert_eq!(copy.len(), CHUNK - 1);
        assert_eq!(original.len(), CHUNK + 1);
        assert!(Arc::ptr_eq(&original.clone().sealed, &original.sealed), "a clone shares the sealed chunks");
    }

    #[test]
    fn it_should_record_a_rental_ending_once() {
        let (mut closed, ids) = history(CHUNK + 1);
        closed.insert(ids[0], RentalStatus::Returned); // it was cancelled, in a sealed chunk
        assert_eq!(closed.get(&ids[0]), Some(&RentalStatus::Cancelled));
        assert_eq!(closed.len(), CHUNK + 1);
    }

    #[test]
    fn it_should_serialize_as_the_map_and_back() {
        let (closed, _) = history(CHUNK + 5);
        let json = serde_json::to_value(&closed).unwrap();
        let map: BTreeMap<Uuid, RentalStatus> = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(map.len(), CHUNK + 5);
        let back: ClosedRentals = serde_json::from_value(json).unwrap();
        assert_eq!(back, closed);
    }
}

//! The rentals of one copy that have ended, and how: what lets a late command get a precise
//! answer ("already returned") and a retried rent be recognised.
//!
//! A copy's history only grows, and the write side clones the copy's state for every command it
//! decides (its aggregate cache hands out a copy and keeps its own). As a plain map, that clone
//! was a copy of every rental the copy ever had: 170 µs at 15,000 rentals, so commands on a busy
//! copy slowed down as it was rented (BENCHMARKS.md, sixth session). Here the history is a list of
//! full chunks that are shared, never changed once sealed, and one open chunk: a clone copies at
//! most [`CHUNK`] entries and counts one more owner of the rest.
//!
//! A look-up must not walk the chunks either: every rent asks whether its (new) rental id has
//! ended, a question whose answer is "no" only after every chunk is searched. Each sealed chunk
//! keeps the least and greatest id it holds, and the history the bounds of all of them, so a
//! look-up searches only the chunks whose bounds hold the id. Rental ids are time-ordered (UUID
//! v7, given out by the server), and a copy's rentals end one after another: a new rental's id is
//! past every sealed chunk, and an ended one's is within a chunk or two. Ids of any other kind are
//! found as well, only searched in more chunks.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::RentalStatus;

/// Entries per sealed chunk, and the most a clone copies.
pub const CHUNK: usize = 128;

/// Rentals and how they ended, in id order: 17 bytes an entry, in one allocation. (As a
/// `BTreeMap`, a history held 36 bytes an entry in nodes of its own, and a clone of the open
/// chunk made up to 18 allocations: `cargo bench -p storming-domain --bench closed_rentals`.)
type Entries = Vec<(Uuid, RentalStatus)>;

/// A full chunk, and the bounds of the ids in it (as numbers: `Uuid`'s order, compared faster).
#[derive(Debug)]
struct Sealed {
    ids: RangeInclusive<u128>,
    entries: Box<[(Uuid, RentalStatus)]>,
}

impl Sealed {
    fn new(entries: Entries) -> Self {
        let least = entries.first().expect("a sealed chunk is full").0.as_u128();
        let greatest = entries.last().expect("a sealed chunk is full").0.as_u128();
        Self { ids: least..=greatest, entries: entries.into_boxed_slice() }
    }
}

/// Where `rental_id` is in `entries` (sorted by id), or where it would go.
fn position(entries: &[(Uuid, RentalStatus)], rental_id: &Uuid) -> Result<usize, usize> {
    entries.binary_search_by(|(id, _)| id.cmp(rental_id))
}

#[derive(Debug, Clone, Default)]
pub struct ClosedRentals {
    /// Full chunks, oldest first.
    sealed: Arc<Vec<Arc<Sealed>>>,
    /// The least and greatest id in any sealed chunk (`None` while there is none).
    sealed_ids: Option<RangeInclusive<u128>>,
    /// The newest entries, fewer than [`CHUNK`], in id order.
    open: Entries,
}

impl ClosedRentals {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, rental_id: &Uuid) -> Option<&RentalStatus> {
        match position(&self.open, rental_id) {
            Ok(at) => Some(&self.open[at].1),
            Err(_) => self.sealed_get(rental_id),
        }
    }

    /// How `rental_id` ended, if a sealed chunk holds it.
    fn sealed_get(&self, rental_id: &Uuid) -> Option<&RentalStatus> {
        let id = rental_id.as_u128();
        if !self.sealed_ids.as_ref().is_some_and(|ids| ids.contains(&id)) {
            return None;
        }
        self.sealed
            .iter()
            .rev()
            .filter(|chunk| chunk.ids.contains(&id))
            .find_map(|chunk| position(&chunk.entries, rental_id).ok().map(|at| &chunk.entries[at].1))
    }

    pub fn contains_key(&self, rental_id: &Uuid) -> bool {
        self.get(rental_id).is_some()
    }

    /// Records how `rental_id` ended. A rental ends once; ending it again changes nothing.
    pub fn insert(&mut self, rental_id: Uuid, status: RentalStatus) {
        // The server's ids are time-ordered: the place is nearly always the end.
        let Err(at) = position(&self.open, &rental_id) else { return };
        if self.sealed_get(&rental_id).is_some() {
            return;
        }
        self.open.insert(at, (rental_id, status));
        if self.open.len() >= CHUNK {
            let full = Sealed::new(std::mem::take(&mut self.open));
            self.sealed_ids = Some(match self.sealed_ids.take() {
                Some(ids) => (*ids.start()).min(*full.ids.start())..=(*ids.end()).max(*full.ids.end()),
                None => full.ids.clone(),
            });
            Arc::make_mut(&mut self.sealed).push(Arc::new(full));
        }
    }

    pub fn len(&self) -> usize {
        self.sealed.iter().map(|chunk| chunk.entries.len()).sum::<usize>() + self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.sealed.is_empty()
    }

    /// Every entry, oldest chunk first (within a chunk, in id order).
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &RentalStatus)> {
        self.sealed
            .iter()
            .flat_map(|chunk| chunk.entries.iter())
            .chain(self.open.iter())
            .map(|(id, status)| (id, status))
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
        let map = BTreeMap::<Uuid, RentalStatus>::deserialize(deserializer)?;
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
    fn it_should_find_ids_of_any_order_and_no_others() {
        // Not time-ordered: spread over the whole range, so every chunk's bounds overlap the rest.
        let id = |n: u128| Uuid::from_u128(n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
        let mut closed = ClosedRentals::new();
        for n in 0..5 * CHUNK as u128 + 3 {
            closed.insert(id(n), if n % 2 == 0 { RentalStatus::Returned } else { RentalStatus::Cancelled });
        }
        assert_eq!(closed.sealed.len(), 5);
        for n in 0..5 * CHUNK as u128 + 3 {
            let wanted = if n % 2 == 0 { RentalStatus::Returned } else { RentalStatus::Cancelled };
            assert_eq!(closed.get(&id(n)), Some(&wanted), "rental {n}");
        }
        for n in 5 * CHUNK as u128 + 3..6 * CHUNK as u128 {
            assert!(!closed.contains_key(&id(n)), "never ended: {n}");
        }
    }

    #[test]
    fn it_should_answer_an_id_outside_every_chunk_without_finding_it() {
        // Ordered, as the server's ids are, with room between them.
        let id = |n: usize| Uuid::from_u128(((n as u128) + 1) << 16);
        let mut closed = ClosedRentals::new();
        for n in 0..4 * CHUNK {
            closed.insert(id(n), RentalStatus::Returned);
        }
        assert_eq!(closed.sealed.len(), 4);
        let bounds = closed.sealed_ids.clone().unwrap();
        assert_eq!((*bounds.start(), *bounds.end()), (id(0).as_u128(), id(4 * CHUNK - 1).as_u128()));
        assert!(!closed.contains_key(&id(4 * CHUNK)), "a new rental, past every chunk");
        assert!(!closed.contains_key(&Uuid::nil()), "before every chunk");
        let between = Uuid::from_u128(id(CHUNK).as_u128() - 1);
        assert!(!closed.contains_key(&between), "within the bounds, in no chunk");
        assert_eq!(closed.get(&id(CHUNK)), Some(&RentalStatus::Returned));
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

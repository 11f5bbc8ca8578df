//! What a copy's history of ended rentals costs the commands on it, as the history grows.
//!
//! `cargo bench -p storming-domain --bench closed_rentals` (a release build; no harness crate).
//! For histories of 1,000 to 1,000,000 ended rentals it times what the write side does with one
//! per command: clone it (the aggregate cache hands out a copy), ask whether a new rental id has
//! ended (every rent), record an ending (every return), and find an old rental's ending (a late
//! command). Nanoseconds per operation, the median of five rounds. And what the history holds:
//! the heap bytes it keeps per ended rental, and the allocations a clone and an ending make (the
//! write side makes them on every command; counted by this binary's allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use storming_domain::rental::aggregate::ClosedRentals;
use storming_domain::rental::RentalStatus;
use uuid::Uuid;

const ROUNDS: usize = 5;
const OPERATIONS: usize = 20_000;

/// The system's allocator, counting the bytes held and the allocations made.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    println!(
        "history    clone+new id+end (ns)   find an old one (ns)   bytes per ended rental   allocations per clone+end"
    );
    for size in [1_000, 10_000, 100_000, 1_000_000] {
        let ids: Vec<Uuid> = (0..size).map(|_| Uuid::now_v7()).collect();
        let before = HELD.load(Ordering::Relaxed);
        let mut history = ClosedRentals::new();
        for id in &ids {
            history.insert(*id, RentalStatus::Returned);
        }
        let per_rental = (HELD.load(Ordering::Relaxed) - before) as f64 / size as f64;
        let allocations = {
            let counted = ALLOCATIONS.load(Ordering::Relaxed);
            let mut decided = black_box(&history).clone();
            decided.insert(Uuid::now_v7(), RentalStatus::Returned);
            drop(black_box(decided));
            ALLOCATIONS.load(Ordering::Relaxed) - counted
        };
        let cycle = median(|| {
            let mut copy = history.clone();
            let started = Instant::now();
            for _ in 0..OPERATIONS {
                let mut decided = black_box(&copy).clone();
                let rental = Uuid::now_v7();
                assert!(!decided.contains_key(&rental));
                decided.insert(rental, RentalStatus::Returned);
                copy = decided;
            }
            started.elapsed().as_nanos() as f64 / OPERATIONS as f64
        });
        let find = median(|| {
            let started = Instant::now();
            for n in 0..OPERATIONS {
                let id = ids[n * 7919 % size];
                assert!(black_box(&history).get(&id).is_some());
            }
            started.elapsed().as_nanos() as f64 / OPERATIONS as f64
        });
        println!("{size:>9}   {cycle:>20.0}   {find:>20.0}   {per_rental:>22.1}   {allocations:>25}");
    }
}

fn median(mut run: impl FnMut() -> f64) -> f64 {
    let mut runs: Vec<f64> = (0..ROUNDS).map(|_| run()).collect();
    runs.sort_by(f64::total_cmp);
    runs[ROUNDS / 2]
}

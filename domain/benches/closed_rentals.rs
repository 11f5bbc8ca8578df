//! What a copy's history of ended rentals costs the commands on it, as the history grows.
//!
//! `cargo bench -p storming-domain --bench closed_rentals` (a release build; no harness crate).
//! For histories of 1,000 to 1,000,000 ended rentals it times what the write side does with one
//! per command: clone it (the aggregate cache hands out a copy), ask whether a new rental id has
//! ended (every rent), record an ending (every return), and find an old rental's ending (a late
//! command). Nanoseconds per operation, the median of five rounds.

use std::hint::black_box;
use std::time::Instant;

use storming_domain::rental::aggregate::ClosedRentals;
use storming_domain::rental::RentalStatus;
use uuid::Uuid;

const ROUNDS: usize = 5;
const OPERATIONS: usize = 20_000;

fn main() {
    println!("history    clone+new id+end (ns)   find an old one (ns)");
    for size in [1_000, 10_000, 100_000, 1_000_000] {
        let mut history = ClosedRentals::new();
        let mut ids = Vec::with_capacity(size);
        for _ in 0..size {
            let id = Uuid::now_v7();
            history.insert(id, RentalStatus::Returned);
            ids.push(id);
        }
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
        println!("{size:>9}   {cycle:>20.0}   {find:>20.0}");
    }
}

fn median(mut run: impl FnMut() -> f64) -> f64 {
    let mut runs: Vec<f64> = (0..ROUNDS).map(|_| run()).collect();
    runs.sort_by(f64::total_cmp);
    runs[ROUNDS / 2]
}

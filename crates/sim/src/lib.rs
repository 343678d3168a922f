//! # quorate-sim
//!
//! A deterministic simulator of whole Quorate clusters. One seed determines a whole run:
//! node clocks (each at its own rate within the drift bound), the network's delays, losses,
//! duplicates and partitions, crashes (some timed to hit unsynced writes) and restarts, and the
//! clients' operations. The nodes run the production `quorate-raft-core` code, driven through
//! the same Ready loop as the server, and apply committed entries to the production payments
//! state machine (`quorate_payments::machine`), with the server's leader-side lease expiry
//! timers. The clients submit payment events with idempotent retries, read payments back,
//! and work under a writer lease, stalling past its TTL and then writing with their old
//! token ([`workload`]).
//!
//! After every event the safety invariants are checked ([`invariants`], among them
//! [`lease_fencing`] and [`exactly_once`]); after faults heal, liveness is checked (a stable
//! leader that has committed its backlog within a bound, every later client operation
//! completing, replicas converging); at the end every replica's events are checked for
//! exactly-once and the payment history must be linearizable ([`linearizability`]).
//!
//! `cargo run --release -p quorate-sim -- --seeds 1000` sweeps seeds; `--seed S` replays one
//! exactly and prints its `trace-hash`.
#![deny(missing_docs)]

pub mod client;
pub mod clock;
pub mod expiry_task;
pub mod invariants;
pub mod names;
pub mod network;
pub mod node;
pub mod storage;
pub mod trace;
pub mod workload;
pub mod world;

pub use invariants::{exactly_once, lease_fencing, linearizability};
pub use world::{run, RunReport, SimConfig};

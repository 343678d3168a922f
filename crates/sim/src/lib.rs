//! # quorate-sim
//!
//! A deterministic simulator of whole Quorate clusters. One seed determines a whole run:
//! node clocks (each at its own rate within the drift bound), the network's delays, losses,
//! duplicates and partitions, crashes (some timed to hit unsynced writes) and restarts, and the
//! clients' operations. The nodes run the production `quorate-raft-core` code, driven through
//! the same Ready loop as the server.
//!
//! After every event the safety invariants are checked ([`invariants`]); after faults heal,
//! liveness is checked (a stable leader within a bound, every later client operation
//! succeeding, replicas converging); at the end the client history must be linearizable
//! ([`linearizability`]).
//!
//! `cargo run --release -p quorate-sim -- --seeds 1000` sweeps seeds; `--seed S` replays one
//! exactly and prints its `trace-hash`.
#![deny(missing_docs)]

pub mod client;
pub mod invariants;
pub mod kv;
pub mod linearizability;
pub mod network;
pub mod node;
pub mod storage;
pub mod trace;
pub mod world;

pub use world::{run, RunReport, SimConfig};

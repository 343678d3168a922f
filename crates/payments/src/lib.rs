//! # quorate-payments
//!
//! The replicated payments state machine and its gRPC services.
//!
//! - [`machine`]: the pure, deterministic state machine: payment lifecycle, idempotency keys,
//!   writer leases, fencing checked at apply. No I/O; the simulator runs it too.
//! - `service` (feature `service`, on by default): the machine on RocksDB
//!   ([`service::RocksMachine`]), and the `quorate.payments.v1` services `PaymentEvents` and
//!   `Leases` on top of a `quorate-node` node.
#![deny(missing_docs)]

pub mod machine;

#[cfg(feature = "service")]
pub mod service;

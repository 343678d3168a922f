//! The payments state machine: pure, deterministic, and the same on every replica.
//!
//! The leader proposes [`Command`]s; every replica applies committed entries in log order
//! with [`apply`] (commands) and [`apply_noop`] (the leader's no-op entries), against a
//! [`Store`]: [`MemStore`] in the simulator and tests, RocksDB in the server. Everything is
//! decided inside apply, from the entry and the stored records alone:
//!
//! 1. **Fencing.** An entry whose token `(term, sequence)` does not exceed the last applied
//!    one is refused ([`Applied::FencingRejected`]) and only counted.
//! 2. **Validation** again ([`validate_submit`] and friends ran before proposing), so a
//!    command that skipped it never reaches storage ([`Applied::Malformed`]).
//! 3. **Idempotency** (`idempotency`): an exact retry of a key returns the original outcome
//!    with `replayed = true`; a different request with a used key is refused.
//! 4. **Writer-lease fences** (`leases`): a fenced submit needs the lease's current,
//!    live token, checked at apply, so a late arrival is still refused.
//! 5. **The payment lifecycle** (`lifecycle`).
//!
//! The machine's clock moves only with the leader's stamp on each command ([`stamp`],
//! `clock.rs`), within a bound of the leader's monotonic time; applying reads no other clock,
//! draws no random numbers, and iterates only ordered collections.
//!
//! Refusals are outputs, not errors; an `Err` from [`apply`] means the store failed a read,
//! and then nothing was written.
//!
//! Leases are timed out by the leader, not by apply: [`LeaseTimers`] decides when the leader
//! proposes `ExpireLease`, from the held leases and a time the caller passes in, so the
//! server and the simulator run the same timer logic.

#![deny(missing_docs)]

mod apply;
mod clock;
mod codec;
mod commands;
mod compaction;
mod idempotency;
mod image;
mod lease_timers;
mod leases;
mod lifecycle;
mod mem_store;
mod outputs;
mod reads;
mod records;
// The machine's second store, on the node's RocksDB (the first, `MemStore`, is the
// simulator's); it needs the log store, so only the server build has it.
#[cfg(feature = "service")]
mod rocks_store;
mod store;
#[cfg(test)]
mod store_suite;
mod validation;

#[cfg(test)]
mod determinism_tests;
#[cfg(test)]
mod testing;

pub use apply::{apply, apply_entry, apply_noop};
#[cfg(feature = "bug-injection")]
pub use clock::inject_unbounded_wall_clock;
pub use clock::MAX_WALL_CLOCK_LEAD_MS;
pub use codec::DecodeError;
pub use commands::{
    decode_stamped, stamp, AcquireLease, Command, EventKind, ExpireLease, KeepAliveLease,
    LeaderClock, LeaseFence, ReleaseLease, Submit,
};
#[cfg(feature = "bug-injection")]
pub use compaction::inject_compaction_skips_hash;
pub use compaction::{
    check_not_compacted, compacted_hasher, fold_event, store_hash_events, COMPACT_EVERY,
    COMPACT_LIMIT_PER_APPLY,
};
pub use idempotency::{DEFAULT_IDEMPOTENCY_WINDOW_MS, PRUNE_LIMIT_PER_APPLY};
pub use image::{
    image_applied_index, image_events_hash, push_image_record, restore_image, ImageItem,
    ImageRecord,
};
pub use lease_timers::{DueExpiry, LeaseTimers};
pub use mem_store::MemStore;
pub use outputs::{
    Applied, EventRecorded, FencingRejected, KeepAliveRejected, LeaseAcquired, LeaseExpired,
    LeaseKeptAlive, LeaseReleased, Malformed, RejectReason, SubmitRejected,
};
pub use reads::{
    applied_in_term, held_leases, list_events, machine_status, payment_with_events, EventPage,
    PaymentView, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT,
};
pub use records::{
    EventRecord, FencingTokenRecord, IdempotencyRecord, LeaseRecord, LeaseStatus, MetaRecord,
    PaymentRecord, PaymentState, RecordedOutcome, RecordedRejection,
};
#[cfg(feature = "service")]
pub use rocks_store::{hash_events, hash_state, MachineError, RocksMachine, RocksState};
pub use store::{IdempotencyExpiry, Store, StoreError};
pub use validation::{
    validate_acquire, validate_keep_alive, validate_release, validate_submit, FieldViolation,
    MAX_ID_CHARS, MAX_LEASE_TTL_MS, MAX_METADATA_BYTES, MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_CHARS, MIN_LEASE_TTL_MS,
};

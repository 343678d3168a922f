//! The storage the machine applies against: point reads and buffered writes of records.
//!
//! The same machine runs on [`MemStore`](super::MemStore) (simulator, tests) and on a
//! persistent store (RocksDB). A persistent store encodes records with
//! `prost::Message::encode_to_vec` and decodes them with `prost::Message::decode`; it keeps
//! a secondary index of idempotency keys by `(expires_at_ms, key)` for pruning.
//!
//! Contract for implementations:
//! - Writes are buffered and may be committed later (one batch per entry or per several
//!   entries), but reads must see every earlier write, committed or not, in call order.
//! - Writes cannot fail: they only fill a buffer. Failures surface when reading or when the
//!   caller commits the batch, outside the machine.
//! - The machine does all of an entry's reads before any of its writes, so an `Err` from a
//!   read leaves the buffer exactly as it was.
//! - Iteration orders below are part of the contract: they are what makes replicas agree.

use quorate_raft_core::Index;

use super::records::{EventRecord, IdempotencyRecord, LeaseRecord, MetaRecord, PaymentRecord};

/// A read that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stored record could not be decoded.
    #[error("stored {record} record {key:?} cannot be decoded: {source}")]
    Corrupt {
        /// Which kind of record (`"payment"`, `"event"`, ...).
        record: &'static str,
        /// Its key, printable.
        key: String,
        /// What the decoder reported.
        #[source]
        source: prost::DecodeError,
    },
    /// Records contradict each other (an idempotency record names an event that is absent).
    #[error("inconsistent storage: {0}")]
    Inconsistent(String),
    /// A read of events after `after` that the event log no longer holds all of: they were
    /// compacted (`--event-retention`). Not a failure of the store: the reader
    /// asked for too old a range.
    #[error("events after index {after} were compacted: the first event index still held is {first_available}")]
    Compacted {
        /// Where the read started (events after it were asked for).
        after: Index,
        /// The first index whose event may still be read.
        first_available: Index,
    },
    /// The storage engine failed.
    #[error("storage engine failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where an idempotency key sits in the pruning order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdempotencyExpiry {
    /// When the key expires (machine time).
    pub expires_at_ms: u64,
    /// The key.
    pub key: String,
}

/// Point reads and buffered writes of the machine's records. See the module documentation
/// for the contract.
pub trait Store {
    /// The machine's bookkeeping; `None` before anything was applied.
    fn meta(&self) -> Result<Option<MetaRecord>, StoreError>;
    /// One payment.
    fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError>;
    /// The event recorded at `index`.
    fn event(&self, index: Index) -> Result<Option<EventRecord>, StoreError>;
    /// At most `limit` events with an index above `after`, in index order.
    fn events_after(&self, after: Index, limit: usize) -> Result<Vec<EventRecord>, StoreError>;
    /// The record of an idempotency key, expired or not (the machine decides).
    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// At most `limit` keys with `expires_at_ms <= now_ms`, ordered by `(expires_at_ms, key)`.
    fn idempotency_expiring_by(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<IdempotencyExpiry>, StoreError>;
    /// One lease.
    fn lease(&self, name: &str) -> Result<Option<LeaseRecord>, StoreError>;
    /// Every lease record (held, released or expired), ordered by name.
    fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError>;

    /// Replaces the bookkeeping record.
    fn put_meta(&mut self, meta: MetaRecord);
    /// Inserts or replaces a payment.
    fn put_payment(&mut self, payment: PaymentRecord);
    /// Inserts an event (events are never replaced).
    fn put_event(&mut self, event: EventRecord);
    /// Deletes an event: only the event log's compaction does (see `events`).
    fn delete_event(&mut self, index: Index);
    /// Inserts an idempotency record and its `(expires_at_ms, key)` index entry. The machine
    /// deletes a key's previous record first, if it had one.
    fn put_idempotency(&mut self, record: IdempotencyRecord);
    /// Deletes an idempotency record and its index entry; deleting an absent key is a no-op.
    fn delete_idempotency(&mut self, expiry: &IdempotencyExpiry);
    /// Inserts or replaces a lease.
    fn put_lease(&mut self, lease: LeaseRecord);
}

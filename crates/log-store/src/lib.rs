//! # quorate-log-store
//!
//! The RocksDB storage of a Quorate node: the Raft log, the hard state, the membership and the
//! state machine's data, in one database so that each write is one atomic, optionally synced
//! RocksDB write batch.
//!
//! [`LogStore`] implements the core's read trait [`quorate_raft_core::Storage`] and the
//! driver's write trait [`quorate_raft_core::LogWriter`], and passes the core's storage
//! conformance suite. It is cheap to clone; clones share the database and the in-memory last
//! index.
//!
//! ## Layout
//!
//! | column family | key | value |
//! | --- | --- | --- |
//! | `raft_log` | entry index, 8 bytes big-endian (byte order is log order) | encoded entry |
//! | `raft_meta` | `hard_state` | encoded [`quorate_raft_core::HardState`] |
//! | `raft_meta` | `conf_state` | encoded [`quorate_raft_core::ConfState`], written once at creation |
//! | `raft_meta` | `identity` | cluster id and member id ([`Identity`]), written once the node decided to start |
//! | each of [`OpenOptions::state_column_families`] | the state machine's | the state machine's |
//!
//! RocksDB's `default` column family exists but holds nothing.
//!
//! An entry is encoded as: format version (`1`), kind (`0` no-op, `1` command, `2` membership), term and
//! sequence as LEB128 integers, then the data bytes to the end of the value. The hard state
//! is: version `1`, term, a vote marker (`0` none, `1` followed by the node id), commit. The
//! membership is: version `1`, then voters, learners and outgoing voters, each as a count
//! followed by the node ids. All integers are LEB128. A record that does not decode exactly
//! is damage, reported with its index or its name.
//!
//! The log starts at index 1 until it is compacted: `compact(snapshot, up_to)` deletes the
//! entries up to `up_to` and records the compaction point (`log_base`: index and term of the
//! last entry deleted) and the snapshot (`snapshot`: its index, term, membership and data) in
//! `raft_meta`, in one synced batch; `apply_snapshot` (a leader's snapshot) deletes the whole
//! log the same way. `first_index` and `last_index` are kept in memory, computed at open (the
//! log must be contiguous from one past the compaction point) and updated by each write.
//! The node compacts with a snapshot that carries no data (its state machine, in this same
//! database, is the image) and installs a leader's snapshot with its image, which stays in
//! the `snapshot` record (so a node that stops before its machine took it takes it at the
//! next start) until the next compaction replaces the record.
//!
//! ## Durability, and the duties of `quorate_raft_core`'s storage contract
//!
//! - **Durable before return.** `persist(.., sync: true)` and `state_write(.., true)` write
//!   with `WriteOptions::set_sync(true)`: RocksDB fsyncs its write-ahead log before the call
//!   returns. Without `sync`, the write reaches the WAL file in the operating system's cache:
//!   it survives a crash of the process but not of the machine, until a later synced write
//!   (or [`LogStore::flush`]) makes it durable together with everything before it.
//! - **Atomic.** A `persist` is one `WriteBatch`: the new entries, the deletion of the
//!   replaced suffix and the hard state. RocksDB logs a batch as one WAL record and, after a
//!   crash, replays every record, dropping only an incomplete last one (the write the crash
//!   interrupted, never acknowledged), so a batch is either wholly there or wholly absent.
//!   A damaged record anywhere else would lose the (possibly acknowledged) writes after it,
//!   so the open fails with [`LogStoreError::CorruptWal`] instead, naming the WAL file and
//!   telling the operator to restore the node from a replica.
//! - **No holes, in order.** Entries are validated with [`quorate_raft_core::check_append`]
//!   before anything is written; appending at index `i` deletes every stored entry from `i`
//!   on that the new entries do not overwrite, in the same batch. Every open re-checks the
//!   whole log (contiguous from 1, decodable, terms never decreasing) and that the commit
//!   index lies within it, and refuses a damaged store with an error naming the problem
//!   and where it is, rather than repairing it.
//! - **Reads see writes.** Reads go to the same database; the in-memory last index is
//!   updated after the write succeeds. A `persist` that rewrites stored entries holds off
//!   readers for its duration, so they never combine old bounds with new contents; a pure
//!   append does not, so the core keeps reading while the driver waits for the fsync.
//! - **Errors leave state unchanged.** Validation happens before the write, and a failed
//!   RocksDB write applies nothing; the in-memory bounds change only after success.
//!
//! ## Group commit
//!
//! Concurrent synced writes share fsyncs at two levels:
//!
//! - **In the node**: its Ready loop persists one `Ready` at a time; every proposal and
//!   message that arrives while an fsync is under way is fed to the core afterwards, all
//!   together, so the next `Ready` carries all of them and one fsync covers them.
//! - **In RocksDB**: concurrent writers to one database (the Raft persist on the node's
//!   blocking thread, the state machine's `state_write` calls) queue up; the first writer in
//!   the queue writes every queued batch to the WAL as one group, with a single fsync if any
//!   of them asked for sync. [`LogStore::write_stats`] shows the effect: `writes` against
//!   `write_groups` and `wal_syncs`.
//!
//! ## How a node uses it
//!
//! ```no_run
//! use quorate_log_store::{LogStore, OpenOptions, StateBatch};
//! use quorate_raft_core::{ConfState, LogWriter, Storage};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = OpenOptions::new(ConfState::with_voters([1, 2, 3]), &["accounts", "applied"]);
//! let store = LogStore::open(std::path::Path::new("/var/lib/quorate/node-1"), options)?;
//!
//! // The Raft core reads through one clone (`RawNode::new(config, store.clone(), ..)`) ...
//! let restart_from = store.initial_state()?;
//! // ... the Ready loop persists through another, with an fsync when `ready.must_sync`:
//! let mut writer = store.clone();
//! writer.persist(Some(&restart_from.hard_state), &[], true)?;
//!
//! // The state machine stores its data and its applied index in one atomic write.
//! let mut batch = StateBatch::new();
//! batch.put("accounts", b"alice", b"100").put("applied", b"index", 42u64.to_be_bytes());
//! store.state_write(batch, false)?;
//!
//! // At shutdown: memtables to SST files, so the next start replays no WAL.
//! store.flush()?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod compactor;
mod disk_usage;
mod error;
mod machine_state;
mod options;
mod raft_storage;
mod recovery;
mod store;
mod wal_damage;
mod write_stats;

// The on-disk formats of entries and metadata: pure functions in a crate of their own
// (fuzzed without building RocksDB).
pub use error::{LogStoreError, Result};
pub use machine_state::StateBatch;
pub use options::{OpenOptions, LOG_COLUMN_FAMILY, META_COLUMN_FAMILY};
use quorate_log_codec::{entry as log_codec, meta as meta_codec};
pub use store::{Identity, LogStore};
pub use write_stats::WriteStats;

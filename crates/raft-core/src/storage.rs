//! The storage contract between the core and whoever keeps the log on disk.
//!
//! The core only ever *reads* storage ([`Storage`]). Writing is the driver's job: it takes the
//! hard state and entries out of a [`crate::Ready`] and hands them to a [`LogWriter`] before it
//! sends the Ready's messages. Implementations must honour these duties, which the conformance
//! suite (`testing` feature) checks:
//!
//! - **Durable before return.** When `persist(.., sync: true)` returns `Ok`, the hard state and
//!   entries survive a crash of the process and of the machine.
//! - **Atomic.** A crash leaves either all of one `persist` call or none of it.
//! - **No holes, in order.** Entries are contiguous; appending at index `i` replaces every
//!   entry at or after `i` (a leader's log overrides a follower's conflicting suffix).
//! - **Reads see writes.** Once `persist` returns, reads return what it wrote.
//! - **Errors leave state unchanged.** A failed `persist` writes nothing.

use crate::error::StorageError;
use crate::types::{ConfState, Entry, HardState, Index, SnapshotMeta, Term};

/// What a node restarts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftState {
    /// The last persisted hard state.
    pub hard_state: HardState,
    /// The membership.
    pub conf_state: ConfState,
}

/// Read access to the stable log and state, as the core needs it.
pub trait Storage {
    /// The persisted hard state and membership.
    fn initial_state(&self) -> Result<RaftState, StorageError>;

    /// Entries in `[low, high)`. When `max_bytes` is set, stops before the total
    /// [`Entry::byte_size`] would exceed it, but always returns at least one entry if
    /// `low < high`.
    fn entries(
        &self,
        low: Index,
        high: Index,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index`, for `index` in `[first_index - 1, last_index]`
    /// (the entry before the first is the snapshot's last entry; index 0 has term 0).
    fn term(&self, index: Index) -> Result<Term, StorageError>;

    /// The first index still in the log (one past the snapshot). Implementations keep this
    /// in memory; it cannot fail.
    fn first_index(&self) -> Index;

    /// The last index in the log (the snapshot's index when the log is empty). Kept in
    /// memory like `first_index`.
    fn last_index(&self) -> Index;
}

/// Write access, used by drivers (never by the core).
pub trait LogWriter {
    /// Persists a `Ready`'s hard state and entries in one atomic write. `entries` must start
    /// at most one past the last index and not before the first index; entries at or after
    /// `entries[0].index` are replaced. With `sync`, the write is durable when this returns.
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        sync: bool,
    ) -> Result<(), StorageError>;
}

/// An in-memory [`Storage`] and [`LogWriter`]: the whole log in a `Vec`.
///
/// Nothing survives the process; tests and the simulator (which models crashes on top of it)
/// use it.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: SnapshotMeta,
    /// `entries[i]` has index `snapshot.index + 1 + i`.
    entries: Vec<Entry>,
}

impl MemStorage {
    /// An empty log for a cluster of `conf_state`.
    pub fn new(conf_state: ConfState) -> Self {
        MemStorage {
            conf_state: conf_state.clone(),
            snapshot: SnapshotMeta {
                conf_state,
                ..SnapshotMeta::default()
            },
            ..MemStorage::default()
        }
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// All stored entries.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    fn last(&self) -> Index {
        self.snapshot.index + self.entries.len() as u64
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<RaftState, StorageError> {
        Ok(RaftState {
            hard_state: self.hard_state,
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: Index,
        high: Index,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        if low <= self.snapshot.index {
            return Err(StorageError::Compacted(low));
        }
        if high > self.last() + 1 {
            return Err(StorageError::Unavailable(high - 1));
        }
        let offset = self.snapshot.index + 1;
        let slice = &self.entries[(low - offset) as usize..(high - offset) as usize];
        Ok(limit_size(slice, max_bytes))
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index < self.snapshot.index {
            return Err(StorageError::Compacted(index));
        }
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index > self.last() {
            return Err(StorageError::Unavailable(index));
        }
        Ok(self.entries[(index - self.snapshot.index - 1) as usize].term)
    }

    fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    fn last_index(&self) -> Index {
        self.last()
    }
}

impl LogWriter for MemStorage {
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        _sync: bool,
    ) -> Result<(), StorageError> {
        // Validate everything before changing anything, so an error writes nothing.
        if let Some(first) = entries.first() {
            check_append(self.snapshot.index + 1, self.last(), entries)?;
            let keep = (first.index - self.snapshot.index - 1) as usize;
            self.entries.truncate(keep);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = *hs;
        }
        Ok(())
    }
}

/// Checks that `entries` are contiguous and can be appended to a log holding
/// `[first_index, last_index]` (replacing a suffix). Shared by every `LogWriter`.
pub fn check_append(
    first_index: Index,
    last_index: Index,
    entries: &[Entry],
) -> Result<(), StorageError> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    if first.index < first_index || first.index > last_index + 1 {
        return Err(StorageError::Io(format!(
            "append at index {} would leave a hole or rewrite compacted entries (log holds {}..={})",
            first.index, first_index, last_index
        )));
    }
    for pair in entries.windows(2) {
        if pair[1].index != pair[0].index + 1 || pair[1].term < pair[0].term {
            return Err(StorageError::Io(format!(
                "entries are not contiguous: {:?} then {:?}",
                pair[0], pair[1]
            )));
        }
    }
    Ok(())
}

/// The longest prefix of `entries` within `max_bytes` (at least one entry).
pub fn limit_size(entries: &[Entry], max_bytes: Option<u64>) -> Vec<Entry> {
    let Some(max) = max_bytes else {
        return entries.to_vec();
    };
    let mut total = 0u64;
    let mut taken = 0usize;
    for entry in entries {
        total += entry.byte_size();
        if taken > 0 && total > max {
            break;
        }
        taken += 1;
    }
    entries[..taken].to_vec()
}

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
//! - **Snapshots replace a prefix.** After `apply_snapshot` of a snapshot at index `i`, the
//!   log is empty, its first index is `i + 1` and `term(i)` is the snapshot's term. After
//!   `compact(snapshot, c)` (`c` at most the snapshot's index), the first index is `c + 1`,
//!   `term(c)` stays known and the entries from `c + 1` stay. Either way `snapshot()` returns
//!   the snapshot, after a restart too.

use crate::error::StorageError;
use crate::types::{ConfState, Entry, HardState, Index, Snapshot, SnapshotMeta, Term};

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

    /// The latest snapshot, which covers at least every compacted entry (`meta.index >=
    /// first_index() - 1`; the log may keep entries it covers, for slow followers). Before any,
    /// the empty snapshot at index 0. A leader sends it to a follower that needs compacted
    /// entries; a restarting driver restores its state machine from it.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
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

    /// Installs a snapshot received from the leader (a `Ready`'s `snapshot`), durably: it
    /// replaces the whole log, which then holds no entry. Called before the `Ready`'s
    /// `persist`. The snapshot's index must be beyond the first index's predecessor, and not
    /// older than the stored snapshot.
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;

    /// Stores a snapshot the driver took of its own state machine (at an index
    /// [`crate::RawNode::snapshot_meta`] allowed) and discards the entries up to `up_to`
    /// (at most the snapshot's index: what lies between stays for slow followers), durably;
    /// later entries stay. The snapshot's index must lie within the log.
    fn compact(&mut self, snapshot: &Snapshot, up_to: Index) -> Result<(), StorageError>;
}

/// Checks that a snapshot may be stored in a log holding `[first_index, last_index]` whose
/// latest snapshot is at `stored`: not older than it. `compact` (with `up_to`) also needs
/// the snapshot's index within the log with the term the log holds there, and `up_to`
/// between the log's start and the snapshot; `apply_snapshot` (`up_to` `None`) needs a
/// snapshot beyond the log's start. Shared by every `LogWriter`.
pub fn check_snapshot(
    first_index: Index,
    last_index: Index,
    stored: Index,
    term_at: impl Fn(Index) -> Option<Term>,
    snapshot: &SnapshotMeta,
    up_to: Option<Index>,
) -> Result<(), StorageError> {
    if snapshot.index < stored || (up_to.is_none() && snapshot.index < first_index) {
        return Err(StorageError::Io(format!(
            "snapshot at index {} is older than the stored one ({stored}) or the log's first \
             index {first_index}",
            snapshot.index
        )));
    }
    if let Some(up_to) = up_to {
        if up_to + 1 < first_index || up_to > snapshot.index {
            return Err(StorageError::Io(format!(
                "cannot compact up to index {up_to}: outside the log's start \
                 ({first_index}) and the snapshot's index ({})",
                snapshot.index
            )));
        }
        if snapshot.index > last_index {
            return Err(StorageError::Io(format!(
                "cannot compact to index {}: the log ends at {last_index}",
                snapshot.index
            )));
        }
        if term_at(snapshot.index) != Some(snapshot.term) {
            return Err(StorageError::Io(format!(
                "cannot compact to index {} of term {}: the log holds term {:?} there",
                snapshot.index,
                snapshot.term,
                term_at(snapshot.index)
            )));
        }
    }
    Ok(())
}

/// An in-memory [`Storage`] and [`LogWriter`]: the whole log in a `Vec`.
///
/// Nothing survives the process; tests and the simulator (which models crashes on top of it)
/// use it.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Index and term of the last compacted entry (0, 0 before any).
    base: (Index, Term),
    /// `entries[i]` has index `base.0 + 1 + i`.
    entries: Vec<Entry>,
}

impl MemStorage {
    /// An empty log for a cluster of `conf_state`.
    pub fn new(conf_state: ConfState) -> Self {
        MemStorage {
            conf_state: conf_state.clone(),
            snapshot: Snapshot {
                meta: SnapshotMeta {
                    conf_state,
                    ..SnapshotMeta::default()
                },
                data: bytes::Bytes::new(),
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
        self.base.0 + self.entries.len() as u64
    }

    fn term_of(&self, index: Index) -> Option<Term> {
        self.term(index).ok()
    }

    /// [`check_snapshot`] against this log.
    fn check(&self, snapshot: &Snapshot, up_to: Option<Index>) -> Result<(), StorageError> {
        check_snapshot(
            self.first_index(),
            self.last(),
            self.snapshot.meta.index,
            |i| self.term_of(i),
            &snapshot.meta,
            up_to,
        )
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
        if low <= self.base.0 {
            return Err(StorageError::Compacted(low));
        }
        if high > self.last() + 1 {
            return Err(StorageError::Unavailable(high - 1));
        }
        let offset = self.base.0 + 1;
        let slice = &self.entries[(low - offset) as usize..(high - offset) as usize];
        Ok(limit_size(slice, max_bytes))
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index < self.base.0 {
            return Err(StorageError::Compacted(index));
        }
        if index == self.base.0 {
            return Ok(self.base.1);
        }
        if index > self.last() {
            return Err(StorageError::Unavailable(index));
        }
        Ok(self.entries[(index - self.base.0 - 1) as usize].term)
    }

    fn first_index(&self) -> Index {
        self.base.0 + 1
    }

    fn last_index(&self) -> Index {
        self.last()
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
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
            check_append(self.base.0 + 1, self.last(), entries)?;
            let keep = (first.index - self.base.0 - 1) as usize;
            self.entries.truncate(keep);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = *hs;
        }
        Ok(())
    }

    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.check(snapshot, None)?;
        self.entries.clear();
        self.base = (snapshot.meta.index, snapshot.meta.term);
        self.conf_state = snapshot.meta.conf_state.clone();
        self.snapshot = snapshot.clone();
        Ok(())
    }

    fn compact(&mut self, snapshot: &Snapshot, up_to: Index) -> Result<(), StorageError> {
        self.check(snapshot, Some(up_to))?;
        let base_term = self.term_of(up_to).expect("checked: within the log");
        let drop = (up_to - self.base.0) as usize;
        self.entries.drain(..drop);
        self.base = (up_to, base_term);
        self.snapshot = snapshot.clone();
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

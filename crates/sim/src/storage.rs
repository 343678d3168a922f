//! Storage that models fsync: writes are visible at once but survive a crash only once synced.

use quorate_raft_core::{
    Entry, HardState, Index, LogWriter, MemStorage, RaftState, Snapshot, Storage, StorageError,
    Term,
};

/// A node's disk. `current` is what reads see (the page cache); `durable` is what a crash
/// leaves. A synced write makes every earlier write durable too, as an fsync of a log file
/// (or RocksDB's WAL) does.
#[derive(Clone, Debug)]
pub struct SimStorage {
    current: MemStorage,
    durable: MemStorage,
    unsynced: Vec<(Option<HardState>, Vec<Entry>)>,
}

impl SimStorage {
    /// An empty disk for a cluster of `conf`.
    pub fn new(conf: quorate_raft_core::ConfState) -> Self {
        let empty = MemStorage::new(conf);
        SimStorage {
            current: empty.clone(),
            durable: empty,
            unsynced: Vec::new(),
        }
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) {
        for (hard_state, entries) in self.unsynced.drain(..) {
            self.durable
                .persist(hard_state.as_ref(), &entries, true)
                .expect("a write accepted by the page cache is valid for the disk");
        }
    }

    /// Whether a crash now would lose anything.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// Whether a vote is written but not durable: a crash now would forget it. A correct
    /// driver never sends a vote before it is synced, so this is the worst moment to crash.
    pub fn holds_unsynced_vote(&self) -> bool {
        if self.unsynced.is_empty() {
            return false;
        }
        let durable = self
            .durable
            .initial_state()
            .map(|s| (s.hard_state.term, s.hard_state.vote))
            .unwrap_or_default();
        self.unsynced
            .iter()
            .filter_map(|(hard_state, _)| hard_state.as_ref())
            .any(|h| h.vote.is_some() && (h.term, h.vote) != durable)
    }

    /// The last index a crash now would leave.
    pub fn durable_last_index(&self) -> Index {
        self.durable.last_index()
    }

    /// The term of the entry at `index` that a crash now would leave, if any.
    pub fn durable_term(&self, index: Index) -> Option<Term> {
        self.durable.term(index).ok()
    }

    /// The hard state a crash now would leave.
    pub fn durable_hard_state(&self) -> HardState {
        self.durable
            .initial_state()
            .map(|s| s.hard_state)
            .unwrap_or_default()
    }

    /// The process (or machine) crashed: whatever was not synced is gone.
    pub fn crash(&mut self) {
        self.current = self.durable.clone();
        self.unsynced.clear();
    }
}

impl Storage for SimStorage {
    fn initial_state(&self) -> Result<RaftState, StorageError> {
        self.current.initial_state()
    }

    fn entries(
        &self,
        low: Index,
        high: Index,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        self.current.entries(low, high, max_bytes)
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.current.term(index)
    }

    fn first_index(&self) -> Index {
        self.current.first_index()
    }

    fn last_index(&self) -> Index {
        self.current.last_index()
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        self.current.snapshot()
    }
}

impl LogWriter for SimStorage {
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        sync: bool,
    ) -> Result<(), StorageError> {
        self.current.persist(hard_state, entries, sync)?;
        self.unsynced.push((hard_state.copied(), entries.to_vec()));
        if sync {
            self.sync();
        }
        Ok(())
    }

    /// Durable when it returns, with every earlier write (a snapshot file and the log's
    /// truncation are synced before the snapshot is used).
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.current.apply_snapshot(snapshot)?;
        self.sync();
        self.durable.apply_snapshot(snapshot)
    }

    /// Durable when it returns (a snapshot file of its own, written and synced), without
    /// syncing the log writes still queued, unless the entries the snapshot covers are not
    /// durable yet (they must be, before the snapshot replaces them).
    fn compact(&mut self, snapshot: &Snapshot, up_to: Index) -> Result<(), StorageError> {
        self.current.compact(snapshot, up_to)?;
        if snapshot.meta.index > self.durable.last_index()
            || self.durable.term(snapshot.meta.index).ok() != Some(snapshot.meta.term)
        {
            self.sync();
        }
        self.durable.compact(snapshot, up_to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_raft_core::testing::{
        entries, run_snapshot_suite, run_storage_suite, StorageHarness,
    };
    use quorate_raft_core::ConfState;

    struct Harness;

    impl StorageHarness for Harness {
        type Store = SimStorage;

        fn create(&mut self, conf: &ConfState) -> SimStorage {
            SimStorage::new(conf.clone())
        }

        fn reopen(&mut self, mut store: SimStorage) -> SimStorage {
            store.crash();
            store
        }
    }

    #[test]
    fn sim_storage_passes_the_conformance_suite() {
        run_storage_suite(&mut Harness);
        run_snapshot_suite(&mut Harness);
    }

    #[test]
    fn mem_storage_passes_the_conformance_suite() {
        struct Mem;
        impl StorageHarness for Mem {
            type Store = MemStorage;
            fn create(&mut self, conf: &ConfState) -> MemStorage {
                MemStorage::new(conf.clone())
            }
            fn reopen(&mut self, store: MemStorage) -> MemStorage {
                store
            }
        }
        run_storage_suite(&mut Mem);
        run_snapshot_suite(&mut Mem);
    }

    #[test]
    fn a_crash_loses_unsynced_writes_only() {
        let mut store = SimStorage::new(ConfState::with_voters([1]));
        store.persist(None, &entries(1, 3, 1), true).unwrap();
        let vote = HardState {
            term: 2,
            vote: Some(1),
            commit: 0,
            rejoining: None,
        };
        store
            .persist(Some(&vote), &entries(4, 5, 2), false)
            .unwrap();
        assert_eq!(store.last_index(), 5, "visible before the sync");
        store.crash();
        assert_eq!(store.last_index(), 3);
        assert_eq!(
            store.initial_state().unwrap().hard_state,
            HardState::default()
        );
        // A later synced write makes earlier unsynced ones durable too.
        store.persist(Some(&vote), &[], false).unwrap();
        store.persist(None, &entries(4, 4, 2), true).unwrap();
        store.crash();
        assert_eq!(store.initial_state().unwrap().hard_state, vote);
        assert_eq!(store.last_index(), 4);
    }
}

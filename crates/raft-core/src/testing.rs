//! The storage conformance suite: every [`Storage`] + [`LogWriter`] implementation runs it.
//!
//! ```ignore
//! quorate_raft_core::testing::run_storage_suite(&mut MyHarness::new());
//! ```
//!
//! Each check starts from a fresh, empty store created by the harness and panics with the
//! check's name on the first violation.

use bytes::Bytes;

use crate::error::StorageError;
use crate::storage::{LogWriter, Storage};
use crate::types::{ConfState, Entry, EntryKind, HardState, Index, Snapshot, SnapshotMeta, Term};

/// Creates and reopens stores for the suite.
pub trait StorageHarness {
    /// The store under test.
    type Store: Storage + LogWriter;

    /// A fresh, empty store for a cluster of `conf`.
    fn create(&mut self, conf: &ConfState) -> Self::Store;

    /// Closes `store` and opens it again from whatever it made durable, as a restarted
    /// process would.
    fn reopen(&mut self, store: Self::Store) -> Self::Store;
}

/// An entry for the suite: its data encodes index and term so that a misplaced entry shows.
pub fn entry(index: Index, term: Term) -> Entry {
    Entry {
        index,
        term,
        sequence: index,
        kind: EntryKind::Command,
        data: Bytes::from(format!("entry {index} of term {term}")),
    }
}

/// Entries `low..=high`, all of `term`.
pub fn entries(low: Index, high: Index, term: Term) -> Vec<Entry> {
    (low..=high).map(|i| entry(i, term)).collect()
}

/// One named check of the suite.
type Check<H> = (&'static str, fn(&mut H));

/// Runs every check.
pub fn run_storage_suite<H: StorageHarness>(harness: &mut H) {
    let checks: &[Check<H>] = &[
        ("empty_store_has_no_entries", empty_store_has_no_entries),
        ("appended_entries_read_back", appended_entries_read_back),
        ("append_replaces_the_suffix", append_replaces_the_suffix),
        (
            "append_leaving_a_hole_is_refused_and_changes_nothing",
            append_leaving_a_hole_is_refused_and_changes_nothing,
        ),
        (
            "non_contiguous_entries_are_refused_and_change_nothing",
            non_contiguous_entries_are_refused_and_change_nothing,
        ),
        ("hard_state_reads_back", hard_state_reads_back),
        ("synced_writes_survive_reopen", synced_writes_survive_reopen),
        ("entries_respect_max_bytes", entries_respect_max_bytes),
        (
            "reads_beyond_the_log_are_unavailable",
            reads_beyond_the_log_are_unavailable,
        ),
        (
            "conflicting_rewrite_survives_reopen",
            conflicting_rewrite_survives_reopen,
        ),
    ];
    for (name, check) in checks {
        eprintln!("storage conformance: {name}");
        check(harness);
    }
}

/// Runs the checks of the snapshot duties (`compact`, `apply_snapshot`, `snapshot`), for
/// stores that support snapshots.
pub fn run_snapshot_suite<H: StorageHarness>(harness: &mut H) {
    let checks: &[Check<H>] = &[
        (
            "compact_drops_the_prefix_and_survives_reopen",
            compact_drops_the_prefix_and_survives_reopen,
        ),
        (
            "invalid_compactions_are_refused_and_change_nothing",
            invalid_compactions_are_refused_and_change_nothing,
        ),
        (
            "apply_snapshot_replaces_the_log_and_survives_reopen",
            apply_snapshot_replaces_the_log_and_survives_reopen,
        ),
    ];
    for (name, check) in checks {
        eprintln!("storage conformance: {name}");
        check(harness);
    }
}

/// A snapshot at (`index`, `term`) whose data names it.
pub fn snapshot(index: Index, term: Term) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            conf_state: conf(),
            conf_context: Bytes::new(),
        },
        data: Bytes::from(format!("machine at {index}")),
    }
}

fn compact_drops_the_prefix_and_survives_reopen<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 10, 2), true).unwrap();
    store.compact(&snapshot(6, 2), 6).unwrap();
    let mut store = h.reopen(store);
    assert_eq!((store.first_index(), store.last_index()), (7, 10));
    assert_eq!(store.term(6), Ok(2));
    assert_eq!(store.term(5), Err(StorageError::Compacted(5)));
    assert_eq!(store.entries(5, 8, None), Err(StorageError::Compacted(5)));
    assert_eq!(all(&store), entries(7, 10, 2));
    assert_eq!(store.snapshot().unwrap(), snapshot(6, 2));
    // Appends go on after the compacted prefix.
    store.persist(None, &entries(11, 11, 3), true).unwrap();
    assert_eq!(store.last_index(), 11);
    // A later snapshot may keep a margin of the entries it covers.
    store.compact(&snapshot(10, 2), 8).unwrap();
    let store = h.reopen(store);
    assert_eq!((store.first_index(), store.last_index()), (9, 11));
    assert_eq!(store.term(8), Ok(2));
    assert_eq!(
        all(&store).len(),
        3,
        "entries 9 and 10 stay beside the snapshot"
    );
    assert_eq!(store.snapshot().unwrap(), snapshot(10, 2));
}

fn invalid_compactions_are_refused_and_change_nothing<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 5, 1), true).unwrap();
    store.compact(&snapshot(2, 1), 2).unwrap();
    assert!(
        store.compact(&snapshot(1, 1), 1).is_err(),
        "behind the snapshot"
    );
    assert!(store.compact(&snapshot(6, 1), 6).is_err(), "beyond the log");
    assert!(
        store.compact(&snapshot(4, 2), 4).is_err(),
        "a term the log does not hold"
    );
    assert!(
        store.compact(&snapshot(4, 1), 5).is_err(),
        "beyond the snapshot"
    );
    assert_eq!((store.first_index(), store.last_index()), (3, 5));
    assert_eq!(store.snapshot().unwrap(), snapshot(2, 1));
    // Entries may not be written over the compacted prefix.
    assert!(store.persist(None, &entries(2, 3, 2), true).is_err());
}

fn apply_snapshot_replaces_the_log_and_survives_reopen<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 8, 1), true).unwrap();
    // Behind the log's start: refused.
    store.compact(&snapshot(3, 1), 3).unwrap();
    assert!(store.apply_snapshot(&snapshot(2, 1)).is_err());
    // A leader's snapshot that ends inside the log (with another term) or beyond it
    // replaces everything.
    store.apply_snapshot(&snapshot(5, 4)).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (6, 5));
    store.persist(None, &entries(6, 7, 4), true).unwrap();
    let mut store = h.reopen(store);
    assert_eq!((store.first_index(), store.last_index()), (6, 7));
    assert_eq!(store.term(5), Ok(4));
    assert_eq!(store.snapshot().unwrap(), snapshot(5, 4));
    store.apply_snapshot(&snapshot(20, 5)).unwrap();
    let store = h.reopen(store);
    assert_eq!((store.first_index(), store.last_index()), (21, 20));
    assert_eq!(store.term(20), Ok(5));
    assert_eq!(store.entries(21, 21, None), Ok(Vec::new()));
}

fn conf() -> ConfState {
    ConfState::with_voters([1, 2, 3])
}

fn all<S: Storage>(store: &S) -> Vec<Entry> {
    store
        .entries(store.first_index(), store.last_index() + 1, None)
        .expect("read the whole log")
}

fn empty_store_has_no_entries<H: StorageHarness>(h: &mut H) {
    let store = h.create(&conf());
    assert_eq!(store.first_index(), 1);
    assert_eq!(store.last_index(), 0);
    assert_eq!(store.term(0), Ok(0));
    let state = store.initial_state().unwrap();
    assert_eq!(state.hard_state, HardState::default());
    assert_eq!(state.conf_state, conf());
}

fn appended_entries_read_back<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 10, 1), true).unwrap();
    store.persist(None, &entries(11, 12, 2), true).unwrap();
    assert_eq!(store.last_index(), 12);
    let mut expected = entries(1, 10, 1);
    expected.extend(entries(11, 12, 2));
    assert_eq!(all(&store), expected);
    assert_eq!(store.term(10), Ok(1));
    assert_eq!(store.term(11), Ok(2));
    assert_eq!(store.entries(4, 6, None).unwrap(), expected[3..5].to_vec());
}

fn append_replaces_the_suffix<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 10, 1), true).unwrap();
    store.persist(None, &entries(6, 7, 2), true).unwrap();
    assert_eq!(store.last_index(), 7, "entries after the rewrite are gone");
    let mut expected = entries(1, 5, 1);
    expected.extend(entries(6, 7, 2));
    assert_eq!(all(&store), expected);
    assert_eq!(store.term(8), Err(StorageError::Unavailable(8)));
}

fn append_leaving_a_hole_is_refused_and_changes_nothing<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 3, 1), true).unwrap();
    let hs = HardState {
        term: 9,
        vote: Some(2),
        commit: 1,
        rejoining: None,
    };
    assert!(store.persist(Some(&hs), &entries(5, 6, 1), true).is_err());
    assert_eq!(all(&store), entries(1, 3, 1));
    assert_eq!(
        store.initial_state().unwrap().hard_state,
        HardState::default(),
        "a refused write must not persist its hard state either"
    );
}

fn non_contiguous_entries_are_refused_and_change_nothing<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 3, 1), true).unwrap();
    let broken = vec![entry(4, 1), entry(6, 1)];
    assert!(store.persist(None, &broken, true).is_err());
    let decreasing_terms = vec![entry(4, 2), entry(5, 1)];
    assert!(store.persist(None, &decreasing_terms, true).is_err());
    assert_eq!(all(&store), entries(1, 3, 1));
}

fn hard_state_reads_back<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    let hs = HardState {
        term: 4,
        vote: Some(3),
        commit: 0,
        rejoining: None,
    };
    store.persist(Some(&hs), &[], true).unwrap();
    assert_eq!(store.initial_state().unwrap().hard_state, hs);
    let hs2 = HardState {
        term: 5,
        vote: None,
        commit: 2,
        rejoining: None,
    };
    store.persist(Some(&hs2), &entries(1, 2, 5), true).unwrap();
    assert_eq!(store.initial_state().unwrap().hard_state, hs2);
}

fn synced_writes_survive_reopen<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    let hs = HardState {
        term: 3,
        vote: Some(1),
        commit: 4,
        rejoining: None,
    };
    store.persist(Some(&hs), &entries(1, 5, 3), true).unwrap();
    let store = h.reopen(store);
    assert_eq!(store.initial_state().unwrap().hard_state, hs);
    assert_eq!(store.initial_state().unwrap().conf_state, conf());
    assert_eq!(all(&store), entries(1, 5, 3));
    assert_eq!(store.last_index(), 5);
}

fn entries_respect_max_bytes<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    let written = entries(1, 10, 1);
    store.persist(None, &written, true).unwrap();
    let one = written[0].byte_size();
    let got = store.entries(1, 11, Some(one * 3)).unwrap();
    assert_eq!(got, written[..3].to_vec());
    let got = store.entries(1, 11, Some(1)).unwrap();
    assert_eq!(got.len(), 1, "at least one entry even over the limit");
}

fn reads_beyond_the_log_are_unavailable<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 3, 1), true).unwrap();
    assert_eq!(store.term(4), Err(StorageError::Unavailable(4)));
    assert!(store.entries(2, 6, None).is_err());
}

fn conflicting_rewrite_survives_reopen<H: StorageHarness>(h: &mut H) {
    let mut store = h.create(&conf());
    store.persist(None, &entries(1, 8, 1), true).unwrap();
    store.persist(None, &entries(4, 5, 2), true).unwrap();
    let store = h.reopen(store);
    let mut expected = entries(1, 3, 1);
    expected.extend(entries(4, 5, 2));
    assert_eq!(
        all(&store),
        expected,
        "no stale entry may reappear after a restart"
    );
    assert_eq!(store.last_index(), 5);
}

//! What a restart finds: an intact store reopens as it was; a damaged one is refused with an
//! error that says what is wrong and where.

use std::path::Path;

use quorate_log_store::{
    LogStore, LogStoreError, OpenOptions, LOG_COLUMN_FAMILY, META_COLUMN_FAMILY,
};
use quorate_raft_core::testing::entries;
use quorate_raft_core::{ConfState, HardState, LogWriter, Storage};
use tempfile::TempDir;

fn three_voters() -> OpenOptions {
    OpenOptions::new(ConfState::with_voters([1, 2, 3]), &[])
}

/// A store holding entries 1..=10 (term 2) and a hard state committing 9, then closed.
fn closed_store_with_ten_entries() -> TempDir {
    let directory = TempDir::new().unwrap();
    let mut store = LogStore::open(directory.path(), three_voters()).unwrap();
    let hard_state = HardState {
        term: 2,
        vote: Some(1),
        commit: 9,
        rejoining: None,
    };
    store
        .persist(Some(&hard_state), &entries(1, 10, 2), true)
        .unwrap();
    directory
}

/// Damages the closed store at `path` through a raw RocksDB handle, as a failing disk or a
/// careless operator would.
fn damage(path: &Path, change: impl FnOnce(&rocksdb::DB)) {
    let db = rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        path,
        ["default", LOG_COLUMN_FAMILY, META_COLUMN_FAMILY],
    )
    .unwrap();
    change(&db);
}

fn open_error(path: &Path) -> LogStoreError {
    LogStore::open(path, three_voters()).expect_err("a damaged store must be refused")
}

#[test]
fn reopening_keeps_hard_state_membership_and_entries_and_ignores_a_new_bootstrap() {
    let directory = closed_store_with_ten_entries();
    let different = OpenOptions::new(ConfState::with_voters([7, 8]), &[]);
    let store = LogStore::open(directory.path(), different).unwrap();
    let state = store.initial_state().unwrap();
    assert_eq!(
        state.hard_state,
        HardState {
            term: 2,
            vote: Some(1),
            commit: 9,
            rejoining: None,
        }
    );
    assert_eq!(state.conf_state, ConfState::with_voters([1, 2, 3]));
    assert_eq!(store.first_index(), 1);
    assert_eq!(store.last_index(), 10);
    assert_eq!(store.entries(1, 11, None).unwrap(), entries(1, 10, 2));
}

#[test]
fn a_new_store_starts_empty_with_its_bootstrap_membership() {
    let directory = TempDir::new().unwrap();
    let store = LogStore::open(directory.path(), three_voters()).unwrap();
    drop(store);
    let store = LogStore::open(directory.path(), OpenOptions::default()).unwrap();
    let state = store.initial_state().unwrap();
    assert_eq!(state.conf_state, ConfState::with_voters([1, 2, 3]));
    assert_eq!(state.hard_state, HardState::default());
    assert_eq!((store.first_index(), store.last_index()), (1, 0));
}

#[test]
fn a_log_with_a_missing_entry_is_refused_with_an_error_naming_it() {
    let directory = closed_store_with_ten_entries();
    damage(directory.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        db.delete_cf(log, 5u64.to_be_bytes()).unwrap();
    });
    let error = open_error(directory.path());
    assert!(
        matches!(
            error,
            LogStoreError::LogGap {
                before: 4,
                after: 6,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("entry 5 is missing"), "{message}");
    assert!(
        message.contains(&directory.path().display().to_string()),
        "the error names the store's directory: {message}"
    );
}

#[test]
fn a_log_missing_its_first_entries_is_refused() {
    let directory = closed_store_with_ten_entries();
    damage(directory.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        db.delete_cf(log, 1u64.to_be_bytes()).unwrap();
        db.delete_cf(log, 2u64.to_be_bytes()).unwrap();
    });
    let message = open_error(directory.path()).to_string();
    assert!(message.contains("entries 1 to 2 are missing"), "{message}");
}

#[test]
fn an_undecodable_entry_is_refused_with_its_index() {
    let directory = closed_store_with_ten_entries();
    damage(directory.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        db.put_cf(log, 3u64.to_be_bytes(), [7, 7, 7]).unwrap();
    });
    let error = open_error(directory.path());
    assert!(
        matches!(&error, LogStoreError::UndecodableEntry { index: 3, reason, .. }
            if reason.contains("unknown entry format version 7")),
        "{error:?}"
    );
    assert!(error.to_string().contains("entry 3 cannot be decoded"));
}

#[test]
fn a_key_that_is_not_an_index_is_refused() {
    let directory = closed_store_with_ten_entries();
    damage(directory.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        db.put_cf(log, b"junk", b"").unwrap();
    });
    let error = open_error(directory.path());
    assert!(
        matches!(error, LogStoreError::MalformedLogKey { ref key, .. } if key == b"junk"),
        "{error:?}"
    );
}

#[test]
fn a_commit_index_beyond_the_log_is_refused() {
    let directory = closed_store_with_ten_entries();
    damage(directory.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        for index in 8u64..=10 {
            db.delete_cf(log, index.to_be_bytes()).unwrap();
        }
    });
    let error = open_error(directory.path());
    assert!(
        matches!(
            error,
            LogStoreError::CommitBeyondLog {
                commit: 9,
                last_index: 7,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn terms_going_backwards_are_refused() {
    let directory = closed_store_with_ten_entries();
    let stale = TempDir::new().unwrap();
    // An entry of term 1 encoded by the store itself, copied over entry 6 (term 2).
    let mut donor = LogStore::open(stale.path(), three_voters()).unwrap();
    donor.persist(None, &entries(1, 1, 1), true).unwrap();
    drop(donor);
    let mut encoded = Vec::new();
    damage(stale.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        encoded = db.get_cf(log, 1u64.to_be_bytes()).unwrap().unwrap();
    });
    damage(directory.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        db.put_cf(log, 6u64.to_be_bytes(), &encoded).unwrap();
    });
    let error = open_error(directory.path());
    assert!(
        matches!(
            error,
            LogStoreError::TermRegression {
                index: 6,
                term: 1,
                previous_term: 2,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_store_without_its_membership_is_refused() {
    let directory = closed_store_with_ten_entries();
    damage(directory.path(), |db| {
        let meta = db.cf_handle(META_COLUMN_FAMILY).unwrap();
        db.delete_cf(meta, b"conf_state").unwrap();
    });
    let error = open_error(directory.path());
    assert!(
        matches!(error, LogStoreError::MissingConfState { .. }),
        "{error:?}"
    );
}

#[test]
fn an_undecodable_hard_state_is_refused_by_name() {
    let directory = closed_store_with_ten_entries();
    damage(directory.path(), |db| {
        let meta = db.cf_handle(META_COLUMN_FAMILY).unwrap();
        db.put_cf(meta, b"hard_state", [1, 5]).unwrap();
    });
    let error = open_error(directory.path());
    assert!(
        matches!(
            error,
            LogStoreError::UndecodableMeta {
                record: "hard state",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_store_with_an_undeclared_column_family_is_refused_and_left_intact() {
    let directory = TempDir::new().unwrap();
    let with_accounts = OpenOptions::new(ConfState::with_voters([1]), &["accounts"]);
    let store = LogStore::open(directory.path(), with_accounts.clone()).unwrap();
    let mut batch = quorate_log_store::StateBatch::new();
    batch.put("accounts", b"alice", b"100");
    store.state_write(batch, true).unwrap();
    drop(store);

    let error = LogStore::open(
        directory.path(),
        OpenOptions::new(ConfState::default(), &[]),
    )
    .expect_err("the accounts column family is not declared");
    assert!(
        matches!(&error, LogStoreError::UndeclaredColumnFamily { name, .. } if name == "accounts"),
        "{error:?}"
    );

    let store = LogStore::open(directory.path(), with_accounts).unwrap();
    assert_eq!(
        store.state_get("accounts", b"alice").unwrap(),
        Some(b"100".to_vec())
    );
}

#[test]
fn invalid_options_create_nothing() {
    let directory = TempDir::new().unwrap();
    let path = directory.path().join("store");
    let error = LogStore::open(&path, OpenOptions::new(ConfState::default(), &["raft_log"]))
        .expect_err("raft_log is the store's own column family");
    assert!(
        matches!(error, LogStoreError::InvalidOptions(_)),
        "{error:?}"
    );
    assert!(!path.exists(), "nothing was created");
}

/// A compacted store: entries 1..=6 gone behind a snapshot of 6, entries 7..=10 kept.
fn closed_store_compacted_to_six() -> TempDir {
    let directory = closed_store_with_ten_entries();
    let mut store = LogStore::open(directory.path(), three_voters()).unwrap();
    let snapshot = quorate_raft_core::testing::snapshot(6, 2);
    store.compact(&snapshot, 6).unwrap();
    directory
}

#[test]
fn a_compacted_store_reopens_from_its_compaction_point() {
    let directory = closed_store_compacted_to_six();
    let store = LogStore::open(directory.path(), three_voters()).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (7, 10));
    assert_eq!(store.term(6), Ok(2));
    assert_eq!(store.snapshot().unwrap().meta.index, 6);
    assert_eq!(store.initial_state().unwrap().hard_state.commit, 9);
}

#[test]
fn an_entry_behind_the_compaction_point_is_refused() {
    let directory = closed_store_compacted_to_six();
    damage(directory.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        let entry = db.get_cf(log, 7u64.to_be_bytes()).unwrap().unwrap();
        db.put_cf(log, 5u64.to_be_bytes(), entry).unwrap();
    });
    let message = open_error(directory.path()).to_string();
    assert!(
        message.contains("entry 5 is still stored although the log was compacted up to index 6"),
        "{message}"
    );
}

#[test]
fn a_compacted_log_missing_the_entry_after_the_compaction_point_is_refused() {
    let directory = closed_store_compacted_to_six();
    damage(directory.path(), |db| {
        let log = db.cf_handle(LOG_COLUMN_FAMILY).unwrap();
        db.delete_cf(log, 7u64.to_be_bytes()).unwrap();
    });
    let message = open_error(directory.path()).to_string();
    assert!(message.contains("entry 7 is missing"), "{message}");
}

//! The state machine's data: atomic batches across its column families, scans, and refusal
//! of column families it did not declare.

use quorate_log_store::{LogStore, LogStoreError, OpenOptions, StateBatch};
use quorate_raft_core::ConfState;
use tempfile::TempDir;

fn options() -> OpenOptions {
    OpenOptions::new(ConfState::with_voters([1]), &["accounts", "applied"])
}

fn open(directory: &TempDir) -> LogStore {
    LogStore::open(directory.path(), options()).unwrap()
}

fn get(store: &LogStore, column_family: &str, key: &[u8]) -> Option<Vec<u8>> {
    store.state_get(column_family, key).unwrap()
}

#[test]
fn a_batch_across_column_families_is_applied_whole_and_survives_reopen() {
    let directory = TempDir::new().unwrap();
    let store = open(&directory);
    let mut batch = StateBatch::new();
    batch
        .put("accounts", b"alice", b"100")
        .put("accounts", b"bob", b"50")
        .put("applied", b"index", 7u64.to_be_bytes());
    assert_eq!(batch.len(), 3);
    store.state_write(batch, true).unwrap();

    let mut transfer = StateBatch::new();
    transfer
        .put("accounts", b"alice", b"90")
        .put("accounts", b"bob", b"60")
        .delete("accounts", b"carol")
        .put("applied", b"index", 8u64.to_be_bytes());
    store.state_write(transfer, true).unwrap();
    drop(store);

    let store = open(&directory);
    assert_eq!(get(&store, "accounts", b"alice"), Some(b"90".to_vec()));
    assert_eq!(get(&store, "accounts", b"bob"), Some(b"60".to_vec()));
    assert_eq!(
        get(&store, "applied", b"index"),
        Some(8u64.to_be_bytes().to_vec())
    );
}

#[test]
fn a_batch_naming_an_unknown_column_family_is_refused_and_writes_nothing() {
    let directory = TempDir::new().unwrap();
    let store = open(&directory);
    let mut batch = StateBatch::new();
    batch
        .put("accounts", b"alice", b"100")
        .put("ledger", b"entry-1", b"x");
    let error = store.state_write(batch, true).unwrap_err();
    assert!(
        matches!(&error, LogStoreError::UnknownColumnFamily { name, declared }
            if name == "ledger" && declared == &["accounts".to_string(), "applied".to_string()]),
        "{error:?}"
    );
    assert_eq!(
        get(&store, "accounts", b"alice"),
        None,
        "the known half was not written"
    );
    drop(store);
    assert_eq!(get(&open(&directory), "accounts", b"alice"), None);
}

#[test]
fn the_raft_column_families_are_not_state_column_families() {
    let directory = TempDir::new().unwrap();
    let store = open(&directory);
    for name in ["raft_log", "raft_meta", "default"] {
        assert!(matches!(
            store.state_get(name, b"hard_state"),
            Err(LogStoreError::UnknownColumnFamily { .. })
        ));
        let mut batch = StateBatch::new();
        batch.delete(name, b"conf_state");
        assert!(store.state_write(batch, false).is_err());
        assert!(store.state_scan(name, b"", 10).is_err());
    }
}

#[test]
fn a_later_operation_on_the_same_key_wins_within_a_batch() {
    let directory = TempDir::new().unwrap();
    let store = open(&directory);
    let mut batch = StateBatch::new();
    batch
        .put("accounts", b"a", b"1")
        .delete("accounts", b"a")
        .put("accounts", b"b", b"1")
        .put("accounts", b"b", b"2");
    store.state_write(batch, false).unwrap();
    assert_eq!(get(&store, "accounts", b"a"), None);
    assert_eq!(get(&store, "accounts", b"b"), Some(b"2".to_vec()));
}

#[test]
fn scans_return_keys_from_the_start_in_order_up_to_the_limit() {
    let directory = TempDir::new().unwrap();
    let store = open(&directory);
    let mut batch = StateBatch::new();
    for key in ["user/carol", "user/alice", "admin/root", "user/bob", "zeta"] {
        batch.put("accounts", key, key.to_uppercase());
    }
    store.state_write(batch, false).unwrap();

    let keys = |pairs: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<String> {
        pairs
            .into_iter()
            .map(|(key, value)| {
                assert_eq!(value, key.to_ascii_uppercase());
                String::from_utf8(key).unwrap()
            })
            .collect()
    };
    assert_eq!(
        keys(store.state_scan("accounts", b"user/", 2).unwrap()),
        ["user/alice", "user/bob"]
    );
    assert_eq!(
        keys(store.state_scan("accounts", b"user/b", 10).unwrap()),
        ["user/bob", "user/carol", "zeta"]
    );
    assert_eq!(
        keys(store.state_scan_prefix("accounts", b"user/", 10).unwrap()),
        ["user/alice", "user/bob", "user/carol"]
    );
    assert_eq!(
        keys(store.state_scan_prefix("accounts", b"user/", 1).unwrap()),
        ["user/alice"]
    );
    assert!(store.state_scan("accounts", b"", 0).unwrap().is_empty());
    assert!(store.state_scan("applied", b"", 10).unwrap().is_empty());
}

/// Every column family is opened with a whole-key bloom filter in its memtables, as RocksDB's
/// own record of the options in force says: without it, every miss (a new payment, a new
/// idempotency key) searches the memtable's skip list, which was the largest single cost of
/// applying a payment in the benchmark's profile.
#[test]
fn every_column_family_has_a_memtable_bloom_filter() {
    let directory = TempDir::new().unwrap();
    let store = open(&directory);
    drop(store);
    let mut options_files: Vec<_> = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("OPTIONS-"))
        })
        .collect();
    options_files.sort();
    let latest = std::fs::read_to_string(options_files.last().expect("an OPTIONS file")).unwrap();
    // One section per column family; each must carry both settings.
    let sections: Vec<&str> = latest.split("[CFOptions ").skip(1).collect();
    let names: Vec<&str> = sections
        .iter()
        .map(|s| s.split('"').nth(1).unwrap_or_default())
        .collect();
    for cf in ["raft_log", "raft_meta", "accounts", "applied"] {
        assert!(
            names.contains(&cf),
            "no options recorded for {cf}: {names:?}"
        );
    }
    for (name, section) in names.iter().zip(&sections) {
        let section = section.split("[TableOptions").next().unwrap_or_default();
        assert!(
            section.contains("memtable_whole_key_filtering=true"),
            "{name}: no whole-key memtable filter"
        );
        let ratio = section
            .lines()
            .find_map(|l| l.trim().strip_prefix("memtable_prefix_bloom_size_ratio="))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(ratio > 0.0, "{name}: memtable bloom ratio {ratio}");
    }
}

//! The core's storage conformance suite, run against a real RocksDB store.

use quorate_log_store::{LogStore, OpenOptions};
use quorate_raft_core::testing::{run_snapshot_suite, run_storage_suite, StorageHarness};
use quorate_raft_core::ConfState;
use tempfile::TempDir;

/// Creates each store in its own temporary directory; reopening closes the database (the
/// store is dropped) and opens it again from what is on disk, as a restarted process would.
#[derive(Default)]
struct Harness {
    directories: Vec<TempDir>,
}

impl StorageHarness for Harness {
    type Store = LogStore;

    fn create(&mut self, conf: &ConfState) -> LogStore {
        let directory = TempDir::new().expect("create a temporary directory");
        let store = LogStore::open(directory.path(), OpenOptions::new(conf.clone(), &[]))
            .expect("open a new store");
        self.directories.push(directory);
        store
    }

    fn reopen(&mut self, store: LogStore) -> LogStore {
        let path = store.path().to_path_buf();
        drop(store);
        // The bootstrap membership must be ignored: the store keeps its own.
        LogStore::open(&path, OpenOptions::default()).expect("reopen the store")
    }
}

#[test]
fn log_store_passes_the_storage_conformance_suite() {
    run_storage_suite(&mut Harness::default());
}

#[test]
fn log_store_passes_the_snapshot_conformance_suite() {
    run_snapshot_suite(&mut Harness::default());
}

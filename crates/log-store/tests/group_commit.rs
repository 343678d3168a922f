//! Concurrent synced writes share WAL fsyncs (RocksDB's write groups).
//!
//! This proves the storage side of group commit: many threads each waiting for their own
//! synced write all get their data durable, and the counters show how many fsyncs that took.
//! The node's side (every proposal that arrives during an fsync goes into the next Ready) is
//! the Ready loop's business, not the store's.

use std::thread;
use std::time::Instant;

use quorate_log_store::{LogStore, OpenOptions, StateBatch};
use quorate_raft_core::ConfState;
use tempfile::TempDir;

const THREADS: usize = 8;
const WRITES_PER_THREAD: usize = 200;

fn key(thread: usize, write: usize) -> String {
    format!("t{thread:02}/w{write:04}")
}

#[test]
fn concurrent_synced_state_writes_are_all_durable_and_share_fsyncs() {
    let directory = TempDir::new().unwrap();
    let options = OpenOptions::new(ConfState::with_voters([1]), &["accounts"]);
    let store = LogStore::open(directory.path(), options.clone()).unwrap();
    let before = store.write_stats();

    let started = Instant::now();
    thread::scope(|scope| {
        for thread in 0..THREADS {
            let store = store.clone();
            scope.spawn(move || {
                for write in 0..WRITES_PER_THREAD {
                    let mut batch = StateBatch::new();
                    batch.put("accounts", key(thread, write), write.to_be_bytes());
                    store.state_write(batch, true).unwrap();
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let after = store.write_stats();

    let writes = after.writes - before.writes;
    let groups = after.write_groups - before.write_groups;
    let syncs = after.wal_syncs - before.wal_syncs;
    let total = THREADS * WRITES_PER_THREAD;
    println!(
        "group commit: {total} synced writes from {THREADS} threads in {elapsed:?}: \
         {writes} writes counted, {groups} write groups, {syncs} WAL fsyncs \
         ({:.1} writes per fsync)",
        writes as f64 / syncs.max(1) as f64
    );
    assert_eq!(writes, total as u64, "every write is counted once");
    assert!(
        syncs >= 1 && syncs <= groups,
        "one fsync at most per write group"
    );
    // Eight threads that each wait on their own fsync overlap: writes that queue behind a
    // running fsync must ride on the next one, not get one each.
    assert!(
        syncs * 2 <= writes,
        "{syncs} fsyncs for {writes} concurrent synced writes: writes are not grouped"
    );

    drop(store);
    let store = LogStore::open(directory.path(), options).unwrap();
    let stored = store.state_scan("accounts", b"", usize::MAX).unwrap();
    assert_eq!(stored.len(), total);
    for thread in 0..THREADS {
        for write in 0..WRITES_PER_THREAD {
            assert_eq!(
                store
                    .state_get("accounts", key(thread, write).as_bytes())
                    .unwrap(),
                Some(write.to_be_bytes().to_vec()),
                "{}",
                key(thread, write)
            );
        }
    }
}

//! The Raft log beyond the conformance suite: refusals, clones, concurrent readers, the
//! encoding of real entries, and the size and flush helpers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use quorate_log_store::{LogStore, OpenOptions};
use quorate_raft_core::rng::SplitMix64;
use quorate_raft_core::testing::entries;
use quorate_raft_core::{ConfState, Entry, EntryKind, HardState, LogWriter, Storage, StorageError};
use tempfile::TempDir;

fn open(directory: &TempDir) -> LogStore {
    LogStore::open(
        directory.path(),
        OpenOptions::new(ConfState::with_voters([1, 2, 3]), &[]),
    )
    .unwrap()
}

#[test]
fn the_store_can_be_shared_between_threads() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<LogStore>();
}

#[test]
fn a_hard_state_committing_beyond_the_log_is_refused_and_changes_nothing() {
    let directory = TempDir::new().unwrap();
    let mut store = open(&directory);
    store.persist(None, &entries(1, 3, 1), true).unwrap();
    let too_far = HardState {
        term: 1,
        vote: None,
        commit: 6,
        rejoining: None,
    };
    let error = store
        .persist(Some(&too_far), &entries(4, 5, 1), true)
        .unwrap_err();
    assert!(
        matches!(&error, StorageError::Io(message) if message.contains("commit index 6")),
        "{error:?}"
    );
    assert_eq!(store.last_index(), 3);
    assert_eq!(
        store.initial_state().unwrap().hard_state,
        HardState::default()
    );
    drop(store);
    let store = open(&directory);
    assert_eq!(store.entries(1, 4, None).unwrap(), entries(1, 3, 1));
}

#[test]
fn a_persist_with_nothing_to_write_succeeds_and_changes_nothing() {
    let directory = TempDir::new().unwrap();
    let mut store = open(&directory);
    let hard_state = HardState {
        term: 2,
        vote: Some(3),
        commit: 1,
        rejoining: None,
    };
    store
        .persist(Some(&hard_state), &entries(1, 2, 2), false)
        .unwrap();
    store.persist(None, &[], true).unwrap();
    assert_eq!(store.last_index(), 2);
    assert_eq!(store.initial_state().unwrap().hard_state, hard_state);
    assert_eq!(store.entries(1, 3, None).unwrap(), entries(1, 2, 2));
}

#[test]
fn a_write_through_one_clone_is_seen_through_every_other() {
    let directory = TempDir::new().unwrap();
    let reader = open(&directory);
    let mut writer = reader.clone();
    writer.persist(None, &entries(1, 4, 1), true).unwrap();
    assert_eq!(reader.last_index(), 4);
    assert_eq!(reader.term(4), Ok(1));
    writer.persist(None, &entries(3, 3, 2), true).unwrap();
    assert_eq!(reader.last_index(), 3);
    assert_eq!(reader.term(3), Ok(2));
    assert_eq!(reader.term(4), Err(StorageError::Unavailable(4)));
}

#[test]
fn noop_and_binary_entries_read_back_exactly() {
    let directory = TempDir::new().unwrap();
    let mut store = open(&directory);
    let written = vec![
        Entry {
            index: 1,
            term: 3,
            sequence: 1,
            kind: EntryKind::Noop,
            data: Bytes::new(),
        },
        Entry {
            index: 2,
            term: 3,
            sequence: 1 << 40,
            kind: EntryKind::Command,
            data: Bytes::from_static(&[0, 1, 2, 255, 0]),
        },
    ];
    store.persist(None, &written, false).unwrap();
    assert_eq!(store.entries(1, 3, None).unwrap(), written);
    drop(store);
    assert_eq!(open(&directory).entries(1, 3, None).unwrap(), written);
}

#[test]
fn reads_before_the_first_index_are_compacted_and_term_zero_is_known() {
    let directory = TempDir::new().unwrap();
    let mut store = open(&directory);
    store.persist(None, &entries(1, 2, 1), true).unwrap();
    assert_eq!(store.entries(0, 2, None), Err(StorageError::Compacted(0)));
    assert_eq!(store.term(0), Ok(0));
    assert_eq!(store.entries(2, 2, None), Ok(vec![]));
    assert!(
        store.entries(2, 1, None).is_err(),
        "an inverted range is refused"
    );
}

/// A reader that races a writer rewriting the log's suffix over and over must never see an
/// index the bounds promise but the database no longer holds.
#[test]
fn readers_never_see_a_torn_log_while_suffixes_are_rewritten() {
    let directory = TempDir::new().unwrap();
    let mut writer = open(&directory);
    writer.persist(None, &entries(1, 100, 1), false).unwrap();
    let reader = writer.clone();
    let done = Arc::new(AtomicBool::new(false));
    let reading = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let last = reader.last_index();
                match reader.entries(1, last + 1, None) {
                    Ok(got) => assert!(got.len() as u64 >= 1),
                    // The writer may have shortened the log between the two calls.
                    Err(StorageError::Unavailable(_)) => {}
                    Err(other) => panic!("torn read: {other}"),
                }
                match reader.term(last) {
                    Ok(_) | Err(StorageError::Unavailable(_)) => {}
                    Err(other) => panic!("torn read: {other}"),
                }
                reads += 1;
            }
            reads
        })
    };
    for round in 0..500u64 {
        let term = 2 + round;
        // Shorten to 60..=99 entries, then grow back to 100 with an append.
        let start = 60 + round % 40;
        writer
            .persist(None, &entries(start, start, term), false)
            .unwrap();
        writer
            .persist(None, &entries(start + 1, 100, term), false)
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reading.join().expect("the reader saw a torn log");
    assert!(reads > 0);
    println!("{reads} concurrent reads while 1000 rewrites ran");
}

/// Entries `1..=count` of term 1, each carrying 4 KiB of pseudo-random data that no
/// compression would shrink, so that sizes on disk are at least the bytes written.
fn entries_of_4_kib(count: u64) -> Vec<Entry> {
    let mut rng = SplitMix64::new(7);
    (1..=count)
        .map(|index| {
            let data: Vec<u8> = (0..512)
                .flat_map(|_| rng.next_u64().to_le_bytes())
                .collect();
            Entry {
                index,
                term: 1,
                sequence: index,
                kind: EntryKind::Command,
                data: Bytes::from(data),
            }
        })
        .collect()
}

#[test]
fn data_size_counts_the_log_before_and_after_a_flush() {
    let directory = TempDir::new().unwrap();
    let mut store = open(&directory);
    let written = entries_of_4_kib(256);
    let payload_bytes = 256 * 4096;
    let before = store.data_size_bytes().unwrap();
    store.persist(None, &written, true).unwrap();
    let in_wal = store.data_size_bytes().unwrap();
    assert!(
        in_wal >= before + payload_bytes,
        "{in_wal} bytes counted for {payload_bytes} bytes written"
    );
    store.flush().unwrap();
    let in_sst = store.data_size_bytes().unwrap();
    assert!(in_sst >= payload_bytes, "{in_sst} bytes after the flush");
    drop(store);
    assert_eq!(open(&directory).entries(1, 257, None).unwrap(), written);
}

#[test]
fn compaction_gives_the_space_back_in_the_background_and_the_store_still_closes_at_once() {
    let directory = TempDir::new().unwrap();
    let mut store = open(&directory);
    let written = entries_of_4_kib(512);
    store.persist(None, &written, true).unwrap();
    // In table files, where only a compaction frees what a range deletion covers.
    store.flush().unwrap();
    let before = store.log_size_bytes().unwrap();
    assert!(before >= 512 * 4096, "{before} bytes before the compaction");
    store
        .compact(&quorate_raft_core::testing::snapshot(500, 1), 500)
        .unwrap();
    store.wait_for_log_space();
    let after = store.log_size_bytes().unwrap();
    assert!(
        after < before / 10,
        "{after} bytes left of {before} after compacting 500 of 512 entries"
    );
    // The compaction thread holds the database too: the last clone's drop must still close
    // it, or this reopen finds RocksDB's lock taken.
    drop(store);
    let reopened = open(&directory);
    assert_eq!((reopened.first_index(), reopened.last_index()), (501, 512));
    assert_eq!(reopened.entries(501, 513, None).unwrap(), written[500..]);
}

#[test]
fn a_store_closes_while_its_compaction_waits_or_runs() {
    let directory = TempDir::new().unwrap();
    for round in 0..20u64 {
        let mut store = open(&directory);
        let first = store.last_index() + 1;
        store
            .persist(None, &entries(first, first + 49, 1), true)
            .unwrap();
        store
            .compact(
                &quorate_raft_core::testing::snapshot(first + 40, 1),
                first + 40,
            )
            .unwrap();
        // Dropped at once, with the compaction asked for and perhaps running.
        drop(store);
        let reopened = open(&directory);
        assert_eq!(
            (reopened.first_index(), reopened.last_index()),
            (first + 41, first + 49),
            "round {round}"
        );
    }
}

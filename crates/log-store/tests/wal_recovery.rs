//! What a restart finds in RocksDB's write-ahead log, damaged byte by byte.
//!
//! Until a flush, synced writes live only in the WAL, so damage there is damage to
//! acknowledged writes. A crash while a record is being written leaves it torn at the end of
//! the newest WAL; that record was never acknowledged and may be dropped. A damaged record
//! anywhere before the end is different: replaying only up to it would silently drop every
//! synced write after it, so the store must refuse to open.
//!
//! The stores here are closed without [`LogStore::flush`], so every batch is still in the
//! newest WAL file (`NNNNNN.log`), and no SST file exists; each test checks both before it
//! damages the file.

use std::fs;
use std::path::{Path, PathBuf};

use quorate_log_store::{LogStore, LogStoreError, OpenOptions};
use quorate_raft_core::testing::entries;
use quorate_raft_core::{ConfState, Entry, HardState, Index, LogWriter, Storage, Term};
use tempfile::TempDir;

const BATCHES: u64 = 5;
const ENTRIES_PER_BATCH: u64 = 3;
const TERM: Term = 2;

fn three_voters() -> OpenOptions {
    OpenOptions::new(ConfState::with_voters([1, 2, 3]), &[])
}

fn last_index_of_batch(batch: u64) -> Index {
    batch * ENTRIES_PER_BATCH
}

/// The entries of `batch` (numbered from 1); each entry's data names its index, so every
/// batch's bytes can be found in the WAL.
fn entries_of_batch(batch: u64) -> Vec<Entry> {
    entries(
        last_index_of_batch(batch - 1) + 1,
        last_index_of_batch(batch),
        TERM,
    )
}

/// The hard state written with `batch`: it commits the batches before it.
fn hard_state_of_batch(batch: u64) -> HardState {
    HardState {
        term: TERM,
        vote: Some(1),
        commit: last_index_of_batch(batch - 1),
        rejoining: None,
    }
}

/// A store that persisted [`BATCHES`] synced batches and was closed without a flush, and the
/// path of the WAL that holds them.
fn closed_store_with_batches_in_its_wal() -> (TempDir, PathBuf) {
    let directory = TempDir::new().unwrap();
    let mut store = LogStore::open(directory.path(), three_voters()).unwrap();
    for batch in 1..=BATCHES {
        store
            .persist(
                Some(&hard_state_of_batch(batch)),
                &entries_of_batch(batch),
                true,
            )
            .unwrap();
    }
    drop(store);

    let files: Vec<PathBuf> = fs::read_dir(directory.path())
        .unwrap()
        .map(|file| file.unwrap().path())
        .collect();
    assert!(
        !files
            .iter()
            .any(|file| file.extension().is_some_and(|e| e == "sst")),
        "nothing was flushed to an SST file: {files:?}"
    );
    let wal = newest_wal(directory.path());
    let bytes = fs::read(&wal).unwrap();
    for batch in 1..=BATCHES {
        offset_in_batch(&bytes, batch);
    }
    (directory, wal)
}

/// The WAL file with the highest number in `dir`. RocksDB names WALs `NNNNNN.log`; its own
/// text log is `LOG`, which this does not match.
fn newest_wal(dir: &Path) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|file| file.unwrap().path())
        .filter(|file| file.extension().is_some_and(|e| e == "log"))
        .max_by_key(|file| {
            let stem = file.file_stem().unwrap().to_str().unwrap();
            stem.parse::<u64>().unwrap()
        })
        .expect("the store has a WAL")
}

/// The offset in `wal` of the data of `batch`'s first entry: a byte inside that batch's WAL
/// record, after its header.
fn offset_in_batch(wal: &[u8], batch: u64) -> usize {
    let data = entries_of_batch(batch)[0].data.clone();
    let offsets: Vec<usize> = wal
        .windows(data.len())
        .enumerate()
        .filter(|(_, window)| *window == &data[..])
        .map(|(offset, _)| offset)
        .collect();
    assert_eq!(
        offsets.len(),
        1,
        "the WAL holds batch {batch} exactly once ({:?})",
        String::from_utf8_lossy(&data)
    );
    offsets[0]
}

#[test]
fn a_corrupt_record_in_the_middle_of_the_wal_is_refused_with_an_error_naming_the_file() {
    let (directory, wal) = closed_store_with_batches_in_its_wal();
    let mut bytes = fs::read(&wal).unwrap();
    let middle_batch = 3;
    let damaged = offset_in_batch(&bytes, middle_batch);
    bytes[damaged] ^= 0x01;
    fs::write(&wal, &bytes).unwrap();

    let error = match LogStore::open(directory.path(), three_voters()) {
        Ok(store) => panic!(
            "the store opened although batch {middle_batch} of {BATCHES} is damaged in its WAL; \
             it holds entries 1 to {} of {}: the synced batches after the damage were \
             silently dropped",
            store.last_index(),
            last_index_of_batch(BATCHES)
        ),
        Err(error) => error,
    };
    let LogStoreError::CorruptWal { wal_files, .. } = &error else {
        panic!("the damaged WAL is reported as something else: {error:?}");
    };
    assert_eq!(
        wal_files,
        std::slice::from_ref(&wal),
        "the WALs the open replayed"
    );
    let message = error.to_string();
    assert!(message.contains("write-ahead log"), "{message}");
    assert!(message.contains("corrupt"), "{message}");
    assert!(
        message.contains(&wal.display().to_string()),
        "the error names the WAL file: {message}"
    );
    assert!(message.contains("replica"), "{message}");
    assert!(message.contains("do not delete"), "{message}");

    // Refused without repair: the WAL is as it was, and the next open refuses again.
    assert_eq!(fs::read(&wal).unwrap(), bytes, "the WAL was left as found");
    let again = LogStore::open(directory.path(), three_voters())
        .expect_err("a second open must refuse the damaged WAL too");
    assert_eq!(again.to_string(), message);
}

#[test]
fn a_torn_last_record_is_dropped_and_every_batch_before_it_kept() {
    let (directory, wal) = closed_store_with_batches_in_its_wal();
    let intact = fs::read(&wal).unwrap();
    // A crash while the last batch was being written leaves any prefix of its record: cut in
    // the middle of the record, and just before its last byte.
    let cuts = [offset_in_batch(&intact, BATCHES) + 4, intact.len() - 1];
    for cut in cuts {
        let copy = TempDir::new().unwrap();
        for file in fs::read_dir(directory.path()).unwrap() {
            let file = file.unwrap().path();
            fs::copy(&file, copy.path().join(file.file_name().unwrap())).unwrap();
        }
        let torn_wal = copy.path().join(wal.file_name().unwrap());
        fs::write(&torn_wal, &intact[..cut]).unwrap();

        let store = LogStore::open(copy.path(), three_voters())
            .unwrap_or_else(|error| panic!("a torn tail (cut at byte {cut}) is refused: {error}"));
        let kept = last_index_of_batch(BATCHES - 1);
        assert_eq!(store.last_index(), kept, "cut at byte {cut}");
        assert_eq!(
            store.entries(1, kept + 1, None).unwrap(),
            entries(1, kept, TERM),
            "cut at byte {cut}"
        );
        assert_eq!(
            store.initial_state().unwrap().hard_state,
            hard_state_of_batch(BATCHES - 1),
            "cut at byte {cut}"
        );
    }
}

/// RocksDB refuses other damage with a `Corruption` error too; only WAL damage may be reported
/// as a corrupt WAL, or the operator is sent to the wrong file.
#[test]
fn a_damaged_table_file_is_not_blamed_on_the_wal() {
    let directory = TempDir::new().unwrap();
    let mut store = LogStore::open(directory.path(), three_voters()).unwrap();
    store
        .persist(Some(&hard_state_of_batch(1)), &entries_of_batch(1), true)
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let table = fs::read_dir(directory.path())
        .unwrap()
        .map(|file| file.unwrap().path())
        .find(|file| file.extension().is_some_and(|e| e == "sst"))
        .expect("the flush wrote an SST file");
    let bytes = fs::read(&table).unwrap();
    fs::write(&table, &bytes[..bytes.len() / 2]).unwrap();

    let error = LogStore::open(directory.path(), three_voters())
        .expect_err("a store with a damaged SST file must be refused");
    assert!(
        matches!(&error, LogStoreError::RocksDb { source, .. }
            if source.kind() == rocksdb::ErrorKind::Corruption),
        "{error:?}"
    );
}

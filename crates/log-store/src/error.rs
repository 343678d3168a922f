//! The crate's error type.
//!
//! Every message says what is wrong and where (the store's directory, the log index, the
//! column family), because the first reader of a recovery error is an operator looking at a
//! node that refuses to start on a damaged disk.

use std::path::PathBuf;

use quorate_raft_core::{Index, StorageError};

/// Everything that can go wrong in the store.
///
/// A call that returns an error leaves the store unchanged.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// RocksDB itself failed (I/O error, corruption it detected, lock held by another process).
    #[error("rocksdb could not {operation} in {path}: {source}")]
    RocksDb {
        /// What the store was doing.
        operation: &'static str,
        /// The store's directory.
        path: PathBuf,
        /// RocksDB's own error.
        #[source]
        source: rocksdb::Error,
    },
    /// RocksDB's write-ahead log holds a damaged record that is not a torn last write. The
    /// records after it may be synced, acknowledged writes (votes, appended entries), which
    /// replaying only up to the damage would silently lose, so the store is refused as found.
    #[error(
        "corrupt write-ahead log in {path}: {} holds a damaged record that is not a torn last \
         write ({source}); the writes after it may have been acknowledged, so the store is \
         refused and left as found. Restore this node's store from a healthy replica (or \
         replace the node in the cluster); do not delete or truncate the WAL to make the node \
         start, and keep the damaged files for diagnosis",
        describe_wal_files(wal_files)
    )]
    CorruptWal {
        /// The store's directory.
        path: PathBuf,
        /// The WAL files the open replayed, oldest first; the damaged record is in one of them
        /// (RocksDB does not say which).
        wal_files: Vec<PathBuf>,
        /// RocksDB's own error (`Corruption: checksum mismatch` and the like).
        #[source]
        source: rocksdb::Error,
    },
    /// The thread that gives back compacted log space could not be started; nothing was
    /// written.
    #[error("cannot start the log compaction thread of {path}: {source}")]
    Thread {
        /// The store's directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store's directory could not be read (to measure its size).
    #[error("cannot read the directory {path}: {source}")]
    Directory {
        /// The store's directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The open options are unusable; nothing was opened or created.
    #[error("invalid open options: {0}")]
    InvalidOptions(String),
    /// The store holds a column family that the open options do not declare. Opening it would
    /// hide data from the state machine, so the store is refused instead.
    #[error(
        "the store in {path} has column family {name:?}, which the open options do not declare \
         (declare it in `state_column_families`, or remove it deliberately)"
    )]
    UndeclaredColumnFamily {
        /// The store's directory.
        path: PathBuf,
        /// The column family found on disk.
        name: String,
    },
    /// Log entries are missing between two stored entries (or before the first one).
    #[error(
        "damaged log in {path}: {} (the stored log jumps from index {before} to index {after})",
        describe_missing(*before, *after)
    )]
    LogGap {
        /// The store's directory.
        path: PathBuf,
        /// The last index present before the hole (0 when the hole is at the start).
        before: Index,
        /// The first index present after the hole.
        after: Index,
    },
    /// An entry survives at or before the compaction point (compaction deletes them in the
    /// same write that moves the point, so the store was damaged or edited).
    #[error(
        "damaged log in {path}: entry {index} is still stored although the log was compacted \
         up to index {base}"
    )]
    EntryBehindCompaction {
        /// The store's directory.
        path: PathBuf,
        /// The entry.
        index: Index,
        /// The last compacted index.
        base: Index,
    },
    /// A key in the log column family is not the index of an entry (8 bytes big-endian, at
    /// least 1).
    #[error(
        "damaged log in {path}: key {key:02x?} in column family raft_log is not the index of \
         an entry (8 bytes big-endian, at least 1)"
    )]
    MalformedLogKey {
        /// The store's directory.
        path: PathBuf,
        /// The offending key.
        key: Vec<u8>,
    },
    /// An entry within the log's bounds is missing when read (the bounds were checked at open,
    /// so the database lost it since).
    #[error(
        "damaged log in {path}: entry {index} is missing although the log holds entries 1 to \
         {last_index}"
    )]
    MissingEntry {
        /// The store's directory.
        path: PathBuf,
        /// The missing entry's index.
        index: Index,
        /// The last index the store knows of.
        last_index: Index,
    },
    /// A stored entry cannot be decoded.
    #[error("damaged log in {path}: entry {index} cannot be decoded: {reason}")]
    UndecodableEntry {
        /// The store's directory.
        path: PathBuf,
        /// The entry's index.
        index: Index,
        /// What is wrong with its bytes.
        reason: String,
    },
    /// The terms of stored entries go backwards, which Raft never writes.
    #[error(
        "damaged log in {path}: entry {index} has term {term}, lower than term {previous_term} \
         of the entry before it"
    )]
    TermRegression {
        /// The store's directory.
        path: PathBuf,
        /// The entry whose term is too low.
        index: Index,
        /// Its term.
        term: u64,
        /// The term of the entry at `index - 1`.
        previous_term: u64,
    },
    /// The hard state says entries are committed that the log does not hold.
    #[error(
        "damaged store in {path}: the hard state's commit index {commit} is beyond the last \
         log entry {last_index}"
    )]
    CommitBeyondLog {
        /// The store's directory.
        path: PathBuf,
        /// The stored commit index.
        commit: Index,
        /// The last index in the log.
        last_index: Index,
    },
    /// The hard state or the membership record cannot be decoded.
    #[error("damaged store in {path}: the {record} record in column family raft_meta cannot be decoded: {reason}")]
    UndecodableMeta {
        /// The store's directory.
        path: PathBuf,
        /// Which record (`hard state`, `conf state`, `log_base`, `snapshot`, ...).
        record: &'static str,
        /// What is wrong with its bytes.
        reason: String,
    },
    /// The store holds a log or a hard state but no membership, so it was not created by
    /// [`crate::LogStore::open`] or lost a record.
    #[error(
        "damaged store in {path}: it holds log entries or a hard state but no membership \
         (conf state) record"
    )]
    MissingConfState {
        /// The store's directory.
        path: PathBuf,
    },
    /// A state-machine call named a column family that was not declared at open.
    #[error("unknown state column family {name:?} (declared: {declared:?})")]
    UnknownColumnFamily {
        /// The name given.
        name: String,
        /// The state column families the store was opened with.
        declared: Vec<String>,
    },
    /// A Raft log read or write was refused or failed (see [`StorageError`]).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Result with the crate's [`LogStoreError`].
pub type Result<T, E = LogStoreError> = std::result::Result<T, E>;

/// The Raft core understands only [`StorageError`]; everything else reaches it as
/// [`StorageError::Io`] with the full message, so the operator still sees what and where.
impl From<LogStoreError> for StorageError {
    fn from(error: LogStoreError) -> Self {
        match error {
            LogStoreError::Storage(inner) => inner,
            other => StorageError::Io(other.to_string()),
        }
    }
}

/// "WAL file a.log", "one of the WAL files a.log, b.log", or "a WAL file" when none was
/// found, for [`LogStoreError::CorruptWal`].
fn describe_wal_files(files: &[PathBuf]) -> String {
    match files {
        [] => "a WAL file".to_string(),
        [file] => format!("WAL file {}", file.display()),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|file| file.display().to_string())
                .collect();
            format!("one of the WAL files {}", names.join(", "))
        }
    }
}

/// "entry 5 is missing" or "entries 5 to 9 are missing", for the hole between `before` and
/// `after` (both present, `before + 1 < after`).
fn describe_missing(before: Index, after: Index) -> String {
    let first = before + 1;
    let last = after - 1;
    if first == last {
        format!("entry {first} is missing")
    } else {
        format!("entries {first} to {last} are missing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_of_one_entry_names_that_entry() {
        let error = LogStoreError::LogGap {
            path: PathBuf::from("/data/node-1"),
            before: 4,
            after: 6,
        };
        assert_eq!(
            error.to_string(),
            "damaged log in /data/node-1: entry 5 is missing \
             (the stored log jumps from index 4 to index 6)"
        );
    }

    #[test]
    fn a_wider_gap_names_its_first_and_last_missing_entries() {
        let error = LogStoreError::LogGap {
            path: PathBuf::from("/d"),
            before: 0,
            after: 4,
        };
        assert!(
            error.to_string().contains("entries 1 to 3 are missing"),
            "{error}"
        );
    }

    #[test]
    fn a_corrupt_wal_error_names_one_file_or_all_candidates() {
        assert_eq!(
            describe_wal_files(&[PathBuf::from("/d/000009.log")]),
            "WAL file /d/000009.log"
        );
        assert_eq!(
            describe_wal_files(&[
                PathBuf::from("/d/000007.log"),
                PathBuf::from("/d/000009.log")
            ]),
            "one of the WAL files /d/000007.log, /d/000009.log"
        );
        assert_eq!(describe_wal_files(&[]), "a WAL file");
    }

    #[test]
    fn storage_errors_reach_the_core_unchanged_and_others_as_io() {
        let unavailable = LogStoreError::Storage(StorageError::Unavailable(7));
        assert_eq!(
            StorageError::from(unavailable),
            StorageError::Unavailable(7)
        );
        let unknown = LogStoreError::UnknownColumnFamily {
            name: "x".into(),
            declared: vec![],
        };
        assert!(
            matches!(StorageError::from(unknown), StorageError::Io(message) if message.contains("\"x\""))
        );
    }
}

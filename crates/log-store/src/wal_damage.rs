//! What a refused WAL replay means, told to the operator.
//!
//! The store opens RocksDB with [`rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords`] (see
//! `database_options`), so a damaged WAL record that is not a torn last write makes the open
//! fail with RocksDB's bare `Corruption: checksum mismatch` (or a sibling reason), which names
//! neither the WAL nor the file. Other damage fails the open with a `Corruption` error too
//! (a truncated SST file: `Corruption: Sst file size mismatch ...`), so the failure is
//! attributed to the WAL only when RocksDB can open the store once it is allowed to skip
//! damaged WAL records.

use std::fs;
use std::path::{Path, PathBuf};

use rocksdb::{DBRecoveryMode, ErrorKind, Options, DB};

use crate::error::LogStoreError;
use crate::store::rocksdb_error;

/// The error for RocksDB's refusal (`source`) to open the store in `dir` with
/// `database_options` and `column_families`: [`LogStoreError::CorruptWal`] when the damage is
/// in the write-ahead log, RocksDB's own error otherwise.
///
/// Telling them apart costs one read-only open that skips damaged WAL records; it writes no
/// data file, so the store stays exactly as the failed open found it.
pub(crate) fn open_failure(
    source: rocksdb::Error,
    dir: &Path,
    database_options: &Options,
    column_families: &[String],
) -> LogStoreError {
    if source.kind() != ErrorKind::Corruption {
        return rocksdb_error("open the database", dir)(source);
    }
    let mut skipping_options = database_options.clone();
    skipping_options.set_wal_recovery_mode(DBRecoveryMode::SkipAnyCorruptedRecord);
    let opens_without_the_wal_damage =
        DB::open_cf_for_read_only(&skipping_options, dir, column_families, false).is_ok();
    if !opens_without_the_wal_damage {
        return rocksdb_error("open the database", dir)(source);
    }
    LogStoreError::CorruptWal {
        path: dir.to_path_buf(),
        wal_files: wal_files(dir),
        source,
    }
}

/// The WAL files in `dir`, oldest first: RocksDB names them `NNNNNN.log` with increasing
/// numbers (its text log is `LOG`, which this does not match). Those present are the ones an
/// open replays; older ones are deleted once their data is flushed.
fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut numbered: Vec<(u64, PathBuf)> = listing
        .filter_map(|file| file.ok().map(|file| file.path()))
        .filter(|file| file.extension().is_some_and(|extension| extension == "log"))
        .filter_map(|file| {
            let number = file.file_stem()?.to_str()?.parse().ok()?;
            Some((number, file))
        })
        .collect();
    numbered.sort();
    numbered.into_iter().map(|(_, file)| file).collect()
}

//! The checks every open runs before anyone reads the store.
//!
//! RocksDB already verifies checksums and replays its WAL; these checks verify what only the
//! store knows: that the records form a Raft log a node can safely restart from. A store that
//! fails them is refused, never repaired, because guessing (dropping a suffix, inventing a
//! hard state) could make a node forget a vote or an acknowledged entry.

use std::path::Path;

use quorate_raft_core::{ConfState, Index, Term};
use rocksdb::{WriteBatch, WriteOptions, DB};

use crate::error::{LogStoreError, Result};
use crate::log_codec::{decode_entry_header, index_of_key};
use crate::meta_codec::{decode_log_base, encode_conf_state, CONF_STATE_KEY, LOG_BASE_KEY};
use crate::options::{LOG_COLUMN_FAMILY, META_COLUMN_FAMILY};
use crate::store::{read_conf_state, read_hard_state, rocksdb_error, FIRST_INDEX};

/// Checks the store in `db` (at `path`), bootstraps it with `bootstrap` when it is new, and
/// returns its compaction point (index and term of the last entry compacted away) and its
/// last index.
pub(crate) fn recover(
    db: &DB,
    path: &Path,
    bootstrap: &ConfState,
) -> Result<((Index, Term), Index)> {
    let hard_state = read_hard_state(db, path)?;
    let conf_state = read_conf_state(db, path)?;
    let base = read_log_base(db, path)?;
    let last_index = check_log(db, path, base)?;

    if let Some(hard_state) = hard_state {
        if hard_state.commit > last_index {
            return Err(LogStoreError::CommitBeyondLog {
                path: path.to_path_buf(),
                commit: hard_state.commit,
                last_index,
            });
        }
    }

    if conf_state.is_none() {
        if last_index >= FIRST_INDEX || hard_state.is_some() {
            return Err(LogStoreError::MissingConfState {
                path: path.to_path_buf(),
            });
        }
        write_bootstrap(db, path, bootstrap)?;
    }
    Ok((base, last_index))
}

/// The compaction point; (0, 0) when the log was never compacted.
fn read_log_base(db: &DB, path: &Path) -> Result<(Index, Term)> {
    let meta = db
        .cf_handle(META_COLUMN_FAMILY)
        .expect("the store is always opened with its meta column family");
    let Some(value) = db
        .get_pinned_cf(meta, LOG_BASE_KEY)
        .map_err(rocksdb_error("read the compaction point", path))?
    else {
        return Ok((0, 0));
    };
    decode_log_base(&value).map_err(|reason| LogStoreError::UndecodableMeta {
        path: path.to_path_buf(),
        record: "log_base",
        reason,
    })
}

/// Scans every key of the log: keys are indexes, contiguous from one past `base` (the last
/// compacted index); values decode; terms never decrease. Returns the last index (`base`
/// for an empty log).
fn check_log(db: &DB, path: &Path, (base, base_term): (Index, Term)) -> Result<Index> {
    let log = db
        .cf_handle(LOG_COLUMN_FAMILY)
        .expect("the store is always opened with its log column family");
    let mut iterator = db.raw_iterator_cf(log);
    iterator.seek_to_first();
    let mut last_index = base;
    let mut previous_term: Term = base_term;
    while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
        let index = index_of_key(key)
            .filter(|&index| index >= FIRST_INDEX)
            .ok_or_else(|| LogStoreError::MalformedLogKey {
                path: path.to_path_buf(),
                key: key.to_vec(),
            })?;
        if index <= base {
            return Err(LogStoreError::EntryBehindCompaction {
                path: path.to_path_buf(),
                index,
                base,
            });
        }
        if index != last_index + 1 {
            return Err(LogStoreError::LogGap {
                path: path.to_path_buf(),
                before: last_index,
                after: index,
            });
        }
        let header =
            decode_entry_header(value).map_err(|reason| LogStoreError::UndecodableEntry {
                path: path.to_path_buf(),
                index,
                reason,
            })?;
        if header.term < previous_term {
            return Err(LogStoreError::TermRegression {
                path: path.to_path_buf(),
                index,
                term: header.term,
                previous_term,
            });
        }
        previous_term = header.term;
        last_index = index;
        iterator.next();
    }
    iterator
        .status()
        .map_err(rocksdb_error("scan the log", path))?;
    Ok(last_index)
}

/// Records the membership of a new store, synced, so a crash right after creation cannot
/// leave a store without one.
pub(crate) fn write_bootstrap(db: &DB, path: &Path, bootstrap: &ConfState) -> Result<()> {
    let meta = db
        .cf_handle(META_COLUMN_FAMILY)
        .expect("the store is always opened with its meta column family");
    let mut batch = WriteBatch::default();
    batch.put_cf(meta, CONF_STATE_KEY, encode_conf_state(bootstrap));
    let mut write_options = WriteOptions::default();
    write_options.set_sync(true);
    db.write_opt(batch, &write_options)
        .map_err(rocksdb_error("write the bootstrap membership", path))
}

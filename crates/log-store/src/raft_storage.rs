//! The Raft-facing side: [`Storage`] (the core's reads) and [`LogWriter`] (the driver's
//! writes), with the duties listed in `quorate_raft_core`'s `storage` module.

use quorate_raft_core::{
    check_append, Entry, HardState, Index, LogWriter, RaftState, Snapshot, SnapshotMeta, Storage,
    StorageError, Term,
};
use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use crate::error::{LogStoreError, Result};
use crate::log_codec::{decode_entry, decode_entry_header, encode_entry, index_of_key, log_key};
use crate::meta_codec::{encode_hard_state, HARD_STATE_KEY};
use crate::store::{rocksdb_error, LogStore, FIRST_INDEX};

impl Storage for LogStore {
    fn initial_state(&self) -> Result<RaftState, StorageError> {
        let inner = &self.inner;
        let hard_state = inner.hard_state()?.unwrap_or_default();
        let conf_state = inner
            .conf_state()?
            .ok_or_else(|| LogStoreError::MissingConfState {
                path: inner.path.clone(),
            })?;
        Ok(RaftState {
            hard_state,
            conf_state,
        })
    }

    fn entries(
        &self,
        low: Index,
        high: Index,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.read_entries(low, high, max_bytes)?)
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        Ok(self.read_term(index)?)
    }

    fn first_index(&self) -> Index {
        FIRST_INDEX
    }

    fn last_index(&self) -> Index {
        *self.inner.read_last_index()
    }

    /// This store never compacts its log (yet): its snapshot is the empty one before index 1.
    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot {
            meta: SnapshotMeta {
                index: FIRST_INDEX - 1,
                term: 0,
                conf_state: self.initial_state()?.conf_state,
            },
            data: bytes::Bytes::new(),
        })
    }
}

impl LogWriter for LogStore {
    /// Writes `hard_state` and `entries` in one RocksDB write batch, replacing stored entries
    /// at or after `entries[0].index`; with `sync`, the WAL is fsynced before this returns.
    ///
    /// Refused without writing anything when the entries do not fit the log
    /// ([`check_append`]) or when the hard state's commit index would be beyond the log's end
    /// (a store the next open would refuse).
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        sync: bool,
    ) -> Result<(), StorageError> {
        Ok(self.write_raft_state(hard_state, entries, sync)?)
    }

    /// Not supported yet: refused, nothing written.
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        Err(StorageError::Io(format!(
            "cannot install {snapshot:?}: the RocksDB log store does not support snapshots yet"
        )))
    }

    /// Not supported yet: refused, nothing written.
    fn compact(&mut self, snapshot: &Snapshot, _up_to: Index) -> Result<(), StorageError> {
        Err(StorageError::Io(format!(
            "cannot compact the log to {snapshot:?}: the RocksDB log store does not support \
             compaction yet"
        )))
    }
}

impl LogStore {
    /// See [`Storage::entries`]: `[low, high)`, within `max_bytes` but at least one entry.
    fn read_entries(&self, low: Index, high: Index, max_bytes: Option<u64>) -> Result<Vec<Entry>> {
        let inner = &self.inner;
        if low > high {
            return Err(StorageError::Io(format!(
                "invalid log range: low {low} is above high {high}"
            ))
            .into());
        }
        let last_index = inner.read_last_index();
        if low < FIRST_INDEX {
            return Err(StorageError::Compacted(low).into());
        }
        if high > *last_index + 1 {
            return Err(StorageError::Unavailable(high - 1).into());
        }
        if low == high {
            return Ok(Vec::new());
        }

        let mut read_options = ReadOptions::default();
        read_options.set_iterate_upper_bound(log_key(high));
        let mut iterator = inner
            .db
            .raw_iterator_cf_opt(inner.log_column_family(), read_options);
        iterator.seek(log_key(low));

        let mut entries = Vec::with_capacity((high - low).min(1024) as usize);
        let mut total_bytes = 0u64;
        let mut expected = low;
        while expected < high {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
                iterator
                    .status()
                    .map_err(rocksdb_error("read the log", &inner.path))?;
                break;
            };
            if index_of_key(key) != Some(expected) {
                break;
            }
            let entry = decode_entry(expected, value).map_err(|reason| {
                LogStoreError::UndecodableEntry {
                    path: inner.path.clone(),
                    index: expected,
                    reason,
                }
            })?;
            total_bytes += entry.byte_size();
            if max_bytes.is_some_and(|max| !entries.is_empty() && total_bytes > max) {
                return Ok(entries);
            }
            entries.push(entry);
            expected += 1;
            iterator.next();
        }
        if expected < high {
            return Err(LogStoreError::MissingEntry {
                path: inner.path.clone(),
                index: expected,
                last_index: *last_index,
            });
        }
        Ok(entries)
    }

    /// See [`Storage::term`].
    fn read_term(&self, index: Index) -> Result<Term> {
        let inner = &self.inner;
        if index == FIRST_INDEX - 1 {
            return Ok(0);
        }
        let last_index = inner.read_last_index();
        if index > *last_index {
            return Err(StorageError::Unavailable(index).into());
        }
        let value = inner
            .db
            .get_pinned_cf(inner.log_column_family(), log_key(index))
            .map_err(rocksdb_error("read the log", &inner.path))?
            .ok_or_else(|| LogStoreError::MissingEntry {
                path: inner.path.clone(),
                index,
                last_index: *last_index,
            })?;
        decode_entry_header(&value)
            .map(|header| header.term)
            .map_err(|reason| LogStoreError::UndecodableEntry {
                path: inner.path.clone(),
                index,
                reason,
            })
    }

    /// See [`LogWriter::persist`].
    fn write_raft_state(
        &self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        sync: bool,
    ) -> Result<()> {
        let inner = &self.inner;
        let _writer = inner.lock_writer();
        // Only persist changes the last index, and persist calls are serialized, so this copy
        // stays exact until the write below.
        let old_last = *inner.read_last_index();

        // Validate everything before writing anything, so a refused call writes nothing.
        check_append(FIRST_INDEX, old_last, entries)?;
        let new_last = entries.last().map_or(old_last, |entry| entry.index);
        if let Some(hard_state) = hard_state {
            if hard_state.commit > new_last {
                return Err(StorageError::Io(format!(
                    "hard state commit index {} is beyond the last index {new_last} the log \
                     would hold",
                    hard_state.commit
                ))
                .into());
            }
        }

        let mut batch = WriteBatch::default();
        let log = inner.log_column_family();
        for entry in entries {
            batch.put_cf(log, log_key(entry.index), encode_entry(entry));
        }
        if new_last < old_last {
            // The suffix beyond the new entries goes in the same batch: a crash cannot leave
            // stale entries after the new ones.
            batch.delete_range_cf(log, log_key(new_last + 1), log_key(old_last + 1));
        }
        if let Some(hard_state) = hard_state {
            batch.put_cf(
                inner.meta_column_family(),
                HARD_STATE_KEY,
                encode_hard_state(hard_state),
            );
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);

        let rewrites_stored_entries = entries.first().is_some_and(|first| first.index <= old_last);
        if rewrites_stored_entries {
            // Readers must not see the old bounds with the new contents (or the reverse):
            // hold them off for the duration of this (rare) write.
            let mut last_index = inner.write_last_index();
            inner
                .db
                .write_opt(batch, &write_options)
                .map_err(rocksdb_error("write to the log", &inner.path))?;
            *last_index = new_last;
        } else {
            // A pure append (or a hard state alone) touches nothing readers can see through
            // the old bounds, so they keep reading during the fsync.
            inner
                .db
                .write_opt(batch, &write_options)
                .map_err(rocksdb_error("write to the log", &inner.path))?;
            *inner.write_last_index() = new_last;
        }
        Ok(())
    }
}

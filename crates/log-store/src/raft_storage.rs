//! The Raft-facing side: [`Storage`] (the core's reads) and [`LogWriter`] (the driver's
//! writes), with the duties listed in `quorate_raft_core`'s `storage` module.

use quorate_raft_core::{
    check_append, check_snapshot, Entry, HardState, Index, LogWriter, RaftState, Snapshot,
    SnapshotMeta, Storage, StorageError, Term,
};
use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use crate::error::{LogStoreError, Result};
use crate::log_codec::{decode_entry, decode_entry_header, encode_entry, index_of_key, log_key};
use crate::meta_codec::{
    decode_snapshot, encode_conf_state, encode_hard_state, encode_log_base, encode_snapshot,
    CONF_STATE_KEY, HARD_STATE_KEY, LOG_BASE_KEY, SNAPSHOT_KEY,
};
use crate::store::{rocksdb_error, LogStore};

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
        self.inner.read_base().0 + 1
    }

    fn last_index(&self) -> Index {
        *self.inner.read_last_index()
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.read_snapshot()?)
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

    /// Replaces the whole log with `snapshot` in one synced write batch: every entry goes,
    /// the compaction point becomes the snapshot's last entry, and the snapshot and its
    /// membership are stored. Refused, writing nothing, for a snapshot not newer than the
    /// stored one or than the log's start.
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        Ok(self.write_snapshot(snapshot, None)?)
    }

    /// Stores `snapshot` and deletes the entries up to `up_to`, in one synced write batch.
    fn compact(&mut self, snapshot: &Snapshot, up_to: Index) -> Result<(), StorageError> {
        Ok(self.write_snapshot(snapshot, Some(up_to))?)
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
        let base = inner.read_base();
        let last_index = inner.read_last_index();
        if low <= base.0 {
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
        let base = inner.read_base();
        if index == base.0 {
            return Ok(base.1);
        }
        if index < base.0 {
            return Err(StorageError::Compacted(index).into());
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
        let first_index = inner.read_base().0 + 1;
        check_append(first_index, old_last, entries)?;
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

    /// See [`Storage::snapshot`]: the stored snapshot, or the empty one before index 1.
    fn read_snapshot(&self) -> Result<Snapshot> {
        let inner = &self.inner;
        let stored = inner
            .db
            .get_pinned_cf(inner.meta_column_family(), SNAPSHOT_KEY)
            .map_err(rocksdb_error("read the snapshot", &inner.path))?;
        match stored {
            Some(value) => {
                decode_snapshot(&value).map_err(|reason| LogStoreError::UndecodableMeta {
                    path: inner.path.clone(),
                    record: "snapshot",
                    reason,
                })
            }
            None => Ok(Snapshot {
                meta: SnapshotMeta {
                    index: 0,
                    term: 0,
                    conf_state: self.initial_state()?.conf_state,
                    conf_context: bytes::Bytes::new(),
                },
                data: bytes::Bytes::new(),
            }),
        }
    }

    /// See [`LogWriter::compact`] (`up_to` set) and [`LogWriter::apply_snapshot`] (`None`).
    fn write_snapshot(&self, snapshot: &Snapshot, up_to: Option<Index>) -> Result<()> {
        let inner = &self.inner;
        let _writer = inner.lock_writer();
        let stored = self.read_snapshot()?.meta.index;
        let old_base = *inner.read_base();
        let old_last = *inner.read_last_index();
        let term_at = |index: Index| self.read_term(index).ok();
        check_snapshot(
            old_base.0 + 1,
            old_last,
            stored,
            term_at,
            &snapshot.meta,
            up_to,
        )?;
        let (new_base, new_last) = match up_to {
            Some(up_to) => {
                let term = self.read_term(up_to)?;
                ((up_to, term), old_last)
            }
            None => {
                let point = (snapshot.meta.index, snapshot.meta.term);
                (point, snapshot.meta.index)
            }
        };
        let mut batch = WriteBatch::default();
        let log = inner.log_column_family();
        let meta = inner.meta_column_family();
        let delete_to = if up_to.is_some() {
            new_base.0
        } else {
            old_last
        };
        if delete_to > old_base.0 {
            batch.delete_range_cf(log, log_key(old_base.0 + 1), log_key(delete_to + 1));
        }
        batch.put_cf(meta, LOG_BASE_KEY, encode_log_base(new_base.0, new_base.1));
        batch.put_cf(meta, SNAPSHOT_KEY, encode_snapshot(snapshot));
        if up_to.is_none() {
            batch.put_cf(
                meta,
                CONF_STATE_KEY,
                encode_conf_state(&snapshot.meta.conf_state),
            );
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        // Readers must not see the new bounds before the write, or the old ones after it.
        let mut base = inner.write_base();
        let mut last_index = inner.write_last_index();
        inner
            .db
            .write_opt(batch, &write_options)
            .map_err(rocksdb_error("write a snapshot", &inner.path))?;
        *base = new_base;
        *last_index = new_last;
        drop(last_index);
        drop(base);
        // Give the space back soon: the deleted entries' files are dropped or rewritten by the
        // store's compaction thread rather than whenever RocksDB would next compact them, and
        // not here, where the writer (the node's driver) would wait for it.
        if delete_to > old_base.0 {
            inner.compactor.request(old_base.0 + 1, delete_to);
        }
        Ok(())
    }
}

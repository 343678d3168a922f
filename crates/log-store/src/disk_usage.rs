//! How much disk the store takes, for capacity alerts and the admin API.

use std::fs;

use rocksdb::properties::{CUR_SIZE_ALL_MEM_TABLES, TOTAL_SST_FILES_SIZE};

use crate::error::{LogStoreError, Result};
use crate::store::{rocksdb_error, LogStore};

impl LogStore {
    /// The bytes of the store's data files: the SST files of every column family (RocksDB's
    /// `rocksdb.total-sst-files-size`, which includes files still held by open iterators or
    /// awaiting deletion) plus the write-ahead log files (`*.log`) in the store's directory.
    ///
    /// Not counted: RocksDB's small bookkeeping files (`MANIFEST`, `OPTIONS`, `CURRENT`) and
    /// its informational `LOG` files. Memtables are counted through the WAL that backs them.
    pub fn data_size_bytes(&self) -> Result<u64> {
        let inner = &self.inner;
        let mut total = 0u64;
        for handle in inner.all_column_families() {
            total += inner
                .db
                .property_int_value_cf(handle, TOTAL_SST_FILES_SIZE)
                .map_err(rocksdb_error("read the SST files size", &inner.path))?
                .unwrap_or(0);
        }
        let directory_error = |source| LogStoreError::Directory {
            path: inner.path.clone(),
            source,
        };
        for item in fs::read_dir(&inner.path).map_err(directory_error)? {
            let item = item.map_err(directory_error)?;
            let path = item.path();
            if path.extension().is_some_and(|extension| extension == "log") {
                // A WAL file can be deleted between listing and measuring: it no longer counts.
                match item.metadata() {
                    Ok(metadata) => total += metadata.len(),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(directory_error(error)),
                }
            }
        }
        Ok(total)
    }

    /// Waits until the space of every log compaction so far was given back: the store
    /// compacts the deleted entries' files away on a thread of its own, after `compact`
    /// returned. For a caller that reports what a compaction freed (`log_size_bytes` before
    /// and after); writers never wait for it.
    pub fn wait_for_log_space(&self) {
        self.inner.compactor.wait_idle();
    }

    /// The bytes of the Raft log: the SST files of its column family plus its memtables
    /// (whose entries the write-ahead log holds until they are flushed). What compaction
    /// behind a snapshot frees, once RocksDB has compacted the deleted range away (see
    /// [`Self::wait_for_log_space`]).
    pub fn log_size_bytes(&self) -> Result<u64> {
        let inner = &self.inner;
        let handle = inner.log_column_family();
        let mut total = 0;
        for property in [TOTAL_SST_FILES_SIZE, CUR_SIZE_ALL_MEM_TABLES] {
            total += inner
                .db
                .property_int_value_cf(handle, property)
                .map_err(rocksdb_error("read the log's size", &inner.path))?
                .unwrap_or(0);
        }
        Ok(total)
    }
}

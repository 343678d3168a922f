//! The state machine's data: its own column families in the same database as the log, so
//! that it can store its state and its applied index in one atomic write.

use rocksdb::{ColumnFamily, Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::error::{LogStoreError, Result};
use crate::store::{rocksdb_error, LogStore};

/// Puts and deletes across the state column families, applied atomically by
/// [`LogStore::state_write`]: after a crash, either all of them are there or none is.
///
/// Operations apply in the order they were added (a later put of the same key wins). Column
/// family names are checked when the batch is written, not when it is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateBatch {
    operations: Vec<StateOperation>,
}

/// One operation of a [`StateBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum StateOperation {
    Put {
        column_family: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        column_family: String,
        key: Vec<u8>,
    },
}

impl StateOperation {
    fn column_family(&self) -> &str {
        match self {
            StateOperation::Put { column_family, .. }
            | StateOperation::Delete { column_family, .. } => column_family,
        }
    }
}

impl StateBatch {
    /// An empty batch.
    pub fn new() -> Self {
        StateBatch::default()
    }

    /// Sets `key` to `value` in `column_family`.
    pub fn put(
        &mut self,
        column_family: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> &mut Self {
        self.operations.push(StateOperation::Put {
            column_family: column_family.to_string(),
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        });
        self
    }

    /// Removes `key` from `column_family` (nothing happens if it is absent).
    pub fn delete(&mut self, column_family: &str, key: impl AsRef<[u8]>) -> &mut Self {
        self.operations.push(StateOperation::Delete {
            column_family: column_family.to_string(),
            key: key.as_ref().to_vec(),
        });
        self
    }

    /// How many operations the batch holds.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }
}

impl LogStore {
    /// The value of `key` in the state column family `column_family`.
    pub fn state_get(&self, column_family: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let inner = &self.inner;
        let handle = self.state_column_family(column_family)?;
        inner
            .db
            .get_cf(handle, key)
            .map_err(rocksdb_error("read state data", &inner.path))
    }

    /// Up to `limit` pairs of `column_family` whose keys are `>= start`, in ascending key order.
    pub fn state_scan(
        &self,
        column_family: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_while(column_family, start, limit, |_| true)
    }

    /// Up to `limit` pairs of `column_family` whose keys start with `prefix`, in ascending key
    /// order.
    pub fn state_scan_prefix(
        &self,
        column_family: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_while(column_family, prefix, limit, |key| key.starts_with(prefix))
    }

    /// Visits every pair of each of `column_families`, in order, as of one point in time (a
    /// RocksDB snapshot taken first: writes made while the visit runs are not seen), so that
    /// an image of the state machine is consistent without stopping its writes. Stops at the
    /// first error `visit` returns.
    pub fn state_snapshot_scan<E: From<LogStoreError>>(
        &self,
        column_families: &[&str],
        mut visit: impl FnMut(&str, &[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let inner = &self.inner;
        let handles = column_families
            .iter()
            .map(|name| Ok((*name, self.state_column_family(name)?)))
            .collect::<Result<Vec<_>>>()?;
        let snapshot = inner.db.snapshot();
        for (name, handle) in handles {
            for item in snapshot.iterator_cf(handle, IteratorMode::Start) {
                let (key, value) = item.map_err(rocksdb_error("scan state data", &inner.path))?;
                visit(name, &key, &value)?;
            }
        }
        Ok(())
    }

    /// Applies `batch` atomically, fsyncing the WAL before returning when `sync`.
    ///
    /// Every column family is checked first: a batch naming one that was not declared at open
    /// is refused with [`LogStoreError::UnknownColumnFamily`] and writes nothing.
    pub fn state_write(&self, batch: StateBatch, sync: bool) -> Result<()> {
        let inner = &self.inner;
        let mut write_batch = WriteBatch::default();
        for operation in &batch.operations {
            let handle = self.state_column_family(operation.column_family())?;
            match operation {
                StateOperation::Put { key, value, .. } => write_batch.put_cf(handle, key, value),
                StateOperation::Delete { key, .. } => write_batch.delete_cf(handle, key),
            }
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);
        inner
            .db
            .write_opt(write_batch, &write_options)
            .map_err(rocksdb_error("write state data", &inner.path))
    }

    /// The handle of a declared state column family.
    fn state_column_family(&self, name: &str) -> Result<&ColumnFamily> {
        let inner = &self.inner;
        let unknown = || LogStoreError::UnknownColumnFamily {
            name: name.to_string(),
            declared: inner.state_column_families.iter().cloned().collect(),
        };
        if !inner.state_column_families.contains(name) {
            return Err(unknown());
        }
        inner.db.cf_handle(name).ok_or_else(unknown)
    }

    /// Pairs from `start` on, while `keep` accepts the key, at most `limit` of them.
    fn scan_while(
        &self,
        column_family: &str,
        start: &[u8],
        limit: usize,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let inner = &self.inner;
        let handle = self.state_column_family(column_family)?;
        let mut pairs = Vec::new();
        for item in inner
            .db
            .iterator_cf(handle, IteratorMode::From(start, Direction::Forward))
        {
            if pairs.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(rocksdb_error("scan state data", &inner.path))?;
            if !keep(&key) {
                break;
            }
            pairs.push((key.into_vec(), value.into_vec()));
        }
        Ok(pairs)
    }
}

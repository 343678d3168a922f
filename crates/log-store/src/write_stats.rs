//! Counters that show group commit at work, read from RocksDB's statistics.

use rocksdb::statistics::Ticker;

use crate::store::LogStore;

/// How the store's writes reached the WAL since it was opened by this process.
///
/// RocksDB queues concurrent writers; the first in the queue (the group's leader) writes the
/// batches of all writers queued behind it in one WAL write and, if any of them asked for
/// `sync`, one fsync. So under concurrency `wal_syncs` can be far below `writes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write batches committed: Raft persists, state writes and the bootstrap record.
    pub writes: u64,
    /// Write groups: WAL writes, each carrying one or more batches.
    pub write_groups: u64,
    /// WAL fsyncs (including those of [`LogStore::flush`]).
    pub wal_syncs: u64,
}

impl LogStore {
    /// The store's write counters (see [`WriteStats`]).
    pub fn write_stats(&self) -> WriteStats {
        let options = &self.inner.db_options;
        let write_groups = options.get_ticker_count(Ticker::WriteDoneBySelf);
        WriteStats {
            writes: write_groups + options.get_ticker_count(Ticker::WriteDoneByOther),
            write_groups,
            wal_syncs: options.get_ticker_count(Ticker::WalFileSynced),
        }
    }
}

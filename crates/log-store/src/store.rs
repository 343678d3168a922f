//! The store itself: one RocksDB database, opened once and shared by every clone.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use quorate_raft_core::{ConfState, HardState, Index, Term};
use rocksdb::{
    statistics::StatsLevel, BlockBasedOptions, Cache, ColumnFamily, DBRecoveryMode, FlushOptions,
    Options, WriteOptions, DB,
};

use crate::compactor::Compactor;
use crate::error::{LogStoreError, Result};
use crate::meta_codec::{
    decode_conf_state, decode_hard_state, decode_identity, encode_identity, CONF_STATE_KEY,
    HARD_STATE_KEY, IDENTITY_KEY,
};
use crate::options::{OpenOptions, DEFAULT_COLUMN_FAMILY, LOG_COLUMN_FAMILY, META_COLUMN_FAMILY};
use crate::recovery;
use crate::wal_damage;

/// The first index of a log that was never compacted; the entry "before the first" is then
/// index 0, of term 0. Compaction moves the start (see [`Inner::base`]).
pub(crate) const FIRST_INDEX: Index = 1;

pub use quorate_log_codec::meta::Identity;

/// The Raft log, hard state, membership and state-machine data of one node, in RocksDB.
///
/// Cloning is cheap and every clone shares the same database and the same in-memory last
/// index, so the node can persist through one clone (on a blocking thread) while the Raft core
/// reads through another. See the crate documentation for the layout and the guarantees.
#[derive(Clone)]
pub struct LogStore {
    pub(crate) inner: Arc<Inner>,
}

/// What the clones share.
pub(crate) struct Inner {
    /// The database, shared only with the compaction thread. It closes when the last of the
    /// two references drops: the thread's, when `compactor` (declared next, so dropped right
    /// after this) joins it; so before the options it was opened with drop.
    pub(crate) db: Arc<DB>,
    /// The thread that gives back the space of compacted log entries; joined when dropped.
    pub(crate) compactor: Compactor,
    /// The directory, for error messages and size accounting.
    pub(crate) path: PathBuf,
    /// The options the database was opened with; they hold its statistics.
    pub(crate) db_options: Options,
    /// The state column families declared at open.
    pub(crate) state_column_families: BTreeSet<String>,
    /// The last index in the log. Readers hold the read guard for the whole of a log read;
    /// a `persist` that rewrites stored entries holds the write guard across its write, so no
    /// reader ever sees an index that the in-memory bound promises but the database lost.
    pub(crate) last_index: RwLock<Index>,
    /// Index and term of the last entry compacted away ((0, 0) before any compaction): the
    /// log starts after it. Changed only by `compact` and `apply_snapshot`, holding the
    /// writer lock and then this guard (then `last_index`'s): readers take this guard before
    /// `last_index`'s.
    pub(crate) base: RwLock<(Index, Term)>,
    /// Serializes `persist` calls from different clones: validation, write and the update of
    /// `last_index` form one step.
    pub(crate) writer: Mutex<()>,
}

impl LogStore {
    /// Opens the store in `dir`, creating it (with `options.bootstrap` as its membership) when
    /// it does not exist, and checks it before anyone reads it: the log is contiguous from
    /// index 1, every entry decodes, terms never decrease, and the hard state's commit index
    /// is within the log. A damaged store, including a write-ahead log damaged anywhere but in
    /// its torn last record, is refused with an error that says what is wrong and where;
    /// nothing is repaired.
    pub fn open(dir: &Path, options: OpenOptions) -> Result<LogStore> {
        let state_column_families = options.checked_state_column_families()?;
        let db_options = database_options();
        let mut column_families: Vec<String> =
            [DEFAULT_COLUMN_FAMILY, LOG_COLUMN_FAMILY, META_COLUMN_FAMILY]
                .map(String::from)
                .into();
        column_families.extend(state_column_families.iter().cloned());

        if dir.join("CURRENT").exists() {
            let existing = DB::list_cf(&db_options, dir)
                .map_err(rocksdb_error("list the column families", dir))?;
            if let Some(name) = existing
                .into_iter()
                .find(|name| !column_families.contains(name))
            {
                return Err(LogStoreError::UndeclaredColumnFamily {
                    path: dir.to_path_buf(),
                    name,
                });
            }
        }

        let block_cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let descriptors = column_families
            .iter()
            .map(|name| (name.as_str(), column_family_options(&block_cache)));
        let db = DB::open_cf_with_opts(&db_options, dir, descriptors).map_err(|source| {
            wal_damage::open_failure(source, dir, &db_options, &column_families)
        })?;
        let (base, last_index) = recovery::recover(&db, dir, &options.bootstrap)?;
        let db = Arc::new(db);
        let compactor =
            Compactor::start(Arc::clone(&db)).map_err(|source| LogStoreError::Thread {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                db,
                compactor,
                path: dir.to_path_buf(),
                db_options,
                state_column_families,
                last_index: RwLock::new(last_index),
                base: RwLock::new(base),
                writer: Mutex::new(()),
            }),
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The cluster and member this store belongs to; `None` until the node first decided to
    /// start (see [`Self::set_identity`]).
    pub fn identity(&self) -> Result<Option<Identity>> {
        let inner = &self.inner;
        let Some(value) = inner
            .db
            .get_pinned_cf(inner.meta_column_family(), IDENTITY_KEY)
            .map_err(rocksdb_error("read the identity", &inner.path))?
        else {
            return Ok(None);
        };
        decode_identity(&value)
            .map(Some)
            .map_err(|reason| LogStoreError::UndecodableMeta {
                path: inner.path.clone(),
                record: "identity",
                reason,
            })
    }

    /// Records, synced, which cluster and member this store belongs to.
    pub fn set_identity(&self, identity: &Identity) -> Result<()> {
        let inner = &self.inner;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        inner
            .db
            .put_cf_opt(
                inner.meta_column_family(),
                IDENTITY_KEY,
                encode_identity(identity),
                &write_options,
            )
            .map_err(rocksdb_error("write the identity", &inner.path))
    }

    /// Whether the store holds nothing a node ever promised: no identity, no hard state, no
    /// entry. Such a store is ambiguous (a new member, or one whose disk was lost), and the
    /// node must ask its peers before it runs (`quorate_raft_core::bootstrap`).
    pub fn is_blank(&self) -> Result<bool> {
        Ok(self.identity()?.is_none()
            && self.inner.hard_state()?.is_none()
            && *self.inner.read_last_index() == 0)
    }

    /// Readies a blank store for a member that joins a running cluster: it starts with no
    /// membership of its own (not the one it was opened with), and learns it from the leader's
    /// log or snapshot. Refused unless the store is blank.
    pub fn start_without_membership(&self) -> Result<()> {
        if !self.is_blank()? {
            return Err(LogStoreError::InvalidOptions(format!(
                "{}: only a blank store can join a cluster as a new member",
                self.inner.path.display()
            )));
        }
        crate::recovery::write_bootstrap(&self.inner.db, &self.inner.path, &ConfState::default())
    }

    /// Writes every memtable to SST files and syncs the WAL, so that the next open replays
    /// nothing. For a graceful shutdown; durability never depends on it (synced writes are
    /// durable when they return).
    pub fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        inner
            .db
            .flush_wal(true)
            .map_err(rocksdb_error("sync the WAL", &inner.path))?;
        let mut flush_options = FlushOptions::default();
        flush_options.set_wait(true);
        let handles = inner.all_column_families();
        inner
            .db
            .flush_cfs_opt(&handles, &flush_options)
            .map_err(rocksdb_error("flush the memtables", &inner.path))
    }
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.inner.path)
            .field("last_index", &*self.inner.read_last_index())
            .field("state_column_families", &self.inner.state_column_families)
            .finish()
    }
}

impl Inner {
    /// The log column family; it always exists once the store is open.
    pub(crate) fn log_column_family(&self) -> &ColumnFamily {
        self.db
            .cf_handle(LOG_COLUMN_FAMILY)
            .expect("the store is always opened with its log column family")
    }

    /// The meta column family; it always exists once the store is open.
    pub(crate) fn meta_column_family(&self) -> &ColumnFamily {
        self.db
            .cf_handle(META_COLUMN_FAMILY)
            .expect("the store is always opened with its meta column family")
    }

    /// Every column family the store was opened with.
    pub(crate) fn all_column_families(&self) -> Vec<&ColumnFamily> {
        [DEFAULT_COLUMN_FAMILY, LOG_COLUMN_FAMILY, META_COLUMN_FAMILY]
            .into_iter()
            .chain(self.state_column_families.iter().map(String::as_str))
            .filter_map(|name| self.db.cf_handle(name))
            .collect()
    }

    /// The last index, shared with concurrent writers (see [`Inner::last_index`]).
    pub(crate) fn read_last_index(&self) -> RwLockReadGuard<'_, Index> {
        // The guarded value is a plain integer replaced in one assignment: a panic elsewhere
        // cannot leave it half-written, so a poisoned lock is still sound to use.
        self.last_index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The compaction point, shared with a concurrent compaction (see [`Inner::base`]).
    pub(crate) fn read_base(&self) -> RwLockReadGuard<'_, (Index, Term)> {
        // A plain pair replaced in one assignment: sound even if poisoned.
        self.base.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access to the compaction point, for a compaction.
    pub(crate) fn write_base(&self) -> RwLockWriteGuard<'_, (Index, Term)> {
        self.base.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access to the last index, for a write that rewrites stored entries.
    pub(crate) fn write_last_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.last_index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The right to persist; see [`Inner::writer`].
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored hard state; `None` when none was ever written.
    pub(crate) fn hard_state(&self) -> Result<Option<HardState>> {
        read_hard_state(&self.db, &self.path)
    }

    /// The stored membership; `None` only for a store that was never bootstrapped.
    pub(crate) fn conf_state(&self) -> Result<Option<ConfState>> {
        read_conf_state(&self.db, &self.path)
    }
}

/// The stored hard state of `db`; `None` when none was ever written.
pub(crate) fn read_hard_state(db: &DB, path: &Path) -> Result<Option<HardState>> {
    let meta = db
        .cf_handle(META_COLUMN_FAMILY)
        .expect("the store is always opened with its meta column family");
    let Some(value) = db
        .get_pinned_cf(meta, HARD_STATE_KEY)
        .map_err(rocksdb_error("read the hard state", path))?
    else {
        return Ok(None);
    };
    decode_hard_state(&value)
        .map(Some)
        .map_err(|reason| LogStoreError::UndecodableMeta {
            path: path.to_path_buf(),
            record: "hard state",
            reason,
        })
}

/// The stored membership of `db`; `None` only for a store that was never bootstrapped.
pub(crate) fn read_conf_state(db: &DB, path: &Path) -> Result<Option<ConfState>> {
    let meta = db
        .cf_handle(META_COLUMN_FAMILY)
        .expect("the store is always opened with its meta column family");
    let Some(value) = db
        .get_pinned_cf(meta, CONF_STATE_KEY)
        .map_err(rocksdb_error("read the conf state", path))?
    else {
        return Ok(None);
    };
    decode_conf_state(&value)
        .map(Some)
        .map_err(|reason| LogStoreError::UndecodableMeta {
            path: path.to_path_buf(),
            record: "conf state",
            reason,
        })
}

/// Wraps a RocksDB error with what the store was doing and where.
pub(crate) fn rocksdb_error<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(rocksdb::Error) -> LogStoreError + 'a {
    move |source| LogStoreError::RocksDb {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// The database options. Everything not set here is RocksDB's default.
fn database_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // After a crash, replay the whole WAL, dropping only an incomplete last record: the write
    // the crash interrupted, which never returned, so nobody was told it was durable. Any
    // other damaged record refuses the open, because the records after it may be synced,
    // acknowledged writes (votes, entries); RocksDB's default, `PointInTime`, would silently
    // stop replaying there and lose them all. RocksDB's options.h on this mode: "We tolerate
    // the last record in any log to be incomplete due to a crash while writing it" and "in
    // case a corruption is detected during recovery, this mode will refuse to open the DB".
    // `AbsoluteConsistency` would also refuse the torn tail every crash can leave, and
    // `SkipAnyCorruptedRecord` would leave holes. `wal_damage` words the refusal.
    options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    // Tickers only (write groups, WAL syncs) for `LogStore::write_stats`; timers cost more.
    options.enable_statistics();
    options.set_statistics_level(StatsLevel::ExceptHistogramOrTimers);
    // RocksDB's informational LOG files (not the WAL): keep a few, not a thousand.
    options.set_keep_log_file_num(10);
    // Bounded memory and disk however long a node runs. By default each column family may
    // fill a 64 MiB memtable before it is written out, and the WAL is kept until every memtable
    // holding part of it is: a node took 170 MiB of memory and 100 MiB of WAL over 200,000
    // payment events, all in memtables, and what log and event compaction deleted was freed
    // only at those flushes. A budget for all memtables together flushes the largest when
    // reached, and a cap on the WAL flushes the column families that keep its oldest file.
    options.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);
    options.set_max_total_wal_size(MAX_WAL_BYTES);
    options
}

/// The memory all memtables together may take before the largest is written out.
const MEMTABLE_BUDGET_BYTES: usize = 32 << 20;
/// The WAL's size beyond which the column families keeping its oldest file are flushed.
const MAX_WAL_BYTES: u64 = 64 << 20;

/// The cache of table blocks all column families share.
const BLOCK_CACHE_BYTES: usize = 32 << 20;

/// The options of every column family, all sharing `block_cache`. Everything not set here is
/// RocksDB's default.
fn column_family_options(block_cache: &Cache) -> Options {
    let mut options = Options::default();
    // Bloom filters (10 bits per key, about 1% false positives) in every table file: most
    // point reads of the state machine are misses (a new payment, a new idempotency key), and
    // without a filter each miss searches an index and a data block in every file it might be
    // in.
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    // One cache for every column family: RocksDB gives each table factory a cache of its own
    // by default (32 MiB each, over a dozen families), and a node's memory grew by about
    // 7 MiB per 50,000 writes as they filled.
    table.set_block_cache(block_cache);
    options.set_block_based_table_factory(&table);
    // The same for the memtables: a whole-key bloom filter (about 2% of the write buffer)
    // answers a miss without searching the skip list, whose search was the largest single
    // cost of applying a payment (each apply looks up a new payment and a new key).
    options.set_memtable_prefix_bloom_ratio(0.02);
    options.set_memtable_whole_key_filtering(true);
    options
}

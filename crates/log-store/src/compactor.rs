//! Gives back the space of compacted log entries on a thread of the store's own, so that the
//! writer that deleted them (the node's driver, between two appends) does not wait for it.
//!
//! A log compaction deletes its entries with one range tombstone, which frees nothing until
//! RocksDB compacts the files it covers. Compacting that range at once returns the space, but
//! a manual compaction first flushes the column family's memtable and then rewrites files; on
//! the driver's thread that stalled every write for tens of milliseconds every
//! `snapshot_count` entries. Here it runs on one long-lived thread: the deleted ranges wait in
//! one merged request, and the store joins the thread when it closes, so the database is
//! closed (and its lock released) when the last clone of the store is dropped, as before.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use quorate_raft_core::Index;
use rocksdb::{CompactOptions, DB};

use crate::log_codec::log_key;
use crate::options::LOG_COLUMN_FAMILY;

/// The owner of the compaction thread; one per open store.
pub(crate) struct Compactor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the store and the thread share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when work arrives, when the store closes, and when a compaction ends.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The deleted log indexes still to compact, `[first, last]`: requests that arrive while
    /// one runs merge into one range.
    pending: Option<(Index, Index)>,
    /// A compaction is running.
    running: bool,
    /// The store is closing: the thread ends without starting more work.
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain flags and a range, each replaced in one assignment: sound even if poisoned.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Compactor {
    /// Starts the thread, which compacts the log column family of `db` as asked.
    pub(crate) fn start(db: Arc<DB>) -> std::io::Result<Compactor> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("quorate-log-compact".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&db, &shared)
            })?;
        Ok(Compactor {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for the log entries `first..=last` (already deleted) to be compacted away; returns
    /// at once.
    pub(crate) fn request(&self, first: Index, last: Index) {
        let mut state = self.shared.lock();
        state.pending = Some(match state.pending {
            Some((a, b)) => (a.min(first), b.max(last)),
            None => (first, last),
        });
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Waits until every compaction asked for so far has finished. (The store cannot close
    /// meanwhile: this borrows it.)
    pub(crate) fn wait_idle(&self) {
        let mut state = self.shared.lock();
        while state.pending.is_some() || state.running {
            state = self.shared.wait(state);
        }
    }
}

impl Drop for Compactor {
    /// Ends the thread, after the compaction it is running if any; work not started is
    /// dropped (RocksDB's own compactions free that space in time).
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread catches a compaction's panic (see `run`): it ends only when told.
            let _ = thread.join();
        }
    }
}

/// The thread's loop: one merged range at a time until the store closes.
fn run(db: &DB, shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.closing {
            return;
        }
        let Some((first, last)) = state.pending.take() else {
            state = shared.wait(state);
            continue;
        };
        state.running = true;
        drop(state);
        // A compaction that fails (or panics) frees nothing and loses nothing: the deletion
        // was written and synced before it was asked for. `running` is cleared either way,
        // so `wait_idle` never waits for a thread that died.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| compact(db, first, last)));
        state = shared.lock();
        state.running = false;
        shared.changed.notify_all();
    }
}

/// Compacts the log's files holding `first..=last` away. Not exclusive: RocksDB's automatic
/// compactions of the other column families go on meanwhile (an exclusive manual compaction,
/// RocksDB's default, would hold them back until it ends).
fn compact(db: &DB, first: Index, last: Index) {
    let Some(log) = db.cf_handle(LOG_COLUMN_FAMILY) else {
        return;
    };
    let mut options = CompactOptions::default();
    options.set_exclusive_manual_compaction(false);
    db.compact_range_cf_opt(log, Some(log_key(first)), Some(log_key(last + 1)), &options);
}

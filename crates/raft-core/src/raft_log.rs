//! The log as the core sees it: stable storage plus the unstable in-memory tail, with the
//! commit, persist and apply positions.

use crate::error::{Error, Result, StorageError};
use crate::membership::{ConfHistory, Membership};
use crate::storage::Storage;
use crate::types::{ConfState, Entry, Index, Snapshot, Term};
use crate::unstable::Unstable;

/// Stable entries (in [`Storage`]) followed by unstable ones (in memory).
///
/// Invariants: `applied <= committed` and `applied <= persisted`; `committed <= last_index()`.
pub struct RaftLog<S> {
    /// The driver's storage, read-only here.
    pub(crate) storage: S,
    /// Entries not yet confirmed durable.
    pub(crate) unstable: Unstable,
    /// Highest index known to be committed.
    pub(crate) committed: Index,
    /// Highest index handed to the state machine.
    pub(crate) applied: Index,
    /// Highest index known to be on stable storage. Only persisted entries are applied, and a
    /// leader counts itself towards a quorum only up to here.
    pub(crate) persisted: Index,
    /// The lowest index at which entries were replaced (a conflicting suffix dropped) since
    /// the caller last took it: acknowledgements of entries from there on no longer hold.
    pub(crate) replaced_from: Option<Index>,
    /// The configurations this log holds: the latest is in force (see [`crate::membership`]).
    pub(crate) confs: ConfHistory,
}

impl<S: Storage> RaftLog<S> {
    /// Opens the log over `storage`, whose state machine has already applied up to `applied`.
    pub fn new(storage: S, committed: Index, applied: Index) -> Result<Self> {
        let last = storage.last_index();
        let snapshot_index = storage.first_index() - 1;
        if applied < snapshot_index {
            return Err(StorageError::Io(format!(
                "the log was compacted up to index {snapshot_index} but the state machine \
                 applied only {applied}: restore the machine from the stored snapshot first"
            ))
            .into());
        }
        if applied > last || committed > last {
            return Err(StorageError::Io(format!(
                "storage ends at index {last} but commit is {committed} and the state machine \
                 applied {applied}: the log lost entries"
            ))
            .into());
        }
        let confs = Self::read_confs(&storage)?;
        Ok(RaftLog {
            unstable: Unstable::new(last + 1),
            committed: committed.max(applied),
            applied,
            persisted: last,
            replaced_from: None,
            confs,
            storage,
        })
    }

    /// The configurations of a stored log: the snapshot's (or, before any, the bootstrap
    /// one), then every membership entry after the snapshot.
    fn read_confs(storage: &S) -> Result<ConfHistory> {
        let snapshot = storage.snapshot()?.meta;
        let mut confs = if snapshot.index > 0 {
            let base = Membership {
                conf: snapshot.conf_state,
                context: snapshot.conf_context,
            };
            ConfHistory::new(snapshot.index, base)
        } else {
            let base = Membership {
                conf: storage.initial_state()?.conf_state,
                context: bytes::Bytes::new(),
            };
            ConfHistory::new(0, base)
        };
        let mut next = storage.first_index().max(snapshot.index + 1);
        let end = storage.last_index() + 1;
        while next < end {
            let chunk = storage.entries(next, end, Some(4 << 20))?;
            let Some(last) = chunk.last() else {
                break;
            };
            next = last.index + 1;
            let found = ConfHistory::decode(&chunk)?;
            if let Some(&(first, _)) = found.first() {
                confs.replace_from(first, found);
            }
        }
        Ok(confs)
    }

    /// The configuration in force: the latest in the log, committed or not.
    pub fn conf(&self) -> &ConfState {
        self.confs.current()
    }

    /// The latest membership with the index of its entry.
    pub(crate) fn latest_membership(&self) -> &(Index, Membership) {
        self.confs.latest()
    }

    /// The first index still in the log (after a snapshot waiting to be installed, if any).
    pub fn first_index(&self) -> Index {
        self.unstable
            .first_index()
            .unwrap_or_else(|| self.storage.first_index())
    }

    /// The snapshot received from the leader that the driver has yet to install.
    pub fn pending_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.snapshot.as_ref()
    }

    /// The last index, unstable or not.
    pub fn last_index(&self) -> Index {
        self.unstable
            .last_index()
            .unwrap_or_else(|| self.storage.last_index())
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> Result<Term> {
        Ok(self.term(self.last_index())?)
    }

    /// The term of the entry at `index` (index 0, before any entry, has term 0).
    pub fn term(&self, index: Index) -> Result<Term, StorageError> {
        if let Some(term) = self.unstable.term(index) {
            return Ok(term);
        }
        if index + 1 < self.first_index() {
            return Err(StorageError::Compacted(index));
        }
        if index > self.last_index() || index >= self.unstable.offset {
            return Err(StorageError::Unavailable(index));
        }
        self.storage.term(index)
    }

    /// Whether the log holds an entry at `index` with `term`.
    pub fn matches(&self, index: Index, term: Term) -> Result<bool> {
        match self.term(index) {
            Ok(t) => Ok(t == term),
            Err(StorageError::Compacted(_) | StorageError::Unavailable(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up to date as this
    /// one (Raft §5.4.1): a later last term wins; with equal terms, the longer log wins.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> Result<bool> {
        let my_term = self.last_term()?;
        Ok(last_term > my_term || (last_term == my_term && last_index >= self.last_index()))
    }

    /// The index of the first entry in `entries` that is not already in the log with the same
    /// term, or `None` when all of them are.
    fn find_conflict(&self, entries: &[Entry]) -> Result<Option<Index>> {
        for entry in entries {
            if !self.matches(entry.index, entry.term)? {
                return Ok(Some(entry.index));
            }
        }
        Ok(None)
    }

    /// The largest index at or below `index` whose term is at most `term`, with that term.
    /// Used by the fast log back-off: every entry after it must be replaced or re-checked.
    pub fn find_conflict_by_term(&self, index: Index, term: Term) -> Result<(Index, Term)> {
        let mut index = index.min(self.last_index());
        let floor = self.first_index().saturating_sub(1);
        loop {
            match self.term(index) {
                Ok(t) if t > term && index > floor => index -= 1,
                Ok(t) => return Ok((index, t)),
                Err(StorageError::Compacted(_)) => return Ok((index, 0)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Follower side of AppendEntries: if the log matches at (`prev_index`, `prev_term`),
    /// stores `entries` (dropping a conflicting suffix, never a committed entry), advances the
    /// commit index to `min(leader_commit, last new index)` and returns the last new index.
    pub fn maybe_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        leader_commit: Index,
        entries: &[Entry],
    ) -> Result<Option<Index>> {
        if !self.matches(prev_index, prev_term)? {
            return Ok(None);
        }
        let last_new = prev_index + entries.len() as u64;
        if let Some(conflict) = self.find_conflict(entries)? {
            if conflict <= self.committed {
                // Never overwrite a committed entry; refuse without changing anything. The
                // caller names the leader.
                return Err(Error::CommittedEntryConflict {
                    leader: 0,
                    term: 0,
                    index: conflict,
                    held_term: self.term(conflict)?,
                    new_term: entries[(conflict - prev_index - 1) as usize].term,
                    committed: self.committed,
                });
            }
            self.append(&entries[(conflict - prev_index - 1) as usize..])?;
        }
        self.commit_to(leader_commit.min(last_new));
        Ok(Some(last_new))
    }

    /// Appends `entries` to the unstable tail, replacing whatever they overwrite. A
    /// membership entry among them takes effect now; one among those replaced no longer holds.
    /// Refused, changing nothing, if a membership entry is malformed.
    pub fn append(&mut self, entries: &[Entry]) -> Result<Index> {
        let confs = ConfHistory::decode(entries)?;
        if let Some(first) = entries.first() {
            assert!(
                first.index > self.committed,
                "cannot overwrite committed entry {}",
                first.index
            );
            if first.index <= self.last_index() {
                let from = self
                    .replaced_from
                    .map_or(first.index, |f| f.min(first.index));
                self.replaced_from = Some(from);
            }
            self.persisted = self.persisted.min(first.index - 1);
            self.unstable.truncate_and_append(entries);
            self.confs.replace_from(first.index, confs);
        }
        Ok(self.last_index())
    }

    /// Follower: the leader's snapshot replaces the whole log (the caller checked that it is
    /// newer than the commit index and does not match the log). Nothing is applied or
    /// persisted beyond what the machine holds until the driver installs it.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        // Every entry after the commit index is replaced (the snapshot holds the committed
        // prefix, the same in every leader's log).
        self.replaced_from = Some(self.committed + 1);
        // What stays persisted is the committed prefix (the snapshot covers it); not less,
        // since a Ready handed out before may still be applying entries up to there.
        self.persisted = self.persisted.min(self.committed);
        self.committed = index;
        let base = Membership {
            conf: snapshot.meta.conf_state.clone(),
            context: snapshot.meta.conf_context.clone(),
        };
        self.confs = ConfHistory::new(index, base);
        self.unstable.restore(snapshot);
    }

    /// The driver installed the snapshot at `index` in storage and in the state machine.
    pub fn snapshot_installed(&mut self, index: Index) {
        self.unstable.stable_snapshot_to(index);
        self.persisted = self.persisted.max(index);
        self.applied = self.applied.max(index);
    }

    /// Raises the commit index (never lowers it).
    pub fn commit_to(&mut self, index: Index) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit index {index} is beyond the last index {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Entries from `low` to the end, at most `max_bytes` of them (at least one).
    pub fn entries_from(&self, low: Index, max_bytes: u64) -> Result<Vec<Entry>> {
        let high = self.last_index() + 1;
        if low >= high {
            return Ok(Vec::new());
        }
        self.slice(low, high, Some(max_bytes))
    }

    /// Entries in `[low, high)`, reading storage for the stable part; at most `max_bytes`
    /// of them, but at least one.
    pub fn slice(&self, low: Index, high: Index, max_bytes: Option<u64>) -> Result<Vec<Entry>> {
        if low >= high {
            return Ok(Vec::new());
        }
        if low < self.first_index() {
            return Err(StorageError::Compacted(low).into());
        }
        let offset = self.unstable.offset;
        let mut out = Vec::new();
        if low < offset {
            let stable_high = high.min(offset);
            out = self.storage.entries(low, stable_high, max_bytes)?;
            if (out.len() as u64) < stable_high - low {
                return Ok(out); // the byte limit was reached within storage
            }
        }
        if high > offset {
            let mut total: u64 = out.iter().map(Entry::byte_size).sum();
            for entry in self.unstable.slice(low.max(offset), high) {
                total += entry.byte_size();
                if !out.is_empty() && max_bytes.is_some_and(|max| total > max) {
                    break;
                }
                out.push(entry.clone());
            }
        }
        Ok(out)
    }

    /// Entries not yet persisted.
    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    /// Committed, persisted entries the state machine has not seen, at most `max_bytes`.
    pub fn next_committed_entries(&self, max_bytes: u64) -> Result<Vec<Entry>> {
        if !self.has_next_committed_entries() {
            return Ok(Vec::new());
        }
        let high = self.committed.min(self.persisted) + 1;
        self.slice(self.applied + 1, high, Some(max_bytes))
    }

    /// Whether [`Self::next_committed_entries`] would return anything.
    pub fn has_next_committed_entries(&self) -> bool {
        // (Nothing after a snapshot can be applied before the snapshot is.)
        self.unstable.snapshot.is_none() && self.committed.min(self.persisted) > self.applied
    }

    /// The driver persisted entries up to (`index`, `term`).
    pub fn stable_to(&mut self, index: Index, term: Term) {
        if self.unstable.term(index) == Some(term) {
            self.unstable.stable_to(index, term);
            self.persisted = self.persisted.max(index);
        }
    }

    /// The state machine applied up to `index`.
    pub fn applied_to(&mut self, index: Index) {
        assert!(
            index <= self.committed && index <= self.persisted,
            "applied {index} beyond committed {} / persisted {}",
            self.committed,
            self.persisted
        );
        self.applied = self.applied.max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LogWriter, MemStorage};
    use crate::types::{ConfState, EntryKind};
    use bytes::Bytes;

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            sequence: index,
            kind: EntryKind::Command,
            data: Bytes::from(vec![0u8; 8]),
        }
    }

    fn log_with(stable: &[(Index, Term)], unstable: &[(Index, Term)]) -> RaftLog<MemStorage> {
        let mut storage = MemStorage::new(ConfState::with_voters([1]));
        let stable: Vec<Entry> = stable.iter().map(|&(i, t)| entry(i, t)).collect();
        storage.persist(None, &stable, true).unwrap();
        let mut log = RaftLog::new(storage, 0, 0).unwrap();
        let unstable: Vec<Entry> = unstable.iter().map(|&(i, t)| entry(i, t)).collect();
        log.append(&unstable).unwrap();
        log
    }

    #[test]
    fn slice_spans_stable_and_unstable_parts() {
        let log = log_with(&[(1, 1), (2, 1)], &[(3, 2), (4, 2)]);
        let got: Vec<Index> = log
            .slice(1, 5, None)
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        // 40 bytes per entry: a 100-byte budget fits two.
        let got = log.slice(1, 5, Some(100)).unwrap();
        assert_eq!(got.len(), 2);
        let got = log.slice(2, 5, Some(100)).unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3]);
        // At least one entry even when it alone exceeds the budget.
        assert_eq!(log.slice(3, 5, Some(1)).unwrap().len(), 1);
    }

    #[test]
    fn maybe_append_truncates_conflicts_and_bounds_commit() {
        let mut log = log_with(&[(1, 1), (2, 1), (3, 1)], &[]);
        // Mismatch at prev: rejected, nothing changes.
        assert_eq!(log.maybe_append(3, 2, 3, &[entry(4, 2)]).unwrap(), None);
        assert_eq!(log.last_index(), 3);
        // Conflict at 3: replaced; commit bounded by the last new entry.
        assert_eq!(
            log.maybe_append(2, 1, 10, &[entry(3, 2), entry(4, 2)])
                .unwrap(),
            Some(4)
        );
        assert_eq!(log.term(3).unwrap(), 2);
        assert_eq!(log.committed, 4);
        assert_eq!(
            log.persisted, 2,
            "the replaced entry is no longer persisted"
        );
        // A stale, already-matching append changes nothing.
        assert_eq!(log.maybe_append(1, 1, 0, &[entry(2, 1)]).unwrap(), Some(2));
        assert_eq!(log.last_index(), 4);
    }

    #[test]
    fn overwriting_a_committed_entry_is_refused_and_changes_nothing() {
        let mut log = log_with(&[(1, 1), (2, 1)], &[]);
        log.commit_to(2);
        let refused = log.maybe_append(1, 1, 2, &[entry(2, 2), entry(3, 2)]);
        assert!(
            matches!(
                refused,
                Err(Error::CommittedEntryConflict {
                    index: 2,
                    held_term: 1,
                    new_term: 2,
                    committed: 2,
                    ..
                })
            ),
            "{refused:?}"
        );
        assert_eq!((log.last_index(), log.term(2).unwrap()), (2, 1));
    }

    #[test]
    fn find_conflict_by_term_skips_a_whole_term() {
        // Indexes 1..=6 with terms 1,1,2,2,2,4.
        let log = log_with(&[(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)], &[(6, 4)]);
        assert_eq!(log.find_conflict_by_term(6, 3).unwrap(), (5, 2));
        assert_eq!(log.find_conflict_by_term(6, 1).unwrap(), (2, 1));
        assert_eq!(log.find_conflict_by_term(9, 4).unwrap(), (6, 4));
        assert_eq!(log.find_conflict_by_term(6, 0).unwrap(), (0, 0));
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let log = log_with(&[(1, 1), (2, 2)], &[]);
        assert!(log.is_up_to_date(1, 3).unwrap());
        assert!(log.is_up_to_date(2, 2).unwrap());
        assert!(!log.is_up_to_date(1, 2).unwrap());
        assert!(!log.is_up_to_date(9, 1).unwrap());
    }

    #[test]
    fn only_persisted_committed_entries_are_applied() {
        let mut log = log_with(&[(1, 1)], &[(2, 1)]);
        log.commit_to(2);
        let next: Vec<Index> = log
            .next_committed_entries(u64::MAX)
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(next, vec![1]);
        log.storage.persist(None, &[entry(2, 1)], true).unwrap();
        log.stable_to(2, 1);
        assert_eq!(log.next_committed_entries(u64::MAX).unwrap().len(), 2);
    }
}

//! Entries appended in memory that the driver has not yet persisted, and a snapshot received
//! from the leader that the driver has not yet installed.

use crate::types::{Entry, Index, Snapshot, Term};

/// The tail of the log that exists only in memory. `entries[i]` has index `offset + i`.
///
/// Entries leave this buffer when the driver confirms (via `advance`) that it wrote them to
/// stable storage. Until then the core reads them from here, shadowing whatever storage holds
/// at the same indices (which a new leader may be overwriting).
#[derive(Clone, Debug)]
pub struct Unstable {
    /// Index of `entries[0]`; one past the last index storage is known to hold correctly.
    pub offset: Index,
    /// The entries themselves.
    pub entries: Vec<Entry>,
    /// A snapshot to install, which replaces the whole stable log; `entries` then follow it
    /// (`offset` is one past its index).
    pub snapshot: Option<Snapshot>,
}

impl Unstable {
    /// An empty buffer starting at `offset`.
    pub fn new(offset: Index) -> Self {
        Unstable {
            offset,
            entries: Vec::new(),
            snapshot: None,
        }
    }

    /// The first index of the log when a snapshot is waiting to be installed.
    pub fn first_index(&self) -> Option<Index> {
        self.snapshot.as_ref().map(|s| s.meta.index + 1)
    }

    /// The last index held here, if any.
    pub fn last_index(&self) -> Option<Index> {
        self.entries
            .last()
            .map(|e| e.index)
            .or_else(|| self.snapshot.as_ref().map(|s| s.meta.index))
    }

    /// The term at `index` if it is held here.
    pub fn term(&self, index: Index) -> Option<Term> {
        if let Some(snapshot) = &self.snapshot {
            if index == snapshot.meta.index {
                return Some(snapshot.meta.term);
            }
        }
        if index < self.offset {
            return None;
        }
        self.entries
            .get((index - self.offset) as usize)
            .map(|e| e.term)
    }

    /// Appends `entries`, first dropping whatever they replace. `entries[0].index` must be at
    /// most one past the last index of the whole log; when it precedes `offset`, the buffer
    /// restarts there (the driver's next write then replaces the stored suffix).
    pub fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let after = first.index;
        if after == self.offset + self.entries.len() as u64 {
            // Plain append.
        } else if after <= self.offset {
            self.offset = after;
            self.entries.clear();
        } else {
            self.entries.truncate((after - self.offset) as usize);
        }
        self.entries.extend_from_slice(entries);
    }

    /// Replaces everything with `snapshot`: the log now starts after it.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.meta.index + 1;
        self.entries.clear();
        self.snapshot = Some(snapshot);
    }

    /// The driver installed the snapshot at `index`: forget it (unless a newer one replaced
    /// it since).
    pub fn stable_snapshot_to(&mut self, index: Index) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.index == index)
        {
            self.snapshot = None;
        }
    }

    /// Entries in `[low, high)`, which must lie within this buffer.
    pub fn slice(&self, low: Index, high: Index) -> &[Entry] {
        &self.entries[(low - self.offset) as usize..(high - self.offset) as usize]
    }

    /// The driver persisted everything up to `index` (whose term was `term`): drop it, unless
    /// the buffer changed since (then the entry at `index` has another term and the newer
    /// entries still need persisting).
    pub fn stable_to(&mut self, index: Index, term: Term) {
        if self.term(index) != Some(term) {
            return;
        }
        let drop = (index + 1 - self.offset) as usize;
        self.entries.drain(..drop);
        self.offset = index + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;
    use bytes::Bytes;

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            sequence: index,
            kind: EntryKind::Command,
            data: Bytes::new(),
        }
    }

    fn indexes_and_terms(u: &Unstable) -> Vec<(Index, Term)> {
        u.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn append_truncates_conflicting_suffix() {
        let mut u = Unstable::new(5);
        u.truncate_and_append(&[entry(5, 1), entry(6, 1), entry(7, 1)]);
        u.truncate_and_append(&[entry(6, 2)]);
        assert_eq!(indexes_and_terms(&u), vec![(5, 1), (6, 2)]);
        // Replacing before the offset restarts the buffer there.
        u.truncate_and_append(&[entry(3, 3)]);
        assert_eq!(u.offset, 3);
        assert_eq!(indexes_and_terms(&u), vec![(3, 3)]);
    }

    #[test]
    fn stable_to_ignores_a_replaced_entry() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(&[entry(1, 1), entry(2, 1)]);
        u.stable_to(2, 2); // the persisted entry had another term: keep everything
        assert_eq!(u.entries.len(), 2);
        u.stable_to(1, 1);
        assert_eq!(u.offset, 2);
        assert_eq!(indexes_and_terms(&u), vec![(2, 1)]);
    }
}

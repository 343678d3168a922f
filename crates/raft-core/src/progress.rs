//! What a leader knows about one follower's log, and the flow control of appends to it.

use std::collections::VecDeque;

use crate::types::Index;

/// How the leader is currently sending to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's match index is unknown: send one append at a time and wait for the
    /// answer (or the next heartbeat) before sending another.
    Probe,
    /// The follower's log is known to match: stream appends optimistically, up to the
    /// in-flight limit.
    Replicate,
    /// The follower needs entries this leader compacted: a snapshot was sent, and nothing
    /// else is until the follower acknowledges it (or the leader gives up waiting and probes
    /// again).
    Snapshot,
}

/// Appends sent to a follower and not yet acknowledged, oldest first.
#[derive(Clone, Debug)]
pub struct Inflights {
    /// Last index of each message in flight.
    last_indexes: VecDeque<Index>,
    capacity: usize,
}

impl Inflights {
    /// Room for `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Inflights {
            last_indexes: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    /// Whether no further message may be sent.
    pub fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }

    /// Messages in flight.
    pub fn count(&self) -> usize {
        self.last_indexes.len()
    }

    /// Records a message whose last entry is `last_index`.
    pub fn add(&mut self, last_index: Index) {
        self.last_indexes.push_back(last_index);
    }

    /// Forgets every message whose entries are all at or below `index`.
    pub fn free_to(&mut self, index: Index) {
        while self.last_indexes.front().is_some_and(|&last| last <= index) {
            self.last_indexes.pop_front();
        }
    }

    /// Forgets the oldest message: it was probably lost (used when the window is full and the
    /// follower answers heartbeats but not appends).
    pub fn free_first_one(&mut self) {
        self.last_indexes.pop_front();
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.last_indexes.clear();
    }
}

/// The leader's view of one peer.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated on the peer.
    pub match_index: Index,
    /// Index of the next entry to send.
    pub next_index: Index,
    /// Probe or replicate.
    pub state: ProgressState,
    /// In probe state: an append was sent and is unanswered, so sending pauses.
    pub probe_sent: bool,
    /// Appends in flight (replicate state).
    pub inflights: Inflights,
    /// Ticks since the peer last answered anything in the current term. Drives
    /// check-quorum and is reported to operators.
    pub ticks_since_ack: u32,
    /// The highest confirmation round the peer acknowledged in the current term.
    pub acked_round: u64,
    /// The highest commit index this peer can have learned from what was sent to it: lets the
    /// leader send an empty append exactly when the peer's commit index is behind.
    pub sent_commit: Index,
    /// A learner receives the log but does not vote.
    pub is_learner: bool,
    /// In snapshot state: the index of the snapshot sent.
    pub pending_snapshot: Index,
    /// In snapshot state: the leader's tick when it sent the snapshot.
    pub snapshot_sent_tick: u64,
}

impl Progress {
    /// A fresh view, probing from `next_index`.
    pub fn new(next_index: Index, max_inflight: usize, is_learner: bool) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight),
            ticks_since_ack: 0,
            acked_round: 0,
            sent_commit: 0,
            is_learner,
            pending_snapshot: 0,
            snapshot_sent_tick: 0,
        }
    }

    /// Whether the leader must hold back appends to this peer.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot => true,
        }
    }

    /// A snapshot at `index` was sent at `tick`: wait for its answer.
    pub fn become_snapshot(&mut self, index: Index, tick: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = index;
        self.snapshot_sent_tick = tick;
    }

    /// Switches to probing from the entry after the match index.
    pub fn become_probe(&mut self) {
        self.reset_state(ProgressState::Probe);
    }

    /// Switches to optimistic streaming from the entry after the match index.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.state = state;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.inflights.reset();
        // Messages beyond the match index may never arrive.
        self.sent_commit = self.sent_commit.min(self.match_index);
    }

    /// Whether sending `commit` could raise the peer's commit index: it is more than was sent,
    /// and what was sent does not already cover everything sent to the peer.
    pub fn can_bump_commit(&self, commit: Index) -> bool {
        commit > self.sent_commit && self.sent_commit < self.next_index.saturating_sub(1)
    }

    /// Records that a message let the peer commit up to `commit`.
    pub fn sent_commit_to(&mut self, commit: Index) {
        self.sent_commit = self.sent_commit.max(commit);
    }

    /// Records that an append ending at `last_index` (`None` for an empty probe) was sent.
    pub fn sent_append(&mut self, last_index: Option<Index>) {
        match self.state {
            ProgressState::Replicate => {
                if let Some(last) = last_index {
                    self.next_index = last + 1;
                    self.inflights.add(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// The peer stores the log up to `index`. Returns whether that is news.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        updated
    }

    /// The peer does not hold what it acknowledged (a learner that lost its disk): probe
    /// again after `last`, its last index now, as if it had never answered.
    pub fn forget_match(&mut self, last: Index) {
        self.match_index = 0;
        self.become_probe();
        self.next_index = last + 1;
    }

    /// The peer rejected an append at `rejected`; `hint` is where to probe next. Returns
    /// false when the rejection is stale (answers an append sent before a newer decision).
    pub fn maybe_decrease_to(&mut self, rejected: Index, hint: Index) -> bool {
        match self.state {
            ProgressState::Replicate => {
                // Only a rejection at or above the match index is news; below it, the
                // rejection answers an older append (reordered or duplicated).
                if rejected <= self.match_index {
                    return false;
                }
                self.next_index = self.match_index + 1;
                true
            }
            // The follower answers a snapshot by accepting it; a rejection answers an append
            // sent before.
            ProgressState::Snapshot => false,
            ProgressState::Probe => {
                // In probe state only the answer to the last probe counts.
                if self.next_index == 0 || rejected != self.next_index - 1 {
                    return false;
                }
                self.next_index = (hint + 1).min(rejected).max(self.match_index + 1);
                self.probe_sent = false;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_bound_and_free_in_order() {
        let mut inflights = Inflights::new(3);
        for last in [5, 10, 15] {
            assert!(!inflights.is_full());
            inflights.add(last);
        }
        assert!(inflights.is_full());
        inflights.free_to(9);
        assert_eq!(inflights.count(), 2);
        inflights.free_to(15);
        assert_eq!(inflights.count(), 0);
        inflights.add(20);
        inflights.add(25);
        inflights.free_first_one();
        assert_eq!(inflights.count(), 1);
    }

    #[test]
    fn probe_pauses_until_answered() {
        let mut pr = Progress::new(11, 4, false);
        assert!(!pr.is_paused());
        pr.sent_append(Some(12));
        assert!(pr.is_paused());
        assert_eq!(
            pr.next_index, 11,
            "probing does not move next optimistically"
        );
        // A stale rejection (not for the last probe) changes nothing.
        assert!(!pr.maybe_decrease_to(5, 3));
        assert!(pr.maybe_decrease_to(10, 7));
        assert_eq!(pr.next_index, 8);
        assert!(!pr.is_paused());
    }

    #[test]
    fn replicate_streams_until_the_window_is_full() {
        let mut pr = Progress::new(1, 2, false);
        pr.maybe_update(4);
        pr.become_replicate();
        pr.sent_append(Some(6));
        pr.sent_append(Some(8));
        assert_eq!(pr.next_index, 9);
        assert!(pr.is_paused());
        assert!(pr.maybe_update(6));
        pr.inflights.free_to(6);
        assert!(!pr.is_paused());
        // A rejection below the match index is stale.
        assert!(!pr.maybe_decrease_to(5, 5));
        assert!(pr.maybe_decrease_to(8, 7));
        assert_eq!(pr.next_index, 7);
    }
}

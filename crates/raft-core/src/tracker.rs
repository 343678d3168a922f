//! The membership, the leader's per-peer progress and a candidate's vote tally.

use std::collections::BTreeMap;

use crate::progress::Progress;
use crate::quorum::{self, VoteResult};
use crate::types::{ConfState, Index, NodeId};

/// Tracks every member: progress (as leader) and votes (as candidate).
#[derive(Clone, Debug)]
pub struct ProgressTracker {
    /// The current membership.
    pub conf: ConfState,
    /// Progress of every member, this node included (its match index is its persisted index).
    pub progress: BTreeMap<NodeId, Progress>,
    /// Votes received in the current (pre-)election; `BTreeMap` so that iteration order never
    /// depends on hashing.
    pub votes: BTreeMap<NodeId, bool>,
    max_inflight: usize,
}

impl ProgressTracker {
    /// Tracks `conf`, allowing `max_inflight` appends in flight per peer.
    pub fn new(conf: ConfState, max_inflight: usize) -> Self {
        let mut tracker = ProgressTracker {
            conf,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            max_inflight,
        };
        tracker.reset_progress(1);
        tracker
    }

    /// Forgets all progress: every member probes from `next_index`.
    pub fn reset_progress(&mut self, next_index: Index) {
        self.progress = self
            .conf
            .members()
            .into_iter()
            .map(|id| {
                let learner = !self.conf.is_voter(id);
                (id, Progress::new(next_index, self.max_inflight, learner))
            })
            .collect();
    }

    /// Puts `conf` in force: members that joined get a progress that probes from
    /// `next_index`, members that left lose theirs, the others keep theirs (with their role
    /// updated).
    pub fn set_conf(&mut self, conf: ConfState, next_index: Index) {
        let members = conf.members();
        self.progress.retain(|id, _| members.contains(id));
        for id in members {
            let learner = !conf.is_voter(id);
            self.progress
                .entry(id)
                .and_modify(|p| p.is_learner = learner)
                .or_insert_with(|| Progress::new(next_index, self.max_inflight, learner));
        }
        self.conf = conf;
    }

    /// Forgets the votes of the previous election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s vote (only its first vote in an election counts).
    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    /// Counts the votes so far.
    pub fn tally(&self) -> VoteResult {
        quorum::vote_result(&self.conf, &self.votes)
    }

    /// The highest index stored on a quorum.
    pub fn quorum_match_index(&self) -> Index {
        quorum::committed_value(&self.conf, |id| {
            self.progress.get(&id).map_or(0, |p| p.match_index)
        })
    }

    /// The highest confirmation round a quorum has acknowledged.
    pub fn quorum_acked_round(&self) -> u64 {
        quorum::committed_value(&self.conf, |id| {
            self.progress.get(&id).map_or(0, |p| p.acked_round)
        })
    }

    /// Whether a quorum answered within the last `window` ticks.
    pub fn quorum_recently_active(&self, window: u32) -> bool {
        quorum::is_quorum(&self.conf, |id| {
            self.progress
                .get(&id)
                .is_some_and(|p| p.ticks_since_ack < window)
        })
    }

    /// The voters (not learners), this node included.
    pub fn voter_ids(&self) -> Vec<NodeId> {
        self.progress
            .iter()
            .filter(|(_, p)| !p.is_learner)
            .map(|(&id, _)| id)
            .collect()
    }
}

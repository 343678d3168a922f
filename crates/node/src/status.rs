//! The node's externally visible state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use quorate_raft_core::{NodeId, Status};

/// A snapshot of the node, published after every step of the driver.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The Raft core's status.
    pub raft: Status,
    /// The length of one core tick (to turn tick counts into time).
    pub tick: Duration,
    /// Every member's peer address (the member table in force: see `members.rs`).
    pub peers: BTreeMap<NodeId, String>,
    /// The ids removed from the cluster (never used again).
    pub removed: BTreeSet<NodeId>,
    /// The index of the membership entry in force (0: the initial membership).
    pub membership_index: u64,
    /// A peer refused this node's request because this node was removed from the cluster.
    pub removed_self: bool,
    /// The node is shutting down: it accepts no new requests.
    pub stopping: bool,
    /// Set when the node found its log in conflict with a committed entry it holds: it no
    /// longer takes part in the cluster, and says why.
    pub corrupt: Option<String>,
    /// Set while the corruption check finds replicas that disagree with no majority among
    /// them: writes are refused with this reason until they agree again.
    pub writes_held: Option<String>,
    /// The index of the last snapshot the log was compacted behind (0: never).
    pub snapshot_index: u64,
    /// When the Ready loop published this status: it does so at least every tick, so an old
    /// one means the loop is wedged (see `/livez`).
    pub published_at: Instant,
}

impl NodeStatus {
    /// Whether `other` gives this node the same standing: role, term, vote, leader, quorum
    /// contact (whether the node heard from a quorum, or its leader, within `silence_ticks`:
    /// what decides if it serves or refuses with NO_QUORUM), membership, and whether it
    /// stops, is corrupt or holds writes. Only the progress of the log (indexes, ticks, lease,
    /// reads waiting) differs between the two; those who wait on the status wait for a change
    /// of standing (a leader elected, writes refused, contact regained), and what only moves
    /// with time they poll for.
    pub(crate) fn same_standing(&self, other: &NodeStatus, silence_ticks: u32) -> bool {
        let (a, b) = (&self.raft, &other.raft);
        a.contact(silence_ticks).is_ok() == b.contact(silence_ticks).is_ok()
            && a.role == b.role
            && a.term == b.term
            && a.vote == b.vote
            && a.leader_id == b.leader_id
            && a.quorum_active == b.quorum_active
            && a.transfer_target == b.transfer_target
            && a.conf == b.conf
            && a.rejoining == b.rejoining
            && self.peers == other.peers
            && self.removed == other.removed
            && self.membership_index == other.membership_index
            && self.removed_self == other.removed_self
            && self.stopping == other.stopping
            && self.corrupt == other.corrupt
            && self.writes_held == other.writes_held
    }

    /// The leader's peer address, when a leader is known.
    pub fn leader_address(&self) -> Option<&str> {
        self.raft
            .leader_id
            .and_then(|id| self.peers.get(&id))
            .map(String::as_str)
    }

    /// How long the leader lease still holds (zero unless this node is a leader holding one).
    pub fn lease_remaining(&self) -> Duration {
        self.tick * self.raft.lease_remaining_ticks.min(u64::from(u32::MAX)) as u32
    }

    /// Whether this node takes no part in the cluster's decisions: the membership in force on
    /// it does not list it (removed, or not added yet), or a peer said it was removed.
    pub fn is_removed(&self) -> bool {
        let conf = &self.raft.conf;
        self.removed_self || (!conf.voters.is_empty() && !conf.members().contains(&self.raft.id))
    }

    /// Whether this node knows a leader of its term (see `NodeHandle::check_quorum_reachable`
    /// for whether it can reach one now).
    pub fn has_leader(&self) -> bool {
        self.raft.leader_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_raft_core::{ConfState, Role};

    fn follower_of(leader: NodeId, ticks_since_leader_contact: u32) -> NodeStatus {
        NodeStatus {
            raft: Status {
                id: 2,
                role: Role::Follower,
                term: 3,
                vote: Some(leader),
                leader_id: Some(leader),
                commit_index: 10,
                applied_index: 10,
                persisted_index: 10,
                first_log_index: 1,
                last_log_index: 10,
                last_log_term: 3,
                lease_remaining_ticks: 0,
                quorum_active: false,
                transfer_target: None,
                now_tick: 100,
                ticks_since_leader_contact,
                pending_reads: 0,
                conf: ConfState::default(),
                progress: BTreeMap::new(),
                rejoining: None,
                events: Default::default(),
            },
            tick: Duration::from_millis(100),
            peers: BTreeMap::new(),
            removed: BTreeSet::new(),
            membership_index: 0,
            removed_self: false,
            stopping: false,
            corrupt: None,
            writes_held: None,
            snapshot_index: 0,
            published_at: Instant::now(),
        }
    }

    #[test]
    fn regaining_or_losing_leader_contact_is_a_change_of_standing() {
        // (Found by the partition test: a follower back from a partition applied the
        // leader's entries, but its health stayed NOT_SERVING until the health reporter's
        // next tick, because nothing in its standing had changed.)
        let silence = 5;
        let cut_off = follower_of(1, silence + 1);
        let back = follower_of(1, 0);
        assert!(!cut_off.same_standing(&back, silence));
        assert!(!back.same_standing(&cut_off, silence));
        // Progress of the log and of time within the silence limit is not.
        let mut later = follower_of(1, silence);
        later.raft.commit_index = 11;
        later.raft.applied_index = 11;
        assert!(back.same_standing(&later, silence));
    }
}

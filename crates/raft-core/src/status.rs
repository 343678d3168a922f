//! A snapshot of a node's state for operators, metrics and tests.

use std::collections::BTreeMap;

use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{ConfState, Index, NodeId, Role, Term};

/// What the leader knows about one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// Highest index known to be replicated there.
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    /// Probe or replicate.
    pub state: ProgressState,
    /// Appends in flight.
    pub in_flight: usize,
    /// Ticks since the peer last answered in this term.
    pub ticks_since_ack: u32,
    /// Whether the peer is a learner.
    pub is_learner: bool,
}

/// A node's state at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// Its vote in this term.
    pub vote: Option<NodeId>,
    /// The leader it knows for this term.
    pub leader_id: Option<NodeId>,
    /// Highest committed index it knows.
    pub commit_index: Index,
    /// Highest index handed to its state machine.
    pub applied_index: Index,
    /// Highest index on its stable storage.
    pub persisted_index: Index,
    /// The first index still in its log: entries before it were compacted into a snapshot
    /// (1 when the log was never compacted).
    pub first_log_index: Index,
    /// Its last log index.
    pub last_log_index: Index,
    /// The term of its last entry.
    pub last_log_term: Term,
    /// Ticks of leader lease left (0 unless it is a leader holding a lease).
    pub lease_remaining_ticks: u64,
    /// Leader: whether a quorum answered within the minimum election timeout.
    pub quorum_active: bool,
    /// Leader: the target of a leadership transfer in progress.
    pub transfer_target: Option<NodeId>,
    /// Ticks since the node started.
    pub now_tick: u64,
    /// Ticks since it last heard from a leader (saturates).
    pub ticks_since_leader_contact: u32,
    /// Reads waiting for confirmation (leader).
    pub pending_reads: usize,
    /// The membership.
    pub conf: ConfState,
    /// Leader: its view of every member, itself included.
    pub progress: BTreeMap<NodeId, PeerProgress>,
    /// `Some(term)` while the node rejoins after a lost disk (it neither votes nor campaigns;
    /// see [`crate::HardState::rejoining`]).
    pub rejoining: Option<Term>,
    /// What happened on this node since it started (for metrics).
    pub events: EventCounts,
}

/// Counts of what a node did and saw since it started: the raw material of the election and
/// leadership metrics. Counted where the rule is decided, so the simulator counts the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Pre-votes this node started (it asked whether it could win, without a new term).
    pub pre_elections_started: u64,
    /// Elections this node started (a new term, asking for votes).
    pub elections_started: u64,
    /// Elections this node won.
    pub elections_won: u64,
    /// Times the leader this node knows changed to another node (or to a first one).
    pub leader_changes_seen: u64,
    /// Times this node, leading, stepped down because a majority stopped answering.
    pub check_quorum_step_downs: u64,
    /// Pre-vote requests this node refused.
    pub pre_votes_refused: u64,
    /// Vote requests this node refused.
    pub votes_refused: u64,
}

/// Heartbeat intervals of silence after which a node refuses requests at once (see
/// [`Status::contact`]).
pub const CONTACT_SILENCE_HEARTBEATS: u32 = 3;

/// Why a node cannot commit or confirm anything now (see [`Status::contact`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoContact {
    /// It leads, but fewer than a majority of voters (itself included) answered recently, or
    /// check-quorum no longer holds.
    LeaderWithoutQuorum {
        /// Voters that answered within the limit, itself included.
        recent: usize,
        /// Voters.
        voters: usize,
    },
    /// It knows no leader.
    NoLeader,
    /// It follows a leader it has not heard from within the limit.
    LeaderSilent {
        /// The leader.
        leader: NodeId,
        /// Ticks since it last heard from it.
        silent_ticks: u32,
    },
}

impl Status {
    /// Whether this node can reach a leader with a quorum now: a leader whose majority
    /// answered within `silence_ticks`, or a follower that heard from its leader within
    /// them. A node that cannot refuses requests at once (`NO_QUORUM`) instead of accepting
    /// work that will hang, and fails work in flight when contact is lost. The server's node
    /// and the simulator both decide with this.
    pub fn contact(&self, silence_ticks: u32) -> Result<(), NoContact> {
        match (self.role, self.leader_id) {
            (Role::Leader, _) => {
                let voters = self.progress.values().filter(|p| !p.is_learner).count();
                let recent = self
                    .progress
                    .iter()
                    .filter(|(&id, p)| {
                        !p.is_learner && (id == self.id || p.ticks_since_ack <= silence_ticks)
                    })
                    .count();
                if self.quorum_active && recent > voters / 2 {
                    Ok(())
                } else {
                    Err(NoContact::LeaderWithoutQuorum { recent, voters })
                }
            }
            (_, None) => Err(NoContact::NoLeader),
            (_, Some(leader)) if self.ticks_since_leader_contact > silence_ticks => {
                Err(NoContact::LeaderSilent {
                    leader,
                    silent_ticks: self.ticks_since_leader_contact,
                })
            }
            (_, Some(_)) => Ok(()),
        }
    }
}

impl<S: Storage> Raft<S> {
    /// The node's state now.
    pub fn status(&self) -> Status {
        let is_leader = self.role == Role::Leader;
        let progress = if is_leader {
            self.tracker
                .progress
                .iter()
                .map(|(&id, p)| {
                    let view = PeerProgress {
                        match_index: p.match_index,
                        next_index: p.next_index,
                        state: p.state,
                        in_flight: p.inflights.count(),
                        ticks_since_ack: p.ticks_since_ack,
                        is_learner: p.is_learner,
                    };
                    (id, view)
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader_id: self.leader_id,
            commit_index: self.log.committed,
            applied_index: self.log.applied,
            persisted_index: self.log.persisted,
            first_log_index: self.log.first_index(),
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term().unwrap_or(0),
            lease_remaining_ticks: if self.lease_valid() {
                self.lease.remaining_ticks(self.now_tick)
            } else {
                0
            },
            quorum_active: is_leader && self.quorum_active(),
            events: self.events,
            transfer_target: self.transfer.map(|t| t.target),
            now_tick: self.now_tick,
            ticks_since_leader_contact: self.ticks_since_leader_contact,
            pending_reads: self.reads.len(),
            conf: self.tracker.conf.clone(),
            progress,
            rejoining: self.rejoining,
        }
    }
}

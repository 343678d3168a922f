//! The crate's error type.

use crate::types::{Index, NodeId, Term};

/// Everything that can go wrong when driving a node.
///
/// A call that returns an error leaves the node's state unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The request must go to the leader; `leader_hint` is the leader this node knows, if any.
    #[error("not the leader (leader: {leader_hint:?})")]
    NotLeader {
        /// The leader of the current term, when known.
        leader_hint: Option<crate::types::NodeId>,
    },
    /// The leader has not heard from a quorum within the minimum election timeout, so it
    /// cannot know that it is still leader and refuses to accept writes. A node that stepped
    /// down for that reason keeps answering this until it hears from a leader again.
    #[error("no quorum: the leader has not heard from a majority within the election timeout")]
    NoQuorum,
    /// Leadership is being handed to `target`; proposals are refused until that finishes.
    #[error("leadership transfer to node {target} in progress")]
    TransferInProgress {
        /// The node leadership is being transferred to.
        target: NodeId,
    },
    /// A leadership transfer named a node that cannot take over.
    #[error("cannot transfer leadership to node {target}: {reason}")]
    InvalidTransferTarget {
        /// The requested target.
        target: NodeId,
        /// Why it cannot lead.
        reason: &'static str,
    },
    /// A proposal larger than `Config::max_proposal_bytes`.
    #[error("proposal of {size} bytes exceeds the limit of {max} bytes")]
    ProposalTooLarge {
        /// The proposal's size.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message that is not addressed to this node or comes from a non-member.
    #[error("message rejected: {0}")]
    InvalidMessage(String),
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// `ready()` was called while the previous `Ready` has not been advanced.
    #[error("the previous Ready has not been advanced")]
    ReadyNotAdvanced,
    /// A snapshot was asked for at an index the state machine has not applied.
    #[error("cannot snapshot at index {index}: the state machine applied only up to {applied}")]
    SnapshotBeyondApplied {
        /// The index asked for.
        index: Index,
        /// The applied index.
        applied: Index,
    },
    /// A membership change that cannot be made now; the reason says why.
    #[error("membership change refused: {reason}")]
    MembershipChangeRefused {
        /// Why, for the operator.
        reason: String,
    },
    /// A learner to promote is further behind the leader than the configured lag.
    #[error(
        "node {id} is not caught up: it holds the log up to index {match_index}, the leader's \
         ends at {last_index} (at most {max_lag} behind may be promoted); wait and retry"
    )]
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// How far its log is known to match the leader's.
        match_index: Index,
        /// The leader's last index.
        last_index: Index,
        /// The most entries behind a learner may be when promoted.
        max_lag: u64,
    },
    /// Storage failed; the node cannot continue safely.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A leader sent an entry that would replace one this node holds as committed: the
    /// cluster's logs have diverged (a member that lost its disk started as a new one, a
    /// damaged or hand-edited store, or a bug). Nothing was changed; the node must stop taking
    /// part rather than overwrite what it acknowledged.
    #[error(
        "CORRUPT: node {leader} (leader of term {term}) sent entry {index} of term {new_term}, \
         but this node holds entry {index} of term {held_term} as committed (commit index \
         {committed}): the members' logs have diverged"
    )]
    CommittedEntryConflict {
        /// The leader that sent it.
        leader: NodeId,
        /// Its term.
        term: Term,
        /// The index in conflict.
        index: Index,
        /// The term of the entry this node holds there.
        held_term: Term,
        /// The term of the entry the leader sent.
        new_term: Term,
        /// This node's commit index.
        committed: Index,
    },
}

/// Errors a [`crate::Storage`] implementation reports.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The requested index precedes the first index still in the log (it was compacted into
    /// a snapshot).
    #[error("index {0} is compacted")]
    Compacted(Index),
    /// The requested index is beyond the last entry.
    #[error("index {0} is not in the log yet")]
    Unavailable(Index),
    /// A write or read failed, or the stored data is damaged.
    #[error("{0}")]
    Io(String),
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The vocabulary of the protocol: identifiers, log entries, fencing tokens, persistent state.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;

/// Identifies a member of the cluster. Zero is never a valid id.
pub type NodeId = u64;
/// A Raft term: a logical clock that increases with every election.
pub type Term = u64;
/// A position in the replicated log; the first entry has index 1.
pub type Index = u64;

/// The fencing token of a log entry: `(term, sequence)`.
///
/// A leader numbers the entries it creates 1, 2, 3, ... within its term. Because a term has at
/// most one leader, tokens are unique, and because committed entries are applied in log order,
/// the token of every applied entry is strictly greater (lexicographically) than the one before
/// it. The state machine checks exactly that, so an entry from a deposed leader can never be
/// applied after one from its successor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position among the entries that leader created, starting at 1.
    pub sequence: u64,
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.term, self.sequence)
    }
}

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// The empty entry a new leader appends so it can commit an entry of its own term
    /// (Raft §5.4.2, §8); it has no effect on the state machine.
    Noop,
    /// An application command, opaque to Raft.
    Command,
    /// A new membership ([`crate::Membership`]): in force on every node from the moment it is
    /// appended to that node's log. The state machine treats it like [`EntryKind::Noop`].
    Membership,
}

/// One entry of the replicated log.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log.
    pub index: Index,
    /// Term of the leader that created the entry.
    pub term: Term,
    /// The entry's sequence number within `term`; with `term` it forms the fencing token.
    pub sequence: u64,
    /// What the entry carries.
    pub kind: EntryKind,
    /// The command, opaque to Raft; empty for [`EntryKind::Noop`].
    pub data: Bytes,
}

/// Bytes counted for an entry besides its data, so that flow control also bounds messages made
/// of many tiny entries.
pub const ENTRY_OVERHEAD_BYTES: u64 = 32;

impl Entry {
    /// The entry's fencing token.
    pub fn token(&self) -> FencingToken {
        FencingToken {
            term: self.term,
            sequence: self.sequence,
        }
    }

    /// The size counted against message and batch limits.
    pub fn byte_size(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}#{}:{:?}({}B)",
            self.index,
            self.term,
            self.sequence,
            self.kind,
            self.data.len()
        )
    }
}

/// The state that must be on stable storage before a node sends any message that depends on
/// it (Raft figure 2: `currentTerm`, `votedFor`; plus the commit index, which etcd also keeps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index known to be committed. Losing it in a crash is harmless (it is
    /// recovered from the leader), so a change of only this field does not require a sync.
    pub commit: Index,
    /// `Some(term)` while this node is *rejoining*: it started again from an empty disk (a lost
    /// or replaced data directory) and learnt from every peer that the cluster had reached
    /// `term` and no later one (see [`crate::bootstrap`]). Its votes and acknowledgements from
    /// before the loss are gone, so it neither votes nor campaigns until it durably holds a
    /// committed entry of a leader of a later term: that leader was elected without it and so
    /// holds every entry committed before (see `Raft::maybe_end_rejoin`).
    pub rejoining: Option<Term>,
}

/// The membership of the cluster.
///
/// `voters_outgoing` is non-empty only during a joint-consensus change (Raft §6): a decision
/// then needs a majority of both `voters` and `voters_outgoing`. It changes through
/// membership entries in the log (see [`crate::membership`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    /// Members that vote and count towards quorums.
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log but neither vote nor count towards quorums.
    pub learners: BTreeSet<NodeId>,
    /// The previous voter set while a joint-consensus change is in progress; empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
}

impl ConfState {
    /// A configuration of voters only.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        ConfState {
            voters: voters.into_iter().collect(),
            ..ConfState::default()
        }
    }

    /// Every member, voting or not, in ascending order.
    pub fn members(&self) -> BTreeSet<NodeId> {
        self.voters
            .iter()
            .chain(&self.voters_outgoing)
            .chain(&self.learners)
            .copied()
            .collect()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }
}

/// Where a snapshot cuts the log: the last index and term it covers, and the membership at that
/// point. Storage reports it for the empty log too (index 0, term 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The membership as of `index`.
    pub conf_state: ConfState,
    /// The context of the membership entry that set `conf_state` (the driver's record of the
    /// members: their addresses); empty if none.
    pub conf_context: Bytes,
}

/// A point-in-time image of the state machine as of `meta.index`, which replaces every entry
/// up to there.
///
/// `data` is opaque to the core: the driver decides what it holds (the whole machine image,
/// or a small descriptor of an image that its transport streams separately). The image must
/// be of the machine with exactly the entries `1..=meta.index` applied; the core makes sure
/// no snapshot claims more than the machine applied ([`crate::RawNode::snapshot_meta`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Where it cuts the log.
    pub meta: SnapshotMeta,
    /// The image.
    pub data: Bytes,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snapshot {}/{} ({}B)",
            self.meta.index,
            self.meta.term,
            self.data.len()
        )
    }
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes before disturbing the cluster with a real election (Raft thesis §9.6).
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Accepts proposals and replicates the log.
    Leader,
    /// Receives the log but never votes or campaigns.
    Learner,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        };
        f.write_str(name)
    }
}

/// The volatile state a driver cares about: who leads and what this node is, in which term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The term the role and leader belong to.
    pub term: Term,
    /// This node's role.
    pub role: Role,
    /// The leader this node knows for its current term.
    pub leader_id: Option<NodeId>,
}

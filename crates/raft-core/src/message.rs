//! Messages exchanged between nodes.
//!
//! Requests that a transport carries as request/response RPCs (votes, appends, heartbeats, read
//! index) hold a `request_id` that the receiver echoes in its response. The core never
//! interprets it: a transport may overwrite it on arrival with its own correlation number and
//! match the response that comes out of the next `Ready` to the RPC waiting for it. The core
//! answers every vote, append and heartbeat request with exactly one response; a read-index
//! request is answered once the leader has confirmed its leadership, or refused.

use crate::types::{Entry, Index, NodeId, Snapshot, Term};

/// A message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The sender's term, except for pre-vote requests (the term the sender would campaign in)
    /// and granted pre-vote responses (the term the vote was granted for).
    pub term: Term,
    /// What the message says.
    pub payload: Payload,
}

/// The body of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// RequestVote (Raft figure 2), also used for pre-votes.
    VoteRequest(VoteRequest),
    /// The answer to a [`VoteRequest`].
    VoteResponse(VoteResponse),
    /// AppendEntries with entries (Raft figure 2).
    AppendRequest(AppendRequest),
    /// The answer to an [`AppendRequest`].
    AppendResponse(AppendResponse),
    /// An AppendEntries that carries no entries and no consistency check: it asserts
    /// leadership, carries the commit index the follower can safely use, and starts a
    /// confirmation round for leases and read-index requests.
    HeartbeatRequest(HeartbeatRequest),
    /// The answer to a [`HeartbeatRequest`].
    HeartbeatResponse(HeartbeatResponse),
    /// Tells an up-to-date follower to campaign at once, ignoring leader stickiness: the last
    /// step of a leadership transfer (Raft thesis §3.10).
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of one of its clients.
    ReadIndexRequest(ReadIndexRequest),
    /// The leader's answer to a [`ReadIndexRequest`].
    ReadIndexResponse(ReadIndexResponse),
    /// InstallSnapshot (Raft §7): the leader's latest snapshot, for a follower that needs
    /// entries the leader compacted. Answered with an [`AppendResponse`].
    SnapshotRequest(SnapshotRequest),
}

impl Payload {
    /// A short name for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::VoteRequest(r) if r.pre_vote => "pre-vote",
            Payload::VoteRequest(_) => "vote",
            Payload::VoteResponse(r) if r.pre_vote => "pre-vote-resp",
            Payload::VoteResponse(_) => "vote-resp",
            Payload::AppendRequest(_) => "append",
            Payload::AppendResponse(_) => "append-resp",
            Payload::HeartbeatRequest(_) => "heartbeat",
            Payload::HeartbeatResponse(_) => "heartbeat-resp",
            Payload::TimeoutNow => "timeout-now",
            Payload::ReadIndexRequest(_) => "read-index",
            Payload::ReadIndexResponse(_) => "read-index-resp",
            Payload::SnapshotRequest(_) => "snapshot",
        }
    }

    /// The correlation id of a request, or the id a response answers.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Payload::VoteRequest(r) => Some(r.request_id),
            Payload::VoteResponse(r) => Some(r.request_id),
            Payload::AppendRequest(r) => Some(r.request_id),
            Payload::AppendResponse(r) => Some(r.request_id),
            Payload::HeartbeatRequest(r) => Some(r.request_id),
            Payload::HeartbeatResponse(r) => Some(r.request_id),
            Payload::ReadIndexRequest(r) => Some(r.request_id),
            Payload::ReadIndexResponse(r) => Some(r.request_id),
            Payload::SnapshotRequest(r) => Some(r.request_id),
            Payload::TimeoutNow => None,
        }
    }

    /// Replaces the correlation id of a request (a transport does this on arrival, so that it
    /// can match the core's response to the RPC waiting for it). No effect on `TimeoutNow`.
    pub fn set_request_id(&mut self, id: u64) {
        match self {
            Payload::VoteRequest(r) => r.request_id = id,
            Payload::VoteResponse(r) => r.request_id = id,
            Payload::AppendRequest(r) => r.request_id = id,
            Payload::AppendResponse(r) => r.request_id = id,
            Payload::HeartbeatRequest(r) => r.request_id = id,
            Payload::HeartbeatResponse(r) => r.request_id = id,
            Payload::ReadIndexRequest(r) => r.request_id = id,
            Payload::ReadIndexResponse(r) => r.request_id = id,
            Payload::SnapshotRequest(r) => r.request_id = id,
            Payload::TimeoutNow => {}
        }
    }

    /// Whether this payload answers a request (and so belongs to an RPC already in flight).
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Payload::VoteResponse(_)
                | Payload::AppendResponse(_)
                | Payload::HeartbeatResponse(_)
                | Payload::ReadIndexResponse(_)
        )
    }
}

/// RequestVote arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    /// A pre-vote: "would you vote for me?" without changing anybody's term.
    pub pre_vote: bool,
    /// Index of the candidate's last log entry.
    pub last_log_index: Index,
    /// Term of the candidate's last log entry.
    pub last_log_term: Term,
    /// Set when the campaign follows a leadership transfer; voters then ignore stickiness.
    pub leadership_transfer: bool,
    /// Correlation id, echoed in the response.
    pub request_id: u64,
}

/// Why a vote was refused; carried for operators reading traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteRejection {
    /// The candidate's term is older than the voter's.
    StaleTerm,
    /// The voter already voted for someone else in this term, or follows a leader.
    AlreadyVoted,
    /// The candidate's log is less up to date than the voter's (Raft §5.4.1).
    StaleLog,
    /// The voter heard from a live leader within the minimum election timeout.
    LeaderAlive,
    /// The voter is not a voting member. (Not sent any more: non-voters grant votes, since a
    /// learner may have been promoted by an entry it has not received yet. Kept so that the
    /// wire format stays stable.)
    NotVoter,
    /// The voter lost its disk and has not yet been brought up to date by a leader elected
    /// without it (see [`crate::HardState::rejoining`]).
    Rejoining,
}

/// RequestVote results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteResponse {
    /// Answers a pre-vote.
    pub pre_vote: bool,
    /// Whether the vote was granted.
    pub granted: bool,
    /// Why not, when not granted.
    pub rejection: Option<VoteRejection>,
    /// The request this answers.
    pub request_id: u64,
}

/// AppendEntries arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    /// Index of the entry immediately preceding `entries`.
    pub prev_log_index: Index,
    /// Term of that entry.
    pub prev_log_term: Term,
    /// Entries to store, in order (empty for a probe).
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub leader_commit: Index,
    /// The leader's confirmation round when it sent this (see [`HeartbeatRequest::round`]).
    pub round: u64,
    /// Correlation id, echoed in the response.
    pub request_id: u64,
}

/// How a follower answered an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The follower's log now matches the leader's up to `match_index`.
    Accepted {
        /// The last index known to match the leader's log.
        match_index: Index,
    },
    /// The consistency check failed at `rejected_index` (the request's `prev_log_index`).
    /// `hint_index`/`hint_term` name the follower's last entry that may still match, so the
    /// leader can skip a whole term of mismatching entries per round trip.
    Rejected {
        /// The `prev_log_index` that did not match.
        rejected_index: Index,
        /// The largest index at or below `rejected_index` whose term is at most the request's
        /// `prev_log_term`, capped by the follower's last index.
        hint_index: Index,
        /// The follower's term at `hint_index`.
        hint_term: Term,
    },
}

/// AppendEntries results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResponse {
    /// The round of the request this answers.
    pub round: u64,
    /// Accepted or rejected.
    pub outcome: AppendOutcome,
    /// The request this answers.
    pub request_id: u64,
}

/// Heartbeat arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// `min(leader commit, follower's match index)`: never more than the follower is known
    /// to store, so the follower can adopt it without a consistency check.
    pub commit: Index,
    /// The leader's confirmation round. A quorum of acknowledgements for round `r` proves the
    /// node was still leader when round `r` began; leases and read-index requests use it.
    pub round: u64,
    /// Correlation id, echoed in the response.
    pub request_id: u64,
}

/// Heartbeat results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The round of the heartbeat this answers.
    pub round: u64,
    /// The request this answers.
    pub request_id: u64,
}

/// How a read may be confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Confirm leadership with a quorum round before answering (ReadIndex, Raft thesis §6.4).
    Quorum,
    /// Answer at once while the leader lease holds; fall back to a quorum round otherwise.
    Lease,
}

/// A follower's read-index request, forwarded to the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexRequest {
    /// The follower's id for the read, returned unchanged.
    pub read_id: u64,
    /// How the leader may confirm the read.
    pub mode: ReadMode,
    /// Correlation id, echoed in the response.
    pub request_id: u64,
}

/// The leader's answer to a [`ReadIndexRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexResponse {
    /// The read this answers.
    pub read_id: u64,
    /// The index the follower must have applied before it serves the read, or `None` when
    /// the recipient could not confirm leadership (it was not, or stopped being, leader).
    pub index: Option<Index>,
    /// The request this answers.
    pub request_id: u64,
}

/// InstallSnapshot arguments: the leader's snapshot, whole (a transport may stream its data in
/// chunks and hand the core the reassembled message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The leader's confirmation round when it sent this (see [`HeartbeatRequest::round`]).
    pub round: u64,
    /// Correlation id, echoed in the response.
    pub request_id: u64,
}

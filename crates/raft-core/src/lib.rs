//! # quorate-raft-core
//!
//! A Raft implementation that does no I/O: no threads, no clock, no sockets, no randomness
//! except a seeded generator. It is a state machine: the driver feeds it inputs and carries out
//! its outputs. The same code runs in the `quorate` server and, thousands of times per second,
//! in the deterministic simulator (`quorate-sim`) that checks its safety.
//!
//! ## Inputs
//!
//! - [`RawNode::tick`]: time. The driver decides how long a tick is (the server uses a
//!   monotonic clock); every timeout is a number of ticks.
//! - [`RawNode::step`]: a [`Message`] from a peer.
//! - [`RawNode::propose`], [`RawNode::read_index`], [`RawNode::transfer_leadership`]: client
//!   requests.
//!
//! ## Outputs: the Ready loop
//!
//! After feeding inputs, the driver asks [`RawNode::has_ready`] and processes a [`Ready`]:
//!
//! 1. **persist** the hard state and entries through a [`LogWriter`], with an fsync when
//!    `must_sync`, after installing the leader's snapshot if the Ready carries one
//!    ([`LogWriter::apply_snapshot`]); a leader's appends (`early_messages`) may leave first;
//! 2. **send** the messages, only now: a vote or an acknowledgement must never leave before
//!    the state it promises is durable;
//! 3. **apply** the committed entries to the state machine (restored from the Ready's
//!    snapshot first, if any);
//! 4. **serve** the read states once the applied index reaches theirs;
//! 5. [`RawNode::advance`].
//!
//! See [`RawNode`] for a complete one-node example.
//!
//! ## Split-brain defences
//!
//! - Elections are won only by a counted majority of the voting configuration ([`quorum`]).
//! - Pre-vote (on by default) keeps a node that was cut off from raising its term and
//!   deposing a healthy leader when it returns.
//! - Check-quorum (on by default): a leader that has not heard from a quorum within the
//!   minimum election timeout refuses proposals ([`Error::NoQuorum`]) and steps down; a
//!   follower that heard from its leader within that window ignores vote requests.
//! - The leader lease is measured from the *send* time of a quorum-acknowledged round and is
//!   shorter than the minimum election timeout by the clock-drift bound (see `lease`).
//! - Every entry carries a [`FencingToken`] `(term, sequence)`, strictly increasing in log
//!   order; the state machine rejects any that goes backwards.
//!
//! ## Snapshots
//!
//! The driver compacts its log behind a snapshot of its state machine
//! ([`RawNode::snapshot_meta`] says where it may cut: never beyond what was applied, then
//! [`LogWriter::compact`]). A leader whose follower needs compacted entries sends its latest
//! snapshot instead ([`Payload::SnapshotRequest`]); the follower installs it only when it is
//! newer than its commit index and does not match its log (a matching snapshot only moves the
//! commit index, keeping the suffix), through [`Ready::snapshot`], persisted before anything
//! else in that Ready and restored to the machine before any later entry is applied.
//!
//! ## Membership changes
//!
//! [`RawNode::propose_membership`] adds learners, adds or promotes voters and removes members.
//! A configuration is in force on a node from the moment its entry is appended there; a change
//! of voters goes through a joint configuration (majorities of both halves), which the leader
//! leaves on its own once it is committed; one change at a time. See [`membership`].
#![deny(missing_docs)]

pub mod bootstrap;
mod config;
mod election;
mod error;
pub mod fnv;
mod lease;
pub mod membership;
mod message;
mod progress;
pub mod quorum;
mod raft;
mod raft_log;
mod raw_node;
mod read_only;
mod replication;
pub mod rng;
mod status;
mod storage;
mod tracker;
mod transfer;
mod types;
mod unstable;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(test)]
mod tests;

#[cfg(feature = "bug-injection")]
pub use config::InjectedBug;
pub use config::{Config, DEFAULT_REQUEST_TIMEOUT_MS};
pub use error::{Error, Result, StorageError};
pub use membership::{MemberChange, Membership};
pub use message::{
    AppendOutcome, AppendRequest, AppendResponse, HeartbeatRequest, HeartbeatResponse, Message,
    Payload, ReadIndexRequest, ReadIndexResponse, ReadMode, SnapshotRequest, VoteRejection,
    VoteRequest, VoteResponse,
};
pub use progress::ProgressState;
pub use raw_node::{may_precede_persist, Proposal, RawNode, Ready};
pub use read_only::ReadState;
pub use status::{EventCounts, NoContact, PeerProgress, Status, CONTACT_SILENCE_HEARTBEATS};
pub use storage::{
    check_append, check_snapshot, limit_size, LogWriter, MemStorage, RaftState, Storage,
};
pub use types::{
    ConfState, Entry, EntryKind, FencingToken, HardState, Index, NodeId, Role, Snapshot,
    SnapshotMeta, SoftState, Term, ENTRY_OVERHEAD_BYTES,
};

//! The driver-facing API: feed inputs in, take a [`Ready`] out, process it, `advance`.

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::membership::{MemberChange, Membership};
use crate::message::{Message, Payload, ReadMode};
use crate::raft::Raft;
use crate::read_only::ReadState;
use crate::status::Status;
use crate::storage::Storage;
use crate::types::{
    Entry, EntryKind, FencingToken, HardState, Index, Role, Snapshot, SnapshotMeta, SoftState, Term,
};

#[cfg(feature = "bug-injection")]
use crate::config::InjectedBug;

/// Everything the driver must do after feeding inputs, in this order:
///
/// 1. send `early_messages` (they may go at once, even while step 2 runs);
/// 2. install `snapshot` in storage ([`crate::LogWriter::apply_snapshot`]), then persist
///    `hard_state` and `entries` (fsync when `must_sync`);
/// 3. only then send `messages`: they may grant votes or acknowledge entries that must
///    survive a crash;
/// 4. restore the state machine from `snapshot`, then apply `committed_entries` to it, in
///    order;
/// 5. serve `read_states` once the applied index reaches theirs;
/// 6. call [`RawNode::advance`].
///
/// Early messages are a leader's appends and heartbeats (Raft thesis §10.2.1: the leader
/// writes its log in parallel with replicating it). They promise nothing about this node's
/// disk: the leader counts its own copy of an entry towards the commit only once `advance`
/// says it is persisted, and its term and vote were durable before it could lead (a Ready
/// that changes either has no early messages). Votes, acknowledgements and everything else
/// wait for the sync.
#[derive(Debug, Default)]
#[must_use = "a Ready must be processed and then advanced"]
pub struct Ready {
    /// The new role or leader, when either changed.
    pub soft_state: Option<SoftState>,
    /// The hard state to persist, when it changed.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader to install, before `entries` (which follow it) and before
    /// any committed entry is applied: it replaces the log and the state machine.
    pub snapshot: Option<Snapshot>,
    /// Entries to append to stable storage; they replace any stored entries at or after
    /// `entries[0].index`.
    pub entries: Vec<Entry>,
    /// Whether the write must be durable before `messages` are sent: true whenever the term,
    /// the vote or the log changed. (A change of the commit index alone can be lost safely.)
    pub must_sync: bool,
    /// Messages that may be sent before (or while) this Ready is persisted: see
    /// [`may_precede_persist`].
    pub early_messages: Vec<Message>,
    /// Messages to send after persisting.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in log order.
    pub committed_entries: Vec<Entry>,
    /// Answers to read-index requests.
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.early_messages.is_empty()
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }
}

/// Whether a message may leave before the Ready that carries it is persisted: only a leader's
/// appends and heartbeats, and only when the Ready changes neither the term nor the vote.
/// They acknowledge nothing and grant nothing; whatever they carry that is not yet durable
/// here (the leader's new entries) counts towards a commit only once persisted.
pub fn may_precede_persist(role: Role, durable_state_changed: bool, payload: &Payload) -> bool {
    role == Role::Leader
        && !durable_state_changed
        && matches!(
            payload,
            Payload::AppendRequest(_) | Payload::HeartbeatRequest(_)
        )
}

/// Where a proposal landed: the caller waits until `index` is applied and checks that the
/// entry applied there has this `term` (otherwise the proposal was overwritten and lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The entry's index.
    pub index: Index,
    /// The term it was proposed in.
    pub term: Term,
    /// Its fencing token.
    pub token: FencingToken,
}

/// What `advance` must acknowledge of the `Ready` handed out.
#[derive(Debug)]
struct Outstanding {
    snapshot: Option<Index>,
    last_entry: Option<(Index, Term)>,
    last_committed: Option<Index>,
}

/// A Raft node without I/O, clock or randomness of its own.
///
/// ```
/// use quorate_raft_core::{Config, ConfState, MemStorage, LogWriter, RawNode, Role};
///
/// // A one-node cluster: it elects itself and commits alone.
/// let storage = MemStorage::new(ConfState::with_voters([1]));
/// let mut node = RawNode::new(Config::new(1), storage, 0).unwrap();
/// let mut applied = Vec::new();
/// for _ in 0..100 {
///     node.tick().unwrap();
///     while node.has_ready() {
///         let ready = node.ready().unwrap();
///         // 0. send ready.early_messages to peers (none here)
///         // 1. persist (a real driver fsyncs when ready.must_sync)
///         node.store_mut()
///             .persist(ready.hard_state.as_ref(), &ready.entries, ready.must_sync)
///             .unwrap();
///         // 2. send ready.messages to peers (none here)
///         // 3. apply
///         applied.extend(ready.committed_entries);
///         node.advance().unwrap();
///     }
///     if node.status().role == Role::Leader && applied.len() == 1 {
///         node.propose(bytes::Bytes::from_static(b"hello")).unwrap();
///     }
/// }
/// assert_eq!(applied.len(), 2); // the leader's no-op, then "hello"
/// assert_eq!(applied[1].data.as_ref(), b"hello");
/// ```
pub struct RawNode<S: Storage> {
    pub(crate) raft: Raft<S>,
    prev_hard_state: HardState,
    prev_soft_state: SoftState,
    outstanding: Option<Outstanding>,
}

impl<S: Storage> RawNode<S> {
    /// Opens a node over `storage`. `applied` is the last index the state machine has durably
    /// applied (0 for a fresh one); the node will hand out committed entries after it.
    pub fn new(config: Config, storage: S, applied: Index) -> Result<Self> {
        let raft = Raft::new(config, storage, applied)?;
        Ok(RawNode {
            prev_hard_state: raft.hard_state(),
            prev_soft_state: raft.soft_state(),
            raft,
            outstanding: None,
        })
    }

    /// Advances the node's clock by one tick.
    pub fn tick(&mut self) -> Result<()> {
        self.raft.tick()
    }

    /// Brings the node's clock to `due` ticks since it started, feeding every tick missed
    /// (a long fsync, a stopped process); returns how many it fed. A driver calls it before
    /// **every** input with the ticks its monotonic clock says have passed, so that no decision
    /// (a lease read, a proposal, a vote) is taken with time from before a pause. The server's
    /// driver and the simulator both do.
    pub fn tick_to(&mut self, due: u64) -> Result<u64> {
        let mut fed = 0;
        while self.raft.now_tick < due {
            self.raft.tick()?;
            fed += 1;
        }
        Ok(fed)
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<()> {
        self.raft.step(message)
    }

    /// Proposes a command. Only the leader accepts proposals; it refuses them while it lacks
    /// recent contact with a quorum (check-quorum) or hands leadership over.
    pub fn propose(&mut self, data: Bytes) -> Result<Proposal> {
        let raft = &mut self.raft;
        raft.check_accepts_proposals()?;
        let size = data.len() as u64;
        if size > raft.config.max_proposal_bytes {
            return Err(Error::ProposalTooLarge {
                size,
                max: raft.config.max_proposal_bytes,
            });
        }
        let entry = raft.append_local(EntryKind::Command, data)?;
        // Broadcast once per Ready rather than once per proposal (see `ready`).
        raft.broadcast_pending = true;
        Ok(Proposal {
            index: entry.index,
            term: entry.term,
            token: entry.token(),
        })
    }

    /// Proposes a membership change (see [`crate::membership`]): the configuration `changes`
    /// make of the current one, with `context` (opaque to the core; the driver's record of
    /// the members) carried along. It takes effect on each node when appended there; a change
    /// of voters passes through a joint configuration, which this leader leaves on its own
    /// once it is committed. An empty `changes` leaves a joint configuration at once, or
    /// records a new context. Refused with [`Error::MembershipChangeRefused`] (a reason for
    /// the operator) while another change is uncommitted, and with [`Error::LearnerBehind`]
    /// for a learner not yet caught up.
    pub fn propose_membership(
        &mut self,
        changes: &[MemberChange],
        context: Bytes,
    ) -> Result<Proposal> {
        self.raft.propose_membership(changes, context)
    }

    /// The membership in force on this node (the latest in its log) and the index of the
    /// entry that set it (the snapshot's index, or 0, for the one it started from).
    pub fn membership(&self) -> (Index, &Membership) {
        let (index, membership) = self.raft.log.latest_membership();
        (*index, membership)
    }

    /// Asks for a linearizable read. The answer arrives as a [`ReadState`] with `read_id`.
    /// Followers forward the request to their leader.
    pub fn read_index(&mut self, read_id: u64, mode: ReadMode) -> Result<()> {
        self.raft.read_index(read_id, mode)
    }

    /// Starts a leadership transfer to `target`.
    pub fn transfer_leadership(&mut self, target: crate::types::NodeId) -> Result<()> {
        self.raft.transfer_leadership(target)
    }

    /// Hands leadership to the best other voter; returns it.
    pub fn step_down(&mut self) -> Result<crate::types::NodeId> {
        self.raft.step_down()
    }

    /// Starts an election now, as if the election timeout had elapsed.
    pub fn campaign(&mut self) -> Result<()> {
        if self.raft.role == Role::Leader {
            return Ok(());
        }
        self.raft.start_election(false)
    }

    /// Whether `ready` would return anything.
    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        raft.soft_state() != self.prev_soft_state
            || raft.hard_state() != self.prev_hard_state
            || !raft.log.unstable_entries().is_empty()
            || raft.log.pending_snapshot().is_some()
            || !raft.msgs.is_empty()
            || raft.log.has_next_committed_entries()
            || !raft.read_states.is_empty()
            || raft.broadcast_pending
            || raft.reads.needs_round
            || !raft.reads.to_forward.is_empty()
    }

    /// Collects what the driver must do. Call [`Self::advance`] once it is done.
    pub fn ready(&mut self) -> Result<Ready> {
        if self.outstanding.is_some() {
            return Err(Error::ReadyNotAdvanced);
        }
        let raft = &mut self.raft;
        // Batched work: one broadcast for all proposals and one confirmation round for all
        // reads that arrived since the last Ready.
        if raft.broadcast_pending {
            raft.broadcast_append()?;
        }
        raft.forward_reads()?;
        if raft.reads.needs_round && raft.role == Role::Leader {
            raft.broadcast_heartbeat();
        }
        raft.reads.needs_round = false;

        let soft_state = raft.soft_state();
        let hard_state = raft.hard_state();
        let entries = raft.log.unstable_entries().to_vec();
        let snapshot = raft.log.pending_snapshot().cloned();
        let committed_entries = raft
            .log
            .next_committed_entries(raft.config.max_apply_bytes_per_ready)?;
        // (The end of rejoining is synced too: a node that forgets it stays out of elections
        // until a leader brings it up to date again.)
        let durable_state_changed = hard_state.term != self.prev_hard_state.term
            || hard_state.vote != self.prev_hard_state.vote
            || hard_state.rejoining != self.prev_hard_state.rejoining;
        #[cfg(feature = "bug-injection")]
        let durable_state_changed =
            durable_state_changed && !raft.config.has_bug(InjectedBug::VoteNotPersisted);
        let (early_messages, messages) =
            std::mem::take(&mut raft.msgs).into_iter().partition(|m| {
                let early = may_precede_persist(raft.role, durable_state_changed, &m.payload);
                #[cfg(feature = "bug-injection")]
                let early = early
                    || (raft.config.has_bug(InjectedBug::AckBeforePersist)
                        && matches!(m.payload, Payload::AppendResponse(_)));
                early
            });
        let ready = Ready {
            soft_state: (soft_state != self.prev_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.prev_hard_state).then_some(hard_state),
            must_sync: !entries.is_empty() || snapshot.is_some() || durable_state_changed,
            early_messages,
            messages,
            read_states: std::mem::take(&mut raft.read_states),
            snapshot,
            entries,
            committed_entries,
        };
        self.prev_soft_state = soft_state;
        self.prev_hard_state = hard_state;
        self.outstanding = Some(Outstanding {
            snapshot: ready.snapshot.as_ref().map(|s| s.meta.index),
            last_entry: ready.entries.last().map(|e| (e.index, e.term)),
            last_committed: ready.committed_entries.last().map(|e| e.index),
        });
        Ok(ready)
    }

    /// The driver persisted, sent and applied the last `Ready`.
    pub fn advance(&mut self) -> Result<()> {
        let Some(done) = self.outstanding.take() else {
            return Ok(());
        };
        let raft = &mut self.raft;
        if let Some(index) = done.snapshot {
            raft.log.snapshot_installed(index);
        }
        if let Some((index, term)) = done.last_entry {
            raft.log.stable_to(index, term);
        }
        if let Some(index) = done.last_committed {
            raft.log.applied_to(index);
        }
        let persisted = raft.log.persisted;
        raft.on_persisted(persisted)?;
        raft.settle_membership()
    }

    /// Where a snapshot of the state machine as of `index` cuts the log: its term and the
    /// membership in force at `index`. The driver stores it with [`crate::LogWriter::compact`]
    /// together with its machine's image of exactly that index (or none, when the machine
    /// keeps its state durably itself and makes an image when one is sent), and the entries up
    /// to the compaction point are gone.
    ///
    /// Refused for an index the state machine has not applied (a snapshot must never claim
    /// entries its image lacks: a follower installing it would skip them for good) and for
    /// one the log no longer holds.
    pub fn snapshot_meta(&self, index: Index) -> Result<SnapshotMeta> {
        let log = &self.raft.log;
        #[cfg(feature = "bug-injection")]
        let limit = if self.raft.config.has_bug(InjectedBug::CompactBeyondApplied) {
            log.committed.min(log.persisted)
        } else {
            log.applied
        };
        #[cfg(not(feature = "bug-injection"))]
        let limit = log.applied;
        if index > limit {
            return Err(Error::SnapshotBeyondApplied {
                index,
                applied: log.applied,
            });
        }
        let term = log.term(index)?;
        let membership = &log.confs.at(index).1;
        let (conf_state, conf_context) = (membership.conf.clone(), membership.context.clone());
        if conf_state.voters.is_empty() {
            // A member that joined knows no configuration before the entry that added it.
            return Err(Error::InvalidConfig(format!(
                "no membership is known at index {index}: this node joined after it"
            )));
        }
        Ok(SnapshotMeta {
            index,
            term,
            conf_state,
            conf_context,
        })
    }

    /// The node's state now.
    pub fn status(&self) -> Status {
        self.raft.status()
    }

    /// Role, term and leader now: the cheap part of [`RawNode::status`].
    pub fn soft_state(&self) -> SoftState {
        self.raft.soft_state()
    }

    /// The storage, for reads.
    pub fn store(&self) -> &S {
        &self.raft.log.storage
    }

    /// The storage, for the driver's writes.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.raft.log.storage
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.raft.config
    }

    /// Whether this node holds a valid leader lease now.
    pub fn has_valid_lease(&self) -> bool {
        self.raft.lease_valid()
    }

    /// The first index in the log: entries before it are compacted into a snapshot (stored,
    /// or received and waiting to be installed).
    pub fn first_index(&self) -> Index {
        self.raft.log.first_index()
    }

    /// The term of the entry at `index`, if the log holds it.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.raft.log.term(index).ok()
    }

    /// Entries in `[low, high)` of this node's log (stable and unstable).
    pub fn log_entries(&self, low: Index, high: Index) -> Result<Vec<Entry>> {
        self.raft.log.slice(low, high, None)
    }
}

//! The Ready loop: the one task that owns the Raft core.
//!
//! Each turn: catch up ticks from the monotonic clock, take every queued input (so all
//! proposals that arrived while the last fsync ran go into one Ready: group commit), then for
//! each Ready **send early** (a leader's appends, so followers write while it does) →
//! **persist** (RocksDB, on a blocking thread, synced when the core says so) → **send**
//! (requests to the transport, responses to the RPCs waiting for them) → **apply** (state
//! machine, on a blocking thread) → answer waiters → **advance**.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use quorate_log_store::LogStore;
use quorate_raft_core::{
    EntryKind, Error as RaftError, Index, LogWriter, Membership, Message, NodeId, Payload, RawNode,
    ReadState, Ready, Role, Snapshot, Term,
};
use quorate_telemetry::SnapshotEvent;
use quorate_transport::{Transport, MAX_SNAPSHOT_BYTES};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::handle::{Applied, Input};
use crate::members::{MemberOp, MemberTable};
use crate::state_machine::{ProposalTime, StateMachine};
use crate::status::NodeStatus;

/// Inputs taken per turn before a Ready is produced (bounds latency under overload).
const MAX_INPUTS_PER_TURN: usize = 4_096;

type ProposalReply = oneshot::Sender<Result<Applied, NodeError>>;

/// An operator's membership change waiting for its outcome: answered once the membership it
/// asked for is in force and committed (after the joint configuration, for a change of
/// voters, is left).
struct MembershipWaiter {
    /// The membership entry to wait for; once a joint one is applied, the next one.
    index: Index,
    term: Term,
    reply: ProposalReply,
}

/// A proposal of this leader waiting to be applied.
struct Pending {
    term: Term,
    reply: ProposalReply,
    /// For the proposal-to-commit histogram.
    proposed_at: Instant,
    /// `raft.replicate`, in the trace of the sampled request it serves: from the proposal to
    /// its commit.
    replicating: Option<tracing::Span>,
}

struct ReadWaiter {
    reply: oneshot::Sender<Result<Index, NodeError>>,
    /// Known once the leader confirmed the read.
    index: Option<Index>,
}

pub(crate) struct Driver<SM> {
    pub(crate) config: NodeConfig,
    pub(crate) raw: RawNode<LogStore>,
    pub(crate) store: LogStore,
    pub(crate) sm: Option<SM>,
    pub(crate) transport: Transport,
    pub(crate) inputs: mpsc::Receiver<Input>,
    pub(crate) replies: mpsc::Receiver<Message>,
    pub(crate) status_tx: watch::Sender<NodeStatus>,
    pub(crate) applied_tx: watch::Sender<Index>,
    pub(crate) shutdown: watch::Receiver<bool>,
    proposals: BTreeMap<Index, Pending>,
    /// The sampled requests among this leader's proposals, by index: the batches that
    /// persist and apply them link to them. Empty unless tracing samples something; pruned as
    /// entries are applied, cleared when leadership is lost.
    traced: BTreeMap<Index, quorate_telemetry::SpanContext>,
    reads: BTreeMap<u64, ReadWaiter>,
    /// Peer RPCs waiting for the core's response, by the correlation id given to the request.
    rpc_waiters: HashMap<u64, oneshot::Sender<Message>>,
    next_id: u64,
    started: Instant,
    role: Role,
    stopping_since: Option<Instant>,
    /// The term this node leads and the instant its proposals' monotonic time counts from.
    office: Option<(Term, Instant)>,
    /// Set once a leader sent an entry that conflicts with a committed one this node holds:
    /// from then on the node takes no part in the cluster (no ticks, no Raft messages) and
    /// refuses every request with `CORRUPT`, keeping its data directory as it is for the
    /// operator. A restart runs the same check again.
    corrupt: Option<String>,
    /// Set while the corruption check finds replicas that disagree with no majority: writes
    /// are refused with this reason.
    writes_held: Option<String>,
    /// The index of the last snapshot the log was compacted behind.
    snapshot_index: Index,
    /// An image is being read for snapshots to send (one at a time).
    reading_image: bool,
    /// Images read, with the snapshot messages waiting for them.
    images_tx: mpsc::UnboundedSender<ImageRead>,
    images_rx: mpsc::UnboundedReceiver<ImageRead>,
    /// The member table in force (see `members.rs`), and what it was derived from: the index
    /// and context of the membership in force.
    members: MemberTable,
    members_key: Option<(Index, Bytes, Option<NodeId>)>,
    /// What the table means now (see `MemberTable::in_effect`).
    members_peers: BTreeMap<NodeId, String>,
    members_removed: std::collections::BTreeSet<NodeId>,
    /// The operator's membership change in progress on this leader.
    membership_waiter: Option<MembershipWaiter>,
}

/// Snapshot messages and the image read for them.
type ImageRead = (Vec<Message>, Result<Bytes, String>);

/// This node's wall clock, milliseconds since the Unix epoch (0 if it reads before 1970): what
/// a leader stamps on commands and what `Status` reports for peers to compare.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn raft_error(e: RaftError, leader_address: impl Fn(NodeId) -> Option<String>) -> NodeError {
    match e {
        RaftError::NotLeader {
            leader_hint: Some(leader),
        } => NodeError::NotLeader {
            leader: Some(leader),
            address: leader_address(leader),
        },
        RaftError::NotLeader { leader_hint: None } => NodeError::NoQuorum {
            reason: "this node knows no leader".into(),
        },
        RaftError::NoQuorum => NodeError::NoQuorum {
            reason: "this node lost contact with a majority (check-quorum) and knows no leader"
                .into(),
        },
        RaftError::TransferInProgress { target } => NodeError::NoQuorum {
            reason: format!("leadership is being handed to node {target}; retry shortly"),
        },
        RaftError::InvalidTransferTarget { target, reason } => {
            NodeError::Invalid(format!("cannot hand leadership to node {target}: {reason}"))
        }
        RaftError::ProposalTooLarge { size, max } => {
            NodeError::Invalid(format!("command of {size} bytes exceeds {max} bytes"))
        }
        RaftError::MembershipChangeRefused { reason } => NodeError::MembershipRefused(reason),
        RaftError::LearnerBehind {
            id,
            match_index,
            last_index,
            max_lag,
        } => NodeError::LearnerBehind {
            id,
            match_index,
            last_index,
            max_lag,
        },
        other => NodeError::Internal(other.to_string()),
    }
}

impl<SM: StateMachine> Driver<SM> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: NodeConfig,
        raw: RawNode<LogStore>,
        store: LogStore,
        sm: SM,
        transport: Transport,
        inputs: mpsc::Receiver<Input>,
        replies: mpsc::Receiver<Message>,
        status_tx: watch::Sender<NodeStatus>,
        applied_tx: watch::Sender<Index>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (images_tx, images_rx) = mpsc::unbounded_channel();
        Driver {
            config,
            raw,
            store,
            sm: Some(sm),
            transport,
            inputs,
            replies,
            status_tx,
            applied_tx,
            shutdown,
            proposals: BTreeMap::new(),
            traced: BTreeMap::new(),
            reads: BTreeMap::new(),
            rpc_waiters: HashMap::new(),
            next_id: 1,
            started: Instant::now(),
            role: Role::Follower,
            stopping_since: None,
            office: None,
            corrupt: None,
            writes_held: None,
            snapshot_index: 0,
            reading_image: false,
            images_tx,
            images_rx,
            members: MemberTable::default(),
            members_key: None,
            members_peers: BTreeMap::new(),
            members_removed: Default::default(),
            membership_waiter: None,
        }
    }

    /// Brings the member table, the transport's peers and the removed ids in line with the
    /// membership in force (the latest in the log: it takes effect when appended). Called
    /// after every Ready.
    fn sync_members(&mut self) {
        let (index, membership) = self.raw.membership();
        // (The leader this node follows matters too: a leader whose removal this node has
        // appended still leads until it hands over, and must be heard meanwhile.)
        let leader = self.raw.soft_state().leader_id;
        let key = (index, membership.context.clone(), leader);
        if self.members_key.as_ref() == Some(&key) {
            return;
        }
        let table = MemberTable::in_force(membership, &self.config.peers);
        let conf = membership.conf.clone();
        let (mut peers, mut removed) = table.in_effect(&conf);
        if let Some(leader) = leader {
            removed.remove(&leader);
            // (Forwarded writes and reads still go to it until it has handed over.)
            if let Some(address) = table.peers.get(&leader) {
                peers.entry(leader).or_insert_with(|| address.clone());
            }
        }
        let me = self.config.id;
        if leader.is_some() && leader != Some(me) && conf.members().contains(&me) {
            // A leader replicates to this node: it is a member, whatever a peer said before.
            self.transport.directory().clear_removed_self();
        }
        let changed = self.members_key.as_ref().map(|k| (k.0, &k.1)) != Some((key.0, &key.1));
        if let Err(e) = self.transport.set_members(&peers, removed.clone()) {
            tracing::error!(error = %e, "the new member table has an unusable address");
        }
        if self.members_key.is_some() && changed {
            tracing::info!(
                index,
                voters = ?conf.voters,
                learners = ?conf.learners,
                outgoing = ?conf.voters_outgoing,
                peers = ?peers,
                "membership in force"
            );
        }
        if changed && !conf.members().contains(&self.config.id) && !conf.voters.is_empty() {
            tracing::warn!(
                index,
                "this node is not a member of the membership in force: it takes no part in \
                 decisions (it was removed, or has not been added yet)"
            );
        }
        self.members = table;
        self.members_peers = peers;
        self.members_removed = removed;
        self.members_key = Some(key);
    }

    /// The index of the snapshot the store's log was last compacted behind.
    pub(crate) fn with_snapshot_index(mut self, index: Index) -> Self {
        self.snapshot_index = index;
        self
    }

    /// Runs until shutdown (or a fatal storage error).
    pub(crate) async fn run(mut self) -> Result<(), NodeError> {
        self.sync_members();
        let tick = self.config.tick();
        let mut wake = tokio::time::interval(tick);
        wake.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let result = loop {
            tokio::select! {
                changed = self.shutdown.changed(), if self.stopping_since.is_none() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        self.begin_stopping();
                    }
                }
                _ = wake.tick() => {}
                Some(input) = self.inputs.recv() => {
                    if let Err(e) = self.catch_up_ticks().and_then(|_| self.handle_input(input)) {
                        break Err(e);
                    }
                }
                Some(message) = self.replies.recv() => {
                    if let Err(e) = self.catch_up_ticks().and_then(|_| self.step(message)) {
                        break Err(e);
                    }
                }
                Some((messages, image)) = self.images_rx.recv() => {
                    self.images_read(messages, image);
                }
            }
            if let Err(e) = self.turn().await {
                break Err(e);
            }
            if self.done_stopping() {
                break Ok(());
            }
        };
        self.finish(result)
    }

    /// One turn after an event: ticks, queued inputs, then Readys.
    async fn turn(&mut self) -> Result<(), NodeError> {
        self.catch_up_ticks()?;
        for _ in 0..MAX_INPUTS_PER_TURN {
            // Time is brought up to date after each input is taken and before it is decided:
            // an input that arrived after a pause inside this loop (SIGSTOP, a descheduled
            // thread) must not be judged with the tick from before it, or a leader could
            // serve a lease read from a lease that ran out during the pause.
            if let Ok(input) = self.inputs.try_recv() {
                self.catch_up_ticks()?;
                self.handle_input(input)?;
            } else if let Ok(message) = self.replies.try_recv() {
                self.catch_up_ticks()?;
                self.step(message)?;
            } else {
                break;
            }
        }
        while self.raw.has_ready() {
            let ready = self
                .raw
                .ready()
                .map_err(|e| NodeError::Internal(e.to_string()))?;
            self.process(ready).await?;
        }
        self.publish_status();
        Ok(())
    }

    /// Feeds the core every tick that is due by the monotonic clock. Missed ticks (a long
    /// fsync, a stopped process) are caught up before any input is handled: a leader must see
    /// the time that passed before it serves a lease read, and check-quorum must notice that
    /// it lost its followers meanwhile.
    fn catch_up_ticks(&mut self) -> Result<(), NodeError> {
        if self.corrupt.is_some() {
            // A node that stopped taking part never campaigns.
            return Ok(());
        }
        let due = (self.started.elapsed().as_micros() / self.config.tick().as_micros()) as u64;
        self.raw
            .tick_to(due)
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        Ok(())
    }

    /// Stamps a command with this leader's time before it is proposed: the wall clock, and the
    /// monotonic time since the first proposal of its term. A node that is not the leader
    /// leaves it as it is (the core refuses it).
    fn stamp(&mut self, command: Bytes) -> Result<Bytes, NodeError> {
        let soft = self.raw.soft_state();
        if soft.role != Role::Leader {
            return Ok(command);
        }
        let since = match self.office {
            Some((term, since)) if term == soft.term => since,
            _ => {
                let now = Instant::now();
                self.office = Some((soft.term, now));
                now
            }
        };
        let time = ProposalTime {
            wall_ms: wall_clock_ms(),
            term_ms: since.elapsed().as_millis() as u64,
        };
        let sm = self
            .sm
            .as_ref()
            .ok_or_else(|| NodeError::Internal("state machine lost".into()))?;
        sm.stamp(command, time).map_err(NodeError::Invalid)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn leader_address(&self, leader: NodeId) -> Option<String> {
        self.members_peers.get(&leader).cloned()
    }

    fn step(&mut self, message: Message) -> Result<(), NodeError> {
        if self.corrupt.is_some() {
            return Ok(());
        }
        match self.raw.step(message) {
            Ok(()) => Ok(()),
            Err(RaftError::InvalidMessage(reason)) => {
                tracing::warn!(%reason, "message refused");
                Ok(())
            }
            Err(e @ RaftError::CommittedEntryConflict { .. }) => {
                self.stop_taking_part(e.to_string());
                Ok(())
            }
            Err(RaftError::Storage(e)) => Err(NodeError::Internal(format!("storage: {e}"))),
            Err(e) => {
                tracing::warn!(error = %e, "step failed");
                Ok(())
            }
        }
    }

    /// A committed entry is in conflict: stop taking part in the cluster, keep everything as it
    /// is on disk, and say so loudly and in every answer.
    fn stop_taking_part(&mut self, what: String) {
        let reason = format!(
            "{what}. This node no longer takes part in the cluster and refuses every request; \
             its data directory is kept as it is. Run `quoratectl split-brain report` to see \
             which members agree, and keep this directory for forensics"
        );
        tracing::error!(%reason, "CORRUPT: this node's state differs from the cluster's");
        let error = NodeError::Corrupt(reason.clone());
        for (_, Pending { reply, .. }) in std::mem::take(&mut self.proposals) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, waiter) in std::mem::take(&mut self.reads) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        if let Some(waiter) = self.membership_waiter.take() {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        self.rpc_waiters.clear();
        self.corrupt = Some(reason);
    }

    fn handle_input(&mut self, input: Input) -> Result<(), NodeError> {
        let map = |this: &Self, e: RaftError| raft_error(e, |l| this.leader_address(l));
        if let Some(reason) = &self.corrupt {
            let error = NodeError::Corrupt(reason.clone());
            match input {
                // Dropping the reply fails the peer's RPC.
                Input::Peer { .. } => {}
                Input::Propose { reply, .. } => {
                    let _ = reply.send(Err(error));
                }
                Input::Read { reply, .. } => {
                    let _ = reply.send(Err(error));
                }
                Input::Transfer { reply, .. } => {
                    let _ = reply.send(Err(error));
                }
                Input::StepDown { reply } => {
                    let _ = reply.send(Err(error));
                }
                Input::ChangeMembership { reply, .. } => {
                    let _ = reply.send(Err(error));
                }
                Input::Alarm { .. } | Input::HoldWrites { .. } => {}
            }
            return Ok(());
        }
        match input {
            Input::Peer { mut message, reply } => {
                if let Err(why) = self.check_snapshot_image(&message) {
                    // Dropping the reply fails the leader's RPC; it sends one again later.
                    tracing::warn!(from = message.from, "refused a snapshot: {why}");
                    return Ok(());
                }
                if let Some(reply) = reply {
                    let id = self.next_id();
                    message.payload.set_request_id(id);
                    self.rpc_waiters.insert(id, reply);
                }
                self.step(message)?;
            }
            Input::Propose {
                command,
                reply,
                trace,
            } => {
                if self.stopping_since.is_some() {
                    let _ = reply.send(Err(NodeError::ShuttingDown));
                } else if let Some(reason) = &self.writes_held {
                    let _ = reply.send(Err(NodeError::Corrupt(reason.clone())));
                } else if self.proposals.len() >= self.config.max_pending_proposals {
                    let _ = reply.send(Err(NodeError::Overloaded {
                        reason: format!(
                            "{} proposals are waiting to be applied (--max-pending-proposals)",
                            self.proposals.len()
                        ),
                    }));
                } else {
                    let proposed = self
                        .stamp(command)
                        .and_then(|command| self.raw.propose(command).map_err(|e| map(self, e)));
                    match proposed {
                        Ok(p) => {
                            let replicating = trace.map(|parent| {
                                let span = tracing::info_span!(
                                    parent: None,
                                    "raft.replicate",
                                    raft.index = p.index,
                                    raft.term = p.term,
                                );
                                quorate_telemetry::propagation::set_parent(&span, &parent);
                                if let Some(tp) =
                                    quorate_telemetry::propagation::traceparent(&parent)
                                {
                                    self.transport.trace_entry(p.index, tp);
                                }
                                self.traced.insert(p.index, parent);
                                span
                            });
                            self.proposals.insert(
                                p.index,
                                Pending {
                                    term: p.term,
                                    reply,
                                    proposed_at: Instant::now(),
                                    replicating,
                                },
                            );
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
            Input::Read { mode, reply } => {
                let read_id = self.next_id();
                match self.raw.read_index(read_id, mode) {
                    Ok(()) => {
                        self.reads
                            .insert(read_id, ReadWaiter { reply, index: None });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(map(self, e)));
                    }
                }
            }
            Input::Transfer { target, reply } => {
                let result = self
                    .raw
                    .transfer_leadership(target)
                    .map_err(|e| map(self, e));
                let _ = reply.send(result);
            }
            Input::StepDown { reply } => {
                let result = self.raw.step_down().map_err(|e| map(self, e));
                let _ = reply.send(result);
            }
            Input::Alarm { reason } => self.stop_taking_part(reason),
            Input::HoldWrites { reason } => {
                match (&self.writes_held, &reason) {
                    (None, Some(why)) => tracing::error!(%why, "writes refused"),
                    (Some(_), None) => tracing::warn!("replicas agree again: writes resume"),
                    _ => {}
                }
                self.writes_held = reason;
            }
            Input::ChangeMembership { ops, reply } => {
                if let Err(e) = self.change_membership(&ops, reply) {
                    tracing::warn!(error = %e, "membership change refused");
                }
            }
        }
        Ok(())
    }

    /// Proposes an operator's membership change: the Raft changes and the member table that
    /// `ops` make of the membership in force. One at a time; the reply comes once the asked
    /// membership is committed (see [`MembershipWaiter`]).
    fn change_membership(
        &mut self,
        ops: &[MemberOp],
        reply: ProposalReply,
    ) -> Result<(), NodeError> {
        let refused = |reply: ProposalReply, e: NodeError| {
            let _ = reply.send(Err(e.clone()));
            Err(e)
        };
        if self.stopping_since.is_some() {
            return refused(reply, NodeError::ShuttingDown);
        }
        if let Some(waiter) = &self.membership_waiter {
            if !waiter.reply.is_closed() {
                let e = NodeError::MembershipRefused(format!(
                    "the membership change at index {} is still in progress; retry once it \
                     is done",
                    waiter.index
                ));
                return refused(reply, e);
            }
        }
        let conf = self.raw.membership().1.conf.clone();
        let (changes, table) = match self.members.plan(&conf, ops) {
            Ok(plan) => plan,
            Err(e) => return refused(reply, e),
        };
        match self.raw.propose_membership(&changes, table.encode()) {
            Ok(p) => {
                tracing::info!(index = p.index, ?ops, "membership change proposed");
                self.membership_waiter = Some(MembershipWaiter {
                    index: p.index,
                    term: p.term,
                    reply,
                });
                Ok(())
            }
            Err(e) => {
                let e = raft_error(e, |l| self.leader_address(l));
                refused(reply, e)
            }
        }
    }

    /// A membership entry was applied: answers the operator's change once what it asked for is
    /// committed (a joint configuration waits for the entry that leaves it).
    fn on_membership_applied(&mut self, entry: &quorate_raft_core::Entry) {
        let Some(waiter) = self.membership_waiter.as_mut() else {
            return;
        };
        if entry.index < waiter.index {
            return;
        }
        let waiter = self.membership_waiter.take().expect("checked above");
        if entry.index == waiter.index && entry.term != waiter.term {
            let _ = waiter.reply.send(Err(NodeError::OutcomeUnknown {
                reason: format!(
                    "a new leader replaced the membership entry at index {} before it committed",
                    entry.index
                ),
            }));
            return;
        }
        match Membership::of_entry(entry) {
            Ok(Some(m)) if m.conf.is_joint() => {
                // Committed; the leader leaves the joint configuration on its own.
                self.membership_waiter = Some(MembershipWaiter {
                    index: entry.index + 1,
                    ..waiter
                });
            }
            _ => {
                let _ = waiter.reply.send(Ok(Applied {
                    index: entry.index,
                    term: entry.term,
                    output: Bytes::new(),
                }));
            }
        }
    }

    /// Persist, send, apply, answer, advance; inside a `ready` span. (The span is attached to
    /// the future, not entered: a guard held across an `.await` would tag whatever else runs
    /// on this thread meanwhile.)
    async fn process(&mut self, ready: Ready) -> Result<(), NodeError> {
        let span = tracing::debug_span!(
            "ready",
            entries = ready.entries.len(),
            sync = ready.must_sync,
            messages = ready.messages.len(),
            apply = ready.committed_entries.len()
        );
        self.process_ready(ready).instrument(span).await
    }

    async fn process_ready(&mut self, mut ready: Ready) -> Result<(), NodeError> {
        // 0. A leader's appends and heartbeats go at once: the followers write while this
        //    node does (raft-core decides which messages may; see `may_precede_persist`).
        for message in std::mem::take(&mut ready.early_messages) {
            self.transport.send(message);
        }
        // 1. Persist: durable before anything that depends on it leaves. A leader's snapshot
        //    replaces the log first.
        if let Some(snapshot) = &ready.snapshot {
            let mut store = self.store.clone();
            let snapshot = snapshot.clone();
            tokio::task::spawn_blocking(move || store.apply_snapshot(&snapshot))
                .await
                .map_err(|e| NodeError::Internal(format!("snapshot task: {e}")))?
                .map_err(|e| NodeError::Internal(format!("install a snapshot: {e}")))?;
        }
        if ready.hard_state.is_some() && ready.entries.is_empty() && !ready.must_sync {
            // Only the commit index changed: a small unsynced write, done here rather than
            // handed to a blocking thread and back.
            self.store
                .persist(ready.hard_state.as_ref(), &[], false)
                .map_err(|e| NodeError::Internal(format!("persist: {e}")))?;
        } else if ready.hard_state.is_some() || !ready.entries.is_empty() {
            let mut store = self.store.clone();
            let hard_state = ready.hard_state;
            let entries = std::mem::take(&mut ready.entries);
            let sync = ready.must_sync;
            let links = self.traces_of(&entries);
            let _persisting = quorate_telemetry::linked_span(
                "raft.persist",
                &links,
                &[("raft.entries", entries.len() as i64)],
            );
            let persist = tracing::debug_span!("persist", entries = entries.len(), sync);
            let started = Instant::now();
            tokio::task::spawn_blocking(move || {
                let _enter = persist.enter();
                store.persist(hard_state.as_ref(), &entries, sync)
            })
            .await
            .map_err(|e| NodeError::Internal(format!("persist task: {e}")))?
            .map_err(|e| NodeError::Internal(format!("persist: {e}")))?;
            if sync {
                self.config.metrics.observe_fsync(started.elapsed());
            }
        }
        // 2. Send: requests to peers; responses to the RPCs waiting for them.
        let mut snapshots = Vec::new();
        let send = tracing::debug_span!("send", messages = ready.messages.len()).entered();
        for message in std::mem::take(&mut ready.messages) {
            if message.payload.is_response() {
                let id = message.payload.request_id().unwrap_or_default();
                if let Some(waiter) = self.rpc_waiters.remove(&id) {
                    let _ = waiter.send(message);
                }
            } else if matches!(message.payload, Payload::SnapshotRequest(_)) {
                snapshots.push(message);
            } else {
                self.transport.send(message);
            }
        }
        drop(send);
        self.send_snapshots(snapshots)?;
        if let Some(soft) = ready.soft_state {
            self.on_role(soft.role, soft.term, soft.leader_id);
        }
        // 3. Apply (the leader's snapshot first, which replaces the machine).
        if let Some(snapshot) = ready.snapshot.take() {
            self.restore(snapshot).await?;
        }
        let committed = std::mem::take(&mut ready.committed_entries);
        if let (Some(first), Some(last)) = (committed.first(), committed.last()) {
            // (Committed entries are consecutive: the proposals among them are a range.)
            for (&index, pending) in self.proposals.range_mut(first.index..=last.index) {
                if pending.term == committed[(index - first.index) as usize].term {
                    let took = pending.proposed_at.elapsed();
                    self.config.metrics.observe_proposal_commit(took);
                }
                // (Dropping the span ends it: committed.)
                pending.replicating = None;
            }
            self.transport.forget_traces_up_to(last.index);
        }
        if !committed.is_empty() {
            self.apply(committed).await?;
        }
        // 4. Reads confirmed by the leader; served once applied.
        for read_state in std::mem::take(&mut ready.read_states) {
            self.on_read_state(read_state);
        }
        self.serve_reads();
        // 5. Advance.
        let advance = tracing::debug_span!("advance").entered();
        self.raw
            .advance()
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        drop(advance);
        self.sync_members();
        self.maybe_compact().await
    }

    /// Sends snapshots to followers that need entries this leader compacted. The core names
    /// the stored snapshot, which carries no image (the machine in RocksDB is the image): the
    /// machine's image is read on a blocking thread while the node goes on (see
    /// `StateMachine::image_reader`), and `images_read` sends it, with the index the image
    /// itself says it is of, which covers at least the stored snapshot. One read serves every
    /// follower of this Ready; none starts while another runs, or for a follower a snapshot
    /// still streams to (the core sends one again when it hears nothing back).
    fn send_snapshots(&mut self, messages: Vec<Message>) -> Result<(), NodeError> {
        let messages: Vec<Message> = messages
            .into_iter()
            .filter(|m| !self.transport.snapshot_streaming(m.to))
            .collect();
        if messages.is_empty() || self.reading_image {
            return Ok(());
        }
        let read = self
            .sm
            .as_ref()
            .ok_or_else(|| NodeError::Internal("state machine lost".into()))?
            .image_reader();
        let done = self.images_tx.clone();
        self.reading_image = true;
        tokio::task::spawn_blocking(move || {
            let _ = done.send((messages, read()));
        });
        Ok(())
    }

    /// An image read for `messages` is ready: send it to each of their followers.
    fn images_read(&mut self, messages: Vec<Message>, image: Result<Bytes, String>) {
        self.reading_image = false;
        let image = match image {
            Ok(image) => image,
            Err(e) => {
                tracing::error!("no snapshot sent: {e}");
                return;
            }
        };
        if image.len() as u64 > MAX_SNAPSHOT_BYTES {
            tracing::error!(
                bytes = image.len(),
                limit = MAX_SNAPSHOT_BYTES,
                "the state machine's image exceeds the snapshot limit: followers that need a \
                 snapshot cannot catch up (raise --snapshot-catch-up-entries, or replace them \
                 from a backup)"
            );
            return;
        }
        let meta = self
            .sm
            .as_ref()
            .ok_or_else(|| "the state machine is busy".to_string())
            .and_then(|sm| sm.image_index(&image))
            .and_then(|index| self.raw.snapshot_meta(index).map_err(|e| e.to_string()));
        let meta = match meta {
            Ok(meta) => meta,
            // (The log was compacted past the image meanwhile: the core asks again.)
            Err(e) => {
                tracing::warn!("no snapshot sent: {e}");
                return;
            }
        };
        let snapshot = Snapshot { meta, data: image };
        for mut message in messages {
            if let Payload::SnapshotRequest(request) = &mut message.payload {
                tracing::info!(
                    to = message.to,
                    index = snapshot.meta.index,
                    bytes = snapshot.data.len(),
                    "sending a snapshot"
                );
                request.snapshot = snapshot.clone();
                self.config.metrics.count_snapshot(SnapshotEvent::Sent);
            }
            self.transport.send(message);
        }
    }

    /// A leader's snapshot must carry an image of exactly the index it claims: installing one
    /// cannot be undone, and an image of another index would silently diverge.
    fn check_snapshot_image(&self, message: &Message) -> Result<(), String> {
        let Payload::SnapshotRequest(request) = &message.payload else {
            return Ok(());
        };
        let Some(sm) = self.sm.as_ref() else {
            return Err("the state machine is busy".into());
        };
        let claimed = request.snapshot.meta.index;
        match sm.image_index(&request.snapshot.data)? {
            index if index == claimed => Ok(()),
            index => Err(format!(
                "it claims index {claimed} but its image is of index {index}"
            )),
        }
    }

    /// Replaces the machine with a leader's snapshot the last Ready installed in the log.
    async fn restore(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let mut sm = self
            .sm
            .take()
            .ok_or_else(|| NodeError::Internal("state machine lost".into()))?;
        let index = snapshot.meta.index;
        let (sm, result) = tokio::task::spawn_blocking(move || {
            let result = sm.restore(&snapshot.data);
            (sm, result)
        })
        .await
        .map_err(|e| NodeError::Internal(format!("restore task: {e}")))?;
        let restored = sm.applied_index();
        self.sm = Some(sm);
        result.map_err(|e| NodeError::Internal(format!("restore the snapshot of {index}: {e}")))?;
        if restored != index {
            return Err(NodeError::Internal(format!(
                "the machine restored from the snapshot of index {index} says it applied {restored}"
            )));
        }
        self.snapshot_index = index;
        self.applied_tx.send_replace(index);
        // Proposals at or before it ended one way or another: their outcome is unknown here.
        if let Some(waiter) = self.membership_waiter.take_if(|w| w.index <= index) {
            let _ = waiter.reply.send(Err(NodeError::OutcomeUnknown {
                reason: format!("this node installed a snapshot of index {index}"),
            }));
        }
        let covered: Vec<Index> = self.proposals.range(..=index).map(|(&i, _)| i).collect();
        for i in covered {
            if let Some(Pending { reply, .. }) = self.proposals.remove(&i) {
                let _ = reply.send(Err(NodeError::OutcomeUnknown {
                    reason: format!("this node installed a snapshot of index {index}"),
                }));
            }
        }
        tracing::info!(index, "installed the leader's snapshot");
        self.config.metrics.count_snapshot(SnapshotEvent::Installed);
        Ok(())
    }

    /// Compacts the log once `snapshot_count` entries were applied since the last time,
    /// keeping `snapshot_catch_up_entries` behind the compaction point. The machine in
    /// RocksDB is the snapshot's image (a follower that needs one gets the machine's image of
    /// the moment, see `send_snapshots`), so the stored snapshot carries none.
    async fn maybe_compact(&mut self) -> Result<(), NodeError> {
        let count = self.config.snapshot_count;
        let applied = self.sm.as_ref().map_or(0, |sm| sm.applied_index());
        if count == 0 || applied < self.snapshot_index.saturating_add(count) {
            return Ok(());
        }
        // Not while a snapshot is read or streams: a follower that installs it then needs the
        // entries after it, and a compaction now could take those away and send it back for
        // another snapshot (a transfer slower than the catch-up margin would never end).
        let streaming = self
            .transport
            .peer_ids()
            .into_iter()
            .any(|peer| self.transport.snapshot_streaming(peer));
        if self.reading_image || streaming {
            return Ok(());
        }
        let meta = match self.raw.snapshot_meta(applied) {
            Ok(meta) => meta,
            // A member that joined knows no membership before the entry that added it: it
            // compacts once it has applied that entry.
            Err(RaftError::InvalidConfig(why)) => {
                tracing::debug!(%why, "no compaction yet");
                return Ok(());
            }
            Err(e) => return Err(NodeError::Internal(format!("snapshot at {applied}: {e}"))),
        };
        let up_to = applied
            .saturating_sub(self.config.snapshot_catch_up_entries)
            .max(self.raw.first_index() - 1);
        let snapshot = Snapshot {
            meta,
            data: Bytes::new(),
        };
        let mut store = self.store.clone();
        tokio::task::spawn_blocking(move || store.compact(&snapshot, up_to))
            .await
            .map_err(|e| NodeError::Internal(format!("compaction task: {e}")))?
            .map_err(|e| NodeError::Internal(format!("compact the log: {e}")))?;
        tracing::info!(applied, up_to, "compacted the log");
        self.config.metrics.count_snapshot(SnapshotEvent::Taken);
        self.snapshot_index = applied;
        Ok(())
    }

    async fn apply(&mut self, entries: Vec<quorate_raft_core::Entry>) -> Result<(), NodeError> {
        let mut sm = self
            .sm
            .take()
            .ok_or_else(|| NodeError::Internal("state machine lost".into()))?;
        let links = self.traces_of(&entries);
        let _applying = quorate_telemetry::linked_span(
            "raft.apply",
            &links,
            &[("raft.entries", entries.len() as i64)],
        );
        let apply = tracing::debug_span!("apply", entries = entries.len());
        let started = Instant::now();
        let (sm, result, entries) = tokio::task::spawn_blocking(move || {
            let _enter = apply.enter();
            let result = sm.apply(&entries);
            (sm, result, entries)
        })
        .await
        .map_err(|e| NodeError::Internal(format!("apply task: {e}")))?;
        self.config.metrics.observe_apply(started.elapsed());
        self.sm = Some(sm);
        let outputs = result.map_err(|e| NodeError::Internal(format!("apply: {e}")))?;
        for (entry, output) in entries.iter().zip(outputs) {
            if entry.kind == EntryKind::Membership {
                self.on_membership_applied(entry);
            }
            if let Some(Pending { term, reply, .. }) = self.proposals.remove(&entry.index) {
                let result = if term == entry.term {
                    Ok(Applied {
                        index: entry.index,
                        term,
                        output,
                    })
                } else {
                    Err(NodeError::OutcomeUnknown {
                        reason: format!(
                            "a new leader replaced the entry at index {} before it committed",
                            entry.index
                        ),
                    })
                };
                let _ = reply.send(result);
            }
        }
        if let Some(last) = entries.last() {
            self.applied_tx.send_replace(last.index);
            if !self.traced.is_empty() {
                self.traced = self.traced.split_off(&(last.index + 1));
            }
        }
        Ok(())
    }

    /// The sampled requests among this leader's proposals at the (consecutive) `entries`.
    fn traces_of(
        &self,
        entries: &[quorate_raft_core::Entry],
    ) -> Vec<quorate_telemetry::SpanContext> {
        match (entries.first(), entries.last()) {
            (Some(first), Some(last)) if !self.traced.is_empty() => self
                .traced
                .range(first.index..=last.index)
                .map(|(_, context)| context.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn on_role(&mut self, role: Role, term: Term, leader: Option<NodeId>) {
        if self.role == Role::Leader && role != Role::Leader {
            // Leadership lost: whatever was proposed may still commit under the next leader.
            self.traced.clear();
            for (_, Pending { reply, .. }) in std::mem::take(&mut self.proposals) {
                let _ = reply.send(Err(NodeError::OutcomeUnknown {
                    reason: format!("leadership was lost (now {role} in term {term})"),
                }));
            }
            if let Some(waiter) = self.membership_waiter.take() {
                let _ = waiter.reply.send(Err(NodeError::OutcomeUnknown {
                    reason: format!(
                        "leadership was lost (now {role} in term {term}) while the membership \
                         change was in progress: see `quoratectl members list`"
                    ),
                }));
            }
        }
        if self.role != role {
            tracing::info!(%role, term, leader = ?leader, "role changed");
        }
        self.role = role;
    }

    fn on_read_state(&mut self, read_state: ReadState) {
        match read_state.index {
            Some(index) => {
                if let Some(waiter) = self.reads.get_mut(&read_state.read_id) {
                    waiter.index = Some(index);
                }
            }
            None => {
                if let Some(waiter) = self.reads.remove(&read_state.read_id) {
                    let _ = waiter.reply.send(Err(NodeError::NoQuorum {
                        reason: "the leader could not confirm its leadership".into(),
                    }));
                }
            }
        }
    }

    fn serve_reads(&mut self) {
        let applied = *self.applied_tx.borrow();
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, w)| w.index.is_some_and(|i| i <= applied))
            .map(|(&id, _)| id)
            .collect();
        for id in ready {
            if let Some(waiter) = self.reads.remove(&id) {
                let _ = waiter.reply.send(Ok(waiter.index.unwrap_or(applied)));
            }
        }
        // Forget waiters whose callers gave up.
        self.reads.retain(|_, w| !w.reply.is_closed());
        self.rpc_waiters.retain(|_, w| !w.is_closed());
    }

    fn publish_status(&self) {
        let status = NodeStatus {
            raft: self.raw.status(),
            tick: self.config.tick(),
            peers: self.members_peers.clone(),
            removed: self.members_removed.clone(),
            membership_index: self.members_key.as_ref().map_or(0, |k| k.0),
            removed_self: self.transport.directory().removed_self(),
            stopping: self.stopping_since.is_some(),
            corrupt: self.corrupt.clone(),
            writes_held: self.writes_held.clone(),
            published_at: Instant::now(),
        };
        self.status_tx.send_replace(status);
    }

    /// Graceful shutdown: a leader hands leadership to the best follower first, so the cluster
    /// does not wait an election timeout for a new leader.
    fn begin_stopping(&mut self) {
        self.stopping_since = Some(Instant::now());
        if self.role == Role::Leader {
            match self.raw.step_down() {
                Ok(target) => tracing::info!(target, "shutting down: handing leadership over"),
                Err(e) => tracing::info!(error = %e, "shutting down without a handover"),
            }
        }
    }

    fn done_stopping(&self) -> bool {
        let Some(since) = self.stopping_since else {
            return false;
        };
        let grace = self.config.election_timeout.max(Duration::from_millis(500));
        let handed_over = self.role != Role::Leader;
        (handed_over && self.proposals.is_empty()) || since.elapsed() > grace
    }

    fn finish(mut self, result: Result<(), NodeError>) -> Result<(), NodeError> {
        for (_, Pending { reply, .. }) in std::mem::take(&mut self.proposals) {
            let _ = reply.send(Err(NodeError::OutcomeUnknown {
                reason: "the node shut down before the write was applied".into(),
            }));
        }
        for (_, waiter) in std::mem::take(&mut self.reads) {
            let _ = waiter.reply.send(Err(NodeError::ShuttingDown));
        }
        if let Some(waiter) = self.membership_waiter.take() {
            let _ = waiter.reply.send(Err(NodeError::OutcomeUnknown {
                reason: "the node shut down during the membership change".into(),
            }));
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "flush at shutdown failed");
        }
        let mut status = self.status_tx.borrow().clone();
        status.stopping = true;
        self.status_tx.send_replace(status);
        result
    }
}

//! The Ready loop: the one task that owns the Raft core, on a thread of its own
//! (`run_on_own_thread` in `lib.rs`).
//!
//! Each turn: catch up ticks from the monotonic clock, take every queued input (so all
//! proposals that arrived while the last fsync ran go into one Ready: group commit), then for
//! each Ready **send early** (a leader's appends, so followers write while it does) →
//! **persist** (RocksDB, in place, synced when the core says so) → **send** (requests to the
//! transport, responses to the RPCs waiting for them) → **apply** (state machine, in place) →
//! answer waiters → **advance**. Only reading a whole image (for a snapshot to send or a
//! backup) leaves the thread, so the loop goes on meanwhile.

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
use crate::error::{raft_error, NodeError};
use crate::handle::{Applied, Input, SnapshotTaken};
use crate::members::{MemberOp, MemberTable};
use crate::state_machine::{ProposalTime, StateMachine};
use crate::status::NodeStatus;

mod membership;
mod snapshots;
mod stopping;

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
    /// Operators waiting for the snapshot they asked for (`Admin.Snapshot`).
    snapshot_waiters: Vec<oneshot::Sender<Result<SnapshotTaken, NodeError>>>,
}

/// Who an image is read for.
enum ImageFor {
    /// Followers that need a snapshot: these messages wait for it.
    Followers(Vec<Message>),
    /// An operator's backup.
    Backup(oneshot::Sender<Result<Snapshot, NodeError>>),
}

/// An image read, and who it is for.
type ImageRead = (ImageFor, Result<Bytes, String>);

/// This node's wall clock, milliseconds since the Unix epoch (0 if it reads before 1970): what
/// a leader stamps on commands and what `Status` reports for peers to compare.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
            snapshot_waiters: Vec::new(),
        }
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
                Some((purpose, image)) = self.images_rx.recv() => {
                    match purpose {
                        ImageFor::Followers(messages) => self.images_read(messages, image),
                        ImageFor::Backup(reply) => {
                            let _ = reply.send(self.backup_read(image));
                        }
                    }
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
        if !self.snapshot_waiters.is_empty() {
            let result = self.compact(true).await;
            for reply in std::mem::take(&mut self.snapshot_waiters) {
                let _ = reply.send(result.clone());
            }
            // (A storage failure is as fatal here as in the automatic compaction.)
            if let Err(e @ NodeError::Internal(_)) = result {
                return Err(e);
            }
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
        sm.stamp(command, time)
            .map_err(|e| NodeError::Invalid(e.to_string()))
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
                Input::TakeSnapshot { reply } => {
                    let _ = reply.send(Err(error));
                }
                Input::Backup { reply } => {
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
            Input::TakeSnapshot { reply } => self.snapshot_waiters.push(reply),
            Input::Backup { reply } => self.start_backup(reply)?,
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
        //    (In place: the driver has a thread of its own, see `run_on_own_thread`.)
        if let Some(snapshot) = &ready.snapshot {
            self.store
                .apply_snapshot(snapshot)
                .map_err(|e| NodeError::Internal(format!("install a snapshot: {e}")))?;
        }
        if ready.hard_state.is_some() || !ready.entries.is_empty() {
            let entries = std::mem::take(&mut ready.entries);
            let sync = ready.must_sync;
            let links = self.traces_of(&entries);
            let _persisting = quorate_telemetry::linked_span(
                "raft.persist",
                &links,
                &[("raft.entries", entries.len() as i64)],
            );
            let _persist = tracing::debug_span!("persist", entries = entries.len(), sync).entered();
            let started = Instant::now();
            self.store
                .persist(ready.hard_state.as_ref(), &entries, sync)
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
        let apply = tracing::debug_span!("apply", entries = entries.len()).entered();
        let started = Instant::now();
        let result = sm.apply(&entries);
        self.config.metrics.observe_apply(started.elapsed());
        drop(apply);
        self.sm = Some(sm);
        let outputs = result.map_err(|e| NodeError::Internal(format!("apply: {e}")))?;
        // What a caller sees after its write is acknowledged includes the write: the applied
        // index and the status (whose commit index the core may have moved in this very turn)
        // are published before any reply leaves. (A membership change's own effect on the
        // status, its member list, is published at the end of the turn.)
        if let Some(last) = entries.last() {
            self.applied_tx.send_replace(last.index);
        }
        self.publish_status();
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
        let mut raft = self.raw.status();
        // The core counts entries applied only when the turn advances it; the machine's
        // applied index (published before any reply) is what a client may already rely on.
        raft.applied_index = raft.applied_index.max(*self.applied_tx.borrow());
        let status = NodeStatus {
            raft,
            tick: self.config.tick(),
            peers: self.members_peers.clone(),
            removed: self.members_removed.clone(),
            membership_index: self.members_key.as_ref().map_or(0, |k| k.0),
            removed_self: self.transport.directory().removed_self(),
            stopping: self.stopping_since.is_some(),
            corrupt: self.corrupt.clone(),
            writes_held: self.writes_held.clone(),
            snapshot_index: self.snapshot_index,
            published_at: Instant::now(),
        };
        // Every turn refreshes what readers borrow, but only a change of standing (see
        // `NodeStatus::same_standing`) wakes the tasks waiting on it: a wake-up of the client
        // runtime for each turn, that is for each write and each peer reply, cost a thread
        // switch apiece for nothing.
        let silence_ticks = self.config.contact_silence_ticks();
        self.status_tx.send_if_modified(|published| {
            let notify = !published.same_standing(&status, silence_ticks);
            *published = status;
            notify
        });
    }
}

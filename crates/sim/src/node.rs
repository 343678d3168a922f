//! One simulated node: a `RawNode` over a [`SimStorage`] disk, driven exactly as the server
//! drives it (persist, sync, send, apply, advance), with an fsync that takes time. While a
//! Ready is being synced the node takes no input; inputs wait and are then fed in together,
//! so one sync covers all of them (group commit).

use std::collections::BTreeMap;

use quorate_raft_core::{
    ConfState, Config, Entry, Error, Index, LogWriter, Message, RawNode, ReadMode, ReadState,
    Ready, Role, SoftState, Term,
};

use crate::client::{Action, ReadKind, Reply, Request, Response};
use crate::kv::{Applied, Command, KvStateMachine};
use crate::storage::SimStorage;

/// An input to a node.
#[derive(Clone, Debug)]
pub enum Input {
    /// One tick of the node's clock.
    Tick,
    /// A message from a peer.
    Message(Message),
    /// A client request.
    Request(Request),
}

/// What a node did that the rest of the world must see.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages to route.
    pub messages: Vec<Message>,
    /// Answers to clients.
    pub responses: Vec<Response>,
    /// Entries written to the log: (term of the entry before the first, entries).
    pub persisted: Vec<(Term, Vec<Entry>)>,
    /// Entries applied, with what applying them did.
    pub applied: Vec<(Entry, Applied)>,
    /// Role or leader changes.
    pub soft_states: Vec<SoftState>,
    /// A Ready is now being synced; it completes after this delay (microticks) and
    /// `must_sync` says whether the write is synced.
    pub ready_started: Option<bool>,
}

#[derive(Clone, Copy, Debug)]
struct PendingProposal {
    term: Term,
    client: u64,
    op_id: u64,
    attempt: u32,
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    client: u64,
    op_id: u64,
    attempt: u32,
    key: u64,
    index: Option<Index>,
}

/// A Ready whose write is in progress.
struct InProgress {
    ready: Ready,
}

/// A node of the simulated cluster.
pub struct SimNode {
    /// Its id.
    pub id: u64,
    /// Its configuration (kept across restarts).
    pub config: Config,
    /// Length of one of its ticks in microticks (its clock rate).
    pub tick_period: u64,
    /// The running node, or `None` while crashed.
    pub raw: Option<RawNode<SimStorage>>,
    /// The disk while the node is down.
    disk: Option<SimStorage>,
    /// The state machine (rebuilt from the log after a restart).
    pub sm: KvStateMachine,
    /// Bumped at every crash, so events of an earlier life are ignored.
    pub incarnation: u64,
    in_progress: Option<InProgress>,
    inbox: Vec<Input>,
    proposals: BTreeMap<Index, PendingProposal>,
    reads: BTreeMap<u64, PendingRead>,
    next_read_id: u64,
    role: Role,
    /// A leadership transfer requested while a Ready was syncing.
    pending_transfer: Option<u64>,
}

impl SimNode {
    /// A fresh node with an empty disk.
    pub fn new(config: Config, conf: ConfState, tick_period: u64) -> Self {
        let disk = SimStorage::new(conf);
        let raw = RawNode::new(config.clone(), disk, 0).expect("valid simulator config");
        SimNode {
            id: config.id,
            config,
            tick_period,
            raw: Some(raw),
            disk: None,
            sm: KvStateMachine::default(),
            incarnation: 0,
            in_progress: None,
            inbox: Vec::new(),
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read_id: 1,
            role: Role::Follower,
            pending_transfer: None,
        }
    }

    /// Whether the node is running.
    pub fn is_up(&self) -> bool {
        self.raw.is_some()
    }

    /// Whether a crash now would lose written data.
    pub fn has_unsynced(&self) -> bool {
        self.raw.as_ref().is_some_and(|r| r.store().has_unsynced())
    }

    /// Whether a Ready's write is in progress.
    pub fn is_syncing(&self) -> bool {
        self.in_progress.is_some()
    }

    /// The process dies: unsynced writes, queued inputs and volatile state are lost.
    pub fn crash(&mut self) {
        if let Some(raw) = self.raw.take() {
            let mut disk = raw.store().clone();
            disk.crash();
            self.disk = Some(disk);
        }
        self.in_progress = None;
        self.inbox.clear();
        self.proposals.clear();
        self.reads.clear();
        self.sm = KvStateMachine::default();
        self.role = Role::Follower;
        self.pending_transfer = None;
        self.incarnation += 1;
    }

    /// The process starts again from its disk; the state machine replays the log.
    pub fn restart(&mut self) {
        if let Some(disk) = self.disk.take() {
            let raw = RawNode::new(self.config.clone(), disk, 0).expect("restart from disk");
            self.raw = Some(raw);
        }
    }

    /// Feeds an input, or queues it while a Ready is being synced.
    pub fn input(&mut self, input: Input, fx: &mut Effects) {
        if self.raw.is_none() {
            return;
        }
        if self.in_progress.is_some() {
            self.inbox.push(input);
            return;
        }
        self.feed(input, fx);
        self.start_ready(fx);
    }

    /// The sync of the current Ready finished: send, apply, advance, then take queued inputs.
    pub fn finish_ready(&mut self, fx: &mut Effects) {
        let Some(InProgress { ready }) = self.in_progress.take() else {
            return;
        };
        let Some(raw) = self.raw.as_mut() else { return };
        if ready.must_sync {
            raw.store_mut().sync();
        }
        fx.messages.extend(ready.messages);
        if let Some(soft) = ready.soft_state {
            self.on_soft_state(soft, fx);
        }
        self.apply(ready.committed_entries, fx);
        for read_state in ready.read_states {
            self.on_read_state(read_state, fx);
        }
        self.serve_reads(fx);
        if let Some(raw) = self.raw.as_mut() {
            raw.advance().expect("advance");
        }
        for input in std::mem::take(&mut self.inbox) {
            self.feed(input, fx);
        }
        if let (Some(target), Some(raw)) = (self.pending_transfer.take(), self.raw.as_mut()) {
            let _ = raw.transfer_leadership(target);
        }
        self.start_ready(fx);
    }

    /// An operator asks for a leadership transfer while a Ready syncs: do it afterwards.
    pub fn queue_transfer(&mut self, target: u64) {
        self.pending_transfer = Some(target);
    }

    /// Starts a Ready if the node has one and none is in progress (after a direct call on
    /// `raw`).
    pub fn drive(&mut self, fx: &mut Effects) {
        if self.in_progress.is_none() {
            self.start_ready(fx);
        }
    }

    fn feed(&mut self, input: Input, fx: &mut Effects) {
        let Some(raw) = self.raw.as_mut() else { return };
        match input {
            Input::Tick => raw.tick().expect("tick"),
            Input::Message(m) => match raw.step(m) {
                Ok(()) | Err(Error::InvalidMessage(_)) => {}
                Err(e) => panic!("node {} step failed: {e}", self.id),
            },
            Input::Request(request) => self.on_request(request, fx),
        }
    }

    /// Takes the next Ready, writes it (unsynced) and starts its sync.
    fn start_ready(&mut self, fx: &mut Effects) {
        let Some(raw) = self.raw.as_mut() else { return };
        if !raw.has_ready() {
            return;
        }
        let ready = raw.ready().expect("ready");
        if let Some(first) = ready.entries.first() {
            let prev_term = raw.term_at(first.index - 1).unwrap_or(0);
            fx.persisted.push((prev_term, ready.entries.clone()));
        }
        // Written now, durable only when the sync completes (`finish_ready`).
        raw.store_mut()
            .persist(ready.hard_state.as_ref(), &ready.entries, false)
            .expect("the page cache accepts the write");
        fx.ready_started = Some(ready.must_sync);
        self.in_progress = Some(InProgress { ready });
    }

    fn on_soft_state(&mut self, soft: SoftState, fx: &mut Effects) {
        fx.soft_states.push(soft);
        if self.role == Role::Leader && soft.role != Role::Leader {
            // Leadership lost: pending proposals may or may not commit.
            for (_, p) in std::mem::take(&mut self.proposals) {
                fx.responses.push(Response {
                    client: p.client,
                    op_id: p.op_id,
                    attempt: p.attempt,
                    reply: Reply::Unknown,
                });
            }
        }
        self.role = soft.role;
    }

    fn apply(&mut self, entries: Vec<Entry>, fx: &mut Effects) {
        for entry in entries {
            let outcome = self.sm.apply(&entry);
            if let Some(p) = self.proposals.remove(&entry.index) {
                let reply = if p.term == entry.term {
                    Reply::Appended
                } else {
                    Reply::Failed
                };
                fx.responses.push(Response {
                    client: p.client,
                    op_id: p.op_id,
                    attempt: p.attempt,
                    reply,
                });
            }
            fx.applied.push((entry, outcome));
        }
    }

    fn on_read_state(&mut self, read_state: ReadState, fx: &mut Effects) {
        let Some(read) = self.reads.get_mut(&read_state.read_id) else {
            return;
        };
        match read_state.index {
            Some(index) => read.index = Some(index),
            None => {
                let read = self.reads.remove(&read_state.read_id).expect("present");
                fx.responses.push(Response {
                    client: read.client,
                    op_id: read.op_id,
                    attempt: read.attempt,
                    reply: Reply::Refused,
                });
            }
        }
    }

    /// Answers reads whose index has been applied.
    fn serve_reads(&mut self, fx: &mut Effects) {
        let applied = self.sm.applied_index;
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(&id, _)| id)
            .collect();
        for id in ready {
            let read = self.reads.remove(&id).expect("present");
            fx.responses.push(Response {
                client: read.client,
                op_id: read.op_id,
                attempt: read.attempt,
                reply: Reply::Values(self.sm.read(read.key)),
            });
        }
    }

    fn on_request(&mut self, request: Request, fx: &mut Effects) {
        let Some(raw) = self.raw.as_mut() else { return };
        let respond = |reply| Response {
            client: request.client,
            op_id: request.op_id,
            attempt: request.attempt,
            reply,
        };
        match request.action {
            Action::Append { key, value } => {
                let command = Command {
                    client: request.client,
                    op_id: request.op_id,
                    key,
                    value,
                };
                match raw.propose(command.encode()) {
                    Ok(p) => {
                        self.proposals.insert(
                            p.index,
                            PendingProposal {
                                term: p.term,
                                client: request.client,
                                op_id: request.op_id,
                                attempt: request.attempt,
                            },
                        );
                    }
                    Err(Error::NotLeader { leader_hint }) => {
                        fx.responses.push(respond(Reply::Redirect(leader_hint)));
                    }
                    Err(_) => fx.responses.push(respond(Reply::Refused)),
                }
            }
            Action::Read {
                key,
                kind: ReadKind::Stale,
            } => fx.responses.push(respond(Reply::Values(self.sm.read(key)))),
            Action::Read { key, kind } => {
                let mode = if kind == ReadKind::Lease {
                    ReadMode::Lease
                } else {
                    ReadMode::Quorum
                };
                let read_id = self.next_read_id;
                self.next_read_id += 1;
                match raw.read_index(read_id, mode) {
                    Ok(()) => {
                        self.reads.insert(
                            read_id,
                            PendingRead {
                                client: request.client,
                                op_id: request.op_id,
                                attempt: request.attempt,
                                key,
                                index: None,
                            },
                        );
                    }
                    Err(Error::NotLeader { leader_hint }) => {
                        fx.responses.push(respond(Reply::Redirect(leader_hint)));
                    }
                    Err(_) => fx.responses.push(respond(Reply::Refused)),
                }
            }
        }
    }
}

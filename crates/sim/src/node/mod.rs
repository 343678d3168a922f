//! One simulated node: a `RawNode` over a [`SimStorage`] disk, driven exactly as the server
//! drives it (persist, sync, send, apply, advance), with an fsync that takes time. While a
//! Ready is being synced the node takes no input; inputs wait and are then fed in together,
//! so one sync covers all of them (group commit).
//!
//! Committed entries are applied to the real payments machine (`quorate_payments::machine`)
//! over a [`MemStore`]. Like the server, the node builds each command from a client request
//! (with the idempotency window), validates it, forwards it to the leader when it follows one,
//! and as leader stamps every command it proposes with its own clocks; it also
//! runs the server's leader-side lease expiry task ([`ExpiryTask`], over the machine's
//! [`LeaseTimers`]) on its own clock.

use std::collections::BTreeMap;

use bytes::Bytes;
use quorate_payments::machine::{
    self, AcquireLease, Applied, Command, KeepAliveLease, LeaderClock, LeaseFence, LeaseTimers,
    MemStore, ReleaseLease, Submit,
};
use quorate_raft_core::bootstrap::{ClusterState, PeerState, Standing};
use quorate_raft_core::{
    AppendOutcome, AppendResponse, ConfState, Config, Entry, Error, HardState, Index, LogWriter,
    Message, NoContact, NodeId, Payload, RawNode, ReadMode, ReadState, Ready, Role, Snapshot,
    SoftState, Storage, Term, CONTACT_SILENCE_HEARTBEATS,
};

use crate::client::{Action, ReadKind, Reply, Request, Response};
use crate::clock::MS_PER_TICK;
use crate::expiry_task::{ExpiryStep, ExpiryTask};
use crate::names;
use crate::storage::SimStorage;
mod lifecycle;
mod requests;

/// How long idempotency keys are remembered: the server's default, a day, far longer than a
/// run, so any second event for a key is a bug.
pub const IDEMPOTENCY_WINDOW_MS: u64 = machine::DEFAULT_IDEMPOTENCY_WINDOW_MS;

/// How long the expiry task awaits a proposal: the server's default request timeout.
const REQUEST_TIMEOUT_MS: u64 = quorate_raft_core::DEFAULT_REQUEST_TIMEOUT_MS;

/// An applied entry and what applying it did.
#[derive(Clone, Debug)]
pub struct AppliedEntry {
    /// The entry.
    pub entry: Entry,
    /// The machine's output for it.
    pub output: Applied,
    /// Events the entry added to the store (a new event is one; anything else is none).
    pub events_written: usize,
}

/// An input to a node.
#[derive(Clone, Debug)]
pub enum Input {
    /// The node's periodic wake-up (the server's interval timer): it brings the clock up to
    /// date, as every other input does first.
    Tick,
    /// A message from a peer.
    Message(Message),
    /// A client request.
    Request(Request),
    /// A write another node received and forwarded, as the bytes that node built.
    Forwarded {
        /// The client's request.
        request: Request,
        /// The command's bytes as the receiving node encoded them.
        command: Bytes,
    },
}

/// A write a follower hands to the leader it knows, as the server does over `Raft.Forward`.
#[derive(Clone, Debug)]
pub struct Forward {
    /// The leader.
    pub to: u64,
    /// The client's request (the leader answers the client).
    pub request: Request,
    /// The command's bytes as this node encoded them.
    pub command: Bytes,
}

/// What a node did that the rest of the world must see.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages to route.
    pub messages: Vec<Message>,
    /// Answers to clients.
    pub responses: Vec<Response>,
    /// Writes forwarded to the leader.
    pub forwards: Vec<Forward>,
    /// Entries written to the log: (term of the entry before the first, entries).
    pub persisted: Vec<(Term, Vec<Entry>)>,
    /// Entries applied, with what applying them did.
    pub applied: Vec<AppliedEntry>,
    /// Role or leader changes.
    pub soft_states: Vec<SoftState>,
    /// A Ready is now being synced; it completes after this delay (microticks) and
    /// `must_sync` says whether the write is synced.
    pub ready_started: Option<bool>,
    /// Invariants this node saw broken: (name, what happened).
    pub violations: Vec<(&'static str, String)>,
    /// Fenced writes applied that the zombie-write check required to be refused.
    pub zombie_checked: u64,
    /// A finished Ready's messages went out while a vote was written but not yet durable.
    pub sent_with_unsynced_vote: bool,
    /// This node compacted its log behind a snapshot of its machine: (index, term).
    pub snapshot_taken: Option<(Index, Term)>,
    /// This node's machine was replaced by a snapshot from the leader: (index, term).
    pub snapshot_installed: Option<(Index, Term)>,
}

#[derive(Clone, Copy, Debug)]
struct PendingProposal {
    term: Term,
    client: u64,
    op_id: u64,
    attempt: u32,
    /// Set when this write, fenced with a lease token, was proposed so long after this same
    /// leader applied the token's last grant or renewal that the leader's expiry timer must
    /// already have proposed the lease's expiry (ahead of this write in the log): it must be
    /// refused.
    must_be_refused: bool,
}

/// The last grant or renewal of a lease token this node applied while leading.
#[derive(Clone, Copy, Debug)]
struct LeaderRenewal {
    term: Term,
    ttl_ms: u64,
    /// The expiry task's clock (this node's ticks) when it was applied.
    at_tick: u64,
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    client: u64,
    op_id: u64,
    attempt: u32,
    payment: u64,
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
    /// The membership (a new disk starts with it).
    conf: ConfState,
    /// The node is down and its disk is gone: it restarts only through
    /// [`quorate_raft_core::bootstrap::decide`], started as this.
    pub disk_lost: Option<ClusterState>,
    /// The payments machine's records (rebuilt from the log after a restart).
    pub machine: MemStore,
    /// The index of the last entry applied to `machine`.
    applied_index: Index,
    /// The leader-side lease expiry task (volatile, like the server's).
    expiry: ExpiryTask,
    /// An expiry task step that became due while a Ready was being handled: run after
    /// `advance`, as proposals are.
    deferred_expiry: Option<ExpiryStep>,
    /// Its wall clock (milliseconds since the Unix epoch), which the world sets before every
    /// input; commands carry it, as in the server.
    pub wall_clock_ms: u64,
    /// Bumped at every crash, so events of an earlier life are ignored.
    pub incarnation: u64,
    /// True time now (microticks), which the world sets before every input: the node's
    /// monotonic clock reads `(now - started_at) / tick_period` ticks.
    pub now: u64,
    /// When the running process started (microticks).
    started_at: u64,
    /// The process is frozen (SIGSTOP, a stalled VM): inputs wait in `inbox` until `resume`.
    paused: bool,
    /// A sync finished while the process was frozen.
    sync_done_while_paused: bool,
    /// The inbox holds inputs that waited out a pause.
    after_pause: bool,
    /// Injected bug `ticks-once-per-turn`: inputs that waited out a pause are handled without
    /// bringing the clock up to date first (the server's driver before every input caught up:
    /// it caught up once per turn, so a stall inside a turn left the rest of it with old time).
    pub stale_time_after_pause: bool,
    /// Injected bug `follower-clock-trusted`: the node that receives a write stamps it with
    /// its own clocks, and a leader keeps the stamp a forwarded write carries (with apply's
    /// bound switched off too, the server's behaviour before the leader alone stamped
    /// commands).
    pub follower_clock_trusted: bool,
    /// The event retention its writes carry (`--event-retention`; 0: keep every event).
    pub event_retention: u64,
    in_progress: Option<InProgress>,
    inbox: Vec<Input>,
    proposals: BTreeMap<Index, PendingProposal>,
    reads: BTreeMap<u64, PendingRead>,
    next_read_id: u64,
    role: Role,
    /// A leadership transfer requested while a Ready was syncing.
    pending_transfer: Option<u64>,
    /// Per (lease name, token): its last grant or renewal applied while this node led, in its
    /// current term (the zombie-write check; see `PendingProposal::must_be_refused`).
    leader_renewals: BTreeMap<(String, u64), LeaderRenewal>,
}

impl SimNode {
    /// A fresh node with an empty disk.
    pub fn new(config: Config, conf: ConfState, tick_period: u64) -> Self {
        let disk = SimStorage::new(conf.clone());
        let raw = RawNode::new(config.clone(), disk, 0).expect("valid simulator config");
        SimNode {
            id: config.id,
            expiry: expiry_task(&config),
            deferred_expiry: None,
            config,
            tick_period,
            raw: Some(raw),
            disk: None,
            conf,
            disk_lost: None,
            machine: MemStore::new(),
            applied_index: 0,
            wall_clock_ms: 0,
            incarnation: 0,
            now: 0,
            started_at: 0,
            paused: false,
            sync_done_while_paused: false,
            after_pause: false,
            stale_time_after_pause: false,
            follower_clock_trusted: false,
            event_retention: 0,
            in_progress: None,
            inbox: Vec::new(),
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read_id: 1,
            role: Role::Follower,
            pending_transfer: None,
            leader_renewals: BTreeMap::new(),
        }
    }

    /// Whether the node started with the cluster's bootstrap membership (it was a founding
    /// member), rather than with none (it was added later).
    pub fn started_with_conf(&self) -> bool {
        !self.conf.voters.is_empty()
    }

    /// The index of the last entry applied to the machine.
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }

    /// A fingerprint of the machine's whole state, to compare replicas.
    pub fn state_fingerprint(&self) -> u64 {
        crate::trace::fingerprint(&self.machine.encode_state())
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

    /// What this node answers `asker`, a peer that asks whether the cluster holds data and
    /// what it makes of the asker (`None` while it is down).
    pub fn peer_state(&self, asker: NodeId) -> Option<PeerState> {
        let status = self.raw.as_ref()?.status();
        Some(PeerState {
            term: status.term,
            last_index: status.last_log_index,
            asker: Standing::in_conf(&status.conf, asker),
            asker_match: status.progress.get(&asker).map_or(0, |p| p.match_index),
        })
    }

    /// Whether this node lost its disk and is not whole again: down without a disk, or
    /// rejoining (in memory, or on its disk: a crash would bring the mark back).
    pub fn is_amnesiac(&self) -> bool {
        let on_disk = |disk: &SimStorage| disk.durable_hard_state().rejoining.is_some();
        self.disk_lost.is_some()
            || self
                .raw
                .as_ref()
                .is_some_and(|r| r.status().rejoining.is_some() || on_disk(r.store()))
            || self.disk.as_ref().is_some_and(on_disk)
    }

    /// Whether this node's lease holds at true time `now`: by its own clock as it stands at
    /// `now` (ticks since it started), not as it stood at its last input. A frozen process's
    /// lease runs out while it is frozen.
    pub fn lease_holds_at(&self, now: u64) -> bool {
        let Some(raw) = self.raw.as_ref().filter(|r| r.has_valid_lease()) else {
            return false;
        };
        let status = raw.status();
        let due = now.saturating_sub(self.started_at) / self.tick_period;
        status.now_tick + status.lease_remaining_ticks > due
    }

    /// Whether the process is frozen.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The process freezes: it handles nothing until [`Self::resume`].
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// The process runs again and handles what waited, in order, each after bringing the
    /// clock up to date (unless the `ticks-once-per-turn` bug is injected).
    pub fn resume(&mut self, fx: &mut Effects) {
        if !self.paused {
            return;
        }
        self.paused = false;
        self.after_pause = true;
        if !self.stale_time_after_pause {
            // The interval timer that was due fires at once.
            self.catch_up(fx);
        }
        if self.sync_done_while_paused {
            self.sync_done_while_paused = false;
            self.finish_ready(fx);
        } else if self.in_progress.is_none() {
            self.drain_inbox(fx);
            self.start_ready(fx);
        }
    }

    /// Handles the inputs that waited for a sync or a pause.
    fn drain_inbox(&mut self, fx: &mut Effects) {
        let stale = std::mem::take(&mut self.after_pause) && self.stale_time_after_pause;
        for input in std::mem::take(&mut self.inbox) {
            if stale {
                self.handle(input, fx);
            } else {
                self.feed(input, fx);
            }
        }
    }

    /// Brings the clock up to date: feeds the ticks due since the process started (the
    /// server's rule, `RawNode::tick_to`), runs the expiry task for each, and, as the server's
    /// `unless_cut_off` does, fails work in flight once this node cannot reach a leader with
    /// a quorum (`Status::contact`): writes end unknown, reads refused.
    fn catch_up(&mut self, fx: &mut Effects) {
        let Some(raw) = self.raw.as_mut() else { return };
        let due = self.now.saturating_sub(self.started_at) / self.tick_period;
        let fed = raw.tick_to(due).expect("tick");
        if fed == 0 {
            return;
        }
        for _ in 0..fed {
            let step = self.expiry.tick();
            self.run_expiry(step);
        }
        if self.contact().is_ok() {
            return;
        }
        self.proposals_unknown(fx);
        for (_, r) in std::mem::take(&mut self.reads) {
            fx.responses.push(Response {
                client: r.client,
                op_id: r.op_id,
                attempt: r.attempt,
                reply: Reply::Refused,
            });
        }
    }

    /// Ends every pending proposal as unknown: it may or may not commit.
    fn proposals_unknown(&mut self, fx: &mut Effects) {
        for (_, p) in std::mem::take(&mut self.proposals) {
            fx.responses.push(Response {
                client: p.client,
                op_id: p.op_id,
                attempt: p.attempt,
                reply: Reply::Unknown,
            });
        }
    }

    /// Whether this node can reach a leader with a quorum now (the server's fail-fast rule).
    fn contact(&self) -> Result<(), NoContact> {
        let Some(raw) = self.raw.as_ref() else {
            return Err(NoContact::NoLeader);
        };
        let silence = self.config.heartbeat_interval_ticks * CONTACT_SILENCE_HEARTBEATS;
        raw.status().contact(silence)
    }

    /// Feeds an input, or queues it while a Ready is being synced.
    pub fn input(&mut self, input: Input, fx: &mut Effects) {
        if self.raw.is_none() {
            return;
        }
        if self.in_progress.is_some() || self.paused {
            self.inbox.push(input);
            return;
        }
        self.feed(input, fx);
        self.start_ready(fx);
    }

    /// The sync of the current Ready finished: send, apply, advance, then take queued inputs.
    pub fn finish_ready(&mut self, fx: &mut Effects) {
        if self.paused {
            // The write completed; the process sees it when it runs again.
            self.sync_done_while_paused = self.in_progress.is_some();
            return;
        }
        let Some(InProgress { ready }) = self.in_progress.take() else {
            return;
        };
        let Some(raw) = self.raw.as_mut() else { return };
        if ready.must_sync {
            raw.store_mut().sync();
        }
        // Messages leave now: if a vote they depend on is still not durable, say so (only a
        // driver that skipped the vote's sync gets here).
        fx.sent_with_unsynced_vote = raw.store().holds_unsynced_vote();
        self.send(ready.messages, fx);
        if let Some(soft) = ready.soft_state {
            self.on_soft_state(soft, fx);
        }
        if let Some(snapshot) = ready.snapshot {
            self.install_snapshot(snapshot, fx);
        }
        self.apply(ready.committed_entries, fx);
        for read_state in ready.read_states {
            self.on_read_state(read_state, fx);
        }
        self.serve_reads(fx);
        if let Some(raw) = self.raw.as_mut() {
            raw.advance().expect("advance");
        }
        if let Some(step) = self.deferred_expiry.take() {
            self.run_expiry(step);
        }
        self.drain_inbox(fx);
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

    /// Handles an input with the clock brought up to date first, as the server's driver does
    /// before every input.
    fn feed(&mut self, input: Input, fx: &mut Effects) {
        self.catch_up(fx);
        self.handle(input, fx);
    }

    fn handle(&mut self, input: Input, fx: &mut Effects) {
        let Some(raw) = self.raw.as_mut() else { return };
        match input {
            Input::Tick => {}
            Input::Message(m) => match raw.step(m) {
                Ok(()) | Err(Error::InvalidMessage(_)) => {}
                Err(e) => panic!("node {} step failed: {e}", self.id),
            },
            Input::Request(request) => self.on_request(request, fx),
            Input::Forwarded { request, command } => self.on_forwarded(request, command, fx),
        }
    }

    /// Takes the next Ready, writes it (unsynced) and starts its sync.
    fn start_ready(&mut self, fx: &mut Effects) {
        let Some(raw) = self.raw.as_mut() else { return };
        if !raw.has_ready() {
            return;
        }
        let mut ready = raw.ready().expect("ready");
        if let Some(first) = ready.entries.first() {
            let prev_term = raw.term_at(first.index - 1).unwrap_or(0);
            fx.persisted.push((prev_term, ready.entries.clone()));
        }
        // A leader's snapshot replaces the log first (durably: a snapshot file is synced).
        if let Some(snapshot) = &ready.snapshot {
            if let Err(refused) = raw.store_mut().apply_snapshot(snapshot) {
                // The disk refuses a snapshot older than what it holds: the core asked to
                // rewind committed state (the run ends with this event).
                fx.violations.push((
                    "snapshot-never-rewinds",
                    format!(
                        "node {} was told to install {snapshot:?}: {refused}",
                        self.id
                    ),
                ));
                return;
            }
        }
        // Written now, durable only when the sync completes (`finish_ready`).
        raw.store_mut()
            .persist(ready.hard_state.as_ref(), &ready.entries, false)
            .expect("the page cache accepts the write");
        // A leader's appends and heartbeats leave at once, while the write is not durable yet.
        let early = std::mem::take(&mut ready.early_messages);
        self.send(early, fx);
        fx.ready_started = Some(ready.must_sync);
        self.in_progress = Some(InProgress { ready });
    }

    /// Sends `messages`, checking that none acknowledges an entry this node's disk would
    /// lose in a crash now (invariant `acked-before-durable`): a leader counts every
    /// acknowledgement towards a commit.
    fn send(&self, messages: Vec<Message>, fx: &mut Effects) {
        if let Some(raw) = self.raw.as_ref() {
            let durable = raw.store().durable_last_index();
            for m in &messages {
                if let Payload::AppendResponse(AppendResponse {
                    outcome: AppendOutcome::Accepted { match_index },
                    ..
                }) = &m.payload
                {
                    // Durable up to there, and the same entries (not older ones at the
                    // same indexes that this Ready overwrites).
                    let same = raw.store().durable_term(*match_index) == raw.term_at(*match_index);
                    if *match_index > durable || !same {
                        fx.violations.push((
                            "acked-before-durable",
                            format!(
                                "node {} acknowledged entries up to index {match_index} to \
                                 node {} while only {durable} were durable on its disk",
                                self.id, m.to
                            ),
                        ));
                    }
                }
            }
        }
        fx.messages.extend(messages);
    }

    fn on_soft_state(&mut self, soft: SoftState, fx: &mut Effects) {
        fx.soft_states.push(soft);
        if soft.role != Role::Leader || self.role != Role::Leader {
            // Renewals seen in an earlier term say nothing about this one's timers.
            self.leader_renewals.clear();
        }
        if self.role == Role::Leader && soft.role != Role::Leader {
            let step = self.expiry.lost_leadership();
            self.defer_expiry(step);
            // Leadership lost: pending proposals may or may not commit.
            self.proposals_unknown(fx);
        }
        self.role = soft.role;
    }

    fn apply(&mut self, entries: Vec<Entry>, fx: &mut Effects) {
        for entry in entries {
            let events_before = self.events_ever_stored();
            let output = machine::apply_entry(&mut self.machine, &entry)
                .expect("a MemStore never fails a read");
            self.applied_index = entry.index;
            let events_written = (self.events_ever_stored() - events_before) as usize;
            let step = self.expiry.applied(entry.index);
            self.defer_expiry(step);
            self.note_renewal(&entry, &output);
            if let Some(p) = self.proposals.remove(&entry.index) {
                if p.must_be_refused && p.term == entry.term {
                    fx.zombie_checked += 1;
                }
                let accepted = matches!(&output, Applied::EventRecorded(r) if !r.replayed);
                if p.must_be_refused && p.term == entry.term && accepted {
                    fx.violations.push((
                        "zombie-write-accepted",
                        format!(
                            "node {} accepted the fenced write at index {} although it was \
                             proposed after the lease's TTL, an election timeout and two scan \
                             periods had passed since this leader applied the token's last \
                             renewal: its expiry timer should have expired the lease first",
                            self.id, entry.index
                        ),
                    ));
                }
                let reply = if p.term == entry.term {
                    Reply::Applied(output.clone())
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
            fx.applied.push(AppliedEntry {
                entry,
                output,
                events_written,
            });
        }
    }

    /// Events the machine stored, compacted ones included.
    fn events_ever_stored(&self) -> u64 {
        let compacted =
            machine::machine_status(&self.machine).map_or(0, |meta| meta.events_compacted);
        self.machine.event_count() as u64 + compacted
    }

    /// Remembers a grant or renewal applied while leading, in the entry's term: per (lease,
    /// token), when this leader last applied one.
    fn note_renewal(&mut self, entry: &Entry, output: &Applied) {
        // Only grants and renewals matter: look at the output before decoding the command.
        let is_renewal = match output {
            Applied::LeaseAcquired(a) => a.granted,
            Applied::LeaseKeptAlive(_) => true,
            _ => false,
        };
        let term = self.raw.as_ref().map_or(0, |r| r.soft_state().term);
        if !is_renewal || self.role != Role::Leader || term != entry.term {
            return;
        }
        let renewal = match (Command::decode(&entry.data), output) {
            (Ok(Command::AcquireLease(c)), Applied::LeaseAcquired(a)) => {
                Some((c.name, a.token, a.ttl_ms))
            }
            (Ok(Command::KeepAliveLease(c)), Applied::LeaseKeptAlive(k)) => {
                Some((c.name, c.token, k.ttl_ms))
            }
            _ => None,
        };
        if let Some((name, token, ttl_ms)) = renewal {
            self.leader_renewals.insert(
                (name, token),
                LeaderRenewal {
                    term,
                    ttl_ms,
                    at_tick: self.expiry.now_ticks(),
                },
            );
        }
    }

    /// Whether a write fenced with `fence`, proposed now, must be refused: this node leads the
    /// term in which it applied the token's last renewal, more than `ttl + election timeout +
    /// 2 scan periods` of its own ticks ago, and its expiry task is idle (so it has proposed the
    /// expiry that its timer fired at the latest by then).
    fn zombie_must_be_refused(&self, fence: Option<&LeaseFence>) -> bool {
        let (Some(fence), Some(raw)) = (fence, self.raw.as_ref()) else {
            return false;
        };
        let Some(renewal) = self
            .leader_renewals
            .get(&(fence.lease.clone(), fence.token))
        else {
            return false;
        };
        let term = raw.soft_state().term;
        let period_ticks = u64::from(self.config.heartbeat_interval_ticks);
        let bound_ticks = renewal.ttl_ms.div_ceil(MS_PER_TICK)
            + u64::from(self.config.election_timeout_min_ticks)
            + 2 * period_ticks
            + 1;
        self.role == Role::Leader
            && renewal.term == term
            && self.expiry.now_ticks() > renewal.at_tick + bound_ticks
            && self.expiry.is_idle()
            && self.deferred_expiry.is_none()
    }

    fn defer_expiry(&mut self, step: ExpiryStep) {
        if step != ExpiryStep::Wait {
            debug_assert!(self.deferred_expiry.is_none(), "one step at a time");
            self.deferred_expiry = Some(step);
        }
    }

    /// Carries out the expiry task's steps until it waits: scans answer from the node's role
    /// and the machine's held leases; expiries are proposed like any command.
    fn run_expiry(&mut self, mut step: ExpiryStep) {
        loop {
            step = match step {
                ExpiryStep::Wait => return,
                ExpiryStep::Scan => {
                    let Some(raw) = self.raw.as_ref() else { return };
                    let status = raw.status();
                    if status.role != Role::Leader {
                        self.expiry.not_leader();
                        return;
                    }
                    let caught_up = machine::applied_in_term(&self.machine, status.term)
                        .expect("a MemStore never fails a read");
                    let held =
                        machine::held_leases(&self.machine).expect("a MemStore never fails a read");
                    self.expiry.scanned(status.term, held, caught_up)
                }
                ExpiryStep::Propose(due) => {
                    let command = self.leader_stamp(&due.command().encode());
                    let Some(raw) = self.raw.as_mut() else { return };
                    // A refusal (not the leader, no quorum) ends the proposal at once.
                    let index = raw.propose(command).ok().map(|p| p.index);
                    self.expiry.proposing(&due.name, index)
                }
            };
        }
    }
}

/// The expiry task as the server runs it: it scans every heartbeat interval, a new leader
/// extends leases by an election timeout, an expiry is retried one scan period later, and a
/// proposal is awaited for at most the request timeout.
fn expiry_task(config: &Config) -> ExpiryTask {
    let period_ticks = u64::from(config.heartbeat_interval_ticks);
    let timers = LeaseTimers::new(
        u64::from(config.election_timeout_min_ticks) * MS_PER_TICK,
        period_ticks * MS_PER_TICK,
    );
    ExpiryTask::new(
        timers,
        period_ticks,
        MS_PER_TICK,
        REQUEST_TIMEOUT_MS / MS_PER_TICK,
    )
}

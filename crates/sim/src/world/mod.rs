//! One simulated run: a cluster, its clients, a hostile network and a fault schedule, all
//! driven by one seed.
//!
//! Time is in microticks; a node's tick lasts about 1000 of them, each node's clock running
//! at its own rate within the drift bound. A run has three phases:
//!
//! 1. **chaos**: partitions (symmetric, one-way, leader isolation), loss, duplication, delay
//!    spikes that reorder messages, crashes (some timed to hit unsynced writes) and restarts;
//! 2. **heal**: every fault is removed and every node restarted; within a bound, a stable
//!    leader must emerge and commit the log it held when everyone first recognised it (its
//!    *backlog*: a leader keeps accepting proposals while faults stop it from committing);
//! 3. **steady**: every client operation started now must complete (with a definite answer,
//!    which may be a refusal such as `INVALID_TRANSITION`); at the end all replicas must hold
//!    the same state.
//!
//! The clients are payment clients and lease workers ([`crate::workload`]). Safety invariants
//! are checked after every event; at the end, every replica's state is checked for
//! exactly-once and the payment history goes through the linearizability checker.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

use quorate_raft_core::{EntryKind, Membership};

use quorate_raft_core::rng::SplitMix64;
use quorate_raft_core::{ConfState, Config, Index, Message, NodeId, Role};

use crate::client::{Client, ClientAction, Request, Response};
use crate::clock::{microticks_to_ms, EPOCH_MS, TICK};
use crate::invariants::{Invariants, Violation};
use crate::network::Network;
use crate::node::{Effects, Forward, Input, SimNode, IDEMPOTENCY_WINDOW_MS};
use crate::trace::TraceHash;
use crate::workload::{LeaseStats, LeaseWorker, PaymentClient, Plan, Workload};

mod checks;
mod effects;
mod faults;
mod membership;

pub use faults::{SnapshotPolicy, Swarm};

/// Lease workers sharing the run's one writer lease.
const LEASE_WORKERS: usize = 2;

/// A bug the simulator can inject into every node, to prove that the checkers catch it.
#[cfg(feature = "bug-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// A protocol bug in raft-core.
    Raft(quorate_raft_core::InjectedBug),
    /// The node that receives a write stamps it with its own clocks, the leader keeps that
    /// stamp (see `SimNode::follower_clock_trusted`), and apply trusts the stamp's wall clock
    /// without a bound: the server before the leader alone stamped commands.
    FollowerClockTrusted,
    /// Apply trusts the leader's wall clock without a bound (only the bound is missing).
    LeaderClockUnbounded,
    /// Inputs that waited out a pause are handled with the time from before it (see
    /// `SimNode::stale_time_after_pause`).
    TicksOncePerTurn,
    /// The event log's compaction deletes events without keeping them in its hash (runs
    /// with event retention on).
    CompactionSkipsHash,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: everything random in the run derives from it.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Length of the chaos phase, in nominal ticks.
    pub chaos_ticks: u64,
    /// Print every event to stderr.
    pub verbose: bool,
    /// A bug to inject into every node.
    #[cfg(feature = "bug-injection")]
    pub bug: Option<Bug>,
}

impl SimConfig {
    /// The default run for `seed`: 3 nodes for odd seeds, 5 for even ones.
    pub fn for_seed(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: if seed % 2 == 0 { 5 } else { 3 },
            chaos_ticks: 800,
            verbose: false,
            #[cfg(feature = "bug-injection")]
            bug: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Events processed.
    pub steps: u64,
    /// Fingerprint of the whole run.
    pub trace_hash: u64,
    /// The first violation, if any.
    pub violation: Option<Violation>,
    /// Client operations recorded (ok or unknown).
    pub operations: usize,
    /// Of which with unknown outcome.
    pub unknown: usize,
    /// Submits the machine refused (left out of the history).
    pub refused: u64,
    /// What the lease workers did (grants, stalls, zombie writes and how they ended).
    pub leases: LeaseStats,
    /// Reads given up without an answer (not recorded).
    pub failed: u64,
    /// Leader elections seen (distinct terms with a leader).
    pub elections: usize,
    /// Crashes injected.
    pub crashes: u64,
    /// Highest committed index.
    pub committed: u64,
    /// Whether the linearizability check was inconclusive (search budget exceeded).
    pub inconclusive: bool,
    /// Zombie writes (fenced, proposed long after their token's last renewal on the same
    /// leader) that the `zombie-write-accepted` invariant checked.
    pub zombie_checked: u64,
    /// Entries the healed cluster's stable leader held uncommitted when everyone first
    /// recognised it: what it had to commit before client operations were timed.
    pub heal_backlog: u64,
    /// Snapshots nodes took (each compacting their log).
    pub snapshots_taken: u64,
    /// Snapshots followers installed from their leader.
    pub snapshots_installed: u64,
    /// Membership changes committed (each entry: a joint configuration and its leave count
    /// as two).
    pub membership_changes: u64,
    /// The members at the end (voters and learners).
    pub members_at_end: usize,
    /// Events the event log's compaction deleted (the most on any node).
    pub events_compacted: u64,
    /// Reads answered with a compacted payment's remaining events (not checked for
    /// linearizability).
    pub compacted_reads: u64,
}

#[derive(Debug)]
enum Event {
    Tick { node: usize, incarnation: u64 },
    Deliver(Message),
    ReadyDone { node: usize, incarnation: u64 },
    Crash { node: usize, incarnation: u64 },
    Restart { node: usize },
    Resume { node: usize, incarnation: u64 },
    ClientWake { client: usize },
    ClientRequest { node: usize, request: Request },
    Forwarded { from: NodeId, forward: Forward },
    ClientResponse { from: NodeId, response: Response },
    Fault,
    Quiet { on: bool },
    Isolate { node: usize },
    Heal,
    StopClients,
    End,
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and the earliest event must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The simulation state of one run.
struct World {
    /// Zombie writes checked by the nodes (see `RunReport::zombie_checked`).
    zombie_checked: u64,
    config: SimConfig,
    rng: SplitMix64,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    nodes: Vec<SimNode>,
    ids: Vec<NodeId>,
    clients: Vec<Client>,
    client_wake: Vec<Option<u64>>,
    /// Per node, how far its wall clock is ahead of true time (milliseconds; negative:
    /// behind).
    wall_clock_offset_ms: Vec<i64>,
    /// How far the first stamp applied anywhere put the machine clock from true time.
    clock_origin_offset_ms: Option<i64>,
    network: Network,
    invariants: Invariants,
    trace: TraceHash,
    steps: u64,
    crashes: u64,
    /// Chaos phase: faults are injected.
    chaos: bool,
    /// The run is over (see `Event::End`).
    finished: bool,
    /// The slowest node's applied index at the last drain extension.
    drain_progress: Option<Index>,
    /// Drain periods added while a node was still catching up.
    drain_extensions: u32,
    heal_at: u64,
    /// The healed cluster's stable leader and the log it must commit before operations are
    /// timed (see [`Backlog`]).
    backlog: Option<Backlog>,
    /// When the cluster recovered after healing: a stable leader had committed its backlog.
    recovered_at: Option<u64>,
    swarm: Swarm,
    /// Decides when nodes snapshot (a stream of its own: see `Swarm::snapshots`).
    snapshot_rng: SplitMix64,
    snapshots_taken: u64,
    snapshots_installed: u64,
    max_down: usize,
    /// Per node: the term in which its first commit as leader was seen.
    first_commit_seen: Vec<Option<u64>>,
    /// Per node: its commit index when it last was not leader.
    commit_at_election: Vec<u64>,
    /// The membership the cluster started with.
    bootstrap_conf: ConfState,
    /// The last committed membership (the highest-index membership entry applied anywhere)
    /// and its index.
    committed_conf: (Index, ConfState),
    /// Nodes that were members of some committed membership.
    ever_member: BTreeSet<NodeId>,
    /// Removed nodes shut down for good.
    retired: BTreeSet<NodeId>,
    /// Removed nodes left running.
    left_running: BTreeSet<NodeId>,
    /// Nodes clients may send to (every node not retired).
    targets: Vec<NodeId>,
    /// Per node: what its log says about membership (see `membership.rs`).
    conf_scans: Vec<membership::ConfScan>,
    /// Per node: the commit index up to which `commit-quorum` checked it as leader.
    leader_commit_checked: Vec<Index>,
    membership_changes: u64,
}

/// What a stable leader must commit after healing before client operations are timed.
///
/// A leader keeps accepting proposals while faults stop it from committing (a follower that
/// answers is alive, so check-quorum keeps it leading), so it can heal with a long uncommitted
/// tail, and followers that are far behind. A new entry commits only after that whole tail
/// has reached a quorum, through the leader's flow control (in the simulator as little as one
/// small entry per append, a few in flight): its latency after healing grows with the
/// backlog, which the chaos phase does not bound, while the operation timeout is fixed. So
/// operations are timed from when the backlog is committed; the heal bound covers getting
/// there, and a leader that never commits still fails it.
#[derive(Clone, Copy, Debug)]
struct Backlog {
    /// The stable leader.
    leader: NodeId,
    /// Its term: a new leader (or term) has a backlog of its own.
    term: u64,
    /// Its last log index when everyone first recognised it in this term.
    last_index: u64,
    /// Its commit index then (the report gives the backlog's size).
    commit_index: u64,
}

/// Bounds of the run after healing, in nominal ticks. The heal bound covers electing a stable
/// leader and that leader committing its backlog.
const HEAL_BOUND_TICKS: u64 = 150;
const STEADY_TICKS: u64 = 150;
const DRAIN_TICKS: u64 = 80;
/// A run that processes more events than this is stuck in a loop.
const MAX_STEPS: u64 = 20_000_000;

fn raft_config(id: NodeId, seed: u64, rng: &mut SplitMix64) -> Config {
    let flow = [(64, 4), (256, 1), (512, 2), (4096, 16), (1 << 20, 256)][rng.range(0, 5) as usize];
    Config {
        election_timeout_min_ticks: 10,
        election_timeout_max_ticks: 20,
        heartbeat_interval_ticks: 2,
        max_clock_drift_ticks: 1,
        // Small messages and windows make partial replication (and figure-8 histories) common;
        // each size is paired with a window that still lets a follower catch up.
        max_bytes_per_message: flow.0,
        max_inflight_messages: flow.1,
        seed: seed.wrapping_mul(31).wrapping_add(id),
        ..Config::new(id)
    }
}

/// The event retention a run's writes carry: on in a quarter of the seeds (100 to 299
/// indexes, so that runs of a few thousand entries compact), off in the rest, whose reads the
/// linearizability checker then checks in full. Drawn from a generator of its own, so the
/// rest of a seed's run is as before.
fn event_retention(config: &SimConfig) -> u64 {
    #[cfg(feature = "bug-injection")]
    if config.bug == Some(Bug::CompactionSkipsHash) {
        return 100;
    }
    let mut rng = SplitMix64::new(config.seed ^ 0x0e7e_47e7_e471_0115);
    if rng.range(0, 4) == 0 {
        rng.range(100, 300)
    } else {
        0
    }
}

impl World {
    fn new(config: SimConfig) -> Self {
        #[cfg(feature = "bug-injection")]
        quorate_payments::machine::inject_unbounded_wall_clock(matches!(
            config.bug,
            Some(Bug::FollowerClockTrusted | Bug::LeaderClockUnbounded)
        ));
        #[cfg(feature = "bug-injection")]
        quorate_payments::machine::inject_compaction_skips_hash(
            config.bug == Some(Bug::CompactionSkipsHash),
        );
        let event_retention = event_retention(&config);
        let mut rng = SplitMix64::new(config.seed ^ 0x5eed_0fc1_a57e_2500);
        let ids: Vec<NodeId> = (1..=config.nodes as u64).collect();
        let conf = ConfState::with_voters(ids.iter().copied());
        let drift = 1.0;
        let min_timeout = 10.0;
        // Two clocks may disagree by at most `drift` ticks over a minimum election timeout:
        // (1 + e) / (1 - e) <= 1 + drift / min  <=>  e <= drift / (2 min + drift).
        let max_skew = drift / (2.0 * min_timeout + drift);
        let nodes = ids
            .iter()
            .map(|&id| {
                #[allow(unused_mut)]
                let mut cfg = raft_config(id, config.seed, &mut rng);
                #[cfg(feature = "bug-injection")]
                if let Some(Bug::Raft(bug)) = config.bug {
                    cfg.injected_bug = Some(bug);
                    if bug == quorate_raft_core::InjectedBug::LeaseReadWithoutCheckQuorum {
                        cfg.check_quorum = false;
                    }
                }
                let skew = (rng.unit() * 2.0 - 1.0) * max_skew;
                let period = (TICK as f64 * (1.0 + skew)).round() as u64;
                #[allow(unused_mut)]
                let mut node = SimNode::new(cfg, conf.clone(), period);
                node.event_retention = event_retention;
                #[cfg(feature = "bug-injection")]
                {
                    node.follower_clock_trusted = config.bug == Some(Bug::FollowerClockTrusted);
                    node.stale_time_after_pause = config.bug == Some(Bug::TicksOncePerTurn);
                }
                node
            })
            .collect();
        let workload = Workload {
            payments: 4,
            think_min: TICK / 2,
            think_max: 6 * TICK,
            attempt_timeout: 6 * TICK,
            op_timeout: 30 * TICK,
        };
        let payment_clients = config.nodes + 1;
        let client_count = payment_clients + LEASE_WORKERS;
        let mut clients: Vec<Client> = (0..payment_clients)
            .map(|i| {
                let plan = Plan::Payments(PaymentClient::default());
                Client::new(i as u64 + 1, rng.fork(), workload, plan)
            })
            .collect();
        let heal_at = config.chaos_ticks * TICK;
        #[allow(unused_mut)]
        let mut swarm = Swarm::draw(&mut rng);
        // From a stream of its own, so that runs without disk loss stay what they were before
        // it existed.
        let mut own_stream = SplitMix64::new(config.seed ^ 0xd15c_1055);
        swarm.disk_loss = own_stream.chance(1, 2);
        swarm.pauses = own_stream.chance(1, 2);
        // Snapshots too: runs without them behave as before they existed.
        let mut snapshot_rng = SplitMix64::new(config.seed ^ 0x5a4a_5407_c0de);
        swarm.snapshots = SnapshotPolicy::draw(&mut snapshot_rng);
        // Membership changes too, in half the runs.
        swarm.membership = SplitMix64::new(config.seed ^ 0x3e3b_e25c_4a46_6e00).chance(1, 2);
        #[cfg(feature = "bug-injection")]
        if matches!(
            config.bug,
            Some(Bug::Raft(
                quorate_raft_core::InjectedBug::SingleStepTwoVoters
                    | quorate_raft_core::InjectedBug::LearnerCountedInQuorum
                    | quorate_raft_core::InjectedBug::ConfEffectiveOnCommit
            ))
        ) {
            swarm.membership = true;
        }
        #[cfg(feature = "bug-injection")]
        if config.bug == Some(Bug::Raft(quorate_raft_core::InjectedBug::AmnesiacVoter)) {
            swarm.disk_loss = true;
        }
        #[cfg(feature = "bug-injection")]
        if matches!(
            config.bug,
            Some(Bug::Raft(
                quorate_raft_core::InjectedBug::CompactBeyondApplied
                    | quorate_raft_core::InjectedBug::SnapshotOverwritesNewerLog
            ))
        ) {
            swarm.snapshots = Some(SnapshotPolicy {
                per_mille_per_tick: 300,
                margin: 0,
            });
        }
        #[cfg(feature = "bug-injection")]
        if config.bug == Some(Bug::TicksOncePerTurn) {
            swarm.pauses = true;
        }
        // Drawn after the swarm, so that a seed's node configurations, clock rates and fault
        // mix stay what they were before lease workers and wall clocks existed.
        for i in payment_clients..client_count {
            let plan = Plan::LeaseWorker(LeaseWorker::new(0));
            clients.push(Client::new(i as u64 + 1, rng.fork(), workload, plan));
        }
        // Wall clocks disagree by up to a few hundred milliseconds (NTP on a LAN); in half the
        // runs one node's clock is a day and an hour off, ahead or behind (bad NTP, a VM
        // restored from an image): more than the idempotency window.
        let mut wall_clock_offset_ms: Vec<i64> = (0..config.nodes)
            .map(|_| rng.range(0, 300) as i64)
            .collect();
        if rng.chance(1, 2) {
            let node = rng.range(0, config.nodes as u64) as usize;
            let off = (IDEMPOTENCY_WINDOW_MS + 3_600_000) as i64;
            wall_clock_offset_ms[node] = if rng.chance(1, 2) { off } else { -off };
        }
        World {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            clients,
            client_wake: vec![None; client_count],
            wall_clock_offset_ms,
            clock_origin_offset_ms: None,
            network: Network::new(),
            invariants: Invariants::default(),
            trace: TraceHash::default(),
            steps: 0,
            crashes: 0,
            chaos: true,
            finished: false,
            drain_progress: None,
            drain_extensions: 0,
            heal_at,
            backlog: None,
            recovered_at: None,
            zombie_checked: 0,
            swarm,
            snapshot_rng,
            snapshots_taken: 0,
            snapshots_installed: 0,
            max_down: config.nodes,
            first_commit_seen: vec![None; config.nodes],
            commit_at_election: vec![0; config.nodes],
            bootstrap_conf: conf.clone(),
            committed_conf: (0, conf.clone()),
            ever_member: ids.iter().copied().collect(),
            retired: BTreeSet::new(),
            left_running: BTreeSet::new(),
            targets: ids.clone(),
            conf_scans: vec![Default::default(); config.nodes],
            leader_commit_checked: vec![0; config.nodes],
            membership_changes: 0,
            ids,
            config,
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.config.verbose {
            eprintln!("{:>9} {}", self.now, what());
        }
    }

    fn run(mut self) -> RunReport {
        for node in 0..self.nodes.len() {
            let first = self.rng.range(0, self.nodes[node].tick_period);
            self.schedule(
                first,
                Event::Tick {
                    node,
                    incarnation: 0,
                },
            );
        }
        for client in 0..self.clients.len() {
            let at = self.rng.range(0, 5 * TICK);
            self.wake_client_at(client, at);
        }
        let first_fault = self.rng.range(20, 60) * TICK;
        self.schedule(first_fault, Event::Fault);
        if self.swarm.quiet_periods {
            let first_quiet = self.rng.range(20, 120) * TICK;
            self.schedule(first_quiet, Event::Quiet { on: true });
        }
        self.schedule(self.heal_at, Event::Heal);
        while let Some(Scheduled { at, event, .. }) = self.queue.pop() {
            self.now = at;
            self.steps += 1;
            self.handle(event);
            self.check_every_step();
            if self.finished || self.invariants.violation.is_some() || self.steps > MAX_STEPS {
                break;
            }
        }
        if self.steps > MAX_STEPS {
            self.invariants.fail_liveness(
                "runaway",
                self.now,
                format!("more than {MAX_STEPS} events"),
            );
        }
        self.finish()
    }

    fn handle(&mut self, event: Event) {
        self.trace.u64(self.now);
        match event {
            Event::Tick { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation || !self.nodes[node].is_up() {
                    return;
                }
                self.trace.u64(1);
                self.trace.u64(node as u64);
                self.node_input(node, Input::Tick);
                self.maybe_snapshot(node);
                let period = self.nodes[node].tick_period;
                self.schedule(self.now + period, Event::Tick { node, incarnation });
            }
            Event::Deliver(message) => {
                let node = (message.to - 1) as usize;
                if node >= self.nodes.len()
                    || self.network.is_blocked(message.from, message.to)
                    || !self.nodes[node].is_up()
                {
                    return;
                }
                self.trace.u64(2);
                self.trace.u64(message.from);
                self.trace.u64(message.to);
                self.trace.u64(message.term);
                self.trace.bytes(message.payload.kind().as_bytes());
                self.log(|| format!("deliver {} -> {} {:?}", message.from, message.to, message));
                self.node_input(node, Input::Message(message));
            }
            Event::ReadyDone { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                self.trace.u64(3);
                self.trace.u64(node as u64);
                self.set_wall_clock(node);
                let mut fx = Effects::default();
                self.nodes[node].finish_ready(&mut fx);
                let unsynced_vote_sent = fx.sent_with_unsynced_vote;
                self.after_node(node, fx);
                self.maybe_crash_unsynced(node, unsynced_vote_sent);
            }
            Event::Crash { node, incarnation } => {
                // Crashes scheduled during the chaos phase do not outlive it.
                if !self.chaos
                    || self.nodes[node].incarnation != incarnation
                    || !self.nodes[node].is_up()
                {
                    return;
                }
                self.crash(node);
            }
            Event::Restart { node } => self.restart(node),
            Event::Resume { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    self.resume(node);
                }
            }
            Event::ClientWake { client } => {
                if self.client_wake[client] != Some(self.now) {
                    return; // superseded
                }
                self.client_wake[client] = None;
                let action = self.clients[client].wake(self.now, &self.targets);
                self.client_action(client, action);
            }
            Event::ClientRequest { node, request } => {
                self.trace.u64(4);
                self.trace.u64(request.op_id);
                self.node_input(node, Input::Request(request));
            }
            Event::Forwarded { from, forward } => {
                let node = (forward.to - 1) as usize;
                if self.network.is_blocked(from, forward.to) || !self.nodes[node].is_up() {
                    return;
                }
                self.trace.u64(8);
                self.trace.u64(forward.request.op_id);
                self.log(|| format!("forward {from} -> {}: {:?}", forward.to, forward.request));
                let input = Input::Forwarded {
                    request: forward.request,
                    command: forward.command,
                };
                self.node_input(node, input);
            }
            Event::ClientResponse { from, response } => {
                self.trace.u64(5);
                self.trace.u64(response.op_id);
                self.log(|| format!("client {} <- {from}: {:?}", response.client, response));
                let client = (response.client - 1) as usize;
                let action =
                    self.clients[client].on_response(self.now, from, response, &self.targets);
                self.client_action(client, action);
            }
            Event::Fault => {
                if self.chaos {
                    self.inject_fault();
                    let next = self.rng.range(3, 30) * TICK;
                    self.schedule(self.now + next, Event::Fault);
                }
            }
            Event::Quiet { on } => {
                if self.chaos {
                    for client in &mut self.clients {
                        client.reads_only = on;
                    }
                    let next = if on {
                        self.rng.range(15, 60)
                    } else {
                        self.rng.range(20, 120)
                    };
                    self.schedule(self.now + next * TICK, Event::Quiet { on: !on });
                } else {
                    for client in &mut self.clients {
                        client.reads_only = false;
                    }
                }
            }
            Event::Isolate { node } => {
                if self.chaos {
                    let id = self.nodes[node].id;
                    self.log(|| format!("ISOLATE node {id}"));
                    self.network
                        .partition(&BTreeSet::from([id]), &self.ids.clone());
                }
            }
            Event::Heal => self.heal(),
            Event::StopClients => {
                for c in &mut self.clients {
                    c.stop();
                }
                let end = self.now + DRAIN_TICKS * TICK;
                self.schedule(end, Event::End);
            }
            Event::End => {
                // A node that is still catching up (a rejoined node copies the whole log,
                // at its own fsync pace) gets more time while it makes progress.
                let applied: Vec<Index> = (0..self.nodes.len())
                    .filter(|&n| self.is_participant(n))
                    .map(|n| self.nodes[n].applied_index())
                    .collect();
                let slowest = applied.iter().copied().min();
                let converged = applied.iter().all(|&a| Some(a) == slowest);
                if !converged && slowest > self.drain_progress && self.drain_extensions < 20 {
                    self.drain_progress = slowest;
                    self.drain_extensions += 1;
                    self.schedule(self.now + DRAIN_TICKS * TICK, Event::End);
                } else {
                    self.finished = true;
                }
            }
        }
    }

    /// Sets `node`'s wall clock to now, before it takes an input.
    /// Sets a node's clocks before it handles anything: true time (its monotonic clock
    /// derives from it) and its wall clock.
    fn set_wall_clock(&mut self, node: usize) {
        self.nodes[node].now = self.now;
        self.nodes[node].wall_clock_ms = (EPOCH_MS + microticks_to_ms(self.now))
            .saturating_add_signed(self.wall_clock_offset_ms[node]);
    }

    fn node_input(&mut self, node: usize, input: Input) {
        self.set_wall_clock(node);
        let mut fx = Effects::default();
        self.nodes[node].input(input, &mut fx);
        self.after_node(node, fx);
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.raw.as_ref())
            .map(|r| r.status())
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }
}

/// Runs one seed to the end (or its first violation).
pub fn run(config: SimConfig) -> RunReport {
    World::new(config).run()
}

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
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use quorate_payments::machine::{self, MAX_WALL_CLOCK_LEAD_MS};
use quorate_raft_core::bootstrap::{self, ClusterState, Decision, PeerState};
use quorate_raft_core::rng::SplitMix64;
use quorate_raft_core::{ConfState, Config, Index, Message, NodeId, Role, Status};

use crate::client::{Client, ClientAction, Request, Response};
use crate::clock::{microticks_to_ms, EPOCH_MS, TICK};
use crate::invariants::{Invariants, LogView, Violation};
use crate::linearizability::{self, Verdict};
use crate::network::{Network, Weather};
use crate::node::{Effects, Forward, Input, SimNode, IDEMPOTENCY_WINDOW_MS};
use crate::trace::TraceHash;
use crate::workload::{LeaseStats, LeaseWorker, PaymentClient, Plan, Workload};

/// Lease workers sharing the run's one writer lease.
const LEASE_WORKERS: usize = 2;

/// The kinds of fault a run uses. Swarm testing (Groce et al., ISSTA 2012): each seed
/// enables a random subset, which exposes bugs that an always-everything mix hides (a lease bug
/// needs a stable leader and a one-way cut; constant crashes would mask it).
#[derive(Clone, Debug)]
pub struct Swarm {
    /// Random symmetric splits.
    pub partitions: bool,
    /// Cutting the leader off.
    pub leader_isolation: bool,
    /// One-way link cuts.
    pub one_way_cuts: bool,
    /// Crashes of random nodes and of the leader.
    pub crashes: bool,
    /// Message loss, duplication and delay spikes.
    pub storms: bool,
    /// Operator-initiated leadership transfers.
    pub transfers: bool,
    /// Periods in which clients only read (so a cut-off follower's log stays up to date).
    pub quiet_periods: bool,
    /// Chance (per mille) that a new leader is crashed or cut off within a few ticks.
    pub flap_per_mille: u64,
    /// Chance (per mille) that a node with unsynced writes loses power at a bad moment.
    pub unsynced_crash_per_mille: u64,
    /// Chance (per mille) that a leader crashes the instant it first advances its commit index
    /// in its term, before anything it sends next leaves: the moment a leader first acts on
    /// what it believes is committed.
    pub crash_after_first_commit_per_mille: u64,
    /// Machines that die with their disk: the node is started again on an empty one, by an
    /// operator who sometimes forgets to say it rejoins (`--initial-cluster-state new`). One
    /// disk at a time: until the last one is whole again, no other is lost.
    pub disk_loss: bool,
    /// Processes frozen for a while (SIGSTOP, a stalled VM), often the leader's: what reached
    /// them meanwhile is handled when they run again.
    pub pauses: bool,
}

impl Swarm {
    fn draw(rng: &mut SplitMix64) -> Self {
        let mut on = |per_mille| rng.chance(per_mille, 1000);
        let mut swarm = Swarm {
            partitions: on(700),
            leader_isolation: on(700),
            one_way_cuts: on(700),
            crashes: on(700),
            storms: on(700),
            transfers: on(500),
            quiet_periods: on(500),
            flap_per_mille: 0,
            unsynced_crash_per_mille: 0,
            crash_after_first_commit_per_mille: 0,
            disk_loss: false,
            pauses: false,
        };
        if rng.chance(1, 2) {
            swarm.crash_after_first_commit_per_mille = rng.range(100, 700);
        }
        if rng.chance(1, 2) {
            swarm.flap_per_mille = rng.range(100, 900);
        }
        if rng.chance(2, 3) {
            swarm.unsynced_crash_per_mille = rng.range(1, 10);
        }
        swarm
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKind {
    Heal,
    Partition,
    IsolateLeader,
    OneWayCut,
    CrashAny,
    CrashLeader,
    LoseDisk,
    Pause,
    Storm,
    Calm,
    Transfer,
}

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
    max_down: usize,
    /// Per node: the term in which its first commit as leader was seen.
    first_commit_seen: Vec<Option<u64>>,
    /// Per node: its commit index when it last was not leader.
    commit_at_election: Vec<u64>,
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

impl World {
    fn new(config: SimConfig) -> Self {
        #[cfg(feature = "bug-injection")]
        quorate_payments::machine::inject_unbounded_wall_clock(matches!(
            config.bug,
            Some(Bug::FollowerClockTrusted | Bug::LeaderClockUnbounded)
        ));
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
        #[cfg(feature = "bug-injection")]
        if config.bug == Some(Bug::Raft(quorate_raft_core::InjectedBug::AmnesiacVoter)) {
            swarm.disk_loss = true;
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
            ids,
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
            max_down: config.nodes,
            first_commit_seen: vec![None; config.nodes],
            commit_at_election: vec![0; config.nodes],
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
                let period = self.nodes[node].tick_period;
                self.schedule(self.now + period, Event::Tick { node, incarnation });
            }
            Event::Deliver(message) => {
                let node = (message.to - 1) as usize;
                if self.network.is_blocked(message.from, message.to) || !self.nodes[node].is_up() {
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
                let action = self.clients[client].wake(self.now, &self.ids);
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
                let action = self.clients[client].on_response(self.now, from, response, &self.ids);
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
                let slowest = self.nodes.iter().map(SimNode::applied_index).min();
                let converged = self
                    .nodes
                    .iter()
                    .all(|n| n.applied_index() == self.nodes[0].applied_index());
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

    /// Routes a node's effects and checks the invariants they touch.
    fn after_node(&mut self, node: usize, fx: Effects) {
        let id = self.nodes[node].id;
        let now = self.now;
        for (invariant, detail) in &fx.violations {
            self.invariants.report(invariant, now, detail.clone());
        }
        self.zombie_checked += fx.zombie_checked;
        for (prev_term, entries) in &fx.persisted {
            self.invariants.on_persist(id, *prev_term, entries, now);
        }
        for soft in &fx.soft_states {
            let term = soft.term;
            self.trace.u64(6);
            self.trace.u64(term);
            self.trace.u64(soft.role as u64);
            self.log(|| format!("node {id} is {} in term {term}", soft.role));
            self.invariants.on_role(id, soft.role, term, now);
            if soft.role == Role::Leader {
                self.maybe_flap_leader(node);
            }
            // Leader completeness, if it still leads that term (queued inputs were fed since).
            if soft.role == Role::Leader {
                if let Some(raw) = self.nodes[node]
                    .raw
                    .as_ref()
                    .filter(|r| r.status().term == term)
                {
                    self.invariants
                        .on_became_leader(id, term, |i| raw.term_at(i), now);
                }
            }
        }
        for applied in &fx.applied {
            self.trace.u64(7);
            self.trace.u64(applied.entry.index);
            self.invariants.on_apply(
                id,
                &applied.entry,
                &applied.output,
                applied.events_written,
                now,
            );
        }
        if !fx.applied.is_empty() {
            self.check_clock_bounded(node);
        }
        let committed_before = self.invariants.committed_index();
        if let Some(raw) = self.nodes[node].raw.as_ref() {
            let status = raw.status();
            self.invariants
                .on_commit(id, status.commit_index, |i| raw.term_at(i), now);
            if self.invariants.committed_index() > committed_before {
                self.check_electable();
            }
            if status.role == Role::Leader {
                let first = self.first_commit_seen[node] != Some(status.term)
                    && status.commit_index > self.commit_at_election[node];
                if first {
                    self.first_commit_seen[node] = Some(status.term);
                    self.maybe_crash_after_first_commit(node);
                }
            } else {
                self.commit_at_election[node] = status.commit_index;
            }
        }
        for message in fx.messages {
            for delay in self.network.route(&mut self.rng, &message) {
                let copy = message.clone();
                self.schedule(now + delay, Event::Deliver(copy));
            }
        }
        for forward in fx.forwards {
            for delay in self.network.route_between(&mut self.rng, id, forward.to) {
                let forward = forward.clone();
                self.schedule(now + delay, Event::Forwarded { from: id, forward });
            }
        }
        for response in fx.responses {
            let delay = self.rng.range(20, 200);
            self.schedule(now + delay, Event::ClientResponse { from: id, response });
        }
        if let Some(must_sync) = fx.ready_started {
            let incarnation = self.nodes[node].incarnation;
            let latency = if must_sync {
                self.rng.range(50, 600)
            } else {
                self.rng.range(1, 20)
            };
            self.schedule(now + latency, Event::ReadyDone { node, incarnation });
            // Power loss in the middle of an fsync.
            if self.chaos && must_sync && self.rng.chance(self.swarm.unsynced_crash_per_mille, 1000)
            {
                let at = now + self.rng.range(0, latency);
                self.schedule(at, Event::Crash { node, incarnation });
            }
        }
    }

    /// A node holds unsynced writes after a Ready (e.g. a changed commit index, or a vote when
    /// a bug skips the sync): sometimes crash it before anything syncs them.
    fn maybe_crash_unsynced(&mut self, node: usize, unsynced_vote_sent: bool) {
        // The worst moment of all: the Ready's messages are out but its vote is not durable
        // (only a driver that skips the vote's sync gets here). Crash soon, often.
        if self.chaos && unsynced_vote_sent && self.rng.chance(1, 4) {
            let incarnation = self.nodes[node].incarnation;
            let at = self.now + self.rng.range(0, TICK);
            self.schedule(at, Event::Crash { node, incarnation });
            return;
        }
        if self.chaos
            && self.nodes[node].has_unsynced()
            && self.rng.chance(self.swarm.unsynced_crash_per_mille, 1000)
        {
            let incarnation = self.nodes[node].incarnation;
            let at = self.now + self.rng.range(0, 3 * TICK);
            self.schedule(at, Event::Crash { node, incarnation });
        }
    }

    /// `clock-bounded`: a node's machine clock is never further ahead of true time than the
    /// first stamp put it (the first leader's wall clock sets the origin, whatever it reads)
    /// plus `MAX_WALL_CLOCK_LEAD_MS` for every term whose leader stamped commands (each term's
    /// leader may move it that far beyond its monotonic clock), plus a second of slack for
    /// replication delays and the honest clocks' few hundred milliseconds.
    fn check_clock_bounded(&mut self, node: usize) {
        let meta = machine::machine_status(&self.nodes[node].machine)
            .expect("a MemStore never fails a read");
        if meta.clock_ms == 0 {
            return;
        }
        let true_ms = (EPOCH_MS + microticks_to_ms(self.now)) as i64;
        let origin = *self
            .clock_origin_offset_ms
            .get_or_insert(meta.clock_ms as i64 - true_ms);
        let bound =
            true_ms + origin + (MAX_WALL_CLOCK_LEAD_MS * meta.clock_term.max(1)) as i64 + 1_000;
        if meta.clock_ms as i64 > bound {
            let id = self.nodes[node].id;
            self.invariants.report(
                "clock-bounded",
                self.now,
                format!(
                    "node {id}'s machine clock is {} ms ahead of true time, beyond the first \
                     stamp's {origin} ms and {} ms for each of {} terms: some node's wall clock \
                     moved it",
                    meta.clock_ms as i64 - true_ms,
                    MAX_WALL_CLOCK_LEAD_MS,
                    meta.clock_term
                ),
            );
        }
    }

    /// Leader completeness over every node that could win an election now.
    fn check_electable(&mut self) {
        type TermReader<'a> = Box<dyn Fn(u64) -> Option<u64> + 'a>;
        let running: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.raw.as_ref().map(|raw| (n.id, raw, raw.status())))
            .collect();
        let readers: Vec<TermReader<'_>> = running
            .iter()
            .map(|(_, raw, _)| -> TermReader<'_> { Box::new(move |i| raw.term_at(i)) })
            .collect();
        let views: Vec<LogView<'_>> = running
            .iter()
            .zip(&readers)
            .map(|((id, _, status), reader)| LogView {
                id: *id,
                last_index: status.last_log_index,
                last_term: status.last_log_term,
                term_at: reader.as_ref(),
            })
            .collect();
        self.invariants.check_electable(&views, self.now);
    }

    fn maybe_crash_after_first_commit(&mut self, node: usize) {
        if self.chaos
            && self
                .rng
                .chance(self.swarm.crash_after_first_commit_per_mille, 1000)
        {
            let incarnation = self.nodes[node].incarnation;
            self.schedule(self.now, Event::Crash { node, incarnation });
        }
    }

    /// Leader flapping: a new leader is sometimes crashed or cut off within a few ticks, before
    /// its first entries reach everyone. Short reigns leave partially replicated tails of
    /// several terms behind, the histories of Raft's figure 8.
    fn maybe_flap_leader(&mut self, node: usize) {
        if !self.chaos || !self.rng.chance(self.swarm.flap_per_mille, 1000) {
            return;
        }
        let at = self.now + self.rng.range(0, 4 * TICK);
        let incarnation = self.nodes[node].incarnation;
        if self.rng.chance(1, 2) {
            self.schedule(at, Event::Crash { node, incarnation });
        } else {
            self.schedule(at, Event::Isolate { node });
        }
    }

    fn client_action(&mut self, client: usize, action: ClientAction) {
        match action {
            ClientAction::Send(target, request) => {
                let node = (target - 1) as usize;
                let delay = self.rng.range(20, 200);
                self.schedule(self.now + delay, Event::ClientRequest { node, request });
            }
            ClientAction::Sleep => {}
        }
        if let Some(at) = self.clients[client].next_wake() {
            self.wake_client_at(client, at.max(self.now));
        }
    }

    fn wake_client_at(&mut self, client: usize, at: u64) {
        if self.client_wake[client].is_some_and(|t| t <= at) {
            return;
        }
        self.client_wake[client] = Some(at);
        self.schedule(at, Event::ClientWake { client });
    }

    fn crash(&mut self, node: usize) {
        let down = self.nodes.iter().filter(|n| !n.is_up()).count();
        if down >= self.max_down {
            return;
        }
        self.crashes += 1;
        self.trace.u64(8);
        self.trace.u64(node as u64);
        self.log(|| format!("CRASH node {}", node + 1));
        self.nodes[node].crash();
        if self.chaos {
            // A supervisor restarts a crashed process within a tick; a dead machine takes
            // longer.
            let downtime = if self.rng.chance(1, 3) {
                self.rng.range(50, TICK)
            } else {
                self.rng.range(1, 60) * TICK
            };
            self.schedule(self.now + downtime, Event::Restart { node });
        }
    }

    /// A process freezes for 5 to 40 ticks (often the leader): longer than an election
    /// timeout, the others elect a new leader meanwhile.
    fn pause(&mut self) {
        let node = match self.leader() {
            Some(leader) if self.rng.chance(2, 3) => (leader - 1) as usize,
            _ => self.rng.range(0, self.nodes.len() as u64) as usize,
        };
        if !self.nodes[node].is_up() || self.nodes[node].is_paused() {
            return;
        }
        let ticks = self.rng.range(5, 40);
        self.trace.u64(12);
        self.trace.u64(node as u64);
        self.log(|| format!("PAUSE node {} for {ticks} ticks", node + 1));
        self.nodes[node].pause();
        let incarnation = self.nodes[node].incarnation;
        self.schedule(self.now + ticks * TICK, Event::Resume { node, incarnation });
    }

    fn resume(&mut self, node: usize) {
        if !self.nodes[node].is_paused() {
            return;
        }
        self.trace.u64(13);
        self.trace.u64(node as u64);
        self.log(|| format!("RESUME node {}", node + 1));
        self.set_wall_clock(node);
        let mut fx = Effects::default();
        self.nodes[node].resume(&mut fx);
        self.after_node(node, fx);
    }

    /// A machine dies with its disk. Most often a follower that holds the leader's latest
    /// entries (so it may be needed to keep a write committed), sometimes any node. Never
    /// while another node is still without its disk or rejoining.
    fn lose_disk(&mut self) {
        let amnesiac = self.nodes.iter().any(SimNode::is_amnesiac);
        let down = self.nodes.iter().filter(|n| !n.is_up()).count();
        if amnesiac || down >= self.max_down {
            return;
        }
        let leader = self.leader();
        let best_follower = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_up() && Some(n.id) != leader)
            .max_by_key(|(_, n)| n.raw.as_ref().map(|r| r.status().last_log_index))
            .map(|(i, _)| i);
        let node = match best_follower {
            Some(node) if self.rng.chance(2, 3) => node,
            _ => self.rng.range(0, self.nodes.len() as u64) as usize,
        };
        if !self.nodes[node].is_up() {
            return;
        }
        let mode = if self.rng.chance(1, 2) {
            ClusterState::New
        } else {
            ClusterState::Existing
        };
        self.crashes += 1;
        self.trace.u64(11);
        self.trace.u64(node as u64);
        self.log(|| format!("LOSE DISK node {} (will start as {mode:?})", node + 1));
        self.nodes[node].lose_disk(mode);
        let downtime = self.rng.range(1, 60) * TICK;
        self.schedule(self.now + downtime, Event::Restart { node });
    }

    /// Starts a node whose disk was lost as `bootstrap::decide` says, from the answers of the
    /// peers it can reach both ways. Returns false if it must try again later.
    fn start_without_disk(&mut self, node: usize, mode: ClusterState) -> bool {
        let me = self.nodes[node].id;
        let answers: BTreeMap<NodeId, Option<PeerState>> = (0..self.nodes.len())
            .filter(|&peer| peer != node)
            .map(|peer| {
                let id = self.nodes[peer].id;
                let reachable =
                    !self.network.is_blocked(me, id) && !self.network.is_blocked(id, me);
                let answer = if reachable {
                    self.nodes[peer].peer_state()
                } else {
                    None
                };
                (id, answer)
            })
            .collect();
        match bootstrap::decide(me, mode, &answers) {
            Decision::Bootstrap => self.nodes[node].start_on_new_disk(None),
            Decision::Rejoin(hard_state) => {
                self.log(|| format!("REJOIN node {me} at {hard_state:?}"));
                self.nodes[node].start_on_new_disk(Some(hard_state));
            }
            Decision::Wait { missing } => {
                self.log(|| format!("node {me} waits for peers {missing:?}"));
                return false;
            }
            Decision::Refuse(reason) => {
                // The operator reads the reason and starts it as it says.
                self.log(|| format!("node {me} refuses to start: {reason}"));
                self.nodes[node].disk_lost = Some(ClusterState::Existing);
                return false;
            }
        }
        true
    }

    fn restart(&mut self, node: usize) {
        if self.nodes[node].is_up() {
            return;
        }
        if let Some(mode) = self.nodes[node].disk_lost {
            if !self.start_without_disk(node, mode) {
                self.schedule(self.now + TICK, Event::Restart { node });
                return;
            }
        }
        self.trace.u64(9);
        self.trace.u64(node as u64);
        self.log(|| format!("RESTART node {}", node + 1));
        self.nodes[node].now = self.now;
        self.nodes[node].restart();
        self.invariants.on_restart(self.nodes[node].id);
        let incarnation = self.nodes[node].incarnation;
        let period = self.nodes[node].tick_period;
        self.schedule(self.now + period, Event::Tick { node, incarnation });
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

    fn inject_fault(&mut self) {
        let mut kinds = vec![FaultKind::Heal];
        let swarm = self.swarm.clone();
        for (enabled, kind) in [
            (swarm.partitions, FaultKind::Partition),
            (swarm.leader_isolation, FaultKind::IsolateLeader),
            (swarm.one_way_cuts, FaultKind::OneWayCut),
            (swarm.crashes, FaultKind::CrashAny),
            (swarm.crashes, FaultKind::CrashLeader),
            (swarm.disk_loss, FaultKind::LoseDisk),
            (swarm.disk_loss, FaultKind::LoseDisk),
            (swarm.pauses, FaultKind::Pause),
            (swarm.pauses, FaultKind::Pause),
            (swarm.storms, FaultKind::Storm),
            (swarm.storms, FaultKind::Calm),
            (swarm.transfers, FaultKind::Transfer),
        ] {
            if enabled {
                kinds.push(kind);
            }
        }
        let kind = kinds[self.rng.range(0, kinds.len() as u64) as usize];
        let all = self.ids.clone();
        match kind {
            FaultKind::Partition => {
                // A random split, symmetric.
                let side: BTreeSet<NodeId> = all
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(1, 2))
                    .collect();
                self.network.heal();
                self.network.partition(&side, &all);
            }
            FaultKind::IsolateLeader => {
                if let Some(leader) = self.leader() {
                    self.network.heal();
                    self.network.partition(&BTreeSet::from([leader]), &all);
                }
            }
            FaultKind::OneWayCut => {
                // One-way cuts, often away from the leader so followers stop hearing it.
                let from = match self.leader() {
                    Some(leader) if self.rng.chance(2, 3) => leader,
                    _ => all[self.rng.range(0, all.len() as u64) as usize],
                };
                for _ in 0..self.rng.range(1, 3) {
                    let to = all[self.rng.range(0, all.len() as u64) as usize];
                    if to != from {
                        self.network.cut_one_way(from, to);
                    }
                }
            }
            FaultKind::Heal => self.network.heal(),
            FaultKind::CrashAny => {
                let node = self.rng.range(0, all.len() as u64) as usize;
                if self.nodes[node].is_up() {
                    self.crash(node);
                }
            }
            FaultKind::CrashLeader => {
                if let Some(leader) = self.leader() {
                    self.crash((leader - 1) as usize);
                }
            }
            FaultKind::LoseDisk => self.lose_disk(),
            FaultKind::Pause => self.pause(),
            FaultKind::Storm => self.network.weather = Weather::stormy(&mut self.rng),
            FaultKind::Calm => self.network.weather = Weather::calm(),
            FaultKind::Transfer => {
                if let Some(leader) = self.leader() {
                    let target = all[self.rng.range(0, all.len() as u64) as usize];
                    self.set_wall_clock((leader - 1) as usize);
                    let node = &mut self.nodes[(leader - 1) as usize];
                    if node.is_paused() {
                        // A frozen process takes no operator request.
                    } else if node.is_syncing() {
                        node.queue_transfer(target);
                    } else if let Some(raw) = node.raw.as_mut() {
                        // Refusals (e.g. a transfer already running) are fine.
                        let _ = raw.transfer_leadership(target);
                        let mut fx = Effects::default();
                        node.drive(&mut fx);
                        self.after_node((leader - 1) as usize, fx);
                    }
                }
            }
        }
        self.trace.u64(10);
        self.trace.u64(kind as u64);
        self.log(|| {
            format!(
                "FAULT {kind:?}: partitions {} weather {:?}",
                self.network.describe(),
                self.network.weather
            )
        });
    }

    fn heal(&mut self) {
        self.chaos = false;
        for client in &mut self.clients {
            client.reads_only = false;
        }
        self.network.heal();
        self.network.weather = Weather::calm();
        self.log(|| "HEAL".to_string());
        for node in 0..self.nodes.len() {
            self.resume(node);
            self.restart(node);
        }
    }

    /// Checks after every event: lease safety; after healing, liveness.
    fn check_every_step(&mut self) {
        // Election safety from every node's state after every event, not only from the role
        // changes its Readies report (a leadership can begin and end between two Readies).
        let leading: Vec<(NodeId, u64)> = self
            .nodes
            .iter()
            .filter_map(|n| n.raw.as_ref().map(|r| (n.id, r.soft_state())))
            .filter(|(_, s)| s.role == Role::Leader)
            .map(|(id, s)| (id, s.term))
            .collect();
        for (id, term) in leading {
            self.invariants.on_leader(id, term, self.now);
        }
        // Judged at true time: a node's lease ends by its own clock, whether or not it has
        // handled an input since (a frozen process's lease runs out while it is frozen).
        let now = self.now;
        let holders: Vec<(NodeId, u64)> = self
            .nodes
            .iter()
            .filter(|n| n.lease_holds_at(now))
            .filter_map(|n| n.raw.as_ref())
            .map(|r| (r.status().id, r.status().term))
            .collect();
        self.invariants.check_leases(&holders, self.now);
        if self.chaos || self.recovered_at.is_some() {
            return;
        }
        if let Some(leader) = self.stable_leader() {
            let backlog = match self.backlog {
                Some(b) if b.leader == leader.id && b.term == leader.term => b,
                _ => {
                    let b = Backlog {
                        leader: leader.id,
                        term: leader.term,
                        last_index: leader.last_log_index,
                        commit_index: leader.commit_index,
                    };
                    self.log(|| format!("STABLE leader {} in term {}: {b:?}", b.leader, b.term));
                    self.backlog = Some(b);
                    b
                }
            };
            if leader.commit_index >= backlog.last_index {
                self.recovered_at = Some(self.now);
                self.log(|| format!("RECOVERED: {}", self.describe_nodes()));
                // Leave one attempt's worth of slack for operations racing the recovery.
                let must_succeed_after = self.now + 6 * TICK;
                for client in &mut self.clients {
                    client.must_succeed_after = Some(must_succeed_after);
                }
                self.schedule(self.now + STEADY_TICKS * TICK, Event::StopClients);
                return;
            }
        }
        if self.now > self.heal_at + HEAL_BOUND_TICKS * TICK {
            let detail = format!(
                "no stable leader that committed its log {HEAL_BOUND_TICKS} ticks after every \
                 fault healed (backlog {:?}): {}",
                self.backlog,
                self.describe_nodes()
            );
            self.invariants
                .fail_liveness("liveness-leader", self.now, detail);
        }
    }

    /// The leader, if there is one, recognised by every node, all in its term, all up.
    fn stable_leader(&self) -> Option<Status> {
        let statuses: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.raw.as_ref().map(|r| r.status()))
            .collect();
        if statuses.len() != self.nodes.len() {
            return None;
        }
        let leader = statuses.iter().find(|s| s.role == Role::Leader)?;
        statuses
            .iter()
            .all(|s| s.term == leader.term && s.leader_id == Some(leader.id))
            .then(|| leader.clone())
    }

    fn describe_nodes(&self) -> String {
        self.nodes
            .iter()
            .map(|n| match n.raw.as_ref().map(|r| r.status()) {
                Some(s) => format!(
                    "n{}:{}/t{}/lead{:?}/commit{}/last{}",
                    s.id, s.role, s.term, s.leader_id, s.commit_index, s.last_log_index
                ),
                None => format!("n{}:down", n.id),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// End of run: liveness of client operations, convergence, exactly-once on every
    /// replica's state, linearizability.
    fn finish(mut self) -> RunReport {
        let mut inconclusive = false;
        if self.invariants.violation.is_none() {
            for client in &mut self.clients {
                client.abandon(self.now);
            }
            let failures: Vec<String> = self
                .clients
                .iter()
                .flat_map(|c| c.liveness_failures.iter().cloned())
                .collect();
            if let Some(first) = failures.first() {
                let detail = format!(
                    "{} operations failed after healing; first: {first}",
                    failures.len()
                );
                self.invariants
                    .fail_liveness("liveness-operations", self.now, detail);
            }
            self.check_convergence();
            self.check_exactly_once();
            let history: Vec<_> = self
                .clients
                .iter()
                .flat_map(|c| c.history.iter().cloned())
                .collect();
            match linearizability::check(&history, 2_000_000) {
                Verdict::Linearizable => {}
                // A history the checker could not decide is not a pass: the run counts as a
                // violation, so a sweep never reports safety it did not check.
                Verdict::Inconclusive { key } => {
                    inconclusive = true;
                    self.invariants.report(
                        "linearizability-inconclusive",
                        self.now,
                        format!("the linearizability search for payment {key} exceeded its budget"),
                    );
                }
                Verdict::NotLinearizable { explanation, .. } => {
                    self.invariants
                        .fail_liveness("linearizability", self.now, explanation);
                }
            }
        }
        let operations: usize = self.clients.iter().map(|c| c.history.len()).sum();
        let mut leases = LeaseStats::default();
        for client in &self.clients {
            leases += client.plan().lease_stats();
        }
        let unknown = self
            .clients
            .iter()
            .flat_map(|c| &c.history)
            .filter(|op| op.ret.is_none())
            .count();
        self.trace.u64(self.steps);
        RunReport {
            seed: self.config.seed,
            nodes: self.config.nodes,
            steps: self.steps,
            trace_hash: self.trace.finish(),
            violation: self.invariants.violation.take(),
            operations,
            unknown,
            refused: self.clients.iter().map(|c| c.refused).sum(),
            leases,
            failed: self.clients.iter().map(|c| c.failed).sum(),
            elections: self.invariants.elections(),
            crashes: self.crashes,
            committed: self.invariants.committed_index(),
            inconclusive,
            zombie_checked: self.zombie_checked,
            heal_backlog: self
                .backlog
                .map_or(0, |b| b.last_index.saturating_sub(b.commit_index)),
        }
    }

    fn check_convergence(&mut self) {
        // A node that lost its disk is whole again once a leader elected without it has
        // brought it up to date; a healed cluster that commits elects one.
        if let Some(node) = self.nodes.iter().find(|n| n.is_amnesiac()) {
            let detail = format!(
                "node {} is still rejoining after its disk was lost, {DRAIN_TICKS} ticks after \
                 the last operation: {}",
                node.id,
                self.describe_nodes()
            );
            self.invariants
                .fail_liveness("liveness-rejoin", self.now, detail);
            return;
        }
        let states: Vec<(NodeId, u64, u64)> = self
            .nodes
            .iter()
            .map(|n| (n.id, n.applied_index(), n.state_fingerprint()))
            .collect();
        let first = states[0];
        if states.iter().any(|s| (s.1, s.2) != (first.1, first.2)) {
            let detail = format!(
                "replicas differ {DRAIN_TICKS} ticks after the last operation: \
                 (node, applied index, state fingerprint) {states:?}; {}",
                self.describe_nodes()
            );
            self.invariants
                .fail_liveness("liveness-convergence", self.now, detail);
        }
    }

    fn check_exactly_once(&mut self) {
        for node in &self.nodes {
            self.invariants
                .check_store(node.id, &node.machine, self.now);
        }
    }
}

/// Runs one seed to the end (or its first violation).
pub fn run(config: SimConfig) -> RunReport {
    World::new(config).run()
}

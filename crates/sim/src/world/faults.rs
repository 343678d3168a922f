//! The fault schedule: which kinds of fault a seed uses (swarm testing), injecting them, and
//! what happens to a node that crashes, freezes or loses its disk.

use std::collections::{BTreeMap, BTreeSet};

use quorate_raft_core::bootstrap::{self, ClusterState, Decision, PeerState};
use quorate_raft_core::rng::SplitMix64;
use quorate_raft_core::{NodeId, Storage};

use super::{Event, World};
use crate::clock::TICK;
use crate::network::Weather;
use crate::node::{Effects, SimNode};

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
    /// Nodes snapshot their machines and compact their logs at random moments (then
    /// followers behind a leader's compaction catch up through InstallSnapshot).
    pub snapshots: Option<SnapshotPolicy>,
    /// The operator changes the membership through the leader (see `membership.rs`).
    pub membership: bool,
}

/// When nodes snapshot.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// Chance (per mille) that a node snapshots at one of its ticks.
    pub per_mille_per_tick: u64,
    /// Entries left in the log behind the snapshot, for slow followers.
    pub margin: u64,
}

impl SnapshotPolicy {
    /// On in three runs of four: from every tick to one in fifty, keeping from no entry to
    /// twenty behind the snapshot.
    pub(super) fn draw(rng: &mut SplitMix64) -> Option<Self> {
        if !rng.chance(3, 4) {
            return None;
        }
        let per_mille_per_tick = [20, 100, 300, 1000][rng.range(0, 4) as usize];
        let margin = [0, 0, 2, 20][rng.range(0, 4) as usize];
        Some(SnapshotPolicy {
            per_mille_per_tick,
            margin,
        })
    }
}

impl Swarm {
    pub(super) fn draw(rng: &mut SplitMix64) -> Self {
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
            snapshots: None,
            membership: false,
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
pub(super) enum FaultKind {
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
    Membership,
}

impl World {
    /// A node holds unsynced writes after a Ready (e.g. a changed commit index, or a vote when
    /// a bug skips the sync): sometimes crash it before anything syncs them.
    pub(super) fn maybe_crash_unsynced(&mut self, node: usize, unsynced_vote_sent: bool) {
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

    pub(super) fn maybe_crash_after_first_commit(&mut self, node: usize) {
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
    pub(super) fn maybe_flap_leader(&mut self, node: usize) {
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

    pub(super) fn crash(&mut self, node: usize) {
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
    pub(super) fn pause(&mut self) {
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

    pub(super) fn resume(&mut self, node: usize) {
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
    pub(super) fn lose_disk(&mut self) {
        let amnesiac = self.nodes.iter().any(SimNode::is_amnesiac);
        let down = self.nodes.iter().filter(|n| !n.is_up()).count();
        if amnesiac || down >= self.max_down {
            return;
        }
        let leader = self.leader();
        let members = self.members();
        let best_follower = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_up() && Some(n.id) != leader && members.contains(&n.id))
            .max_by_key(|(_, n)| n.raw.as_ref().map(|r| r.status().last_log_index))
            .map(|(i, _)| i);
        let node = match best_follower {
            Some(node) if self.rng.chance(2, 3) => node,
            _ => self.rng.range(0, self.nodes.len() as u64) as usize,
        };
        if !self.nodes[node].is_up() || !members.contains(&self.nodes[node].id) {
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
    pub(super) fn start_without_disk(&mut self, node: usize, mode: ClusterState) -> bool {
        let me = self.nodes[node].id;
        let answers: BTreeMap<NodeId, Option<PeerState>> = self
            .peers_of(node)
            .into_iter()
            .map(|peer| {
                let id = self.nodes[peer].id;
                let reachable =
                    !self.network.is_blocked(me, id) && !self.network.is_blocked(id, me);
                let answer = if reachable {
                    self.nodes[peer].peer_state(me)
                } else {
                    None
                };
                (id, answer)
            })
            .collect();
        match bootstrap::decide(me, mode, &answers) {
            Decision::Bootstrap => self.nodes[node].start_on_new_disk(None, false),
            Decision::Rejoin(hard_state) => {
                self.log(|| format!("REJOIN node {me} at {hard_state:?}"));
                self.nodes[node].start_on_new_disk(Some(hard_state), false);
            }
            Decision::Join => {
                self.log(|| format!("JOIN node {me}: a learner starts empty"));
                self.nodes[node].start_on_new_disk(None, true);
            }
            Decision::Wait { missing } => {
                self.log(|| format!("node {me} waits for peers {missing:?}"));
                return false;
            }
            Decision::NotYetAdded => {
                self.log(|| format!("node {me} waits to be added"));
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

    /// Sometimes, at one of `node`'s ticks, it snapshots its machine and compacts its log
    /// as far as the policy allows.
    pub(super) fn maybe_snapshot(&mut self, node: usize) {
        let Some(policy) = self.swarm.snapshots else {
            return;
        };
        if !self.snapshot_rng.chance(policy.per_mille_per_tick, 1000) {
            return;
        }
        let Some(commit) = self.nodes[node]
            .raw
            .as_ref()
            .map(|r| r.status().commit_index)
        else {
            return;
        };
        let mut fx = Effects::default();
        self.nodes[node].take_snapshot(commit, policy.margin, &mut fx);
        self.after_node(node, fx);
    }

    pub(super) fn restart(&mut self, node: usize) {
        let id = self.nodes[node].id;
        if self.nodes[node].is_up() || self.retired.contains(&id) {
            return;
        }
        if self.nodes[node].disk_lost.is_some() && !self.is_participant(node) {
            // Removed while its disk was gone: the operator does not bring it back.
            self.log(|| format!("RETIRE node {id} (removed while its disk was lost)"));
            self.retired.insert(id);
            self.targets.retain(|&t| t != id);
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
        self.invariants.on_restart(id);
        if let Some(raw) = self.nodes[node].raw.as_ref() {
            // Its machine came back from its snapshot.
            let meta = raw.store().snapshot().expect("a MemStorage snapshot").meta;
            self.invariants
                .on_snapshot_restored(id, meta.index, meta.term, self.now);
        }
        let incarnation = self.nodes[node].incarnation;
        let period = self.nodes[node].tick_period;
        self.schedule(self.now + period, Event::Tick { node, incarnation });
    }

    pub(super) fn inject_fault(&mut self) {
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
            (swarm.membership, FaultKind::Membership),
            (swarm.membership, FaultKind::Membership),
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
            FaultKind::Membership => self.change_membership(),
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

    pub(super) fn heal(&mut self) {
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
}

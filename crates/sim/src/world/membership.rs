//! Membership changes in a run, and the invariants that watch them.
//!
//! In runs that enable them (see [`super::Swarm::membership`]), the operator changes the
//! membership at random moments of the chaos phase, through the leader: adds learners (brand-new
//! nodes with fresh ids and empty disks), promotes them, removes members (the leader too),
//! replaces a voter in one joint step, grows 3 → 5 and shrinks 5 → 3. A removed node is
//! either shut down for good or left running, cut off from the log, to try its luck with
//! elections.
//!
//! Invariants (each computed from the logs themselves, not from the core's bookkeeping):
//!
//! - `membership-transition`: every membership entry in any log follows the one before it
//!   in that log as joint consensus allows: learners change freely; the voters change only by
//!   entering the joint configuration whose outgoing half is the old voters, and a joint
//!   configuration is left only for its incoming half;
//! - `conf-in-force`: every node decides with the latest membership in its log, committed or
//!   not (the configuration it reports equals the one its log's last membership entry sets);
//! - `commit-quorum`: every index a leader commits is stored, by its own progress, on a
//!   majority of each half of the configuration in force in its log.

use std::collections::BTreeSet;

use quorate_raft_core::membership::valid_transition;
use quorate_raft_core::{
    ConfState, EntryKind, Index, MemberChange, Membership, NodeId, Role, Storage, Term,
};

use super::{raft_config, Event, World};
use crate::node::{Effects, SimNode};

/// Largest voter set and membership the operator builds.
const MAX_VOTERS: usize = 7;
const MAX_MEMBERS: usize = 9;

/// What a node's log says about membership, found by reading the log (cached: see
/// [`World::conf_in_log`]).
#[derive(Clone, Debug, Default)]
pub(super) struct ConfScan {
    /// The log was read up to this entry: by log matching, every log that holds it has the
    /// same prefix, so `found` holds for them all.
    upto: Option<(Index, Term)>,
    /// The last membership entry at or before `upto`, if any (else the snapshot's, or the
    /// bootstrap one).
    found: Option<(Index, ConfState)>,
}

fn quorum_of(voters: &BTreeSet<NodeId>, holds: impl Fn(NodeId) -> bool) -> bool {
    voters.is_empty() || voters.iter().filter(|&&id| holds(id)).count() > voters.len() / 2
}

impl World {
    /// The membership last committed (by the highest-index membership entry any node
    /// applied), or the bootstrap one.
    pub(super) fn members(&self) -> BTreeSet<NodeId> {
        self.committed_conf.1.members()
    }

    /// A membership entry was applied somewhere at `index`.
    pub(super) fn on_membership_applied(&mut self, index: Index, conf: ConfState) {
        if index <= self.committed_conf.0 {
            return;
        }
        self.log(|| format!("MEMBERSHIP committed at {index}: {conf:?}"));
        self.committed_conf = (index, conf);
        self.membership_changes += 1;
        if self.committed_conf.1.is_joint() {
            return;
        }
        // The operator takes removed nodes out of service: shut down, or (sometimes) left
        // running, where the others must not let them disturb anything.
        let members = self.members();
        let removed: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let id = self.nodes[i].id;
                self.ever_member.contains(&id)
                    && !members.contains(&id)
                    && !self.retired.contains(&id)
                    && !self.left_running.contains(&id)
            })
            .collect();
        for node in removed {
            let id = self.nodes[node].id;
            if self.rng.chance(1, 2) {
                self.log(|| format!("RETIRE node {id}"));
                self.nodes[node].crash();
                self.retired.insert(id);
                self.targets.retain(|&t| t != id);
            } else {
                self.log(|| format!("node {id} was removed and keeps running"));
                self.left_running.insert(id);
            }
        }
        for id in &members {
            self.ever_member.insert(*id);
        }
    }

    /// A new node with a fresh id, an empty disk and no configuration: it waits for a leader
    /// to add it.
    fn spawn_node(&mut self) -> usize {
        let id = self.nodes.len() as NodeId + 1;
        let config = raft_config(id, self.config.seed, &mut self.rng);
        let node = self.nodes.len();
        let period = self.nodes[0].tick_period;
        let mut fresh = SimNode::new(config, ConfState::default(), period);
        fresh.now = self.now;
        self.nodes.push(fresh);
        self.ids.push(id);
        self.targets.push(id);
        self.wall_clock_offset_ms
            .push(self.rng.range(0, 300) as i64);
        self.first_commit_seen.push(None);
        self.commit_at_election.push(0);
        self.conf_scans.push(ConfScan::default());
        self.leader_commit_checked.push(0);
        self.log(|| format!("SPAWN node {id}"));
        self.schedule(
            self.now + period,
            Event::Tick {
                node,
                incarnation: 0,
            },
        );
        node
    }

    /// The operator asks the leader for a membership change.
    pub(super) fn change_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let node = (leader - 1) as usize;
        if self.nodes[node].is_paused() || self.nodes[node].is_syncing() {
            return;
        }
        let Some(raw) = self.nodes[node].raw.as_ref() else {
            return;
        };
        let conf = raw.membership().1.conf.clone();
        if conf.is_joint() {
            return; // the leader leaves it on its own
        }
        let voters: Vec<NodeId> = conf.voters.iter().copied().collect();
        let learners: Vec<NodeId> = conf.learners.iter().copied().collect();
        let members = voters.len() + learners.len();
        let pick = |rng: &mut quorate_raft_core::rng::SplitMix64, from: &[NodeId]| {
            from[rng.range(0, from.len() as u64) as usize]
        };
        let next_id = self.nodes.len() as NodeId + 1;
        // (Fresh ids are named before the node exists; it is started only if the leader
        // accepts the change.)
        let (changes, fresh) = match self.rng.range(0, 6) {
            0 if members < MAX_MEMBERS => (vec![MemberChange::AddLearner(next_id)], 1),
            1 if !learners.is_empty() && voters.len() < MAX_VOTERS => {
                let learner = pick(&mut self.rng, &learners);
                (vec![MemberChange::AddVoter(learner)], 0)
            }
            2 if !learners.is_empty() || voters.len() > 3 => {
                let all: Vec<NodeId> = if voters.len() > 3 {
                    voters.iter().chain(&learners).copied().collect()
                } else {
                    learners.clone()
                };
                (vec![MemberChange::Remove(pick(&mut self.rng, &all))], 0)
            }
            3 => {
                // Replace a voter (the leader, sometimes) by a learner or a new node.
                let old = pick(&mut self.rng, &voters);
                if let Some(&learner) = learners.first() {
                    let changes = vec![MemberChange::AddVoter(learner), MemberChange::Remove(old)];
                    (changes, 0)
                } else {
                    let changes = vec![MemberChange::AddVoter(next_id), MemberChange::Remove(old)];
                    (changes, 1)
                }
            }
            4 if voters.len() + 2 <= MAX_VOTERS && members + 2 <= MAX_MEMBERS => {
                let changes = vec![
                    MemberChange::AddVoter(next_id),
                    MemberChange::AddVoter(next_id + 1),
                ];
                (changes, 2)
            }
            5 if voters.len() >= 5 => {
                let a = pick(&mut self.rng, &voters);
                let others: Vec<NodeId> = voters.iter().copied().filter(|&v| v != a).collect();
                let b = pick(&mut self.rng, &others);
                (vec![MemberChange::Remove(a), MemberChange::Remove(b)], 0)
            }
            _ => return,
        };
        self.set_wall_clock(node);
        let raw = self.nodes[node].raw.as_mut().expect("checked above");
        let proposed = raw.propose_membership(&changes, bytes::Bytes::new());
        self.trace.u64(14);
        self.trace.u64(proposed.is_ok() as u64);
        self.log(|| format!("MEMBERSHIP node {leader} proposes {changes:?}: {proposed:?}"));
        if proposed.is_err() {
            return; // refused (a change pending, a learner behind...): fine
        }
        for _ in 0..fresh {
            self.spawn_node();
        }
        let mut fx = Effects::default();
        self.nodes[node].drive(&mut fx);
        self.after_node(node, fx);
    }

    /// The last membership in `node`'s log, read from the log (with the cache in
    /// `conf_scans`); checks `membership-transition` on every membership entry read. `None`
    /// when the log has none and the node started without a configuration (a new node), or
    /// while a snapshot is being installed.
    fn conf_in_log(&mut self, node: usize) -> Option<ConfState> {
        let raw = self.nodes[node].raw.as_ref()?;
        let status = raw.status();
        let first = raw.first_index();
        let snapshot = raw.store().snapshot().ok()?.meta;
        if raw.store().first_index() != first {
            return None; // a snapshot is being installed
        }
        let mut scan = self.conf_scans[node].clone();
        let valid = scan
            .upto
            .is_some_and(|(index, term)| index + 1 >= first && raw.term_at(index) == Some(term));
        if !valid {
            // Start again from the snapshot (or the beginning).
            let base = if snapshot.index > 0 {
                Some((snapshot.index, snapshot.conf_state.clone()))
            } else if self.nodes[node].started_with_conf() {
                Some((0, self.bootstrap_conf.clone()))
            } else {
                None
            };
            scan = ConfScan {
                upto: Some((snapshot.index, snapshot.term)),
                found: base,
            };
        }
        let from = scan.upto.map_or(first, |(i, _)| i + 1);
        let mut transition_error = None;
        if from <= status.last_log_index {
            let entries = raw
                .log_entries(from, status.last_log_index + 1)
                .expect("the log holds its own entries");
            for entry in &entries {
                if entry.kind != EntryKind::Membership {
                    continue;
                }
                let Ok(membership) = Membership::decode(&entry.data) else {
                    transition_error = Some(format!(
                        "node {} holds an undecodable membership entry at {}",
                        self.nodes[node].id, entry.index
                    ));
                    break;
                };
                let before = scan
                    .found
                    .as_ref()
                    .map_or(&self.bootstrap_conf, |(_, conf)| conf);
                if let Err(detail) = valid_transition(before, &membership.conf) {
                    transition_error.get_or_insert(format!(
                        "node {}'s log: membership entry {}/{}: {detail}",
                        self.nodes[node].id, entry.index, entry.term
                    ));
                }
                scan.found = Some((entry.index, membership.conf));
            }
            if let Some(last) = entries.last() {
                scan.upto = Some((last.index, last.term));
            }
        }
        self.conf_scans[node] = scan.clone();
        if let Some(detail) = transition_error {
            self.invariants
                .report("membership-transition", self.now, detail);
        }
        scan.found.map(|(_, conf)| conf)
    }

    /// `conf-in-force` and `commit-quorum` for `node`, after one of its inputs.
    pub(super) fn check_membership(&mut self, node: usize) {
        if !self.swarm.membership {
            return;
        }
        let Some(in_log) = self.conf_in_log(node) else {
            return;
        };
        let Some(raw) = self.nodes[node].raw.as_ref() else {
            return;
        };
        let status = raw.status();
        let id = status.id;
        if status.conf != in_log {
            let detail = format!(
                "node {id} ({} in term {}) decides with {:?}, but the last membership in its log \
                 is {in_log:?}",
                status.role, status.term, status.conf
            );
            self.invariants.report("conf-in-force", self.now, detail);
            return;
        }
        if status.role != Role::Leader {
            self.leader_commit_checked[node] = 0;
            return;
        }
        let checked = self.leader_commit_checked[node].max(self.commit_at_election[node]);
        if status.commit_index <= checked {
            return;
        }
        let stored = |id: NodeId, index: Index| {
            status
                .progress
                .get(&id)
                .is_some_and(|p| p.match_index >= index)
        };
        for index in checked + 1..=status.commit_index {
            let incoming = quorum_of(&in_log.voters, |v| stored(v, index));
            let outgoing = quorum_of(&in_log.voters_outgoing, |v| stored(v, index));
            if !(incoming && outgoing) {
                let holders: Vec<NodeId> = status
                    .progress
                    .iter()
                    .filter(|(_, p)| p.match_index >= index)
                    .map(|(&id, _)| id)
                    .collect();
                let detail = format!(
                    "leader {id} of term {} committed index {index}, stored only on {holders:?}: \
                     no majority of each half of {in_log:?}",
                    status.term
                );
                self.invariants.report("commit-quorum", self.now, detail);
                return;
            }
        }
        self.leader_commit_checked[node] = status.commit_index;
    }

    /// Whether `node` takes part in the cluster at the end of the run: a member of the last
    /// committed membership.
    pub(super) fn is_participant(&self, node: usize) -> bool {
        self.members().contains(&self.nodes[node].id)
    }

    /// A node whose disk was lost comes back only if it is still a member; the others are
    /// asked about the cluster (every member but it).
    pub(super) fn peers_of(&self, node: usize) -> Vec<usize> {
        let members = self.members();
        (0..self.nodes.len())
            .filter(|&peer| peer != node && members.contains(&self.nodes[peer].id))
            .collect()
    }
}

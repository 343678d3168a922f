//! What is checked after every event and at the end of a run: safety invariants that need
//! the whole cluster's state, liveness after the faults heal, convergence, exactly-once and
//! linearizability.

use quorate_payments::machine::{self, MAX_WALL_CLOCK_LEAD_MS};
use quorate_raft_core::{NodeId, Role, Status};

use super::{Backlog, Event, RunReport, World, DRAIN_TICKS, HEAL_BOUND_TICKS, STEADY_TICKS};
use crate::clock::{microticks_to_ms, EPOCH_MS, TICK};
use crate::invariants::LogView;
use crate::linearizability::{self, Verdict};
use crate::node::SimNode;
use crate::workload::LeaseStats;

impl World {
    /// `clock-bounded`: a node's machine clock is never further ahead of true time than the
    /// first stamp put it (the first leader's wall clock sets the origin, whatever it reads)
    /// plus `MAX_WALL_CLOCK_LEAD_MS` for every term whose leader stamped commands (each term's
    /// leader may move it that far beyond its monotonic clock), plus a second of slack for
    /// replication delays and the honest clocks' few hundred milliseconds.
    pub(super) fn check_clock_bounded(&mut self, node: usize) {
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
    pub(super) fn check_electable(&mut self) {
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
            .map(|((id, raw, status), reader)| LogView {
                id: *id,
                last_index: status.last_log_index,
                last_term: status.last_log_term,
                term_at: reader.as_ref(),
                compacted: raw.first_index() - 1,
            })
            .collect();
        self.invariants.check_electable(&views, self.now);
    }

    /// Checks after every event: lease safety; after healing, liveness.
    pub(super) fn check_every_step(&mut self) {
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
            .map(|r| (r.status().id, r.soft_state().term))
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
    pub(super) fn stable_leader(&self) -> Option<Status> {
        let participants: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| self.is_participant(n))
            .collect();
        let statuses: Vec<_> = participants
            .iter()
            .filter_map(|&n| self.nodes[n].raw.as_ref().map(|r| r.status()))
            .collect();
        if statuses.len() != participants.len() {
            return None;
        }
        let leader = statuses.iter().find(|s| s.role == Role::Leader)?;
        statuses
            .iter()
            .all(|s| s.term == leader.term && s.leader_id == Some(leader.id))
            .then(|| leader.clone())
    }

    pub(super) fn describe_nodes(&self) -> String {
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
    pub(super) fn finish(mut self) -> RunReport {
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
            snapshots_taken: self.snapshots_taken,
            snapshots_installed: self.snapshots_installed,
            membership_changes: self.membership_changes,
            members_at_end: self.members().len(),
            events_compacted: self
                .nodes
                .iter()
                .filter_map(|n| machine::machine_status(&n.machine).ok())
                .map(|meta| meta.events_compacted)
                .max()
                .unwrap_or(0),
            compacted_reads: self.clients.iter().map(|c| c.compacted_reads).sum(),
        }
    }

    pub(super) fn check_convergence(&mut self) {
        // A node that lost its disk is whole again once a leader elected without it has
        // brought it up to date; a healed cluster that commits elects one.
        let participant = |n: &&SimNode| self.members().contains(&n.id);
        if let Some(node) = self
            .nodes
            .iter()
            .filter(participant)
            .find(|n| n.is_amnesiac())
        {
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
        let states: Vec<(NodeId, u64, u64)> = (0..self.nodes.len())
            .filter(|&n| self.is_participant(n))
            .map(|n| &self.nodes[n])
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

    pub(super) fn check_exactly_once(&mut self) {
        for node in &self.nodes {
            self.invariants
                .check_store(node.id, &node.machine, self.now);
        }
    }
}

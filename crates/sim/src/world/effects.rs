//! What the world does with a node's effects (messages to deliver, replies to clients,
//! applied entries for the checkers) and with the clients' next actions.

use super::*;

impl World {
    /// Routes a node's effects and checks the invariants they touch.
    pub(super) fn after_node(&mut self, node: usize, fx: Effects) {
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
                    let compacted = raw.first_index() - 1;
                    self.invariants
                        .on_became_leader(id, term, |i| raw.term_at(i), compacted, now);
                }
            }
        }
        if let Some((index, term)) = fx.snapshot_taken {
            self.trace.u64(10);
            self.trace.u64(index);
            self.log(|| format!("node {id} compacted its log up to {index}"));
            self.snapshots_taken += 1;
            self.invariants.on_snapshot_taken(id, index, term, now);
        }
        if let Some((index, term)) = fx.snapshot_installed {
            self.trace.u64(11);
            self.trace.u64(index);
            self.log(|| format!("node {id} installed the leader's snapshot of {index}"));
            self.snapshots_installed += 1;
            self.invariants.on_snapshot_restored(id, index, term, now);
        }
        for applied in &fx.applied {
            self.trace.u64(7);
            self.trace.u64(applied.entry.index);
            if applied.entry.kind == EntryKind::Membership {
                if let Ok(membership) = Membership::decode(&applied.entry.data) {
                    self.on_membership_applied(applied.entry.index, membership.conf);
                }
            }
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
            let compacted = raw.first_index() - 1;
            self.invariants
                .on_commit(id, status.commit_index, |i| raw.term_at(i), compacted, now);
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
        self.check_membership(node);
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

    pub(super) fn client_action(&mut self, client: usize, action: ClientAction) {
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

    pub(super) fn wake_client_at(&mut self, client: usize, at: u64) {
        if self.client_wake[client].is_some_and(|t| t <= at) {
            return;
        }
        self.client_wake[client] = Some(at);
        self.schedule(at, Event::ClientWake { client });
    }
}

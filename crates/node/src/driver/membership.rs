//! Membership in the Ready loop: the member table kept in line with the membership in force,
//! operators' changes proposed on the leader, and their waiters answered once applied.

use super::*;

impl<SM: StateMachine> Driver<SM> {
    /// Brings the member table, the transport's peers and the removed ids in line with the
    /// membership in force (the latest in the log: it takes effect when appended). Called
    /// after every Ready.
    pub(super) fn sync_members(&mut self) {
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

    /// Proposes an operator's membership change: the Raft changes and the member table that
    /// `ops` make of the membership in force. One at a time; the reply comes once the asked
    /// membership is committed (see [`MembershipWaiter`]).
    pub(super) fn change_membership(
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
    pub(super) fn on_membership_applied(&mut self, entry: &quorate_raft_core::Entry) {
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
}

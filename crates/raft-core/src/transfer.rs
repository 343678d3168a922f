//! Leadership transfer (Raft thesis §3.10): bring the target up to date, then tell it to
//! campaign at once with `TimeoutNow`. Proposals are refused meanwhile, so the target cannot
//! fall behind again; the transfer is abandoned after a minimum election timeout.

use crate::error::{Error, Result};
use crate::message::Payload;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{NodeId, Role};

/// A transfer in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The node that should become leader.
    pub target: NodeId,
    /// Ticks since the transfer started.
    pub elapsed: u32,
    /// Whether `TimeoutNow` has been sent.
    pub timeout_now_sent: bool,
}

impl<S: Storage> Raft<S> {
    /// Starts handing leadership to `target`.
    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader_id,
            });
        }
        if target == self.id {
            return Ok(()); // already leader
        }
        // (A voter of the outgoing half only is being removed: it cannot take over.)
        if !self.tracker.conf.voters.contains(&target) {
            return Err(Error::InvalidTransferTarget {
                target,
                reason: "it is not a voting member",
            });
        }
        if self.transfer.is_some_and(|t| t.target == target) {
            return Ok(());
        }
        self.transfer = Some(Transfer {
            target,
            elapsed: 0,
            timeout_now_sent: false,
        });
        if !self.maybe_finish_transfer(target) {
            self.send_append(target, true)?;
        }
        Ok(())
    }

    /// Hands leadership to the most up-to-date other voter (the one that answered most
    /// recently among equals). Returns the chosen target.
    pub fn step_down(&mut self) -> Result<NodeId> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader_id,
            });
        }
        let voters = &self.tracker.conf.voters;
        let target = self
            .tracker
            .progress
            .iter()
            .filter(|(&id, _)| id != self.id && voters.contains(&id))
            .max_by_key(|(&id, p)| (p.match_index, std::cmp::Reverse(p.ticks_since_ack), id))
            .map(|(&id, _)| id)
            .ok_or(Error::InvalidTransferTarget {
                target: self.id,
                reason: "there is no other voting member",
            })?;
        self.transfer_leadership(target)?;
        Ok(target)
    }

    /// Sends `TimeoutNow` if `peer` is the transfer target and has the whole log. Returns
    /// whether it did.
    pub(crate) fn maybe_finish_transfer(&mut self, peer: NodeId) -> bool {
        let Some(transfer) = self.transfer else {
            return false;
        };
        if transfer.target != peer || transfer.timeout_now_sent {
            return false;
        }
        let caught_up = self
            .tracker
            .progress
            .get(&peer)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if !caught_up {
            return false;
        }
        // The target will campaign ignoring leader stickiness; this leader's lease must not
        // outlive that, whenever the message arrives.
        self.lease.revoke();
        self.send(peer, self.term, Payload::TimeoutNow);
        self.transfer = Some(Transfer {
            timeout_now_sent: true,
            ..transfer
        });
        true
    }

    /// Gives up a transfer that has not completed within the minimum election timeout.
    pub(crate) fn tick_transfer(&mut self) {
        if let Some(transfer) = self.transfer.as_mut() {
            transfer.elapsed += 1;
            if transfer.elapsed >= self.config.election_timeout_min_ticks {
                self.transfer = None;
            }
        }
    }

    /// The leader asked this node to take over. Only the leader of this term may: anyone else
    /// (a removed member, say) would make it campaign past every other node's stickiness.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) -> Result<()> {
        if self.role == Role::Follower && self.is_voter() && self.leader_id == Some(from) {
            self.start_election(true)?;
        }
        Ok(())
    }
}

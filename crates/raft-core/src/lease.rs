//! The leader lease and the confirmation rounds it is measured from.
//!
//! Every heartbeat broadcast starts a new *round*; every append and heartbeat carries the round
//! current when it was sent, and every answer echoes it. When a quorum has answered round `r`,
//! the leader knows that a quorum accepted it as leader at some instant after round `r` was
//! sent. Those followers ignore vote requests for the minimum election timeout after they
//! heard from it, so no other leader can be elected until then. The lease therefore runs from
//! the tick at which round `r` was **sent** (not when the answers arrived), for
//! [`crate::Config::lease_ticks`], which subtracts the clock-drift bound and one tick of
//! counting granularity from the minimum election timeout.
//!
//! The lease is given up for the rest of the term when a leadership transfer sends
//! `TimeoutNow`: the transfer target's campaign is allowed to ignore stickiness, and a delayed
//! or duplicated `TimeoutNow` could start it at any later time.

use std::collections::VecDeque;

/// Lease bookkeeping of a leader. Reset whenever the node stops or starts being leader.
#[derive(Clone, Debug, Default)]
pub struct Lease {
    /// The current confirmation round (0: none started in this term).
    round: u64,
    /// Rounds started and not yet confirmed, with the tick each was started at.
    started: VecDeque<(u64, u64)>,
    /// The highest round a quorum has acknowledged.
    confirmed_round: u64,
    /// The lease holds while the local tick is below this.
    expires_at_tick: u64,
    /// A leadership transfer began this term: no lease until the term ends.
    revoked: bool,
}

impl Lease {
    /// The current round.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Starts a new round at `now_tick` and returns its number.
    pub fn start_round(&mut self, now_tick: u64) -> u64 {
        self.round += 1;
        self.started.push_back((self.round, now_tick));
        self.round
    }

    /// A quorum acknowledged `round`. Returns whether that confirmed anything new.
    pub fn confirm(&mut self, round: u64, lease_ticks: u32) -> bool {
        if round <= self.confirmed_round {
            return false;
        }
        self.confirmed_round = round;
        let mut sent_at = None;
        while let Some(&(r, tick)) = self.started.front() {
            if r > round {
                break;
            }
            sent_at = Some(tick);
            self.started.pop_front();
        }
        if let (Some(sent_at), false) = (sent_at, self.revoked) {
            self.expires_at_tick = self.expires_at_tick.max(sent_at + u64::from(lease_ticks));
        }
        true
    }

    /// Whether the lease holds at `now_tick`.
    pub fn is_valid(&self, now_tick: u64) -> bool {
        !self.revoked && now_tick < self.expires_at_tick
    }

    /// Ticks left at `now_tick` (0 when not valid).
    pub fn remaining_ticks(&self, now_tick: u64) -> u64 {
        if self.revoked {
            0
        } else {
            self.expires_at_tick.saturating_sub(now_tick)
        }
    }

    /// The membership changed: the lease ends now, and only rounds started from now on, once
    /// acknowledged by a quorum of the new configuration, give a new one.
    pub fn restart(&mut self) {
        self.expires_at_tick = 0;
        self.confirmed_round = self.round;
        self.started.clear();
    }

    /// Gives the lease up for the rest of the term.
    pub fn revoke(&mut self) {
        self.revoked = true;
        self.expires_at_tick = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_runs_from_the_send_time_of_the_confirmed_round() {
        let mut lease = Lease::default();
        let r1 = lease.start_round(10);
        let r2 = lease.start_round(12);
        // Round 2 is confirmed at tick 15: the lease counts from tick 12, when it was sent.
        assert!(lease.confirm(r2, 7));
        assert!(lease.is_valid(18));
        assert!(!lease.is_valid(19));
        assert_eq!(lease.remaining_ticks(15), 4);
        // A late confirmation of an older round changes nothing.
        assert!(!lease.confirm(r1, 7));
        assert_eq!(lease.remaining_ticks(15), 4);
    }

    #[test]
    fn revoked_lease_is_never_valid_again_this_term() {
        let mut lease = Lease::default();
        let r1 = lease.start_round(0);
        lease.confirm(r1, 7);
        assert!(lease.is_valid(1));
        lease.revoke();
        assert!(!lease.is_valid(1));
        let r2 = lease.start_round(2);
        lease.confirm(r2, 7);
        assert!(!lease.is_valid(3));
        assert_eq!(lease.remaining_ticks(3), 0);
    }
}

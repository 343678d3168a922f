//! The leader's lease expiry timers: when to propose [`ExpireLease`], decided without a clock.
//!
//! The machine never times a lease out by itself (see `leases`): the leader does, and
//! replicates the decision as an `ExpireLease` command that takes effect only if the lease
//! still has the token and renewal count the timer was armed for. This type holds the
//! leader's timers and nothing else: no clock, no I/O, no randomness. The caller passes time
//! in, as milliseconds on any monotonic clock of its own, so the same code runs in the
//! server's expiry task (`service::leases`, milliseconds since the task started) and in the
//! simulator (the simulated node's clock), and behaves the same in both.
//!
//! The rules:
//!
//! - The caller scans periodically while its node leads ([`LeaseTimers::scan`]), with the
//!   leases currently held (`held_leases`).
//! - A held lease is armed at `now + ttl` the first time this leader sees its
//!   `(token, renewals)`: a keep-alive or a new grant changes the pair, which re-arms the
//!   timer. A timer therefore fires late by up to one scan period, never early.
//! - A new leader cannot know when its predecessor's timers started, so it extends every
//!   lease by the new-leader extension (an election timeout), never shortens one: every timer
//!   armed from the first scan of a term up to and including the first scan at which the
//!   leader has caught up (applied an entry of its own term, so it has seen every lease its
//!   predecessors granted or renewed) gets the extension.
//! - A timer that is due is returned as a [`DueExpiry`]; once the caller has tried to propose
//!   it ([`LeaseTimers::proposed`]) it is due again one retry period later, in case the
//!   expiry did not take.
//! - Not leading ([`LeaseTimers::not_leader`]) forgets every timer: a later leadership starts
//!   afresh, with the extension.

use std::collections::BTreeMap;

use super::commands::{Command, ExpireLease};
use super::records::LeaseRecord;

/// One armed timer: the lease generation it was armed for, and when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timer {
    token: u64,
    renewals: u64,
    fires_at_ms: u64,
}

/// A timer that fired: the lease generation the leader should now expire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueExpiry {
    /// The lease's name.
    pub name: String,
    /// The token the timer was armed for.
    pub token: u64,
    /// The renewal count the timer was armed for.
    pub renewals: u64,
}

impl DueExpiry {
    /// The command to propose (the leader stamps it like any other).
    pub fn command(&self) -> Command {
        Command::ExpireLease(ExpireLease {
            name: self.name.clone(),
            token: self.token,
            renewals: self.renewals,
        })
    }
}

/// The leader's expiry timers, one per held lease. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTimers {
    /// Added to every timer armed before and at the first caught-up scan of a term (an
    /// election timeout).
    new_leader_extension_ms: u64,
    /// How long after a proposed expiry its timer is due again (the scan period).
    retry_after_ms: u64,
    /// Armed timers by lease name.
    timers: BTreeMap<String, Timer>,
    /// The term of the last scan while leading, if this node has led since it last did not.
    armed_in_term: Option<u64>,
    /// Timers armed now get the extension: this leader has not yet scanned after catching up.
    extending: bool,
}

impl LeaseTimers {
    /// No timers yet. `new_leader_extension_ms` is added to every lease a new leader sees
    /// until it has caught up (the election timeout); an expiry that was proposed is due again
    /// `retry_after_ms` later (the scan period).
    pub fn new(new_leader_extension_ms: u64, retry_after_ms: u64) -> Self {
        LeaseTimers {
            new_leader_extension_ms,
            retry_after_ms,
            timers: BTreeMap::new(),
            armed_in_term: None,
            extending: false,
        }
    }

    /// The node does not lead: forget every timer, so the next leadership arms afresh and
    /// extends every lease.
    pub fn not_leader(&mut self) {
        self.timers.clear();
        self.armed_in_term = None;
        self.extending = false;
    }

    /// A scan while leading `term`, at `now_ms` on the caller's monotonic clock. `held` are
    /// the leases held now, by name (`held_leases`); `caught_up` says whether the leader has
    /// applied an entry of `term` (its own no-op at least). Arms a timer for every lease
    /// generation not seen before, drops the timers of leases no longer held, and returns the
    /// timers that are due, by name.
    pub fn scan(
        &mut self,
        term: u64,
        held: impl IntoIterator<Item = LeaseRecord>,
        now_ms: u64,
        caught_up: bool,
    ) -> Vec<DueExpiry> {
        self.enter_term(term);
        let extension_ms = if self.extending {
            self.new_leader_extension_ms
        } else {
            0
        };
        if caught_up {
            self.extending = false;
        }
        let mut armed = BTreeMap::new();
        for lease in held {
            let timer = match self.timers.remove(&lease.name) {
                Some(t) if t.token == lease.token && t.renewals == lease.renewals => t,
                _ => Timer {
                    token: lease.token,
                    renewals: lease.renewals,
                    fires_at_ms: now_ms
                        .saturating_add(lease.ttl_ms)
                        .saturating_add(extension_ms),
                },
            };
            armed.insert(lease.name, timer);
        }
        self.timers = armed;
        self.timers
            .iter()
            .filter(|(_, t)| t.fires_at_ms <= now_ms)
            .map(|(name, t)| DueExpiry {
                name: name.clone(),
                token: t.token,
                renewals: t.renewals,
            })
            .collect()
    }

    /// A scan while leading `term` that could not read the leases: every timer stays as it
    /// is, and timers armed later in the term are still extended until a caught-up scan.
    pub fn scan_without_leases(&mut self, term: u64) {
        self.enter_term(term);
    }

    /// The caller tried to propose the expiry of `name` (whatever came of it), and now is
    /// `now_ms`: if the expiry does not take, the timer is due again one retry period later.
    pub fn proposed(&mut self, name: &str, now_ms: u64) {
        if let Some(timer) = self.timers.get_mut(name) {
            timer.fires_at_ms = now_ms.saturating_add(self.retry_after_ms);
        }
    }

    /// Records a scan in `term`; the first since this node started leading that term starts
    /// the extension period.
    fn enter_term(&mut self, term: u64) {
        if self.armed_in_term != Some(term) {
            self.extending = true;
        }
        self.armed_in_term = Some(term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::records::LeaseStatus;

    const EXTENSION: u64 = 1_000;
    const PERIOD: u64 = 100;

    fn held(name: &str, token: u64, renewals: u64, ttl_ms: u64) -> LeaseRecord {
        LeaseRecord {
            name: name.into(),
            holder: "a".into(),
            token,
            renewals,
            ttl_ms,
            status: LeaseStatus::Held as i32,
            acquired_at_ms: 0,
            renewed_at_ms: 0,
        }
    }

    fn due(name: &str, token: u64, renewals: u64) -> DueExpiry {
        DueExpiry {
            name: name.into(),
            token,
            renewals,
        }
    }

    fn timers() -> LeaseTimers {
        LeaseTimers::new(EXTENSION, PERIOD)
    }

    #[test]
    fn a_new_leader_fires_a_lease_only_after_ttl_plus_the_extension() {
        let mut t = timers();
        assert_eq!(t.scan(3, [held("w", 5, 0, 2_000)], 10_000, true), vec![]);
        assert_eq!(t.scan(3, [held("w", 5, 0, 2_000)], 12_999, true), vec![]);
        assert_eq!(
            t.scan(3, [held("w", 5, 0, 2_000)], 13_000, true),
            vec![due("w", 5, 0)]
        );
    }

    #[test]
    fn a_lease_granted_while_leading_fires_after_its_ttl_without_extension() {
        let mut t = timers();
        assert_eq!(t.scan(3, [], 0, true), vec![]);
        assert_eq!(t.scan(3, [held("w", 7, 0, 2_000)], 500, true), vec![]);
        assert_eq!(t.scan(3, [held("w", 7, 0, 2_000)], 2_499, true), vec![]);
        assert_eq!(
            t.scan(3, [held("w", 7, 0, 2_000)], 2_500, true),
            vec![due("w", 7, 0)]
        );
    }

    #[test]
    fn a_renewal_or_a_new_grant_re_arms_the_timer_from_when_it_is_seen() {
        let mut t = timers();
        t.scan(3, [], 0, true);
        t.scan(3, [held("w", 7, 0, 2_000)], 100, true);
        // Renewed at 1_900 (seen then): the timer now fires at 3_900, not 2_100.
        assert_eq!(t.scan(3, [held("w", 7, 1, 2_000)], 1_900, true), vec![]);
        assert_eq!(t.scan(3, [held("w", 7, 1, 2_000)], 3_899, true), vec![]);
        assert_eq!(
            t.scan(3, [held("w", 7, 1, 2_000)], 3_900, true),
            vec![due("w", 7, 1)]
        );
        // A new grant (new token) is a new generation.
        assert_eq!(t.scan(3, [held("w", 9, 0, 1_000)], 4_000, true), vec![]);
        assert_eq!(
            t.scan(3, [held("w", 9, 0, 1_000)], 5_000, true),
            vec![due("w", 9, 0)]
        );
    }

    #[test]
    fn a_proposed_expiry_is_due_again_one_retry_period_later() {
        let mut t = timers();
        t.scan(3, [], 0, true);
        let lease = held("w", 7, 0, 1_000);
        assert_eq!(t.scan(3, [lease.clone()], 0, true), vec![]);
        assert_eq!(
            t.scan(3, [lease.clone()], 1_000, true),
            vec![due("w", 7, 0)]
        );
        t.proposed("w", 1_020);
        assert_eq!(t.scan(3, [lease.clone()], 1_119, true), vec![]);
        assert_eq!(t.scan(3, [lease], 1_120, true), vec![due("w", 7, 0)]);
    }

    #[test]
    fn leases_no_longer_held_lose_their_timers() {
        let mut t = timers();
        t.scan(3, [], 0, true);
        t.scan(3, [held("a", 1, 0, 1_000), held("b", 2, 0, 1_000)], 0, true);
        // "a" was released or expired; "b" stays armed from time 0.
        assert_eq!(t.scan(3, [held("b", 2, 0, 1_000)], 500, true), vec![]);
        assert_eq!(
            t.scan(
                3,
                [held("a", 1, 0, 1_000), held("b", 2, 0, 1_000)],
                1_000,
                true
            ),
            vec![due("b", 2, 0)],
            "a re-held lease is armed afresh"
        );
    }

    #[test]
    fn due_timers_come_in_name_order() {
        let mut t = timers();
        t.scan(1, [], 0, true);
        let leases = [held("b", 2, 0, 1_000), held("a", 1, 0, 1_000)];
        t.scan(1, leases.clone(), 0, true);
        assert_eq!(
            t.scan(1, leases, 1_000, true),
            vec![due("a", 1, 0), due("b", 2, 0)]
        );
    }

    #[test]
    fn losing_leadership_forgets_the_timers_and_the_next_term_extends_again() {
        let mut t = timers();
        let lease = held("w", 7, 0, 1_000);
        t.scan(3, [lease.clone()], 0, true); // fires at 2_000
        t.not_leader();
        assert_eq!(t, timers(), "nothing remembered");
        // Leading again later (say term 5) arms at now + ttl + extension.
        assert_eq!(t.scan(5, [lease.clone()], 1_500, true), vec![]);
        assert_eq!(t.scan(5, [lease.clone()], 3_499, true), vec![]);
        assert_eq!(t.scan(5, [lease], 3_500, true), vec![due("w", 7, 0)]);
    }

    #[test]
    fn a_new_term_without_stepping_down_in_between_extends_only_new_timers() {
        // The node led term 3, then term 4, without a scan seeing it not lead: timers that
        // still match their lease keep their time; only newly armed ones are extended.
        let mut t = timers();
        t.scan(3, [], 0, true);
        t.scan(3, [held("w", 7, 0, 1_000)], 0, true); // fires at 1_000
        assert_eq!(
            t.scan(
                4,
                [held("w", 7, 0, 1_000), held("x", 8, 0, 1_000)],
                1_000,
                true
            ),
            vec![due("w", 7, 0)]
        );
        assert_eq!(t.scan(4, [held("x", 8, 0, 1_000)], 2_999, true), vec![]);
        assert_eq!(
            t.scan(4, [held("x", 8, 0, 1_000)], 3_000, true),
            vec![due("x", 8, 0)]
        );
    }

    #[test]
    fn a_scan_that_could_not_read_the_leases_leaves_the_extension_to_the_next_one() {
        let mut t = timers();
        t.scan_without_leases(3);
        assert_eq!(t.scan(3, [held("w", 7, 0, 1_000)], 0, true), vec![]);
        assert_eq!(t.scan(3, [held("w", 7, 0, 1_000)], 1_999, true), vec![]);
        assert_eq!(
            t.scan(3, [held("w", 7, 0, 1_000)], 2_000, true),
            vec![due("w", 7, 0)]
        );
    }

    #[test]
    fn a_leader_still_applying_its_predecessors_entries_extends_what_it_sees_late() {
        // The new leader's first scans come before it applied its own no-op: a renewal its
        // predecessor committed shows up only at the third scan, and is still extended.
        let mut t = timers();
        assert_eq!(t.scan(4, [], 0, false), vec![]);
        assert_eq!(t.scan(4, [], 100, false), vec![]);
        assert_eq!(t.scan(4, [held("w", 7, 3, 1_000)], 200, true), vec![]);
        assert_eq!(t.scan(4, [held("w", 7, 3, 1_000)], 2_199, true), vec![]);
        assert_eq!(
            t.scan(4, [held("w", 7, 3, 1_000)], 2_200, true),
            vec![due("w", 7, 3)],
            "armed at 200 + ttl + the extension"
        );
        // Once caught up, a renewal in its own term gets plain TTL.
        assert_eq!(t.scan(4, [held("w", 7, 4, 1_000)], 2_300, true), vec![]);
        assert_eq!(
            t.scan(4, [held("w", 7, 4, 1_000)], 3_300, true),
            vec![due("w", 7, 4)]
        );
    }

    #[test]
    fn the_due_command_expires_exactly_the_armed_generation() {
        let command = due("w", 7, 2).command();
        assert_eq!(
            command,
            Command::ExpireLease(ExpireLease {
                name: "w".into(),
                token: 7,
                renewals: 2,
            })
        );
    }
}

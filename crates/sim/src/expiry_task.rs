//! The server's leader-side lease expiry task, as a simulated node runs it.
//!
//! The server's task (`quorate_payments::service::leases::expire_leases`) sleeps a heartbeat
//! interval, scans, and then proposes the expiries that are due one at a time, *awaiting*
//! each proposal (until it is applied, fails, or times out) before telling the timers and
//! proposing the next; only then does it sleep again. The timer rules themselves are the
//! machine's [`LeaseTimers`], shared with the server. This type adds what the task's control
//! flow does around them, in the node's own ticks, so the simulated leader never has more
//! than one expiry in flight, exactly like the server.

use std::collections::VecDeque;

use quorate_payments::machine::{DueExpiry, LeaseRecord, LeaseTimers};
use quorate_raft_core::{Index, Term};

/// An expiry proposal the task is waiting for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct InFlight {
    name: String,
    index: Index,
    /// The tick at which the task stops waiting (the server's request timeout).
    gives_up_at_tick: u64,
}

/// What the task asks its node to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpiryStep {
    /// Nothing now.
    Wait,
    /// Scan: the node is asked whether it leads and which leases are held.
    Scan,
    /// Propose this expiry and report where it landed ([`ExpiryTask::proposing`]).
    Propose(DueExpiry),
}

/// The expiry task of one node incarnation. See the module documentation.
#[derive(Clone, Debug)]
pub struct ExpiryTask {
    timers: LeaseTimers,
    /// Ticks per scan period (the heartbeat interval).
    period_ticks: u64,
    /// Milliseconds per tick, for the timers' clock.
    ms_per_tick: u64,
    /// Ticks a proposal is awaited before the task gives up on it.
    timeout_ticks: u64,
    /// The node's clock: ticks since the task started.
    ticks: u64,
    /// When the task next scans (it sleeps a period first, and after each round).
    next_scan_tick: u64,
    /// Expiries due from the last scan, not proposed yet.
    due: VecDeque<DueExpiry>,
    /// The expiry being awaited.
    in_flight: Option<InFlight>,
}

impl ExpiryTask {
    /// A task that scans every `period_ticks` and awaits a proposal at most `timeout_ticks`,
    /// with timers armed by `timers`; a tick lasts `ms_per_tick` on the timers' clock.
    pub fn new(
        timers: LeaseTimers,
        period_ticks: u64,
        ms_per_tick: u64,
        timeout_ticks: u64,
    ) -> Self {
        ExpiryTask {
            timers,
            period_ticks,
            ms_per_tick,
            timeout_ticks,
            ticks: 0,
            next_scan_tick: period_ticks,
            due: VecDeque::new(),
            in_flight: None,
        }
    }

    /// The node's clock: ticks since the task started.
    pub fn now_ticks(&self) -> u64 {
        self.ticks
    }

    /// Whether the task has nothing in hand: no expiry awaited and none due but unproposed.
    /// An idle task has proposed every expiry whose timer fired at its last scan.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.due.is_empty()
    }

    fn now_ms(&self) -> u64 {
        self.ticks * self.ms_per_tick
    }

    /// One tick of the node's clock passed: what to do now.
    pub fn tick(&mut self) -> ExpiryStep {
        self.ticks += 1;
        if let Some(in_flight) = &self.in_flight {
            if self.ticks < in_flight.gives_up_at_tick {
                return ExpiryStep::Wait;
            }
            let name = in_flight.name.clone();
            self.finished(&name);
        }
        self.next_step()
    }

    /// The next step once nothing is in flight.
    fn next_step(&mut self) -> ExpiryStep {
        if self.in_flight.is_some() {
            return ExpiryStep::Wait;
        }
        if let Some(due) = self.due.pop_front() {
            return ExpiryStep::Propose(due);
        }
        if self.ticks >= self.next_scan_tick {
            return ExpiryStep::Scan;
        }
        ExpiryStep::Wait
    }

    /// The scan's answer: the node does not lead.
    pub fn not_leader(&mut self) {
        self.timers.not_leader();
        self.next_scan_tick = self.ticks + self.period_ticks;
    }

    /// The scan's answer: the node leads `term`, `held` are the held leases and `caught_up`
    /// says whether it has applied an entry of `term`. Returns the first expiry to propose, if
    /// any is due.
    pub fn scanned(&mut self, term: Term, held: Vec<LeaseRecord>, caught_up: bool) -> ExpiryStep {
        let now_ms = self.now_ms();
        self.due = self.timers.scan(term, held, now_ms, caught_up).into();
        if self.due.is_empty() {
            self.next_scan_tick = self.ticks + self.period_ticks;
        }
        self.next_step()
    }

    /// The expiry of `name` was proposed at `index`, or refused at once (`None`). Returns the
    /// next expiry to propose, if the proposal ended already.
    pub fn proposing(&mut self, name: &str, index: Option<Index>) -> ExpiryStep {
        match index {
            Some(index) => {
                self.in_flight = Some(InFlight {
                    name: name.to_owned(),
                    index,
                    gives_up_at_tick: self.ticks + self.timeout_ticks,
                });
                ExpiryStep::Wait
            }
            None => {
                self.finished(name);
                self.next_step()
            }
        }
    }

    /// The node applied the entry at `index`: if it is the awaited proposal's slot, the
    /// proposal ended (applied, or overwritten by another leader's entry). Returns the next
    /// expiry to propose, if any.
    pub fn applied(&mut self, index: Index) -> ExpiryStep {
        match &self.in_flight {
            Some(in_flight) if in_flight.index == index => {
                let name = in_flight.name.clone();
                self.finished(&name);
                self.next_step()
            }
            _ => ExpiryStep::Wait,
        }
    }

    /// The node stopped leading: an awaited proposal fails (its outcome is unknown). Returns
    /// the next expiry to propose (its proposal will be refused), if any.
    pub fn lost_leadership(&mut self) -> ExpiryStep {
        match &self.in_flight {
            Some(in_flight) => {
                let name = in_flight.name.clone();
                self.finished(&name);
                self.next_step()
            }
            None => ExpiryStep::Wait,
        }
    }

    /// The awaited proposal of `name` ended, whatever came of it: tell the timers, and sleep a
    /// period once the round's last expiry is done.
    fn finished(&mut self, name: &str) {
        self.in_flight = None;
        let now_ms = self.now_ms();
        self.timers.proposed(name, now_ms);
        if self.due.is_empty() {
            self.next_scan_tick = self.ticks + self.period_ticks;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_payments::machine::LeaseStatus;

    fn held(name: &str, token: u64, ttl_ms: u64) -> LeaseRecord {
        LeaseRecord {
            name: name.into(),
            holder: "a".into(),
            token,
            renewals: 0,
            ttl_ms,
            status: LeaseStatus::Held as i32,
            acquired_at_ms: 0,
            renewed_at_ms: 0,
        }
    }

    /// Period 2 ticks, 50 ms per tick, extension 500 ms, retry 100 ms, timeout 100 ticks.
    fn task() -> ExpiryTask {
        ExpiryTask::new(LeaseTimers::new(500, 100), 2, 50, 100)
    }

    /// Ticks until the task asks for something other than waiting.
    fn until_step(task: &mut ExpiryTask) -> ExpiryStep {
        loop {
            match task.tick() {
                ExpiryStep::Wait => {}
                step => return step,
            }
        }
    }

    #[test]
    fn the_task_scans_every_period() {
        let mut t = task();
        assert_eq!(t.tick(), ExpiryStep::Wait);
        assert_eq!(t.tick(), ExpiryStep::Scan);
        t.not_leader();
        assert_eq!(t.tick(), ExpiryStep::Wait);
        assert_eq!(t.tick(), ExpiryStep::Scan);
    }

    #[test]
    fn a_due_expiry_is_proposed_and_awaited_before_the_next_scan() {
        let mut t = task();
        let lease = held("w", 3, 1_000);
        assert_eq!(until_step(&mut t), ExpiryStep::Scan); // tick 2, 100 ms
                                                          // Armed at 100 + 1_000 + 500 ms = tick 32.
        assert_eq!(t.scanned(1, vec![lease.clone()], true), ExpiryStep::Wait);
        let mut scans = 0;
        let step = loop {
            match until_step(&mut t) {
                ExpiryStep::Scan => {
                    scans += 1;
                    match t.scanned(1, vec![lease.clone()], true) {
                        ExpiryStep::Wait => {}
                        step => break step,
                    }
                }
                step => panic!("unexpected {step:?}"),
            }
        };
        assert_eq!(t.ticks, 32);
        assert_eq!(scans, 15);
        let ExpiryStep::Propose(due) = step else {
            panic!("expected a proposal, got {step:?}")
        };
        assert_eq!((due.name.as_str(), due.token), ("w", 3));
        assert_eq!(t.proposing("w", Some(40)), ExpiryStep::Wait);
        // Awaited: no scan while it is in flight.
        for _ in 0..10 {
            assert_eq!(t.tick(), ExpiryStep::Wait);
        }
        assert_eq!(t.applied(39), ExpiryStep::Wait, "another entry");
        assert_eq!(t.applied(40), ExpiryStep::Wait, "applied: sleep a period");
        assert_eq!(t.tick(), ExpiryStep::Wait);
        assert_eq!(t.tick(), ExpiryStep::Scan);
        // Still held (the expiry did not take): due again 100 ms after it ended.
        assert_eq!(
            t.scanned(1, vec![lease], true),
            ExpiryStep::Propose(due),
            "due again one retry period later"
        );
    }

    #[test]
    fn an_awaited_proposal_ends_when_leadership_is_lost_or_after_the_timeout() {
        let mut t = task();
        until_step(&mut t);
        t.scanned(1, vec![held("w", 3, 1_000)], true);
        let step = loop {
            if let ExpiryStep::Scan = until_step(&mut t) {
                if let step @ ExpiryStep::Propose(_) = t.scanned(1, vec![held("w", 3, 1_000)], true)
                {
                    break step;
                }
            }
        };
        assert!(matches!(step, ExpiryStep::Propose(_)));
        t.proposing("w", Some(40));
        assert_eq!(t.lost_leadership(), ExpiryStep::Wait);
        assert_eq!(t.in_flight, None);

        t.proposing("w", Some(41));
        for _ in 0..99 {
            assert_eq!(t.tick(), ExpiryStep::Wait);
        }
        assert_eq!(t.in_flight.as_ref().map(|f| f.index), Some(41));
        t.tick();
        assert_eq!(t.in_flight, None, "given up after the timeout");
    }

    #[test]
    fn several_due_expiries_are_proposed_one_after_another() {
        let mut t = task();
        until_step(&mut t);
        let leases = vec![held("a", 3, 1_000), held("b", 4, 1_000)];
        t.scanned(1, leases.clone(), true);
        let first = loop {
            if let ExpiryStep::Scan = until_step(&mut t) {
                if let step @ ExpiryStep::Propose(_) = t.scanned(1, leases.clone(), true) {
                    break step;
                }
            }
        };
        let ExpiryStep::Propose(first) = first else {
            unreachable!()
        };
        assert_eq!(first.name, "a");
        // Refused at once (not the leader any more): the next one comes straight away.
        let ExpiryStep::Propose(second) = t.proposing("a", None) else {
            panic!("the second expiry follows")
        };
        assert_eq!(second.name, "b");
        assert_eq!(t.proposing("b", Some(50)), ExpiryStep::Wait);
        assert_eq!(t.applied(50), ExpiryStep::Wait);
    }
}

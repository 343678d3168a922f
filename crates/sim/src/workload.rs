//! What the simulated clients ask for: payment events and reads, and writer-lease work.
//!
//! **Payment clients** submit events to a few shared payments and read them back (through
//! ReadIndex, the leader lease, or stale). Submits are mostly valid transitions: a payment is
//! authorized once for a large amount, then captured in small amounts that never exhaust
//! it. Clients learn which payments are authorized only from answers, so several may race
//! to authorize the same payment; all but one get `INVALID_TRANSITION`, a definite refusal.
//!
//! **Lease workers** share one writer lease. A worker acquires it, renews it every third of
//! its TTL, and meanwhile writes captures fenced with its token. Sometimes it stalls (a GC
//! pause, a stopped VM) for one to three TTLs without renewing, while the leader's timer may
//! expire the lease and another worker may take it over. When it resumes, its first action
//! is a write fenced with its old token: a *zombie write*, which the machine must refuse
//! with `STALE_TOKEN` unless that token is still the lease's live one. A worker also gives
//! the lease up now and then, and during quiet periods (when clients only read, so that a
//! cut-off follower's log stays up to date) it gives the lease up and then sits the period
//! out, so neither its renewals nor the leader's expiry of its lease write to the log.

use std::collections::BTreeSet;

use quorate_payments::machine::{Applied, EventKind, RejectReason};
use quorate_raft_core::rng::SplitMix64;

use crate::client::{Action, Fence, ReadKind};
use crate::clock::ms_to_microticks;

/// Workload knobs; times in microticks.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Payments the clients share.
    pub payments: u64,
    /// Think time between operations: `[min, max)`.
    pub think_min: u64,
    /// See `think_min`.
    pub think_max: u64,
    /// An attempt without an answer for this long is retried elsewhere.
    pub attempt_timeout: u64,
    /// A logical operation gives up after this long.
    pub op_timeout: u64,
}

impl Workload {
    fn think(&self, rng: &mut SplitMix64) -> u64 {
        rng.range(self.think_min, self.think_max)
    }
}

/// What an authorization reserves: far more than all the captures of a run can take.
pub const AUTHORIZED_MINOR: i64 = 1_000_000_000_000;
/// The largest capture.
pub const MAX_CAPTURE_MINOR: i64 = 100;
/// Lease TTLs are drawn from `[MIN_TTL_MS, MAX_TTL_MS]` (the machine's minimum is 1 s).
pub const MIN_TTL_MS: u64 = 1_000;
/// See [`MIN_TTL_MS`].
pub const MAX_TTL_MS: u64 = 2_000;
/// Chance (per mille) that a lease worker's next step is a stall.
const STALL_PER_MILLE: u64 = 80;
/// Chance (per mille) that a lease worker's next step is a release.
const RELEASE_PER_MILLE: u64 = 30;

/// What a client does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start this operation now.
    Do(Action),
    /// Start nothing before this time.
    WaitUntil(u64),
}

/// How an operation ended, as far as the client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The machine's output for the command (or a replay of its first outcome).
    Applied(&'a Applied),
    /// A read's answer: the operations whose events the payment holds, oldest first.
    Events(&'a [u64]),
    /// The client gave up without an answer: it may or may not take effect.
    GaveUp,
}

/// What a client knows about which payments are authorized, learnt from answers only.
#[derive(Clone, Debug, Default)]
pub struct PaymentBook {
    authorized: BTreeSet<u64>,
}

impl PaymentBook {
    /// The event to submit to `payment`: a large authorization unless the payment is known to
    /// be authorized, otherwise a small capture.
    pub fn event_for(&self, payment: u64, rng: &mut SplitMix64) -> (EventKind, i64) {
        if self.authorized.contains(&payment) {
            (
                EventKind::Captured,
                rng.range(1, MAX_CAPTURE_MINOR as u64 + 1) as i64,
            )
        } else {
            (EventKind::Authorized, AUTHORIZED_MINOR)
        }
    }

    /// Whether `payment` is known to be authorized.
    pub fn is_authorized(&self, payment: u64) -> bool {
        self.authorized.contains(&payment)
    }

    /// Learns from how `action` ended: an accepted submit or a non-empty read means the
    /// payment exists; an authorization refused as an invalid transition means someone else
    /// authorized it first.
    pub fn learn(&mut self, action: &Action, outcome: Outcome<'_>) {
        let known = match (action, outcome) {
            (Action::Submit { payment, .. }, Outcome::Applied(Applied::EventRecorded(_))) => {
                Some(*payment)
            }
            (
                Action::Submit {
                    payment,
                    kind: EventKind::Authorized,
                    ..
                },
                Outcome::Applied(Applied::SubmitRejected(r)),
            ) if r.reason() == RejectReason::InvalidTransition => Some(*payment),
            (Action::Read { payment, .. }, Outcome::Events(ops)) if !ops.is_empty() => {
                Some(*payment)
            }
            _ => None,
        };
        if let Some(payment) = known {
            self.authorized.insert(payment);
        }
    }
}

/// A client that submits and reads payment events.
#[derive(Clone, Debug, Default)]
pub struct PaymentClient {
    book: PaymentBook,
}

impl PaymentClient {
    /// The next operation: 55% submits, 20% ReadIndex reads, 15% lease reads, 10% stale
    /// reads; only reads while `reads_only`.
    fn next(&mut self, rng: &mut SplitMix64, reads_only: bool, workload: &Workload) -> Action {
        let payment = rng.range(0, workload.payments);
        let roll = if reads_only {
            rng.range(55, 100)
        } else {
            rng.range(0, 100)
        };
        if roll < 55 {
            let (kind, amount) = self.book.event_for(payment, rng);
            return Action::Submit {
                payment,
                kind,
                amount,
                fence: None,
            };
        }
        let kind = match roll {
            55..=74 => ReadKind::Quorum,
            75..=89 => ReadKind::Lease,
            _ => ReadKind::Stale,
        };
        Action::Read { payment, kind }
    }
}

/// Where a lease worker stands, as far as it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaseState {
    /// Holds nothing (it believes): acquire, not before `acquire_at`.
    Free { acquire_at: u64 },
    /// Holds the lease with `token`; renews at `renew_at`.
    Holding {
        token: u64,
        ttl_ms: u64,
        renew_at: u64,
    },
    /// Stalled past its TTL while holding `token`; its next write is fenced with it.
    Stalled { token: u64, ttl_ms: u64 },
}

/// Counters of what lease workers did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Grants received.
    pub grants: u64,
    /// Stalls longer than the TTL.
    pub stalls: u64,
    /// Writes fenced with the token held before a stall.
    pub zombie_writes: u64,
    /// Of which refused with `STALE_TOKEN`.
    pub zombie_refusals: u64,
    /// Of which accepted (the lease was still live: the leader had not expired it yet).
    pub zombie_accepted: u64,
}

impl std::ops::AddAssign for LeaseStats {
    fn add_assign(&mut self, other: LeaseStats) {
        self.grants += other.grants;
        self.stalls += other.stalls;
        self.zombie_writes += other.zombie_writes;
        self.zombie_refusals += other.zombie_refusals;
        self.zombie_accepted += other.zombie_accepted;
    }
}

/// A client that works under a writer lease. See the module documentation.
#[derive(Clone, Debug)]
pub struct LeaseWorker {
    lease: u64,
    state: LeaseState,
    book: PaymentBook,
    /// What it did.
    pub stats: LeaseStats,
}

impl LeaseWorker {
    /// A worker for lease `lease`, holding nothing.
    pub fn new(lease: u64) -> Self {
        LeaseWorker {
            lease,
            state: LeaseState::Free { acquire_at: 0 },
            book: PaymentBook::default(),
            stats: LeaseStats::default(),
        }
    }

    fn next(&mut self, now: u64, rng: &mut SplitMix64, reads_only: bool, w: &Workload) -> Next {
        let lease = self.lease;
        match self.state {
            // Quiet periods have no writes: a holder gives its lease up first (otherwise the
            // leader would expire it in the middle of the period), a stalled worker stays
            // stalled.
            LeaseState::Holding { token, .. } if reads_only => {
                Next::Do(Action::Release { lease, token })
            }
            _ if reads_only => Next::WaitUntil(now + w.think(rng)),
            LeaseState::Free { acquire_at } if now < acquire_at => Next::WaitUntil(acquire_at),
            LeaseState::Free { .. } => Next::Do(Action::Acquire {
                lease,
                ttl_ms: rng.range(MIN_TTL_MS, MAX_TTL_MS + 1),
            }),
            LeaseState::Holding {
                token, renew_at, ..
            } if now >= renew_at => Next::Do(Action::KeepAlive { lease, token }),
            LeaseState::Holding { token, ttl_ms, .. } => {
                if rng.chance(STALL_PER_MILLE, 1000) {
                    self.state = LeaseState::Stalled { token, ttl_ms };
                    self.stats.stalls += 1;
                    let stall_ms = ttl_ms + rng.range(0, 2 * ttl_ms + 1);
                    Next::WaitUntil(now + ms_to_microticks(stall_ms))
                } else if rng.chance(RELEASE_PER_MILLE, 1000) {
                    Next::Do(Action::Release { lease, token })
                } else {
                    Next::Do(self.fenced_write(token, rng, w))
                }
            }
            LeaseState::Stalled { token, .. } => {
                self.stats.zombie_writes += 1;
                Next::Do(self.fenced_write(token, rng, w))
            }
        }
    }

    /// A submit fenced with `token`: a capture of a payment known to be authorized, or an
    /// authorization when none is known yet.
    fn fenced_write(&self, token: u64, rng: &mut SplitMix64, w: &Workload) -> Action {
        let start = rng.range(0, w.payments);
        let payment = (0..w.payments)
            .map(|i| (start + i) % w.payments)
            .find(|&p| self.book.is_authorized(p))
            .unwrap_or(start);
        let (kind, amount) = self.book.event_for(payment, rng);
        Action::Submit {
            payment,
            kind,
            amount,
            fence: Some(Fence {
                lease: self.lease,
                token,
            }),
        }
    }

    fn learn(&mut self, now: u64, action: &Action, outcome: Outcome<'_>) {
        self.book.learn(action, outcome);
        let renew_at = |ttl_ms: u64| now + ms_to_microticks(ttl_ms / 3);
        self.state = match (self.state, action, outcome) {
            (_, Action::Acquire { .. }, Outcome::Applied(Applied::LeaseAcquired(a)))
                if a.granted =>
            {
                self.stats.grants += 1;
                LeaseState::Holding {
                    token: a.token,
                    ttl_ms: a.ttl_ms,
                    renew_at: renew_at(a.ttl_ms),
                }
            }
            // Someone else holds it: try again after half of the holder's TTL (which bounds
            // the time it has left), rather than hammering the log.
            (_, Action::Acquire { .. }, Outcome::Applied(Applied::LeaseAcquired(a))) => {
                LeaseState::Free {
                    acquire_at: now + ms_to_microticks(a.ttl_ms / 2),
                }
            }
            // Unknown: if an unknown attempt was granted, acquiring again as the holder
            // replaces it with a fresh token.
            (_, Action::Acquire { .. }, _) => LeaseState::Free { acquire_at: now },
            (
                LeaseState::Holding { token, ttl_ms, .. },
                Action::KeepAlive { token: renewed, .. },
                Outcome::Applied(Applied::LeaseKeptAlive(_)),
            ) if token == *renewed => LeaseState::Holding {
                token,
                ttl_ms,
                renew_at: renew_at(ttl_ms),
            },
            (_, Action::KeepAlive { .. }, Outcome::Applied(Applied::KeepAliveRejected(_))) => {
                LeaseState::Free { acquire_at: now }
            }
            (_, Action::Release { .. }, _) => LeaseState::Free { acquire_at: now },
            (LeaseState::Stalled { token, ttl_ms }, Action::Submit { .. }, outcome) => {
                match outcome {
                    Outcome::Applied(Applied::SubmitRejected(r))
                        if r.reason() == RejectReason::StaleToken =>
                    {
                        self.stats.zombie_refusals += 1;
                        LeaseState::Free { acquire_at: now }
                    }
                    _ => {
                        if let Outcome::Applied(Applied::EventRecorded(_)) = outcome {
                            self.stats.zombie_accepted += 1;
                        }
                        // It may still hold the lease: renew at once to find out.
                        LeaseState::Holding {
                            token,
                            ttl_ms,
                            renew_at: now,
                        }
                    }
                }
            }
            (_, Action::Submit { .. }, Outcome::Applied(Applied::SubmitRejected(r)))
                if r.reason() == RejectReason::StaleToken =>
            {
                LeaseState::Free { acquire_at: now }
            }
            (state, _, _) => state,
        };
    }
}

/// What a client works on.
#[derive(Clone, Debug)]
pub enum Plan {
    /// Payment events and reads.
    Payments(PaymentClient),
    /// Writer-lease work.
    LeaseWorker(LeaseWorker),
}

impl Plan {
    /// What to do next at `now`; `reads_only` during quiet periods.
    pub fn next(
        &mut self,
        now: u64,
        rng: &mut SplitMix64,
        reads_only: bool,
        workload: &Workload,
    ) -> Next {
        match self {
            Plan::Payments(p) => Next::Do(p.next(rng, reads_only, workload)),
            Plan::LeaseWorker(w) => w.next(now, rng, reads_only, workload),
        }
    }

    /// How the last operation ended.
    pub fn learn(&mut self, now: u64, action: &Action, outcome: Outcome<'_>) {
        match self {
            Plan::Payments(p) => p.book.learn(action, outcome),
            Plan::LeaseWorker(w) => w.learn(now, action, outcome),
        }
    }

    /// The lease worker's counters (zero for other clients).
    pub fn lease_stats(&self) -> LeaseStats {
        match self {
            Plan::Payments(_) => LeaseStats::default(),
            Plan::LeaseWorker(w) => w.stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_payments::machine::{
        EventRecord, EventRecorded, KeepAliveRejected, LeaseAcquired, LeaseKeptAlive,
        SubmitRejected,
    };

    fn workload() -> Workload {
        Workload {
            payments: 4,
            think_min: 500,
            think_max: 6_000,
            attempt_timeout: 6_000,
            op_timeout: 30_000,
        }
    }

    fn granted(token: u64) -> Applied {
        Applied::LeaseAcquired(LeaseAcquired {
            granted: true,
            name: "lease-0".into(),
            holder: "client-1".into(),
            token,
            ttl_ms: 1_000,
        })
    }

    fn rejected(reason: RejectReason) -> Applied {
        Applied::SubmitRejected(SubmitRejected {
            reason: reason as i32,
            message: String::new(),
            replayed: false,
        })
    }

    fn recorded() -> Applied {
        Applied::EventRecorded(EventRecorded {
            event: EventRecord::default(),
            replayed: false,
        })
    }

    /// Drives `worker` from `now` until it stalls, answering every acquire with a grant and
    /// every keep-alive with a renewal; returns when it stalled and when it resumes.
    fn until_stalled(worker: &mut LeaseWorker, rng: &mut SplitMix64, mut now: u64) -> (u64, u64) {
        loop {
            match worker.next(now, rng, false, &workload()) {
                Next::WaitUntil(at) if matches!(worker.state, LeaseState::Stalled { .. }) => {
                    return (now, at)
                }
                Next::WaitUntil(at) => now = at,
                Next::Do(action @ Action::Acquire { .. }) => {
                    worker.learn(now, &action, Outcome::Applied(&granted(5)));
                }
                Next::Do(action @ Action::KeepAlive { token, .. }) => {
                    let kept = Applied::LeaseKeptAlive(LeaseKeptAlive {
                        name: "lease-0".into(),
                        holder: "client-1".into(),
                        token,
                        renewals: 1,
                        ttl_ms: 1_000,
                    });
                    worker.learn(now, &action, Outcome::Applied(&kept));
                }
                Next::Do(action) => worker.learn(now, &action, Outcome::GaveUp),
            }
            now += 1_000;
        }
    }

    #[test]
    fn payments_are_authorized_once_then_captured_in_small_amounts() {
        let mut rng = SplitMix64::new(1);
        let mut book = PaymentBook::default();
        assert_eq!(
            book.event_for(2, &mut rng),
            (EventKind::Authorized, AUTHORIZED_MINOR)
        );
        let authorize = Action::Submit {
            payment: 2,
            kind: EventKind::Authorized,
            amount: AUTHORIZED_MINOR,
            fence: None,
        };
        book.learn(
            &authorize,
            Outcome::Applied(&rejected(RejectReason::InvalidTransition)),
        );
        let (kind, amount) = book.event_for(2, &mut rng);
        assert_eq!(kind, EventKind::Captured);
        assert!((1..=MAX_CAPTURE_MINOR).contains(&amount));
        assert_eq!(book.event_for(3, &mut rng).0, EventKind::Authorized);
        let read = Action::Read {
            payment: 3,
            kind: ReadKind::Quorum,
        };
        book.learn(&read, Outcome::Events(&[]));
        assert!(!book.is_authorized(3), "an empty read says nothing");
        book.learn(&read, Outcome::Events(&[7]));
        assert!(book.is_authorized(3));
    }

    #[test]
    fn a_worker_acquires_then_writes_fenced_with_its_token_and_renews_in_time() {
        let mut rng = SplitMix64::new(2);
        let mut worker = LeaseWorker::new(0);
        let Next::Do(acquire @ Action::Acquire { ttl_ms, .. }) =
            worker.next(0, &mut rng, false, &workload())
        else {
            panic!("a free worker acquires")
        };
        assert!((MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms));
        worker.learn(0, &acquire, Outcome::Applied(&granted(9)));
        let renew_at = ms_to_microticks(1_000 / 3);
        let mut writes = 0;
        for _ in 0..50 {
            worker.state = LeaseState::Holding {
                token: 9,
                ttl_ms: 1_000,
                renew_at,
            };
            match worker.next(1, &mut rng, false, &workload()) {
                Next::Do(Action::Submit { fence, .. }) => {
                    assert_eq!(fence, Some(Fence { lease: 0, token: 9 }));
                    writes += 1;
                }
                Next::Do(Action::Release { token, .. }) => assert_eq!(token, 9),
                Next::WaitUntil(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(writes > 30, "mostly fenced writes, got {writes}");
        worker.state = LeaseState::Holding {
            token: 9,
            ttl_ms: 1_000,
            renew_at,
        };
        assert_eq!(
            worker.next(renew_at, &mut rng, false, &workload()),
            Next::Do(Action::KeepAlive { lease: 0, token: 9 })
        );
    }

    #[test]
    fn a_stalled_worker_resumes_after_its_ttl_with_a_zombie_write_of_its_old_token() {
        let mut rng = SplitMix64::new(3);
        let mut worker = LeaseWorker::new(0);
        let acquire = Action::Acquire {
            lease: 0,
            ttl_ms: 1_000,
        };
        worker.learn(0, &acquire, Outcome::Applied(&granted(5)));
        let (_, resume) = until_stalled(&mut worker, &mut rng, 0);
        assert_eq!(worker.stats.stalls, 1);
        assert!(
            matches!(
                worker.next(resume, &mut rng, true, &workload()),
                Next::WaitUntil(_)
            ),
            "a quiet period prolongs the stall"
        );
        let Next::Do(write @ Action::Submit { fence, .. }) =
            worker.next(resume, &mut rng, false, &workload())
        else {
            panic!("a resumed worker writes at once")
        };
        assert_eq!(fence, Some(Fence { lease: 0, token: 5 }));
        assert_eq!(worker.stats.zombie_writes, 1);
        worker.learn(
            resume,
            &write,
            Outcome::Applied(&rejected(RejectReason::StaleToken)),
        );
        assert_eq!(worker.stats.zombie_refusals, 1);
        assert_eq!(
            worker.state,
            LeaseState::Free { acquire_at: resume },
            "refused: it acquires again"
        );
    }

    #[test]
    fn a_refused_acquire_is_retried_after_half_the_holders_ttl() {
        let mut rng = SplitMix64::new(6);
        let mut worker = LeaseWorker::new(0);
        let Next::Do(acquire) = worker.next(0, &mut rng, false, &workload()) else {
            panic!("a free worker acquires")
        };
        let refused = Applied::LeaseAcquired(LeaseAcquired {
            granted: false,
            name: "lease-0".into(),
            holder: "client-2".into(),
            token: 4,
            ttl_ms: 2_000,
        });
        worker.learn(100, &acquire, Outcome::Applied(&refused));
        let retry_at = 100 + ms_to_microticks(1_000);
        assert_eq!(
            worker.next(101, &mut rng, false, &workload()),
            Next::WaitUntil(retry_at)
        );
        assert!(matches!(
            worker.next(retry_at, &mut rng, false, &workload()),
            Next::Do(Action::Acquire { .. })
        ));
    }

    #[test]
    fn a_stall_lasts_between_one_and_three_ttls() {
        let mut rng = SplitMix64::new(4);
        for _ in 0..20 {
            let mut worker = LeaseWorker::new(0);
            worker.state = LeaseState::Holding {
                token: 5,
                ttl_ms: 1_000,
                renew_at: u64::MAX,
            };
            let (stalled, resume) = until_stalled(&mut worker, &mut rng, 1_000_000);
            let stall = resume - stalled;
            assert!(
                (ms_to_microticks(1_000)..=ms_to_microticks(3_000)).contains(&stall),
                "stalled {stall} microticks"
            );
        }
    }

    #[test]
    fn a_zombie_write_that_is_accepted_renews_at_once_and_a_refused_keep_alive_frees() {
        let mut worker = LeaseWorker::new(0);
        worker.state = LeaseState::Stalled {
            token: 5,
            ttl_ms: 1_000,
        };
        let write = Action::Submit {
            payment: 0,
            kind: EventKind::Captured,
            amount: 1,
            fence: Some(Fence { lease: 0, token: 5 }),
        };
        worker.learn(77, &write, Outcome::Applied(&recorded()));
        assert_eq!(worker.stats.zombie_accepted, 1);
        assert_eq!(
            worker.state,
            LeaseState::Holding {
                token: 5,
                ttl_ms: 1_000,
                renew_at: 77
            }
        );
        let keep_alive = Action::KeepAlive { lease: 0, token: 5 };
        let refused = Applied::KeepAliveRejected(KeepAliveRejected {
            message: "expired".into(),
        });
        worker.learn(78, &keep_alive, Outcome::Applied(&refused));
        assert_eq!(worker.state, LeaseState::Free { acquire_at: 78 });
    }

    #[test]
    fn a_worker_holding_a_lease_gives_it_up_for_a_quiet_period_and_then_waits() {
        let mut rng = SplitMix64::new(5);
        let mut worker = LeaseWorker::new(0);
        worker.state = LeaseState::Holding {
            token: 5,
            ttl_ms: 1_000,
            renew_at: u64::MAX,
        };
        let release = Action::Release { lease: 0, token: 5 };
        assert_eq!(
            worker.next(10, &mut rng, true, &workload()),
            Next::Do(release)
        );
        worker.learn(20, &release, Outcome::GaveUp);
        assert!(matches!(
            worker.next(30, &mut rng, true, &workload()),
            Next::WaitUntil(at) if at > 30
        ));
    }
}

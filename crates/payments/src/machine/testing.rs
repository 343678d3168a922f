//! Test helpers: a harness that plays the leader (indexes, tokens, a clock) over a MemStore,
//! and builders for commands.

use std::collections::BTreeMap;

use quorate_raft_core::{FencingToken, Index};

use super::apply::{apply, apply_noop};
use super::commands::{
    stamp, AcquireLease, Command, EventKind, ExpireLease, KeepAliveLease, LeaderClock, LeaseFence,
    ReleaseLease, Submit,
};
use super::mem_store::MemStore;
use super::outputs::{Applied, RejectReason};
use super::records::{EventRecord, LeaseRecord, MetaRecord, PaymentRecord};
use super::store::Store;

/// A day, the service's default idempotency window.
pub(crate) const DAY_MS: u64 = 86_400_000;
/// The clock the harness starts at.
pub(crate) const START_MS: u64 = 1_700_000_000_000;

/// Plays the leader: numbers entries, hands out increasing tokens, stamps a clock.
pub(crate) struct Harness {
    pub store: MemStore,
    pub index: Index,
    pub term: u64,
    pub sequence: u64,
    pub now_ms: u64,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            store: MemStore::new(),
            index: 0,
            term: 1,
            sequence: 0,
            now_ms: START_MS,
        }
    }

    fn next_position(&mut self) -> (Index, FencingToken) {
        self.index += 1;
        self.sequence += 1;
        let token = FencingToken {
            term: self.term,
            sequence: self.sequence,
        };
        (self.index, token)
    }

    /// Applies `command` at the next index with the next token, stamped as a leader whose wall
    /// and monotonic clocks agree (both read `now_ms`).
    pub fn run(&mut self, command: Command) -> Applied {
        let bytes = self.stamped(&command);
        let (index, token) = self.next_position();
        apply(&mut self.store, index, token, &bytes).expect("MemStore never fails")
    }

    /// `command`'s bytes as the leader proposes them: stamped with `now_ms` as both its wall
    /// and its monotonic clock.
    pub fn stamped(&self, command: &Command) -> bytes::Bytes {
        let clock = LeaderClock {
            wall_ms: self.now_ms,
            term_ms: self.now_ms,
        };
        stamp(&command.encode(), clock).expect("a valid command")
    }

    /// Applies a no-op at the next index with the next token.
    pub fn noop(&mut self) -> Applied {
        let (index, token) = self.next_position();
        apply_noop(&mut self.store, index, token).expect("MemStore never fails")
    }

    /// Moves the leader's clock forward.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    pub fn meta(&self) -> MetaRecord {
        self.store.meta().unwrap().unwrap_or_default()
    }

    pub fn payment(&self, payment_id: &str) -> Option<PaymentRecord> {
        self.store.payment(payment_id).unwrap()
    }

    pub fn lease(&self, name: &str) -> Option<LeaseRecord> {
        self.store.lease(name).unwrap()
    }

    /// Submits and expects an event; returns it.
    pub fn accept(&mut self, command: Command) -> EventRecord {
        expect_event(self.run(command))
    }

    /// Acquires and expects a grant; returns the token.
    pub fn grant(&mut self, name: &str, holder: &str) -> u64 {
        match self.run(acquire(name, holder, 10_000)) {
            Applied::LeaseAcquired(out) if out.granted => out.token,
            other => panic!("expected a grant, got {other:?}"),
        }
    }
}

pub(crate) fn submit(payment_id: &str, key: &str, kind: EventKind, amount_minor: i64) -> Submit {
    Submit {
        payment_id: payment_id.into(),
        idempotency_key: key.into(),
        kind: kind as i32,
        amount_minor,
        currency: "USD".into(),
        metadata: BTreeMap::new(),
        fence: None,
        idempotency_window_ms: DAY_MS,
        event_retention: 0,
    }
}

pub(crate) fn authorize(payment_id: &str, key: &str, amount: i64) -> Command {
    Command::Submit(submit(payment_id, key, EventKind::Authorized, amount))
}

pub(crate) fn capture(payment_id: &str, key: &str, amount: i64) -> Command {
    Command::Submit(submit(payment_id, key, EventKind::Captured, amount))
}

pub(crate) fn void(payment_id: &str, key: &str, amount: i64) -> Command {
    Command::Submit(submit(payment_id, key, EventKind::Voided, amount))
}

pub(crate) fn refund(payment_id: &str, key: &str, amount: i64) -> Command {
    Command::Submit(submit(payment_id, key, EventKind::Refunded, amount))
}

/// A submit fenced by `lease` with `token`.
pub(crate) fn fenced(command: Command, lease: &str, token: u64) -> Command {
    match command {
        Command::Submit(mut s) => {
            s.fence = Some(LeaseFence {
                lease: lease.into(),
                token,
            });
            Command::Submit(s)
        }
        other => panic!("only submits are fenced, not {other:?}"),
    }
}

pub(crate) fn acquire(name: &str, holder: &str, ttl_ms: u64) -> Command {
    Command::AcquireLease(AcquireLease {
        name: name.into(),
        holder: holder.into(),
        ttl_ms,
    })
}

pub(crate) fn keep_alive(name: &str, holder: &str, token: u64) -> Command {
    Command::KeepAliveLease(KeepAliveLease {
        name: name.into(),
        holder: holder.into(),
        token,
    })
}

pub(crate) fn release(name: &str, holder: &str, token: u64) -> Command {
    Command::ReleaseLease(ReleaseLease {
        name: name.into(),
        holder: holder.into(),
        token,
    })
}

pub(crate) fn expire(name: &str, token: u64, renewals: u64) -> Command {
    Command::ExpireLease(ExpireLease {
        name: name.into(),
        token,
        renewals,
    })
}

/// The event of an accepted, not replayed, submit.
pub(crate) fn expect_event(applied: Applied) -> EventRecord {
    match applied {
        Applied::EventRecorded(out) if !out.replayed => out.event,
        other => panic!("expected a new event, got {other:?}"),
    }
}

/// The reason, message and replayed flag of a refused submit.
pub(crate) fn expect_rejection(applied: Applied) -> (RejectReason, String, bool) {
    match applied {
        Applied::SubmitRejected(out) => (out.reason(), out.message, out.replayed),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

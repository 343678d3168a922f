//! Read helpers for the service: what `Get`, `List`, `Watch`, `Status` and the leader's
//! lease timers need from a store. They never write.

use quorate_raft_core::Index;

use super::compaction::check_not_compacted;
use super::records::{EventRecord, LeaseRecord, MetaRecord, PaymentRecord};
use super::store::{Store, StoreError};

/// Events a `List` returns when the request's limit is 0.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
/// The most events one `List` returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// A payment with its events in order (`PaymentEvents.Get`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentView {
    /// The payment's totals; its state is `payment.state()`.
    pub payment: PaymentRecord,
    /// Its events, `payment_seq` 1, 2, 3, ...
    pub events: Vec<EventRecord>,
}

/// One page of events in log order (`PaymentEvents.List`, and `Watch`'s catch-up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPage {
    /// The events, by increasing index.
    pub events: Vec<EventRecord>,
    /// The index to pass as `after_index` to continue: the last event's, or the request's
    /// when there was nothing newer.
    pub next_after_index: Index,
}

/// A payment and its events still in the event log, or `None` for an unknown payment.
///
/// The payment and its events are separate reads: when the event log's compaction takes an
/// event away in between, the payment is read again.
pub fn payment_with_events<S: Store + ?Sized>(
    store: &S,
    payment_id: &str,
) -> Result<Option<PaymentView>, StoreError> {
    const ATTEMPTS: usize = 3;
    'read: for _ in 0..ATTEMPTS {
        let Some(payment) = store.payment(payment_id)? else {
            return Ok(None);
        };
        let mut events = Vec::with_capacity(payment.event_indexes.len());
        for &index in &payment.event_indexes {
            match store.event(index)? {
                Some(event) => events.push(event),
                None => {
                    let meta = store.meta()?.unwrap_or_default();
                    if index <= meta.events_compacted_through {
                        continue 'read;
                    }
                    return Err(StoreError::Inconsistent(format!(
                        "payment {payment_id:?} names event {index}, which is not stored"
                    )));
                }
            }
        }
        return Ok(Some(PaymentView { payment, events }));
    }
    Err(StoreError::Inconsistent(format!(
        "payment {payment_id:?}: its events were compacted under {ATTEMPTS} reads in a row"
    )))
}

/// Events after `after_index`, at most `limit` of them (0 means [`DEFAULT_LIST_LIMIT`];
/// more than [`MAX_LIST_LIMIT`] is capped); [`StoreError::Compacted`] when the event log no
/// longer holds all of them.
pub fn list_events<S: Store + ?Sized>(
    store: &S,
    after_index: Index,
    limit: u32,
) -> Result<EventPage, StoreError> {
    let limit = match limit {
        0 => DEFAULT_LIST_LIMIT,
        n => n.min(MAX_LIST_LIMIT),
    };
    let events = store.events_after(after_index, limit as usize)?;
    // Checked after the read: compaction only moves forward, so if the point is still at or
    // below `after_index` now, no event after it was missing while the page was read.
    let meta = store.meta()?.unwrap_or_default();
    check_not_compacted(&meta, after_index)?;
    let next_after_index = events.last().map_or(after_index, |event| event.index);
    Ok(EventPage {
        events,
        next_after_index,
    })
}

/// The leases currently held, by name: what a new leader arms its expiry timers from
/// (name, holder, token, renewals, ttl_ms).
pub fn held_leases<S: Store + ?Sized>(store: &S) -> Result<Vec<LeaseRecord>, StoreError> {
    let mut leases = store.leases()?;
    leases.retain(LeaseRecord::is_held);
    Ok(leases)
}

/// The machine's bookkeeping: applied index, last token, clock and counters (all zero before
/// the first entry).
pub fn machine_status<S: Store + ?Sized>(store: &S) -> Result<MetaRecord, StoreError> {
    Ok(store.meta()?.unwrap_or_default())
}

/// Whether the machine has applied an entry of `term` (or later): a leader of `term` for which
/// this holds has applied everything its predecessors committed, leases included. Read it
/// before `held_leases` for the lease timers, so the leases read are at least that recent.
pub fn applied_in_term<S: Store + ?Sized>(store: &S, term: u64) -> Result<bool, StoreError> {
    Ok(machine_status(store)?
        .last_token
        .is_some_and(|token| token.term >= term))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::testing::*;

    #[test]
    fn a_payment_comes_with_its_events_in_order() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(authorize("p2", "k2", 1000));
        h.accept(capture("p1", "k3", 400));
        let view = payment_with_events(&h.store, "p1").unwrap().unwrap();
        assert_eq!(view.payment.captured_minor, 400);
        let seqs: Vec<(u64, Index)> = view
            .events
            .iter()
            .map(|e| (e.payment_seq, e.index))
            .collect();
        assert_eq!(seqs, vec![(1, 1), (2, 3)]);
        assert_eq!(payment_with_events(&h.store, "nope").unwrap(), None);
    }

    #[test]
    fn listing_pages_through_events_in_log_order() {
        let mut h = Harness::new();
        for i in 0..5 {
            h.accept(authorize(&format!("p{i}"), &format!("k{i}"), 10));
            h.noop();
        }
        let page = list_events(&h.store, 0, 2).unwrap();
        let indexes: Vec<Index> = page.events.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![1, 3]);
        assert_eq!(page.next_after_index, 3);
        let rest = list_events(&h.store, page.next_after_index, 0).unwrap();
        let indexes: Vec<Index> = rest.events.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![5, 7, 9]);
        let empty = list_events(&h.store, 9, 10).unwrap();
        assert!(empty.events.is_empty());
        assert_eq!(empty.next_after_index, 9, "unchanged when nothing is newer");
    }

    #[test]
    fn listing_uses_the_default_limit_for_zero_and_caps_large_limits() {
        let mut h = Harness::new();
        for i in 0..(MAX_LIST_LIMIT + 5) {
            h.accept(authorize(&format!("p{i}"), &format!("k{i}"), 10));
        }
        assert_eq!(
            list_events(&h.store, 0, 0).unwrap().events.len(),
            DEFAULT_LIST_LIMIT as usize
        );
        assert_eq!(
            list_events(&h.store, 0, u32::MAX).unwrap().events.len(),
            MAX_LIST_LIMIT as usize
        );
    }

    #[test]
    fn only_held_leases_are_listed_for_expiry_timers() {
        let mut h = Harness::new();
        let a = h.grant("a-lease", "x");
        let b = h.grant("b-lease", "y");
        h.grant("c-lease", "z");
        h.run(release("a-lease", "x", a));
        h.run(keep_alive("b-lease", "y", b));
        let held = held_leases(&h.store).unwrap();
        let summary: Vec<(&str, &str, u64, u64, u64)> = held
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.holder.as_str(),
                    l.token,
                    l.renewals,
                    l.ttl_ms,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("b-lease", "y", b, 1, 10_000),
                ("c-lease", "z", 3, 0, 10_000)
            ]
        );
    }

    #[test]
    fn machine_status_reports_zeroes_before_the_first_entry_then_the_bookkeeping() {
        let mut h = Harness::new();
        assert_eq!(machine_status(&h.store).unwrap(), MetaRecord::default());
        h.accept(authorize("p1", "k1", 10));
        let status = machine_status(&h.store).unwrap();
        assert_eq!(status.applied_index, 1);
        assert_eq!(status.clock_ms, START_MS);
        assert_eq!(status.events_recorded, 1);
    }
}

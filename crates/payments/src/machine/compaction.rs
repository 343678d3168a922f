//! Compaction of the event log: the events more than `--event-retention` indexes behind the
//! entry being applied are deleted, a few at a time, by every replica at the same index (the
//! retention of the node that took the write travels in each `Submit`, like the idempotency
//! window).
//!
//! Nothing a client relies on is lost with them:
//! - a payment's totals and state stay in its record, which counts its compacted events
//!   (`events_compacted`) so that `payment_seq` keeps counting;
//! - an idempotency key that is still remembered and names a compacted event gets a copy of
//!   the event ([`RecordedOutcome::Event`]), so a retry still answers with it;
//! - the event-log hash goes on from the hash of the compacted events, kept in the meta
//!   record, so `HashEvents` at any index still held gives the same answer as without
//!   compaction;
//! - a read of a compacted range is refused with the first index still held
//!   ([`StoreError::Compacted`]), never answered with a silent gap.

use prost::Message;
use quorate_raft_core::fnv::Fnv1a;
use quorate_raft_core::Index;

use super::records::{EventRecord, IdempotencyRecord, MetaRecord, PaymentRecord, RecordedOutcome};
use super::store::{Store, StoreError};

/// Compaction waits until this many indexes can go, so that most entries pay nothing for it.
pub const COMPACT_EVERY: u64 = 64;
/// The most events one entry compacts (twice [`COMPACT_EVERY`]: it catches up after the
/// retention shrinks, by at least one event per entry).
pub const COMPACT_LIMIT_PER_APPLY: usize = 128;

#[cfg(feature = "bug-injection")]
thread_local! {
    static SKIPS_HASH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Injected bug (simulator only): compaction deletes events without mixing them into the
/// kept hash, so `HashEvents` forgets them. Set per thread, for the run on it.
#[cfg(feature = "bug-injection")]
pub fn inject_compaction_skips_hash(on: bool) {
    SKIPS_HASH.with(|s| s.set(on));
}

fn skips_hash() -> bool {
    #[cfg(feature = "bug-injection")]
    return SKIPS_HASH.with(std::cell::Cell::get);
    #[cfg(not(feature = "bug-injection"))]
    false
}

/// Mixes one stored event into the event-log hash: its index (8 bytes big-endian), the length
/// of its stored record (8 bytes big-endian) and the record. `hash_events` and compaction
/// both hash through this, so their hashes agree.
pub fn fold_event(hash: &mut Fnv1a, index: Index, record: &[u8]) {
    hash.write(&index.to_be_bytes());
    hash.write(&(record.len() as u64).to_be_bytes());
    hash.write(record);
}

/// The event-log hasher after the compacted events, from the meta record.
pub fn compacted_hasher(meta: &MetaRecord) -> Fnv1a {
    if meta.events_compacted == 0 {
        Fnv1a::default()
    } else {
        Fnv1a::resume(meta.events_compacted_hash)
    }
}

/// Refuses a read of the events after `after` when some of them were compacted.
pub fn check_not_compacted(meta: &MetaRecord, after: Index) -> Result<(), StoreError> {
    if after < meta.last_compacted_event {
        return Err(StoreError::Compacted {
            after,
            first_available: meta.first_event_index(),
        });
    }
    Ok(())
}

/// The writes of one entry's compaction, decided by [`plan`].
#[derive(Debug, Default)]
pub(crate) struct Compaction {
    /// The events to delete.
    pub events: Vec<Index>,
    /// Payments with their compacted events taken off (not the entry's own payment, which
    /// [`plan`] trims in place).
    pub payments: Vec<PaymentRecord>,
    /// Idempotency records that now carry their event.
    pub keys: Vec<IdempotencyRecord>,
}

/// Decides what the entry at `index` compacts under `retention` (reads only): the events at
/// or below `index - retention` not compacted yet, at most [`COMPACT_LIMIT_PER_APPLY`], once
/// at least [`COMPACT_EVERY`] indexes can go. Updates `meta`'s compaction point, count and
/// hash, and trims `own_payment` (the payment the entry itself writes, if any) in place.
/// `own_key` is the idempotency key the entry records anew, whose old record is replaced.
pub(crate) fn plan<S: Store + ?Sized>(
    store: &S,
    meta: &mut MetaRecord,
    index: Index,
    retention: u64,
    own_payment: Option<&mut PaymentRecord>,
    own_key: Option<&str>,
) -> Result<Compaction, StoreError> {
    let mut compaction = Compaction::default();
    if retention == 0 {
        return Ok(compaction);
    }
    let target = index.saturating_sub(retention);
    if target < meta.events_compacted_through.saturating_add(COMPACT_EVERY) {
        return Ok(compaction);
    }
    let page = store.events_after(meta.events_compacted_through, COMPACT_LIMIT_PER_APPLY)?;
    let more = page.len() == COMPACT_LIMIT_PER_APPLY;
    let events: Vec<EventRecord> = page.into_iter().filter(|e| e.index <= target).collect();
    let through = match events.last() {
        // A full page all at or below the target: more may follow, next time.
        Some(last) if more && events.len() == COMPACT_LIMIT_PER_APPLY => last.index,
        _ => target,
    };

    let mut hash = compacted_hasher(meta);
    let mut own_payment = own_payment;
    for event in &events {
        if !skips_hash() {
            fold_event(&mut hash, event.index, &event.encode_to_vec());
        }
        compaction.events.push(event.index);

        let id = &event.payment_id;
        let payment = match own_payment.as_deref_mut() {
            Some(own) if own.payment_id == *id => own,
            _ => match compaction.payments.iter().position(|p| p.payment_id == *id) {
                Some(at) => &mut compaction.payments[at],
                None => {
                    let Some(stored) = store.payment(id)? else {
                        return Err(StoreError::Inconsistent(format!(
                            "event {} names payment {id:?}, which is not stored",
                            event.index
                        )));
                    };
                    compaction.payments.push(stored);
                    compaction.payments.last_mut().expect("just pushed")
                }
            },
        };
        if payment.event_indexes.first() == Some(&event.index) {
            payment.event_indexes.remove(0);
            payment.events_compacted += 1;
        } else {
            return Err(StoreError::Inconsistent(format!(
                "event {} of payment {id:?} is not its first event still held ({:?})",
                event.index,
                payment.event_indexes.first()
            )));
        }

        if own_key == Some(event.idempotency_key.as_str()) {
            continue;
        }
        if let Some(mut record) = store.idempotency(&event.idempotency_key)? {
            let names_it = record.outcome == Some(RecordedOutcome::EventIndex(event.index));
            if names_it && record.expires_at_ms > meta.clock_ms {
                record.outcome = Some(RecordedOutcome::Event(event.clone()));
                compaction.keys.push(record);
            }
        }
    }
    meta.events_compacted += events.len() as u64;
    meta.events_compacted_hash = hash.finish();
    meta.events_compacted_through = through;
    if let Some(last) = events.last() {
        meta.last_compacted_event = last.index;
    }
    Ok(compaction)
}

/// Writes what [`plan`] decided.
pub(crate) fn write<S: Store + ?Sized>(store: &mut S, compaction: Compaction) {
    for record in compaction.keys {
        store.put_idempotency(record);
    }
    for payment in compaction.payments {
        store.put_payment(payment);
    }
    for index in compaction.events {
        store.delete_event(index);
    }
}

/// The event-log hash up to `up_to` from a [`Store`]'s records (what `hash_events` computes
/// from RocksDB's stored bytes): the compacted events' hash from the meta record, then each
/// event still held. Returns the number of events and the hash; [`StoreError::Compacted`]
/// below the compaction point.
pub fn store_hash_events<S: Store + ?Sized>(
    store: &S,
    up_to: Index,
) -> Result<(u64, u64), StoreError> {
    const PAGE: usize = 1024;
    let meta = store.meta()?.unwrap_or_default();
    check_not_compacted(&meta, up_to)?;
    let mut hash = compacted_hasher(&meta);
    let mut count = meta.events_compacted;
    let mut after = meta.events_compacted_through;
    loop {
        let page = store.events_after(after, PAGE)?;
        let full = page.len() == PAGE;
        for event in page {
            if event.index > up_to {
                return Ok((count, hash.finish()));
            }
            fold_event(&mut hash, event.index, &event.encode_to_vec());
            count += 1;
            after = event.index;
        }
        if !full {
            return Ok((count, hash.finish()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::commands::Command;
    use crate::machine::outputs::Applied;
    use crate::machine::reads::{list_events, payment_with_events};
    use crate::machine::testing::*;

    fn retained(command: Command, retention: u64) -> Command {
        match command {
            Command::Submit(mut s) => {
                s.event_retention = retention;
                Command::Submit(s)
            }
            other => other,
        }
    }

    /// The same submits on two machines, one keeping 100 indexes of events: 20 payments, each
    /// authorized then captured bit by bit, with a no-op now and then.
    fn run_both(entries: u64, mut each: impl FnMut(&Harness, &Harness)) -> (Harness, Harness) {
        let (mut whole, mut compacting) = (Harness::new(), Harness::new());
        for i in 0..entries {
            let payment = format!("p{}", i % 20);
            let key = format!("k{i}");
            let command = if i < 20 {
                authorize(&payment, &key, 1_000_000)
            } else {
                capture(&payment, &key, 1)
            };
            if i % 97 == 0 {
                whole.noop();
                compacting.noop();
            }
            let a = whole.run(command.clone());
            let b = compacting.run(retained(command, 100));
            assert_eq!(
                a, b,
                "entry {i}: the same outcome with or without compaction"
            );
            each(&whole, &compacting);
        }
        (whole, compacting)
    }

    #[test]
    fn compaction_keeps_hashes_totals_and_sequence_numbers() {
        let mut checked = 0;
        let (whole, compacting) = run_both(2000, |whole, compacting| {
            let meta = compacting.meta();
            let index = compacting.index;
            for at in [meta.events_compacted_through, index] {
                assert_eq!(
                    store_hash_events(&compacting.store, at).unwrap(),
                    store_hash_events(&whole.store, at).unwrap(),
                    "hash at {at} (compacted through {})",
                    meta.events_compacted_through
                );
            }
            checked += 1;
        });
        assert_eq!(checked, 2000);
        let meta = compacting.meta();
        assert!(
            meta.events_compacted_through + 100 + COMPACT_EVERY >= compacting.index,
            "compaction keeps up: through {} at index {}",
            meta.events_compacted_through,
            compacting.index
        );
        assert!(compacting.store.event_count() <= (100 + COMPACT_EVERY) as usize);
        assert_eq!(whole.store.event_count(), 2000);
        assert_eq!(
            meta.events_compacted,
            2000 - compacting.store.event_count() as u64
        );
        for p in 0..20 {
            let id = format!("p{p}");
            let (a, b) = (
                whole.payment(&id).unwrap(),
                compacting.payment(&id).unwrap(),
            );
            assert_eq!(a.captured_minor, b.captured_minor);
            assert_eq!(a.event_count(), b.event_count());
            assert!(b.events_compacted > 0 && b.event_indexes.len() < a.event_indexes.len());
            assert_eq!(
                a.event_indexes[a.event_indexes.len() - b.event_indexes.len()..],
                b.event_indexes
            );
            let view = payment_with_events(&compacting.store, &id)
                .unwrap()
                .unwrap();
            let seqs: Vec<u64> = view.events.iter().map(|e| e.payment_seq).collect();
            let first = b.events_compacted + 1;
            assert_eq!(seqs, (first..=b.event_count()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_retry_of_a_compacted_event_still_gets_the_event() {
        let (_, mut compacting) = run_both(400, |_, _| {});
        // k3 recorded p3's authorization at index 5 (after the first no-op), long compacted.
        assert!(compacting.meta().events_compacted_through > 5);
        let retry = retained(authorize("p3", "k3", 1_000_000), 100);
        match compacting.run(retry) {
            Applied::EventRecorded(out) => {
                assert!(out.replayed);
                assert_eq!((out.event.index, out.event.payment_seq), (5, 1));
                assert_eq!(out.event.idempotency_key, "k3");
            }
            other => panic!("expected the original event, got {other:?}"),
        }
        // Once the key expires it is forgotten like any other: the same request is new, and
        // the payment's lifecycle refuses it.
        compacting.advance(DAY_MS + 1);
        let retry = retained(authorize("p3", "k3", 1_000_000), 100);
        match compacting.run(retry) {
            Applied::SubmitRejected(out) => assert!(!out.replayed, "{out:?}"),
            other => panic!("expected a lifecycle refusal, got {other:?}"),
        }
    }

    /// Compaction's cursor moves past indexes that held no event; a reader is refused only
    /// for events that were really deleted (review finding: a caught-up reader, or any reader
    /// of a cluster that had deleted nothing, was refused once many entries without events
    /// had passed).
    #[test]
    fn a_reader_is_refused_only_when_an_event_it_asks_for_was_deleted() {
        let mut machine = Harness::new();
        let first = machine.accept(retained(authorize("p", "k0", 1_000), 100));
        for _ in 0..300 {
            machine.noop();
        }
        machine.accept(retained(capture("p", "k1", 1), 100));
        let meta = machine.meta();
        assert!(
            meta.events_compacted_through > 100,
            "the cursor moved: {meta:?}"
        );
        assert_eq!(meta.last_compacted_event, first.index, "{meta:?}");
        // The first event went; a reader past it misses nothing.
        assert!(list_events(&machine.store, first.index, 10).is_ok());
        assert!(store_hash_events(&machine.store, first.index).is_ok());
        assert!(matches!(
            list_events(&machine.store, 0, 10),
            Err(StoreError::Compacted { first_available, .. }) if first_available == first.index + 1
        ));

        // Nothing deleted at all: nothing refused, however far the cursor went.
        let mut quiet = Harness::new();
        for _ in 0..300 {
            quiet.noop();
        }
        quiet.accept(retained(authorize("q", "k", 1_000), 100));
        assert!(quiet.meta().events_compacted_through > 100);
        assert_eq!(quiet.meta().last_compacted_event, 0);
        assert_eq!(list_events(&quiet.store, 0, 10).unwrap().events.len(), 1);
        assert!(store_hash_events(&quiet.store, 50).is_ok());
    }

    #[test]
    fn reading_a_compacted_range_is_refused_with_the_first_index_held() {
        let (_, compacting) = run_both(400, |_, _| {});
        let through = compacting.meta().last_compacted_event;
        assert!(through > 0);
        for after in [0, through - 1] {
            match list_events(&compacting.store, after, 10) {
                Err(StoreError::Compacted {
                    after: a,
                    first_available,
                }) => assert_eq!((a, first_available), (after, through + 1)),
                other => panic!("after {after}: expected COMPACTED, got {other:?}"),
            }
        }
        let page = list_events(&compacting.store, through, 10).unwrap();
        assert_eq!(page.events.len(), 10);
        assert!(page.events[0].index > through);
        assert!(matches!(
            store_hash_events(&compacting.store, through - 1),
            Err(StoreError::Compacted { .. })
        ));
    }
}

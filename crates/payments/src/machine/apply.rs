//! Applying committed log entries: the fencing check, then the command's own rules, then
//! the writes, all decided from the store's contents and the entry alone.
//!
//! Every replica applying the same entries in the same order reaches the same records and
//! returns the same outputs: nothing here reads a clock, draws a random number or iterates
//! an unordered collection. Each entry is atomic from the caller's point of view: all reads
//! come first, then all writes, so a failed read leaves the store exactly as it was.
//!
//! What every entry writes besides its command's own records: the bookkeeping record
//! (applied index, last token, clock, counters). Every entry that passes the fencing check,
//! whatever its outcome, also deletes up to [`PRUNE_LIMIT_PER_APPLY`] idempotency keys that
//! had expired by the machine clock: those keys already count as unused, so deleting them
//! changes no answer, only storage. A submit also compacts the event log behind the leader's
//! retention (`compaction`). A refusal writes nothing else (a lifecycle or lease-fence
//! refusal also records its idempotency key, so that a retry gets the same refusal).

use quorate_raft_core::{Entry, EntryKind, FencingToken, Index};

use super::clock;
use super::commands::{decode_stamped, Command, Submit};
use super::compaction;
use super::idempotency::{self, KeyUse, PRUNE_LIMIT_PER_APPLY};
use super::leases;
use super::lifecycle;
use super::outputs::{
    Applied, EventRecorded, FencingRejected, Malformed, RejectReason, SubmitRejected,
};
use super::records::{
    EventRecord, FencingTokenRecord, IdempotencyRecord, LeaseRecord, MetaRecord, PaymentRecord,
    RecordedOutcome, RecordedRejection,
};
use super::store::{IdempotencyExpiry, Store, StoreError};
use super::validation::{validate_acquire, validate_keep_alive, validate_release, validate_submit};

/// Applies one committed command entry at `index` with fencing token `token`.
///
/// Refusals (a token that does not increase, undecodable bytes, a lifecycle violation, a
/// stale lease token, a reused idempotency key) are outputs, not errors: they are part of
/// the replicated outcome. `Err` means a read failed; nothing was written.
pub fn apply<S: Store + ?Sized>(
    store: &mut S,
    index: Index,
    token: FencingToken,
    command: &[u8],
) -> Result<Applied, StoreError> {
    apply_entry_body(store, index, token, Some(command))
}

/// Applies a leader's no-op entry: it changes no payment or lease, but its token must pass
/// the fencing check like any other entry's, and it advances the applied index and token.
pub fn apply_noop<S: Store + ?Sized>(
    store: &mut S,
    index: Index,
    token: FencingToken,
) -> Result<Applied, StoreError> {
    apply_entry_body(store, index, token, None)
}

/// Applies a committed Raft entry: [`apply`] for commands, [`apply_noop`] for no-ops and
/// membership entries (the payments machine keeps no membership; it only moves on).
pub fn apply_entry<S: Store + ?Sized>(store: &mut S, entry: &Entry) -> Result<Applied, StoreError> {
    match entry.kind {
        EntryKind::Noop | EntryKind::Membership => apply_noop(store, entry.index, entry.token()),
        EntryKind::Command => apply(store, entry.index, entry.token(), &entry.data),
    }
}

/// The records an entry writes, gathered while deciding, written only at the end.
#[derive(Default)]
struct Effects {
    payment: Option<PaymentRecord>,
    event: Option<EventRecord>,
    /// An expired record of the key about to be recorded again.
    replaced_key: Option<IdempotencyExpiry>,
    idempotency: Option<IdempotencyRecord>,
    lease: Option<LeaseRecord>,
}

fn apply_entry_body<S: Store + ?Sized>(
    store: &mut S,
    index: Index,
    token: FencingToken,
    command: Option<&[u8]>,
) -> Result<Applied, StoreError> {
    let mut meta = store.meta()?.unwrap_or_default();
    meta.applied_index = meta.applied_index.max(index);
    let token = FencingTokenRecord::from(token);
    if let Some(last_applied) = meta.last_token {
        if token <= last_applied {
            meta.fencing_rejections += 1;
            store.put_meta(meta);
            return Ok(Applied::FencingRejected(FencingRejected {
                token,
                last_applied,
            }));
        }
    }
    meta.last_token = Some(token);

    let mut effects = Effects::default();
    let mut retention = 0;
    let outcome = match command {
        None => Applied::Noop,
        Some(bytes) => match decode_stamped(bytes) {
            Err(error) => {
                meta.malformed_commands += 1;
                malformed(error.to_string())
            }
            Ok((command, stamp)) => {
                clock::advance(&mut meta, token.term, stamp);
                if let Command::Submit(submit) = &command {
                    retention = submit.event_retention;
                }
                decide(store, &mut meta, index, token, command, &mut effects)?
            }
        },
    };
    let pruned = store.idempotency_expiring_by(meta.clock_ms, PRUNE_LIMIT_PER_APPLY)?;
    let compaction = compaction::plan(
        store,
        &mut meta,
        index,
        retention,
        effects.payment.as_mut(),
        effects
            .idempotency
            .as_ref()
            .map(|record| record.key.as_str()),
    )?;

    // No reads below this line: an error above has left the store untouched.
    meta.idempotency_keys_pruned += pruned.len() as u64;
    for expiry in &pruned {
        store.delete_idempotency(expiry);
    }
    if let Some(expired) = effects.replaced_key {
        if !pruned.contains(&expired) {
            store.delete_idempotency(&expired);
        }
    }
    if let Some(record) = effects.idempotency {
        store.put_idempotency(record);
    }
    if let Some(payment) = effects.payment {
        store.put_payment(payment);
    }
    if let Some(event) = effects.event {
        store.put_event(event);
    }
    if let Some(lease) = effects.lease {
        store.put_lease(lease);
    }
    compaction::write(store, compaction);
    store.put_meta(meta);
    Ok(outcome)
}

/// Decides a decoded command: reads only, gathering writes into `effects`.
fn decide<S: Store + ?Sized>(
    store: &S,
    meta: &mut MetaRecord,
    index: Index,
    token: FencingTokenRecord,
    command: Command,
    effects: &mut Effects,
) -> Result<Applied, StoreError> {
    let clock_ms = meta.clock_ms;
    Ok(match command {
        Command::Submit(submit) => {
            return decide_submit(store, meta, index, token, submit, effects)
        }
        Command::AcquireLease(acquire) => {
            if let Err(violation) = validate_acquire(&acquire) {
                meta.malformed_commands += 1;
                return Ok(malformed(format!("acquire refused at apply: {violation}")));
            }
            let current = store.lease(&acquire.name)?;
            let (outcome, lease) = leases::acquire(current, acquire, index, clock_ms);
            effects.lease = lease;
            outcome
        }
        Command::KeepAliveLease(keep_alive) => {
            if let Err(violation) = validate_keep_alive(&keep_alive) {
                meta.malformed_commands += 1;
                return Ok(malformed(format!(
                    "keep-alive refused at apply: {violation}"
                )));
            }
            let current = store.lease(&keep_alive.name)?;
            let (outcome, lease) = leases::keep_alive(current, keep_alive, clock_ms);
            if matches!(outcome, Applied::KeepAliveRejected(_)) {
                meta.stale_token_rejections += 1;
            }
            effects.lease = lease;
            outcome
        }
        Command::ReleaseLease(release) => {
            if let Err(violation) = validate_release(&release) {
                meta.malformed_commands += 1;
                return Ok(malformed(format!("release refused at apply: {violation}")));
            }
            let current = store.lease(&release.name)?;
            let (outcome, lease) = leases::release(current, release);
            effects.lease = lease;
            outcome
        }
        Command::ExpireLease(expire) => {
            let current = store.lease(&expire.name)?;
            let (outcome, lease) = leases::expire(current, expire);
            effects.lease = lease;
            outcome
        }
    })
}

/// Decides a submit: validation, idempotency, fence, lifecycle, in that order.
fn decide_submit<S: Store + ?Sized>(
    store: &S,
    meta: &mut MetaRecord,
    index: Index,
    token: FencingTokenRecord,
    mut submit: Submit,
    effects: &mut Effects,
) -> Result<Applied, StoreError> {
    if let Err(violation) = validate_submit(&submit) {
        meta.malformed_commands += 1;
        return Ok(malformed(format!("submit refused at apply: {violation}")));
    }
    let request = idempotency::canonical_request(&mut submit);
    let existing = store.idempotency(&submit.idempotency_key)?;
    match idempotency::classify(existing, &submit.idempotency_key, &request, meta.clock_ms) {
        KeyUse::Replay(outcome) => {
            meta.idempotent_replays += 1;
            return replay(store, outcome);
        }
        KeyUse::Reused { message } => {
            meta.key_reuse_rejections += 1;
            return Ok(Applied::SubmitRejected(SubmitRejected {
                reason: RejectReason::IdempotencyKeyReused as i32,
                message,
                replayed: false,
            }));
        }
        KeyUse::Fresh { expired } => effects.replaced_key = expired,
    }
    let expires_at_ms = idempotency::expires_at(meta.clock_ms, submit.idempotency_window_ms);
    let remember = |key: String, outcome: RecordedOutcome| {
        effects.idempotency = Some(IdempotencyRecord {
            key,
            request,
            expires_at_ms,
            outcome: Some(outcome),
        });
    };

    if let Some(fence) = &submit.fence {
        let lease = store.lease(&fence.lease)?;
        if let Err(message) = leases::check_fence(lease.as_ref(), fence) {
            meta.stale_token_rejections += 1;
            let (recorded, rejection) = refusal(RejectReason::StaleToken, message);
            remember(submit.idempotency_key, recorded);
            return Ok(rejection);
        }
    }

    let payment = store.payment(&submit.payment_id)?;
    let payment = match lifecycle::transition(
        payment,
        &submit.payment_id,
        submit.kind(),
        submit.amount_minor,
        &submit.currency,
        index,
    ) {
        Ok(payment) => payment,
        Err(message) => {
            meta.invalid_transitions += 1;
            let (recorded, rejection) = refusal(RejectReason::InvalidTransition, message);
            remember(submit.idempotency_key, recorded);
            return Ok(rejection);
        }
    };

    remember(
        submit.idempotency_key.clone(),
        RecordedOutcome::EventIndex(index),
    );
    let event = EventRecord {
        index,
        token,
        payment_id: submit.payment_id,
        payment_seq: payment.event_count(),
        kind: submit.kind,
        amount_minor: submit.amount_minor,
        currency: submit.currency,
        idempotency_key: submit.idempotency_key,
        metadata: submit.metadata,
        fence: submit.fence,
        recorded_at_unix_ms: meta.clock_ms,
    };
    meta.events_recorded += 1;
    effects.payment = Some(payment);
    effects.event = Some(event.clone());
    Ok(Applied::EventRecorded(EventRecorded {
        event,
        replayed: false,
    }))
}

/// A refusal: as remembered under the idempotency key, and as answered now.
fn refusal(reason: RejectReason, message: String) -> (RecordedOutcome, Applied) {
    let recorded = RecordedOutcome::Rejected(RecordedRejection {
        reason: reason as i32,
        message: message.clone(),
    });
    let answered = Applied::SubmitRejected(SubmitRejected {
        reason: reason as i32,
        message,
        replayed: false,
    });
    (recorded, answered)
}

/// The original outcome of an idempotency key, answered again.
fn replay<S: Store + ?Sized>(store: &S, outcome: RecordedOutcome) -> Result<Applied, StoreError> {
    match outcome {
        RecordedOutcome::EventIndex(index) => match store.event(index)? {
            Some(event) => Ok(Applied::EventRecorded(EventRecorded {
                event,
                replayed: true,
            })),
            None => Err(StoreError::Inconsistent(format!(
                "an idempotency record names event {index}, which is not stored"
            ))),
        },
        RecordedOutcome::Event(event) => Ok(Applied::EventRecorded(EventRecorded {
            event,
            replayed: true,
        })),
        RecordedOutcome::Rejected(rejection) => Ok(Applied::SubmitRejected(SubmitRejected {
            reason: rejection.reason,
            message: rejection.message,
            replayed: true,
        })),
    }
}

fn malformed(message: String) -> Applied {
    Applied::Malformed(Malformed { message })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use quorate_raft_core::{Entry, EntryKind, FencingToken, Index};

    use super::*;
    use crate::machine::mem_store::MemStore;
    use crate::machine::testing::*;

    fn token(term: u64, sequence: u64) -> FencingToken {
        FencingToken { term, sequence }
    }

    #[test]
    fn an_entry_whose_token_does_not_increase_is_refused_and_only_counted() {
        let mut store = MemStore::new();
        let first = authorize("p1", "k1", 1000).encode();
        apply(&mut store, 1, token(3, 4), &first).unwrap();
        let before = store.without_meta();
        let before_meta = store.meta().unwrap().unwrap();

        let cases = [
            (2, token(3, 4), authorize("p2", "k2", 5).encode()), // the same token
            (3, token(3, 3), authorize("p3", "k3", 5).encode()), // an earlier sequence
            (4, token(2, 9), authorize("p4", "k4", 5).encode()), // an earlier term
        ];
        for (count, (index, stale, bytes)) in cases.into_iter().enumerate() {
            let applied = apply(&mut store, index, stale, &bytes).unwrap();
            assert_eq!(
                applied,
                Applied::FencingRejected(FencingRejected {
                    token: stale.into(),
                    last_applied: token(3, 4).into(),
                })
            );
            assert_eq!(store.without_meta(), before, "nothing but counters written");
            let meta = store.meta().unwrap().unwrap();
            assert_eq!(meta.fencing_rejections, count as u64 + 1);
            assert_eq!(meta.last_token, before_meta.last_token);
            assert_eq!(meta.clock_ms, before_meta.clock_ms);
        }
        let noop = apply_noop(&mut store, 5, token(3, 1)).unwrap();
        assert!(matches!(noop, Applied::FencingRejected(_)));
        assert_eq!(store.meta().unwrap().unwrap().fencing_rejections, 4);
        assert_eq!(store.meta().unwrap().unwrap().applied_index, 5);
        // A larger token is applied again.
        let later = apply(
            &mut store,
            6,
            token(4, 1),
            &authorize("p5", "k5", 5).encode(),
        )
        .unwrap();
        assert!(matches!(later, Applied::EventRecorded(_)));
    }

    #[test]
    fn a_noop_advances_the_token_that_later_entries_must_exceed() {
        let mut store = MemStore::new();
        assert_eq!(
            apply_noop(&mut store, 1, token(5, 1)).unwrap(),
            Applied::Noop
        );
        let meta = store.meta().unwrap().unwrap();
        assert_eq!(meta.applied_index, 1);
        assert_eq!(meta.last_token, Some(token(5, 1).into()));
        let stale = apply(&mut store, 2, token(4, 7), &authorize("p", "k", 1).encode()).unwrap();
        assert!(matches!(stale, Applied::FencingRejected(_)));
        assert_eq!(store.payment("p").unwrap(), None);
    }

    #[test]
    fn undecodable_bytes_are_refused_as_malformed_without_panicking() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        let before = h.store.without_meta();
        let garbage: [&[u8]; 4] = [
            &[0xff; 7],
            &[],
            &[0x0a, 0x80],
            &[0x0a, 0x03, 0x0a, 0x05, 0x61],
        ];
        for (i, bytes) in garbage.into_iter().enumerate() {
            let index = h.index + 1;
            h.index = index;
            h.sequence += 1;
            let applied = apply(&mut h.store, index, token(h.term, h.sequence), bytes).unwrap();
            match applied {
                Applied::Malformed(out) => {
                    assert!(out.message.contains("command"), "{}", out.message)
                }
                other => panic!("expected malformed, got {other:?}"),
            }
            assert_eq!(h.store.without_meta(), before);
            assert_eq!(h.meta().malformed_commands, i as u64 + 1);
            assert_eq!(h.meta().applied_index, index);
        }
    }

    #[test]
    fn a_command_that_breaks_validation_is_refused_at_apply_as_malformed() {
        let mut h = Harness::new();
        let applied = h.run(authorize("p1", "k1", -5));
        assert_eq!(
            applied,
            Applied::Malformed(Malformed {
                message: "submit refused at apply: amount_minor: must be positive, got -5".into()
            })
        );
        let applied = h.run(acquire("writer", "a", 10));
        assert_eq!(
            applied,
            Applied::Malformed(Malformed {
                message: "acquire refused at apply: ttl_ms: must be between 1000 and 3600000 milliseconds, got 10".into()
            })
        );
        assert!(matches!(
            h.run(keep_alive("writer", "", 1)),
            Applied::Malformed(_)
        ));
        assert!(matches!(
            h.run(release("writer", "a", 0)),
            Applied::Malformed(_)
        ));
        assert_eq!(h.store.without_meta(), MemStore::new());
        assert_eq!(h.meta().malformed_commands, 4);
    }

    #[test]
    fn the_machine_clock_never_goes_backwards() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        // A new leader whose clocks (wall and monotonic) read a minute behind.
        h.term = 2;
        h.sequence = 0;
        h.now_ms = START_MS - 60_000;
        let event = h.accept(authorize("p2", "k2", 1000));
        assert_eq!(
            event.recorded_at_unix_ms, START_MS,
            "events carry the machine clock"
        );
        assert_eq!(h.meta().clock_ms, START_MS);
        let record = h.store.idempotency("k2").unwrap().unwrap();
        assert_eq!(
            record.expires_at_ms,
            START_MS + DAY_MS,
            "expiry counts from the machine clock"
        );
    }

    #[test]
    fn apply_entry_dispatches_noops_and_commands() {
        let mut store = MemStore::new();
        let noop = Entry {
            index: 1,
            term: 1,
            sequence: 1,
            kind: EntryKind::Noop,
            data: Default::default(),
        };
        assert_eq!(apply_entry(&mut store, &noop).unwrap(), Applied::Noop);
        let command = Entry {
            index: 2,
            term: 1,
            sequence: 2,
            kind: EntryKind::Command,
            data: authorize("p1", "k1", 10).encode(),
        };
        let event = expect_event(apply_entry(&mut store, &command).unwrap());
        assert_eq!((event.index, event.token), (2, token(1, 2).into()));
    }

    /// A MemStore whose reads fail once a budget of successful reads is spent.
    struct FailingStore {
        inner: MemStore,
        reads_left: Cell<usize>,
    }

    impl FailingStore {
        fn read(&self) -> Result<(), StoreError> {
            match self.reads_left.get() {
                0 => Err(StoreError::Backend("disk on fire".into())),
                n => {
                    self.reads_left.set(n - 1);
                    Ok(())
                }
            }
        }
    }

    impl Store for FailingStore {
        fn meta(&self) -> Result<Option<MetaRecord>, StoreError> {
            self.read()?;
            self.inner.meta()
        }
        fn payment(&self, id: &str) -> Result<Option<PaymentRecord>, StoreError> {
            self.read()?;
            self.inner.payment(id)
        }
        fn event(&self, index: Index) -> Result<Option<EventRecord>, StoreError> {
            self.read()?;
            self.inner.event(index)
        }
        fn events_after(&self, after: Index, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
            self.read()?;
            self.inner.events_after(after, limit)
        }
        fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
            self.read()?;
            self.inner.idempotency(key)
        }
        fn idempotency_expiring_by(
            &self,
            now_ms: u64,
            limit: usize,
        ) -> Result<Vec<IdempotencyExpiry>, StoreError> {
            self.read()?;
            self.inner.idempotency_expiring_by(now_ms, limit)
        }
        fn lease(&self, name: &str) -> Result<Option<LeaseRecord>, StoreError> {
            self.read()?;
            self.inner.lease(name)
        }
        fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
            self.read()?;
            self.inner.leases()
        }
        fn put_meta(&mut self, meta: MetaRecord) {
            self.inner.put_meta(meta)
        }
        fn put_payment(&mut self, payment: PaymentRecord) {
            self.inner.put_payment(payment)
        }
        fn put_event(&mut self, event: EventRecord) {
            self.inner.put_event(event)
        }
        fn delete_event(&mut self, index: Index) {
            self.inner.delete_event(index)
        }
        fn put_idempotency(&mut self, record: IdempotencyRecord) {
            self.inner.put_idempotency(record)
        }
        fn delete_idempotency(&mut self, expiry: &IdempotencyExpiry) {
            self.inner.delete_idempotency(expiry)
        }
        fn put_lease(&mut self, lease: LeaseRecord) {
            self.inner.put_lease(lease)
        }
    }

    #[test]
    fn a_failed_read_leaves_the_store_exactly_as_it_was() {
        // A state where the next submit reads everything: an expired key to prune, a lease
        // for its fence, an existing payment.
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        let lease = h.grant("writer", "a");
        h.advance(DAY_MS);
        let command = fenced(capture("p1", "k2", 10), "writer", lease);
        let bytes = h.stamped(&command);
        let next = token(h.term, h.sequence + 1);

        let mut succeeded = false;
        for budget in 0..10 {
            let mut store = FailingStore {
                inner: h.store.clone(),
                reads_left: Cell::new(budget),
            };
            match apply(&mut store, h.index + 1, next, &bytes) {
                Err(error) => {
                    assert!(matches!(error, StoreError::Backend(_)));
                    assert_eq!(store.inner, h.store, "budget {budget}: nothing written");
                }
                Ok(applied) => {
                    expect_event(applied);
                    assert_eq!(store.inner.idempotency("k1").unwrap(), None, "pruned");
                    succeeded = true;
                    break;
                }
            }
        }
        assert!(succeeded, "enough reads eventually succeed");
    }

    #[test]
    fn a_replay_whose_event_is_missing_is_an_inconsistency_error() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        let mut record = h.store.idempotency("k1").unwrap().unwrap();
        record.outcome = Some(RecordedOutcome::EventIndex(99));
        h.store.put_idempotency(record);
        let before = h.store.clone();
        let bytes = h.stamped(&authorize("p1", "k1", 1000));
        let error = apply(&mut h.store, 2, token(1, 2), &bytes).unwrap_err();
        assert!(matches!(error, StoreError::Inconsistent(_)), "{error}");
        assert_eq!(h.store, before);
    }
}

//! The conformance suite of the machine's [`Store`]: the in-memory store and the RocksDB one
//! both run it (each in its own tests), so the contract in `store.rs` is checked once, on
//! both, including the RocksDB store's write overlay (reads mixing committed and buffered
//! writes) and its expiry index.
//!
//! Each check starts from a fresh, empty store and panics with the check's name on the first
//! violation.

use super::image::{image_applied_index, push_image_record, ImageItem};
use super::records::{EventRecord, IdempotencyRecord, LeaseRecord, MetaRecord, PaymentRecord};
use super::store::{IdempotencyExpiry, Store};

/// Creates stores for the suite and does what only the caller of a store does.
pub(crate) trait StoreHarness {
    /// The store under test.
    type Store: Store;
    /// A fresh, empty store.
    fn create(&mut self) -> Self::Store;
    /// Makes the buffered writes permanent, as the node does after each batch of entries
    /// (nothing for a store that writes at once).
    fn commit(&mut self, store: &mut Self::Store);
    /// The committed state's image (see `image`).
    fn image(&mut self, store: &Self::Store) -> Vec<u8>;
    /// A fresh store holding exactly `image`.
    fn restore(&mut self, image: &[u8]) -> Self::Store;
}

type Check<H> = (&'static str, fn(&mut H));

/// Runs every check.
pub(crate) fn run_store_suite<H: StoreHarness>(harness: &mut H) {
    let checks: &[Check<H>] = &[
        ("an_empty_store_reads_nothing", an_empty_store_reads_nothing),
        (
            "reads_see_writes_before_and_after_commit",
            reads_see_writes_before_and_after_commit,
        ),
        (
            "events_come_in_index_order_after_a_point_up_to_a_limit",
            events_come_in_index_order_after_a_point_up_to_a_limit,
        ),
        (
            "expiring_keys_come_in_expiry_then_key_order_up_to_a_limit",
            expiring_keys_come_in_expiry_then_key_order_up_to_a_limit,
        ),
        (
            "a_deleted_key_is_gone_with_its_expiry_entry",
            a_deleted_key_is_gone_with_its_expiry_entry,
        ),
        ("leases_come_in_name_order", leases_come_in_name_order),
        (
            "an_image_restores_the_same_records",
            an_image_restores_the_same_records,
        ),
    ];
    for (name, check) in checks {
        eprintln!("store conformance: {name}");
        check(harness);
    }
}

fn payment(id: &str, authorized: i64) -> PaymentRecord {
    PaymentRecord {
        payment_id: id.into(),
        currency: "EUR".into(),
        authorized_minor: authorized,
        ..PaymentRecord::default()
    }
}

fn event(index: u64, payment_id: &str) -> EventRecord {
    EventRecord {
        index,
        payment_id: payment_id.into(),
        idempotency_key: format!("key-{index}"),
        amount_minor: index as i64,
        currency: "EUR".into(),
        ..EventRecord::default()
    }
}

fn key(name: &str, expires_at_ms: u64) -> IdempotencyRecord {
    IdempotencyRecord {
        key: name.into(),
        request: name.as_bytes().to_vec(),
        expires_at_ms,
        outcome: None,
    }
}

fn expiry(name: &str, expires_at_ms: u64) -> IdempotencyExpiry {
    IdempotencyExpiry {
        expires_at_ms,
        key: name.into(),
    }
}

fn lease(name: &str, token: u64) -> LeaseRecord {
    LeaseRecord {
        name: name.into(),
        holder: format!("holder of {name}"),
        token,
        ttl_ms: 1_000,
        ..LeaseRecord::default()
    }
}

fn meta(applied_index: u64) -> MetaRecord {
    MetaRecord {
        applied_index,
        clock_ms: 1_700_000_000_000,
        ..MetaRecord::default()
    }
}

fn event_indexes(events: Vec<EventRecord>) -> Vec<u64> {
    events.iter().map(|e| e.index).collect()
}

fn an_empty_store_reads_nothing<H: StoreHarness>(h: &mut H) {
    let store = h.create();
    assert_eq!(store.meta().unwrap(), None);
    assert_eq!(store.payment("p").unwrap(), None);
    assert_eq!(store.event(1).unwrap(), None);
    assert!(store.events_after(0, 10).unwrap().is_empty());
    assert_eq!(store.idempotency("k").unwrap(), None);
    assert!(store
        .idempotency_expiring_by(u64::MAX, 10)
        .unwrap()
        .is_empty());
    assert_eq!(store.lease("l").unwrap(), None);
    assert!(store.leases().unwrap().is_empty());
}

fn reads_see_writes_before_and_after_commit<H: StoreHarness>(h: &mut H) {
    let mut store = h.create();
    store.put_meta(meta(3));
    store.put_payment(payment("p", 100));
    store.put_event(event(3, "p"));
    store.put_idempotency(key("k", 50));
    store.put_lease(lease("l", 2));
    for committed in [false, true] {
        assert_eq!(
            store.meta().unwrap(),
            Some(meta(3)),
            "committed: {committed}"
        );
        assert_eq!(store.payment("p").unwrap(), Some(payment("p", 100)));
        assert_eq!(store.event(3).unwrap(), Some(event(3, "p")));
        assert_eq!(store.idempotency("k").unwrap(), Some(key("k", 50)));
        assert_eq!(store.lease("l").unwrap(), Some(lease("l", 2)));
        h.commit(&mut store);
    }
    // A buffered replacement shadows the committed record; then it is committed too.
    store.put_payment(payment("p", 250));
    store.put_lease(lease("l", 7));
    store.put_meta(meta(4));
    for _ in 0..2 {
        assert_eq!(store.payment("p").unwrap(), Some(payment("p", 250)));
        assert_eq!(store.lease("l").unwrap(), Some(lease("l", 7)));
        assert_eq!(store.meta().unwrap(), Some(meta(4)));
        h.commit(&mut store);
    }
}

fn events_come_in_index_order_after_a_point_up_to_a_limit<H: StoreHarness>(h: &mut H) {
    let mut store = h.create();
    for index in [5, 1, 3] {
        store.put_event(event(index, "p"));
    }
    h.commit(&mut store);
    // Committed and buffered events interleave.
    for index in [4, 2, 6] {
        store.put_event(event(index, "p"));
    }
    assert_eq!(
        event_indexes(store.events_after(0, 100).unwrap()),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(event_indexes(store.events_after(2, 2).unwrap()), vec![3, 4]);
    assert_eq!(event_indexes(store.events_after(5, 10).unwrap()), vec![6]);
    assert!(store.events_after(6, 10).unwrap().is_empty());
    assert!(store.events_after(u64::MAX, 10).unwrap().is_empty());
    h.commit(&mut store);
    assert_eq!(
        event_indexes(store.events_after(1, 3).unwrap()),
        vec![2, 3, 4]
    );
}

fn expiring_keys_come_in_expiry_then_key_order_up_to_a_limit<H: StoreHarness>(h: &mut H) {
    let mut store = h.create();
    store.put_idempotency(key("b", 20));
    store.put_idempotency(key("a", 30));
    h.commit(&mut store);
    store.put_idempotency(key("c", 20));
    store.put_idempotency(key("d", 10));
    store.put_idempotency(key("late", 1_000));
    let due = store.idempotency_expiring_by(30, 10).unwrap();
    assert_eq!(
        due,
        vec![
            expiry("d", 10),
            expiry("b", 20),
            expiry("c", 20),
            expiry("a", 30)
        ]
    );
    assert_eq!(
        store.idempotency_expiring_by(20, 2).unwrap(),
        vec![expiry("d", 10), expiry("b", 20)],
        "the limit cuts the list"
    );
    assert!(store.idempotency_expiring_by(9, 10).unwrap().is_empty());
    h.commit(&mut store);
    assert_eq!(store.idempotency_expiring_by(30, 10).unwrap(), due);
}

fn a_deleted_key_is_gone_with_its_expiry_entry<H: StoreHarness>(h: &mut H) {
    let mut store = h.create();
    store.put_idempotency(key("old", 10));
    store.put_idempotency(key("kept", 15));
    h.commit(&mut store);
    store.delete_idempotency(&expiry("old", 10));
    store.delete_idempotency(&expiry("never-there", 5));
    for _ in 0..2 {
        assert_eq!(store.idempotency("old").unwrap(), None);
        assert_eq!(
            store.idempotency_expiring_by(100, 10).unwrap(),
            vec![expiry("kept", 15)]
        );
        h.commit(&mut store);
    }
    // A key used again after it expired: the machine deletes the old record, then puts the
    // new one, with another expiry. Only the new one is due, at its own time.
    store.delete_idempotency(&expiry("kept", 15));
    store.put_idempotency(key("kept", 90));
    for _ in 0..2 {
        assert_eq!(store.idempotency("kept").unwrap(), Some(key("kept", 90)));
        assert!(store.idempotency_expiring_by(89, 10).unwrap().is_empty());
        assert_eq!(
            store.idempotency_expiring_by(90, 10).unwrap(),
            vec![expiry("kept", 90)]
        );
        h.commit(&mut store);
    }
}

fn leases_come_in_name_order<H: StoreHarness>(h: &mut H) {
    let mut store = h.create();
    store.put_lease(lease("orders", 1));
    store.put_lease(lease("billing", 2));
    h.commit(&mut store);
    store.put_lease(lease("ledger", 3));
    store.put_lease(lease("orders", 4));
    for _ in 0..2 {
        let leases = store.leases().unwrap();
        let names: Vec<(&str, u64)> = leases.iter().map(|l| (l.name.as_str(), l.token)).collect();
        assert_eq!(names, vec![("billing", 2), ("ledger", 3), ("orders", 4)]);
        h.commit(&mut store);
    }
}

fn an_image_restores_the_same_records<H: StoreHarness>(h: &mut H) {
    let mut store = h.create();
    store.put_meta(meta(9));
    for (index, id) in [(2, "p1"), (5, "p2"), (9, "p1")] {
        store.put_event(event(index, id));
    }
    store.put_payment(payment("p1", 10));
    store.put_payment(payment("p2", 20));
    store.put_idempotency(key("k1", 40));
    store.put_idempotency(key("k2", 30));
    store.put_lease(lease("orders", 5));
    h.commit(&mut store);
    let image = h.image(&store);
    assert_eq!(image_applied_index(&image).unwrap(), 9);
    let restored = h.restore(&image);
    assert_eq!(
        h.image(&restored),
        image,
        "the restored store's image is the same"
    );
    assert_eq!(restored.meta().unwrap(), Some(meta(9)));
    assert_eq!(
        event_indexes(restored.events_after(0, 10).unwrap()),
        vec![2, 5, 9]
    );
    assert_eq!(restored.payment("p2").unwrap(), Some(payment("p2", 20)));
    assert_eq!(
        restored.idempotency_expiring_by(100, 10).unwrap(),
        vec![expiry("k2", 30), expiry("k1", 40)],
        "the expiry order is rebuilt from the records"
    );
    assert_eq!(restored.leases().unwrap(), vec![lease("orders", 5)]);
    // An image must start with the meta record that says which index it is of.
    let mut headless = Vec::new();
    push_image_record(&mut headless, ImageItem::Payment(payment("p", 1)));
    assert!(image_applied_index(&headless).is_err());
}

//! The in-memory [`Store`]: ordered maps of records, for the simulator and tests.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use quorate_raft_core::Index;

use super::codec::DecodeError;
use super::image::{push_image_record, restore_image, ImageItem};
use super::records::{EventRecord, IdempotencyRecord, LeaseRecord, MetaRecord, PaymentRecord};
use super::store::{IdempotencyExpiry, Store, StoreError};

/// A [`Store`] kept in ordered maps. Writes take effect at once; reads never fail.
///
/// Everything is ordered (no hash maps), so two stores fed the same entries are equal and
/// [`MemStore::encode_state`] yields identical bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemStore {
    meta: Option<MetaRecord>,
    payments: BTreeMap<String, PaymentRecord>,
    events: BTreeMap<Index, EventRecord>,
    idempotency: BTreeMap<String, IdempotencyRecord>,
    idempotency_by_expiry: BTreeSet<(u64, String)>,
    leases: BTreeMap<String, LeaseRecord>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore::default()
    }

    /// The whole state as bytes: every record, encoded, in key order, section by section.
    /// Two replicas agree exactly when these bytes are equal.
    pub fn encode_state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(b'M');
        if let Some(meta) = &self.meta {
            push_record(&mut out, meta);
        }
        out.push(b'P');
        for payment in self.payments.values() {
            push_record(&mut out, payment);
        }
        out.push(b'E');
        for event in self.events.values() {
            push_record(&mut out, event);
        }
        out.push(b'I');
        for record in self.idempotency.values() {
            push_record(&mut out, record);
        }
        out.push(b'L');
        for lease in self.leases.values() {
            push_record(&mut out, lease);
        }
        out
    }

    /// The store's image (see `image`): meta first, then every other record.
    pub fn export_image(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(meta) = &self.meta {
            push_image_record(&mut out, ImageItem::Meta(meta.clone()));
        }
        for payment in self.payments.values() {
            push_image_record(&mut out, ImageItem::Payment(payment.clone()));
        }
        for event in self.events.values() {
            push_image_record(&mut out, ImageItem::Event(event.clone()));
        }
        for record in self.idempotency.values() {
            push_image_record(&mut out, ImageItem::Idempotency(record.clone()));
        }
        for lease in self.leases.values() {
            push_image_record(&mut out, ImageItem::Lease(lease.clone()));
        }
        out
    }

    /// A store holding exactly what `image` holds.
    pub fn from_image(image: &[u8]) -> Result<MemStore, DecodeError> {
        let mut store = MemStore::new();
        restore_image(&mut store, image)?;
        Ok(store)
    }

    /// How many idempotency keys are stored (expired ones not yet pruned included).
    pub fn idempotency_key_count(&self) -> usize {
        self.idempotency.len()
    }

    /// The same store without its bookkeeping record: what "nothing was written but
    /// counters" compares.
    #[cfg(test)]
    pub(crate) fn without_meta(&self) -> MemStore {
        MemStore {
            meta: None,
            ..self.clone()
        }
    }

    /// How many events are stored.
    pub fn event_count(&self) -> usize {
        self.events.len()
    }
}

fn push_record(out: &mut Vec<u8>, record: &impl Message) {
    record
        .encode_length_delimited(out)
        .expect("a Vec grows as needed");
}

impl Store for MemStore {
    fn meta(&self) -> Result<Option<MetaRecord>, StoreError> {
        Ok(self.meta.clone())
    }

    fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        Ok(self.payments.get(payment_id).cloned())
    }

    fn event(&self, index: Index) -> Result<Option<EventRecord>, StoreError> {
        Ok(self.events.get(&index).cloned())
    }

    fn events_after(&self, after: Index, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        Ok(self
            .events
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, event)| event.clone())
            .collect())
    }

    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.idempotency.get(key).cloned())
    }

    fn idempotency_expiring_by(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<IdempotencyExpiry>, StoreError> {
        Ok(self
            .idempotency_by_expiry
            .iter()
            .take_while(|(expires_at_ms, _)| *expires_at_ms <= now_ms)
            .take(limit)
            .map(|(expires_at_ms, key)| IdempotencyExpiry {
                expires_at_ms: *expires_at_ms,
                key: key.clone(),
            })
            .collect())
    }

    fn lease(&self, name: &str) -> Result<Option<LeaseRecord>, StoreError> {
        Ok(self.leases.get(name).cloned())
    }

    fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        Ok(self.leases.values().cloned().collect())
    }

    fn put_meta(&mut self, meta: MetaRecord) {
        self.meta = Some(meta);
    }

    fn put_payment(&mut self, payment: PaymentRecord) {
        self.payments.insert(payment.payment_id.clone(), payment);
    }

    fn put_event(&mut self, event: EventRecord) {
        self.events.insert(event.index, event);
    }

    fn delete_event(&mut self, index: Index) {
        self.events.remove(&index);
    }

    fn put_idempotency(&mut self, record: IdempotencyRecord) {
        let expires_at_ms = record.expires_at_ms;
        self.idempotency_by_expiry
            .insert((expires_at_ms, record.key.clone()));
        if let Some(previous) = self.idempotency.insert(record.key.clone(), record) {
            // Keep the index exact even if a caller replaces without deleting first.
            if previous.expires_at_ms != expires_at_ms {
                self.idempotency_by_expiry
                    .remove(&(previous.expires_at_ms, previous.key));
            }
        }
    }

    fn delete_idempotency(&mut self, expiry: &IdempotencyExpiry) {
        let matches = self
            .idempotency
            .get(&expiry.key)
            .is_some_and(|record| record.expires_at_ms == expiry.expires_at_ms);
        if matches {
            self.idempotency.remove(&expiry.key);
        }
        self.idempotency_by_expiry
            .remove(&(expiry.expires_at_ms, expiry.key.clone()));
    }

    fn put_lease(&mut self, lease: LeaseRecord) {
        self.leases.insert(lease.name.clone(), lease);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idempotency(key: &str, expires_at_ms: u64) -> IdempotencyRecord {
        IdempotencyRecord {
            key: key.into(),
            request: vec![1],
            expires_at_ms,
            outcome: None,
        }
    }

    fn expiry(key: &str, expires_at_ms: u64) -> IdempotencyExpiry {
        IdempotencyExpiry {
            expires_at_ms,
            key: key.into(),
        }
    }

    struct SuiteHarness;

    impl crate::machine::store_suite::StoreHarness for SuiteHarness {
        type Store = MemStore;
        fn create(&mut self) -> MemStore {
            MemStore::new()
        }
        fn commit(&mut self, _: &mut MemStore) {}
        fn image(&mut self, store: &MemStore) -> Vec<u8> {
            store.export_image()
        }
        fn restore(&mut self, image: &[u8]) -> MemStore {
            MemStore::from_image(image).unwrap()
        }
    }

    #[test]
    fn mem_store_passes_the_store_conformance_suite() {
        crate::machine::store_suite::run_store_suite(&mut SuiteHarness);
    }

    #[test]
    fn an_image_restores_an_equal_store() {
        use crate::machine::testing::{submit, Harness};
        let mut machine = Harness::new();
        machine.grant("orders", "worker-1");
        for i in 0..3 {
            let submit = submit(
                &format!("pay-{i}"),
                &format!("key-{i}"),
                crate::machine::EventKind::Authorized,
                100 + i,
            );
            machine.accept(crate::machine::Command::Submit(submit));
        }
        let store = machine.store.clone();
        let image = store.export_image();
        let restored = MemStore::from_image(&image).unwrap();
        assert_eq!(
            restored, store,
            "every record, and the expiry index, restored"
        );
        assert_eq!(restored.encode_state(), store.encode_state());
        let applied = store.meta.as_ref().unwrap().applied_index;
        assert!(applied > 0);
        assert_eq!(
            crate::machine::image_applied_index(&image).unwrap(),
            applied
        );
        assert_eq!(MemStore::from_image(&[]).unwrap(), MemStore::new());
        assert!(MemStore::from_image(&image[..image.len() - 1]).is_err());
    }

    #[test]
    fn keys_expiring_by_a_time_come_in_expiry_then_key_order_up_to_the_limit() {
        let mut store = MemStore::new();
        store.put_idempotency(idempotency("b", 10));
        store.put_idempotency(idempotency("a", 10));
        store.put_idempotency(idempotency("c", 5));
        store.put_idempotency(idempotency("d", 11));
        assert_eq!(
            store.idempotency_expiring_by(10, 100).unwrap(),
            vec![expiry("c", 5), expiry("a", 10), expiry("b", 10)]
        );
        assert_eq!(
            store.idempotency_expiring_by(10, 2).unwrap(),
            vec![expiry("c", 5), expiry("a", 10)]
        );
        assert_eq!(store.idempotency_expiring_by(4, 100).unwrap(), vec![]);
    }

    #[test]
    fn replacing_a_key_moves_it_in_the_expiry_index() {
        let mut store = MemStore::new();
        store.put_idempotency(idempotency("a", 10));
        store.put_idempotency(idempotency("a", 50));
        assert_eq!(store.idempotency_expiring_by(20, 100).unwrap(), vec![]);
        assert_eq!(
            store.idempotency_expiring_by(50, 100).unwrap(),
            vec![expiry("a", 50)]
        );
        assert_eq!(store.idempotency_key_count(), 1);
    }

    #[test]
    fn deleting_a_stale_expiry_leaves_the_newer_record_of_the_key() {
        let mut store = MemStore::new();
        store.put_idempotency(idempotency("a", 10));
        store.delete_idempotency(&expiry("a", 10));
        store.put_idempotency(idempotency("a", 50));
        // A second delete naming the old expiry must not remove the new record.
        store.delete_idempotency(&expiry("a", 10));
        assert_eq!(store.idempotency("a").unwrap(), Some(idempotency("a", 50)));
        store.delete_idempotency(&expiry("a", 50));
        assert_eq!(store.idempotency("a").unwrap(), None);
        assert_eq!(
            store.idempotency_expiring_by(u64::MAX, 100).unwrap(),
            vec![]
        );
    }

    #[test]
    fn events_after_an_index_come_in_index_order_up_to_the_limit() {
        let mut store = MemStore::new();
        for index in [5, 2, 9, 7] {
            store.put_event(EventRecord {
                index,
                ..EventRecord::default()
            });
        }
        let indexes = |after, limit| -> Vec<Index> {
            store
                .events_after(after, limit)
                .unwrap()
                .iter()
                .map(|e| e.index)
                .collect()
        };
        assert_eq!(indexes(0, 10), vec![2, 5, 7, 9]);
        assert_eq!(indexes(5, 10), vec![7, 9]);
        assert_eq!(indexes(0, 2), vec![2, 5]);
        assert_eq!(indexes(9, 10), Vec::<Index>::new());
        assert_eq!(indexes(u64::MAX, 10), Vec::<Index>::new());
    }

    #[test]
    fn encoded_state_differs_when_any_record_differs() {
        let mut a = MemStore::new();
        let mut b = MemStore::new();
        assert_eq!(a.encode_state(), b.encode_state());
        a.put_lease(LeaseRecord {
            name: "w".into(),
            token: 1,
            ..LeaseRecord::default()
        });
        assert_ne!(a.encode_state(), b.encode_state());
        b.put_lease(LeaseRecord {
            name: "w".into(),
            token: 1,
            ..LeaseRecord::default()
        });
        assert_eq!(a.encode_state(), b.encode_state());
    }
}

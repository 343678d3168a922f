//! The payments machine on RocksDB: its records live in column families of the node's
//! `LogStore`, next to the Raft log, and every batch of applied entries is written in one
//! atomic batch together with the machine's meta record (which holds the applied index).
//!
//! Layout (keys → prost-encoded records):
//!
//! | column family | key | value |
//! | --- | --- | --- |
//! | `payments` | payment id | `PaymentRecord` |
//! | `events` | index, 8 bytes big-endian | `EventRecord` |
//! | `idempotency` | key | `IdempotencyRecord` |
//! | `idempotency_expiry` | expiry ms (8 bytes BE) ++ key | empty (the pruning order) |
//! | `leases` | lease name | `LeaseRecord` |
//! | `machine_meta` | `meta` | `MetaRecord` |
//!
//! The batch is written without its own fsync: the log entries it derives from are already
//! durable, and the meta record travels in the same batch, so after a crash the state is
//! either before or after the batch and the node replays the log from the recorded index.

use std::cell::Cell;
use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use quorate_log_store::{LogStore, LogStoreError, StateBatch};
use quorate_node::{ProposalTime, StateMachine};
use quorate_raft_core::{Entry, Index};

use crate::machine::{
    self, DecodeError, EventRecord, IdempotencyExpiry, IdempotencyRecord, LeaseRecord, MetaRecord,
    PaymentRecord, Store, StoreError,
};

const PAYMENTS: &str = "payments";
const EVENTS: &str = "events";
const IDEMPOTENCY: &str = "idempotency";
const IDEMPOTENCY_EXPIRY: &str = "idempotency_expiry";
const LEASES: &str = "leases";
const META: &str = "machine_meta";
const META_KEY: &[u8] = b"meta";

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl From<LogStoreError> for StoreError {
    fn from(e: LogStoreError) -> Self {
        backend(e)
    }
}

fn decode<T: Message + Default>(
    record: &'static str,
    key: impl Fn() -> String,
    bytes: &[u8],
) -> Result<T, StoreError> {
    T::decode(bytes).map_err(|source| StoreError::Corrupt {
        record,
        key: key(),
        source,
    })
}

fn expiry_key(expires_at_ms: u64, key: &str) -> Vec<u8> {
    let mut out = expires_at_ms.to_be_bytes().to_vec();
    out.extend_from_slice(key.as_bytes());
    out
}

/// The expiry time at the front of an `idempotency_expiry` key.
fn expiry_time(key: &[u8]) -> Result<u64, StoreError> {
    let at: [u8; 8] = key
        .get(..8)
        .and_then(|at| at.try_into().ok())
        .ok_or_else(|| StoreError::Inconsistent("short expiry key".into()))?;
    Ok(u64::from_be_bytes(at))
}

/// Writes not yet committed to RocksDB; reads consult them first.
#[derive(Default)]
struct Overlay {
    meta: Option<MetaRecord>,
    payments: BTreeMap<String, PaymentRecord>,
    /// `None`: deleted (compacted).
    events: BTreeMap<Index, Option<EventRecord>>,
    /// `None`: deleted.
    idempotency: BTreeMap<String, Option<IdempotencyRecord>>,
    /// `false`: deleted.
    expiry: BTreeMap<(u64, String), bool>,
    leases: BTreeMap<String, LeaseRecord>,
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.meta.is_none()
            && self.payments.is_empty()
            && self.events.is_empty()
            && self.idempotency.is_empty()
            && self.expiry.is_empty()
            && self.leases.is_empty()
    }
}

/// The machine's records on RocksDB, with a write overlay: a [`Store`].
pub struct RocksState {
    db: LogStore,
    overlay: Overlay,
    /// The earliest expiry among the committed `idempotency_expiry` keys (`Some(None)`: there
    /// is none), once looked up; `None` until then. Every applied entry asks which keys have
    /// expired, and until the earliest one has, the answer needs no RocksDB iterator. Kept
    /// up to date by `commit`, which only adds later expiries unless it prunes.
    committed_earliest_expiry: Cell<Option<Option<u64>>>,
    /// A key at or below every committed `idempotency_expiry` key (empty: the start), where
    /// scans of that family begin. Pruning deletes keys from its front, and RocksDB keeps
    /// their tombstones until it compacts the files: a scan from the start would step over
    /// every key pruned since, on every applied entry once keys expire steadily (seen: 90% of
    /// a node's CPU after 125,000 writes with a 30 s window). Raised to the first key each
    /// lookup finds; lowered by `commit` to any key it adds below it.
    expiry_floor: std::cell::RefCell<Vec<u8>>,
}

impl RocksState {
    /// A view of the committed state (reads only see what was committed).
    pub fn new(db: LogStore) -> Self {
        RocksState {
            db,
            overlay: Overlay::default(),
            committed_earliest_expiry: Cell::new(None),
            expiry_floor: Default::default(),
        }
    }

    /// See [`RocksState::committed_earliest_expiry`].
    fn committed_earliest_expiry(&self) -> Result<Option<u64>, StoreError> {
        if let Some(known) = self.committed_earliest_expiry.get() {
            return Ok(known);
        }
        let floor = self.expiry_floor.borrow().clone();
        let first = self
            .db
            .state_scan(IDEMPOTENCY_EXPIRY, &floor, 1)
            .map_err(backend)?;
        let earliest = match first.first() {
            None => None,
            Some((key, _)) => {
                let at = expiry_time(key)?;
                *self.expiry_floor.borrow_mut() = key.clone();
                Some(at)
            }
        };
        self.committed_earliest_expiry.set(Some(earliest));
        Ok(earliest)
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.state_get(cf, key).map_err(backend)
    }

    /// Turns the overlay into one atomic batch and writes it.
    fn commit(&mut self) -> Result<(), StoreError> {
        self.commit_after(StateBatch::new(), false)
    }

    /// Writes `first` and then the overlay, in one atomic batch (synced with `sync`).
    fn commit_after(&mut self, first: StateBatch, sync: bool) -> Result<(), StoreError> {
        if self.overlay.is_empty() && first.is_empty() {
            return Ok(());
        }
        let overlay = std::mem::take(&mut self.overlay);
        let mut batch = first;
        for (id, payment) in &overlay.payments {
            batch.put(PAYMENTS, id.as_bytes(), payment.encode_to_vec());
        }
        for (index, event) in &overlay.events {
            match event {
                Some(event) => batch.put(EVENTS, index.to_be_bytes(), event.encode_to_vec()),
                None => batch.delete(EVENTS, index.to_be_bytes()),
            };
        }
        for (key, record) in &overlay.idempotency {
            match record {
                Some(record) => batch.put(IDEMPOTENCY, key.as_bytes(), record.encode_to_vec()),
                None => batch.delete(IDEMPOTENCY, key.as_bytes()),
            };
        }
        for ((expires_at_ms, key), present) in &overlay.expiry {
            let k = expiry_key(*expires_at_ms, key);
            if *present {
                batch.put(IDEMPOTENCY_EXPIRY, k, Vec::new());
            } else {
                batch.delete(IDEMPOTENCY_EXPIRY, k);
            }
        }
        for (name, lease) in &overlay.leases {
            batch.put(LEASES, name.as_bytes(), lease.encode_to_vec());
        }
        if let Some(meta) = &overlay.meta {
            batch.put(META, META_KEY, meta.encode_to_vec());
        }
        let result = self.db.state_write(batch, sync).map_err(backend);
        let pruned = overlay.expiry.values().any(|present| !present);
        // The overlay is in expiry order: its first added key is the lowest.
        let lowest_added = overlay.expiry.iter().find(|(_, present)| **present);
        let added = lowest_added.map(|((at, _), _)| *at);
        {
            let mut floor = self.expiry_floor.borrow_mut();
            match lowest_added.map(|((at, key), _)| expiry_key(*at, key)) {
                _ if result.is_err() => floor.clear(),
                Some(added) if added < *floor => *floor = added,
                _ => {}
            }
        }
        let known = self.committed_earliest_expiry.get();
        self.committed_earliest_expiry.set(match (known, added) {
            // A failed write or a pruned key: look again when next asked.
            _ if result.is_err() || pruned => None,
            (Some(earliest), Some(added)) => Some(Some(earliest.map_or(added, |e| e.min(added)))),
            (known, None) => known,
            (None, Some(_)) => None,
        });
        result
    }
}

impl Store for RocksState {
    fn meta(&self) -> Result<Option<MetaRecord>, StoreError> {
        if let Some(meta) = &self.overlay.meta {
            return Ok(Some(meta.clone()));
        }
        self.get(META, META_KEY)?
            .map(|b| decode("meta", || "meta".into(), &b))
            .transpose()
    }

    fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        if let Some(p) = self.overlay.payments.get(payment_id) {
            return Ok(Some(p.clone()));
        }
        self.get(PAYMENTS, payment_id.as_bytes())?
            .map(|b| decode("payment", || payment_id.to_string(), &b))
            .transpose()
    }

    fn event(&self, index: Index) -> Result<Option<EventRecord>, StoreError> {
        if let Some(e) = self.overlay.events.get(&index) {
            return Ok(e.clone());
        }
        self.get(EVENTS, &index.to_be_bytes())?
            .map(|b| decode("event", || index.to_string(), &b))
            .transpose()
    }

    fn events_after(&self, after: Index, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        // The first `limit` of each side, merged in index order (the machine only ever adds
        // events after the committed ones, but the contract does not depend on it).
        // Committed events the overlay deletes are skipped, so read as many more.
        let deleted = self
            .overlay
            .events
            .range(first..)
            .filter(|(_, event)| event.is_none())
            .count();
        let mut events: BTreeMap<Index, EventRecord> = BTreeMap::new();
        for (key, value) in self
            .db
            .state_scan(EVENTS, &first.to_be_bytes(), limit.saturating_add(deleted))
            .map_err(backend)?
        {
            let index = Index::from_be_bytes(key.as_slice().try_into().map_err(|_| {
                StoreError::Inconsistent(format!("event key of {} bytes", key.len()))
            })?);
            events.insert(index, decode("event", || index.to_string(), &value)?);
        }
        for (&index, event) in self.overlay.events.range(first..) {
            match event {
                Some(event) => events.insert(index, event.clone()),
                None => events.remove(&index),
            };
        }
        Ok(events.into_values().take(limit).collect())
    }

    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        if let Some(record) = self.overlay.idempotency.get(key) {
            return Ok(record.clone());
        }
        self.get(IDEMPOTENCY, key.as_bytes())?
            .map(|b| decode("idempotency", || key.to_string(), &b))
            .transpose()
    }

    fn idempotency_expiring_by(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<IdempotencyExpiry>, StoreError> {
        // The overlay is in expiry order: only its entries due by `now_ms` matter.
        let due = || {
            self.overlay
                .expiry
                .iter()
                .take_while(|((expires_at_ms, _), _)| *expires_at_ms <= now_ms)
        };
        let mut found = Vec::new();
        if self
            .committed_earliest_expiry()?
            .is_some_and(|earliest| earliest <= now_ms)
        {
            let deleted = due().filter(|(_, present)| !**present).count();
            let floor = self.expiry_floor.borrow().clone();
            for (key, _) in self
                .db
                .state_scan(IDEMPOTENCY_EXPIRY, &floor, limit.saturating_add(deleted))
                .map_err(backend)?
            {
                let expires_at_ms = expiry_time(&key)?;
                if expires_at_ms > now_ms {
                    break;
                }
                let key = String::from_utf8(key[8..].to_vec())
                    .map_err(|_| StoreError::Inconsistent("expiry key is not UTF-8".into()))?;
                if self.overlay.expiry.get(&(expires_at_ms, key.clone())) != Some(&false) {
                    found.push(IdempotencyExpiry { expires_at_ms, key });
                }
            }
        }
        for ((expires_at_ms, key), present) in due() {
            if *present {
                found.push(IdempotencyExpiry {
                    expires_at_ms: *expires_at_ms,
                    key: key.clone(),
                });
            }
        }
        found.sort();
        found.dedup();
        found.truncate(limit);
        Ok(found)
    }

    fn lease(&self, name: &str) -> Result<Option<LeaseRecord>, StoreError> {
        if let Some(l) = self.overlay.leases.get(name) {
            return Ok(Some(l.clone()));
        }
        self.get(LEASES, name.as_bytes())?
            .map(|b| decode("lease", || name.to_string(), &b))
            .transpose()
    }

    fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        let mut leases: BTreeMap<String, LeaseRecord> = BTreeMap::new();
        for (key, value) in self
            .db
            .state_scan(LEASES, &[], usize::MAX)
            .map_err(backend)?
        {
            let name = String::from_utf8_lossy(&key).into_owned();
            let record = decode("lease", || name.clone(), &value)?;
            leases.insert(name, record);
        }
        for (name, lease) in &self.overlay.leases {
            leases.insert(name.clone(), lease.clone());
        }
        Ok(leases.into_values().collect())
    }

    fn put_meta(&mut self, meta: MetaRecord) {
        self.overlay.meta = Some(meta);
    }

    fn put_payment(&mut self, payment: PaymentRecord) {
        self.overlay
            .payments
            .insert(payment.payment_id.clone(), payment);
    }

    fn put_event(&mut self, event: EventRecord) {
        self.overlay.events.insert(event.index, Some(event));
    }

    fn delete_event(&mut self, index: Index) {
        self.overlay.events.insert(index, None);
    }

    fn put_idempotency(&mut self, record: IdempotencyRecord) {
        self.overlay
            .expiry
            .insert((record.expires_at_ms, record.key.clone()), true);
        self.overlay
            .idempotency
            .insert(record.key.clone(), Some(record));
    }

    fn delete_idempotency(&mut self, expiry: &IdempotencyExpiry) {
        // Only delete the record if it is the one this expiry entry describes (a newer record
        // of the same key has another expiry).
        if let Ok(Some(current)) = self.idempotency(&expiry.key) {
            if current.expires_at_ms == expiry.expires_at_ms {
                self.overlay.idempotency.insert(expiry.key.clone(), None);
            }
        }
        self.overlay
            .expiry
            .insert((expiry.expires_at_ms, expiry.key.clone()), false);
    }

    fn put_lease(&mut self, lease: LeaseRecord) {
        self.overlay.leases.insert(lease.name.clone(), lease);
    }
}

/// The hash of the event log up to `up_to`, from the bytes stored on this node: FNV-1a over
/// each event's index and stored record, in index order (`fold_event`), going on from the
/// hash of the compacted events kept in the meta record. Events are never rewritten, so the
/// hash at an index is the same on every replica that applied it, compacted or not, and any
/// change to stored events (damage, manual edits) shows. Reads one RocksDB snapshot, so a
/// compaction running meanwhile changes nothing. Returns the number of events and the hash;
/// an index below the compaction point is refused with [`StoreError::Compacted`].
pub fn hash_events(db: &LogStore, up_to: Index) -> Result<(u64, u64), StoreError> {
    /// Why the scan stopped early.
    enum Stop {
        Done,
        Failed(StoreError),
    }
    impl From<LogStoreError> for Stop {
        fn from(e: LogStoreError) -> Self {
            Stop::Failed(e.into())
        }
    }
    let mut hash = None;
    let mut count = 0u64;
    let scanned = db.state_snapshot_scan(&[META, EVENTS], |family, key, value| {
        if family == META {
            if key == META_KEY {
                let meta: MetaRecord =
                    decode("meta", || "meta".into(), value).map_err(Stop::Failed)?;
                machine::check_not_compacted(&meta, up_to).map_err(Stop::Failed)?;
                count = meta.events_compacted;
                hash = Some(machine::compacted_hasher(&meta));
            }
            return Ok(());
        }
        let index = Index::from_be_bytes(key.try_into().map_err(|_| {
            Stop::Failed(StoreError::Inconsistent(format!(
                "event key of {} bytes",
                key.len()
            )))
        })?);
        if index > up_to {
            return Err(Stop::Done);
        }
        machine::fold_event(hash.get_or_insert_with(Default::default), index, value);
        count += 1;
        Ok(())
    });
    match scanned {
        Ok(()) | Err(Stop::Done) => {}
        Err(Stop::Failed(e)) => return Err(e),
    }
    Ok((count, hash.unwrap_or_default().finish()))
}

/// The column families of the machine's image: its replicated state. (The idempotency expiry
/// index is derived from the records, and rebuilt by a restore.)
const IMAGE_FAMILIES: [&str; 5] = [META, PAYMENTS, EVENTS, IDEMPOTENCY, LEASES];

/// The hash of the whole machine as stored on this node (every record of the image's column
/// families, meta first, from one RocksDB snapshot): FNV-1a over each family's name, then each
/// key and value with their lengths, in key order. Replicas that applied the same entries store the
/// same bytes (records are encoded deterministically), so at one applied index the hashes
/// match, and any change to stored state shows. Returns the applied index it is of and the
/// hash.
pub fn hash_state(db: &LogStore) -> Result<(Index, u64), StoreError> {
    let mut hash = quorate_raft_core::fnv::Fnv1a::default();
    let mut applied = 0;
    let mut current = String::new();
    db.state_snapshot_scan(&IMAGE_FAMILIES, |family, key, value| {
        if family != current {
            hash.write(family.as_bytes());
            current = family.to_string();
        }
        if family == META && key == META_KEY {
            applied = decode::<MetaRecord>("meta", || "meta".into(), value)?.applied_index;
        }
        hash.write(&(key.len() as u64).to_be_bytes());
        hash.write(key);
        hash.write(&(value.len() as u64).to_be_bytes());
        hash.write(value);
        Ok::<(), StoreError>(())
    })?;
    Ok((applied, hash.finish()))
}

/// The payments machine as the node drives it.
pub struct RocksMachine {
    state: RocksState,
    applied_index: Index,
}

impl RocksMachine {
    /// The column families the machine needs in the `LogStore`.
    pub fn column_families() -> Vec<String> {
        [
            PAYMENTS,
            EVENTS,
            IDEMPOTENCY,
            IDEMPOTENCY_EXPIRY,
            LEASES,
            META,
        ]
        .map(String::from)
        .to_vec()
    }

    /// The machine's image (see `machine::image`): every record, meta first, as of one point in
    /// time. Read from a RocksDB snapshot, so the node's writes go on while it is taken.
    pub fn export_image(db: &LogStore) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        db.state_snapshot_scan(&IMAGE_FAMILIES, |family, key, value| {
            let name = || String::from_utf8_lossy(key).into_owned();
            let item = match family {
                META => machine::ImageItem::Meta(decode("meta", name, value)?),
                PAYMENTS => machine::ImageItem::Payment(decode("payment", name, value)?),
                EVENTS => machine::ImageItem::Event(decode("event", name, value)?),
                IDEMPOTENCY => machine::ImageItem::Idempotency(decode("idempotency", name, value)?),
                _ => machine::ImageItem::Lease(decode("lease", name, value)?),
            };
            machine::push_image_record(&mut out, item);
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// Replaces the whole machine in `db` with `image` (a snapshot's), in one synced batch:
    /// every record of the machine is deleted and the image's written, so a crash leaves
    /// either the old machine or the new one. Returns the machine, at the image's index.
    pub fn restore(db: LogStore, image: &[u8]) -> Result<Self, StoreError> {
        let mut clear = StateBatch::new();
        let families = Self::column_families();
        let names: Vec<&str> = families.iter().map(String::as_str).collect();
        db.state_snapshot_scan(&names, |family, key, _| {
            clear.delete(family, key);
            Ok::<(), StoreError>(())
        })?;
        let mut state = RocksState::new(db.clone());
        machine::restore_image(&mut state, image)
            .map_err(|e| StoreError::Inconsistent(format!("undecodable machine image: {e}")))?;
        state.commit_after(clear, true)?;
        RocksMachine::open(db)
    }

    /// Loads the machine from `db` (opened with [`RocksMachine::column_families`]).
    pub fn open(db: LogStore) -> Result<Self, StoreError> {
        let state = RocksState::new(db);
        let applied_index = state.meta()?.map_or(0, |m| m.applied_index);
        Ok(RocksMachine {
            state,
            applied_index,
        })
    }
}

/// Why the RocksDB machine failed, as the node reports it.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A command to stamp does not decode (the proposal is refused).
    #[error("not a payments command: {0}")]
    Command(#[source] DecodeError),
    /// An entry could not be applied (its storage failed, or a stored record is damaged).
    #[error("applying entry {index} failed: {source}")]
    Apply {
        /// The entry.
        index: Index,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Writing the applied batch failed.
    #[error("writing the payments state failed: {0}")]
    Write(#[source] StoreError),
    /// A snapshot's image does not decode.
    #[error("undecodable machine image: {0}")]
    Image(#[source] DecodeError),
    /// Reading the machine's image failed.
    #[error("reading the machine's image failed: {0}")]
    ReadImage(#[source] StoreError),
    /// Restoring the machine from an image failed.
    #[error("restoring the machine from a snapshot failed: {0}")]
    Restore(#[source] StoreError),
}

impl StateMachine for RocksMachine {
    type Error = MachineError;

    fn applied_index(&self) -> Index {
        self.applied_index
    }

    fn stamp(&self, command: Bytes, time: ProposalTime) -> Result<Bytes, MachineError> {
        let clock = machine::LeaderClock {
            wall_ms: time.wall_ms,
            term_ms: time.term_ms,
        };
        machine::stamp(&command, clock).map_err(MachineError::Command)
    }

    /// Reads one RocksDB snapshot: every batch of applied entries is written atomically with
    /// the meta record that holds its index, so any snapshot is a consistent image.
    fn image_reader(&self) -> quorate_node::ImageReader<MachineError> {
        let db = self.state.db.clone();
        Box::new(move || {
            RocksMachine::export_image(&db)
                .map(Bytes::from)
                .map_err(MachineError::ReadImage)
        })
    }

    fn image_index(&self, image: &[u8]) -> Result<Index, MachineError> {
        machine::image_applied_index(image).map_err(MachineError::Image)
    }

    fn restore(&mut self, image: &[u8]) -> Result<(), MachineError> {
        *self =
            RocksMachine::restore(self.state.db.clone(), image).map_err(MachineError::Restore)?;
        Ok(())
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, MachineError> {
        let mut outputs = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.index <= self.applied_index {
                // Already applied before a restart: the output is not needed by anyone.
                outputs.push(Bytes::new());
                continue;
            }
            let applied = machine::apply_entry(&mut self.state, entry).map_err(|source| {
                MachineError::Apply {
                    index: entry.index,
                    source,
                }
            })?;
            outputs.push(applied.encode());
        }
        self.state.commit().map_err(MachineError::Write)?;
        if let Some(last) = entries.last() {
            self.applied_index = self.applied_index.max(last.index);
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use quorate_log_store::OpenOptions;
    use quorate_raft_core::{ConfState, EntryKind};

    use super::*;
    use crate::machine::testing::{submit, Harness};
    use crate::machine::{Command, EventKind, MemStore};

    /// The RocksDB machine decides exactly as the in-memory one, batch by batch, while keys
    /// expire and are pruned: its expiry shortcut (no scan until the earliest committed key is
    /// due) changes no answer.
    #[test]
    fn rocks_machine_prunes_expired_keys_exactly_as_the_memory_machine() {
        let dir = tempfile::tempdir().unwrap();
        let families = RocksMachine::column_families();
        let names: Vec<&str> = families.iter().map(String::as_str).collect();
        let db = LogStore::open(
            dir.path(),
            OpenOptions::new(ConfState::with_voters([1]), &names),
        )
        .unwrap();
        let mut rocks = RocksMachine::open(db.clone()).unwrap();
        let mut memory = MemStore::new();
        let mut leader = Harness::new();
        let mut batch = Vec::new();
        let mut index = 0;
        let mut pruned_total = 0;
        for n in 0..600u64 {
            // A window of 50 ms and a clock that moves 1 to 3 ms per command: keys expire
            // all the time, sometimes many per apply (more than the per-apply limit).
            let mut command = submit(
                &format!("p{}", n % 97),
                &format!("k{}", n % 131),
                EventKind::Authorized,
                100,
            );
            command.idempotency_window_ms = 50;
            leader.advance(1 + n % 3);
            if n % 150 == 149 {
                leader.advance(400);
            }
            index += 1;
            batch.push(Entry {
                index,
                term: 1,
                sequence: index,
                kind: EntryKind::Command,
                data: leader.stamped(&Command::Submit(command)),
            });
            // Batches of 1 to 40 entries, as the node's Readys deliver them.
            if batch.len() as u64 > (n * 7) % 40 {
                let outputs = rocks.apply(&batch).unwrap();
                for (entry, output) in batch.drain(..).zip(outputs) {
                    let expected = machine::apply_entry(&mut memory, &entry).unwrap();
                    assert_eq!(output, expected.encode(), "output at index {}", entry.index);
                }
                let (r, m) = (
                    rocks.state.meta().unwrap().unwrap(),
                    memory.meta().unwrap().unwrap(),
                );
                assert_eq!(r, m, "meta after index {index}");
                pruned_total = m.idempotency_keys_pruned;
            }
        }
        assert!(pruned_total > 100, "only {pruned_total} keys were pruned");
        for k in 0..131 {
            let key = format!("k{k}");
            assert_eq!(
                RocksState::new(db.clone()).idempotency(&key).unwrap(),
                memory.idempotency(&key).unwrap(),
                "record of {key}"
            );
        }
    }

    /// The event log's compaction on RocksDB, batch by batch: the same meta and events as the
    /// in-memory machine, and the event-log hash read from RocksDB's stored bytes (going on
    /// from the kept hash) equals the hash of the whole history on a machine that compacts
    /// nothing; a read of the compacted range is refused.
    #[test]
    fn rocks_machine_compacts_events_keeping_the_hash_of_the_whole_history() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_machine_store(dir.path());
        let mut rocks = RocksMachine::open(db.clone()).unwrap();
        let mut compacting = MemStore::new();
        let mut whole = MemStore::new();
        let mut leader = Harness::new();
        let mut batch = Vec::new();
        let mut index = 0;
        for n in 0..1500u64 {
            let payment = format!("p{}", n % 13);
            let kind = if n < 13 {
                EventKind::Authorized
            } else {
                EventKind::Captured
            };
            let mut command = submit(&payment, &format!("k{n}"), kind, 1);
            command.amount_minor = if n < 13 { 1_000_000 } else { 1 };
            // The same history with nothing compacted: the retention is the leader's choice,
            // carried in the command, so that machine gets the commands without it.
            let plain = Command::Submit(command.clone());
            command.event_retention = 100;
            leader.advance(1);
            index += 1;
            let entry = Entry {
                index,
                term: 1,
                sequence: index,
                kind: EntryKind::Command,
                data: leader.stamped(&Command::Submit(command)),
            };
            let plain_entry = Entry {
                data: leader.stamped(&plain),
                ..entry.clone()
            };
            machine::apply_entry(&mut whole, &plain_entry).unwrap();
            batch.push(entry);
            if batch.len() as u64 > (n * 7) % 40 {
                rocks.apply(&batch).unwrap();
                for entry in batch.drain(..) {
                    machine::apply_entry(&mut compacting, &entry).unwrap();
                }
                let meta = rocks.state.meta().unwrap().unwrap();
                assert_eq!(meta, compacting.meta().unwrap().unwrap(), "meta at {index}");
                assert_eq!(
                    hash_events(&db, index).unwrap(),
                    machine::store_hash_events(&whole, index).unwrap(),
                    "event-log hash at {index}, compacted through {}",
                    meta.events_compacted_through
                );
            }
        }
        rocks.apply(&batch).unwrap();
        for entry in batch.drain(..) {
            machine::apply_entry(&mut compacting, &entry).unwrap();
        }
        let meta = rocks.state.meta().unwrap().unwrap();
        assert_eq!(meta.applied_index, 1500);
        assert!(meta.events_compacted > 1200, "{meta:?}");
        let through = meta.last_compacted_event;
        let state = RocksState::new(db.clone());
        assert_eq!(
            state.events_after(through, 1000).unwrap(),
            compacting.events_after(through, 1000).unwrap()
        );
        let held = state.events_after(0, 1000).unwrap().len();
        assert_eq!(held as u64, 1500 - meta.events_compacted);
        assert!(matches!(
            machine::list_events(&state, 0, 10),
            Err(StoreError::Compacted { first_available, .. }) if first_available == through + 1
        ));
        assert!(matches!(
            hash_events(&db, through - 1),
            Err(StoreError::Compacted { .. })
        ));
    }

    /// Each store in its own directory; `commit` writes the overlay as the node does after
    /// each batch of entries.
    #[derive(Default)]
    struct SuiteHarness {
        directories: Vec<tempfile::TempDir>,
    }

    impl SuiteHarness {
        fn open(&mut self) -> LogStore {
            let dir = tempfile::tempdir().unwrap();
            let db = open_machine_store(dir.path());
            self.directories.push(dir);
            db
        }
    }

    impl crate::machine::store_suite::StoreHarness for SuiteHarness {
        type Store = RocksState;
        fn create(&mut self) -> RocksState {
            RocksState::new(self.open())
        }
        fn commit(&mut self, store: &mut RocksState) {
            store.commit().unwrap();
        }
        fn image(&mut self, store: &RocksState) -> Vec<u8> {
            RocksMachine::export_image(&store.db).unwrap()
        }
        fn restore(&mut self, image: &[u8]) -> RocksState {
            let db = self.open();
            RocksMachine::restore(db.clone(), image).unwrap();
            RocksState::new(db)
        }
    }

    #[test]
    fn rocks_store_passes_the_store_conformance_suite() {
        crate::machine::store_suite::run_store_suite(&mut SuiteHarness::default());
    }

    fn open_machine_store(dir: &std::path::Path) -> LogStore {
        let families = RocksMachine::column_families();
        let names: Vec<&str> = families.iter().map(String::as_str).collect();
        LogStore::open(dir, OpenOptions::new(ConfState::with_voters([1]), &names)).unwrap()
    }

    /// Item 2 of the snapshots issue: an image of the RocksDB machine, restored into another
    /// node's store, gives a machine with the same records (the same image, the same event
    /// hash, the same in-memory twin) at the same index; the image is of one point in time
    /// even while writes go on; and a restore replaces what the target held.
    #[test]
    fn an_image_of_the_rocks_machine_restores_an_identical_machine() {
        let source_dir = tempfile::tempdir().unwrap();
        let db = open_machine_store(source_dir.path());
        let mut rocks = RocksMachine::open(db.clone()).unwrap();
        let mut memory = MemStore::new();
        let mut leader = Harness::new();
        let entries: Vec<Entry> = (1..=300u64)
            .map(|index| {
                let command = submit(
                    &format!("p{}", index % 41),
                    &format!("k{index}"),
                    if index % 41 == index {
                        EventKind::Authorized
                    } else {
                        EventKind::Captured
                    },
                    10,
                );
                leader.advance(5);
                Entry {
                    index,
                    term: 1,
                    sequence: index,
                    kind: EntryKind::Command,
                    data: leader.stamped(&Command::Submit(command)),
                }
            })
            .collect();
        for chunk in entries.chunks(37) {
            rocks.apply(chunk).unwrap();
            for entry in chunk {
                machine::apply_entry(&mut memory, entry).unwrap();
            }
        }
        let image = RocksMachine::export_image(&db).unwrap();
        assert_eq!(machine::image_applied_index(&image).unwrap(), 300);
        assert_eq!(
            MemStore::from_image(&image).unwrap(),
            memory,
            "the image holds exactly the records the machine decided"
        );

        // Restored over a store that holds another machine's records.
        let target_dir = tempfile::tempdir().unwrap();
        let target_db = open_machine_store(target_dir.path());
        let mut other = RocksMachine::open(target_db.clone()).unwrap();
        other.apply(&entries[..5]).unwrap();
        let mut stray = StateBatch::new();
        stray.put(PAYMENTS, b"stray", b"not in the image");
        target_db.state_write(stray, true).unwrap();
        let restored = RocksMachine::restore(target_db.clone(), &image).unwrap();
        assert_eq!(restored.applied_index(), 300);
        assert_eq!(RocksMachine::export_image(&target_db).unwrap(), image);
        assert_eq!(
            hash_events(&target_db, 300).unwrap(),
            hash_events(&db, 300).unwrap()
        );
        assert_eq!(target_db.state_get(PAYMENTS, b"stray").unwrap(), None);
        // The whole machine hashes the same, at the same index; one changed record shows.
        let source_hash = hash_state(&db).unwrap();
        assert_eq!(source_hash.0, 300);
        assert_eq!(hash_state(&target_db).unwrap(), source_hash);
        let (key, value) = target_db.state_scan(PAYMENTS, &[], 1).unwrap().remove(0);
        let mut payment = PaymentRecord::decode(value.as_slice()).unwrap();
        payment.authorized_minor += 1;
        let mut altered = StateBatch::new();
        altered.put(PAYMENTS, &key, payment.encode_to_vec());
        target_db.state_write(altered, true).unwrap();
        assert_ne!(hash_state(&target_db).unwrap(), source_hash);
        let mut put_back = StateBatch::new();
        put_back.put(PAYMENTS, &key, &value);
        target_db.state_write(put_back, true).unwrap();
        assert_eq!(hash_state(&target_db).unwrap(), source_hash);
        // The pruning order was rebuilt from the idempotency records.
        assert_eq!(
            target_db.state_scan(IDEMPOTENCY_EXPIRY, &[], 1000).unwrap(),
            db.state_scan(IDEMPOTENCY_EXPIRY, &[], 1000).unwrap()
        );

        // A point-in-time image: a write made while the image is being read is not in it.
        let late_key = 999u64.to_be_bytes();
        let mut first_scan = Vec::new();
        db.state_snapshot_scan(&[META, EVENTS], |family, key, _| {
            if family == META {
                let mut late = StateBatch::new();
                late.put(EVENTS, late_key, b"late");
                db.state_write(late, false).unwrap();
            } else {
                first_scan.push(key.to_vec());
            }
            Ok::<(), StoreError>(())
        })
        .unwrap();
        assert!(!first_scan.is_empty());
        assert!(
            !first_scan.contains(&late_key.to_vec()),
            "the late write leaked in"
        );
        let mut second_scan = Vec::new();
        db.state_snapshot_scan(&[EVENTS], |_, key, _| {
            second_scan.push(key.to_vec());
            Ok::<(), StoreError>(())
        })
        .unwrap();
        assert!(
            second_scan.contains(&late_key.to_vec()),
            "a later image sees it"
        );
    }
}

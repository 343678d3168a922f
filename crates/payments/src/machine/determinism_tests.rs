//! Determinism: replicas fed the same entries end in byte-identical state.
//!
//! A seeded generator (an inline xorshift, seed printed) plays a leader proposing a random
//! mix of submits, lease commands, no-ops, garbage and stale-token entries. The entries are
//! applied to a MemStore while generating, then replayed on a second MemStore and on a store
//! that keeps only encoded bytes (as RocksDB will): outputs and encoded state must match.

use std::collections::BTreeMap;

use prost::Message;
use quorate_raft_core::{FencingToken, Index};

use super::apply::{apply, apply_noop};
use super::commands::{stamp, Command, EventKind, LeaderClock, LeaseFence, Submit};
use super::mem_store::MemStore;
use super::outputs::Applied;
use super::records::{EventRecord, IdempotencyRecord, LeaseRecord, MetaRecord, PaymentRecord};
use super::store::{IdempotencyExpiry, Store, StoreError};
use super::testing::{acquire, expire, keep_alive, release, START_MS};

/// xorshift64: small, seedable, good enough to pick test inputs.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One log entry as the leader produced it.
#[derive(Clone)]
struct LoggedEntry {
    index: Index,
    token: FencingToken,
    /// `None` for a no-op.
    data: Option<Vec<u8>>,
}

const PAYMENTS: &[&str] = &[
    "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11",
];
const LEASES: &[&str] = &["w0", "w1", "w2"];
const HOLDERS: &[&str] = &["a", "b", "c"];
const CURRENCIES: &[&str] = &["USD", "USD", "USD", "EUR"];

fn random_submit(rng: &mut XorShift, store: &MemStore) -> Submit {
    let kind = match rng.below(10) {
        0..=2 => EventKind::Authorized,
        3..=5 => EventKind::Captured,
        6 => EventKind::Voided,
        _ => EventKind::Refunded,
    };
    let amount_minor = match rng.below(4) {
        0 => 1000,
        1 => 500,
        2 => 250,
        _ => 1 + rng.below(1500) as i64,
    };
    let mut metadata = BTreeMap::new();
    if rng.chance(30) {
        metadata.insert("order".to_owned(), format!("o{}", rng.below(3)));
    }
    if rng.chance(10) {
        metadata.insert("channel".to_owned(), "web".to_owned());
    }
    let fence = if rng.chance(25) {
        let lease = rng.pick(LEASES).to_owned();
        let current = store.lease(&lease).unwrap().map_or(1, |l| l.token);
        let token = match rng.below(3) {
            0 | 1 => current,
            _ => 1 + rng.below(current + 2),
        };
        Some(LeaseFence { lease, token })
    } else {
        None
    };
    Submit {
        payment_id: rng.pick(PAYMENTS).to_owned(),
        idempotency_key: format!("k{}", rng.below(400)),
        kind: kind as i32,
        amount_minor,
        currency: rng.pick(CURRENCIES).to_owned(),
        metadata,
        fence,
        idempotency_window_ms: [600_000, 3_600_000, 86_400_000][rng.below(3) as usize],
        // Compaction on some submits, so replicas must also compact alike.
        event_retention: [0, 0, 100, 300][rng.below(4) as usize],
    }
}

/// A random command; a fifth of submits are retries of a recent one (same request).
fn random_command(rng: &mut XorShift, store: &MemStore, recent: &mut Vec<Submit>) -> Command {
    let name = rng.pick(LEASES);
    let holder = rng.pick(HOLDERS);
    let lease = store.lease(name).unwrap();
    let current_token = lease.as_ref().map_or(1, |l| l.token);
    let token = if rng.chance(70) {
        current_token
    } else {
        1 + rng.below(current_token + 2)
    };
    match rng.below(20) {
        0..=12 => {
            if !recent.is_empty() && rng.chance(20) {
                let retry = recent[rng.below(recent.len() as u64) as usize].clone();
                return Command::Submit(retry);
            }
            let submit = random_submit(rng, store);
            if recent.len() == 16 {
                recent.remove(0);
            }
            recent.push(submit.clone());
            Command::Submit(submit)
        }
        13 | 14 => acquire(name, holder, 1_000 + rng.below(60_000)),
        15 | 16 => {
            let holder = match (&lease, rng.chance(70)) {
                (Some(l), true) => l.holder.clone(),
                _ => holder.to_owned(),
            };
            keep_alive(name, &holder, token)
        }
        17 => {
            let holder = match (&lease, rng.chance(70)) {
                (Some(l), true) => l.holder.clone(),
                _ => holder.to_owned(),
            };
            release(name, &holder, token)
        }
        _ => {
            let renewals = lease.as_ref().map_or(0, |l| l.renewals);
            let renewals = if rng.chance(80) {
                renewals
            } else {
                renewals + 1
            };
            expire(name, token, renewals)
        }
    }
}

/// Plays a leader for `steps` entries, applying them to a MemStore, and checks invariants
/// after every step. Returns the log, the outputs and the final store.
fn generate(seed: u64, steps: usize) -> (Vec<LoggedEntry>, Vec<Applied>, MemStore) {
    let mut rng = XorShift::new(seed);
    let mut store = MemStore::new();
    let mut log = Vec::with_capacity(steps);
    let mut outputs = Vec::with_capacity(steps);
    let (mut term, mut sequence, mut now_ms, mut mono_ms) = (1u64, 0u64, START_MS, 0u64);
    let mut last_token = FencingToken::default();
    let mut lease_tokens: BTreeMap<String, u64> = BTreeMap::new();
    let mut recent = Vec::new();
    for step in 0..steps {
        let index = step as Index + 1;
        // Tokens: usually the next one; sometimes a new term; sometimes a stale one.
        let token = match rng.below(40) {
            0 => {
                term += 1;
                sequence = 1;
                FencingToken { term, sequence }
            }
            1 => last_token,
            2 => FencingToken {
                term: term.saturating_sub(1),
                sequence: sequence + 5,
            },
            _ => {
                sequence += 1;
                FencingToken { term, sequence }
            }
        };
        last_token = last_token.max(token);
        // Clocks: the monotonic one only forwards; the wall clock mostly with it, sometimes
        // set back a little, sometimes (a leader with a bad clock) hours off.
        let elapsed = rng.below(900_000);
        mono_ms += elapsed;
        match rng.below(40) {
            0..=1 => now_ms -= rng.below(60_000),
            2 => now_ms += 5 * 3_600_000,
            3 => now_ms -= 5 * 3_600_000,
            _ => now_ms += elapsed,
        }
        let data = match rng.below(30) {
            0 => None,
            1 => Some((0..rng.below(12)).map(|_| rng.next() as u8).collect()),
            _ => {
                let command = random_command(&mut rng, &store, &mut recent);
                let clock = LeaderClock {
                    wall_ms: now_ms,
                    term_ms: mono_ms,
                };
                Some(stamp(&command.encode(), clock).unwrap().to_vec())
            }
        };
        let applied = match &data {
            None => apply_noop(&mut store, index, token),
            Some(bytes) => apply(&mut store, index, token, bytes),
        }
        .unwrap();
        assert_eq!(
            Applied::decode(&applied.encode()).unwrap(),
            applied,
            "seed {seed} step {step}: outputs round-trip"
        );
        check_invariants(&store, &mut lease_tokens, index, seed, step);
        log.push(LoggedEntry { index, token, data });
        outputs.push(applied);
    }
    (log, outputs, store)
}

fn check_invariants(
    store: &MemStore,
    lease_tokens: &mut BTreeMap<String, u64>,
    index: Index,
    seed: u64,
    step: usize,
) {
    let at = format!("seed {seed} step {step}");
    assert_eq!(store.meta().unwrap().unwrap().applied_index, index, "{at}");
    for event in store.events_after(0, usize::MAX).unwrap() {
        let payment = store.payment(&event.payment_id).unwrap().unwrap();
        let position = event.payment_seq - 1 - payment.events_compacted;
        assert_eq!(
            payment.event_indexes[position as usize], event.index,
            "{at}: payment_seq points at the event"
        );
        assert!(0 <= payment.refunded_minor, "{at}");
        assert!(payment.refunded_minor <= payment.captured_minor, "{at}");
        assert!(payment.captured_minor <= payment.authorized_minor, "{at}");
        assert!(!payment.voided || payment.captured_minor == 0, "{at}");
        assert_eq!(event.currency, payment.currency, "{at}");
    }
    for lease in store.leases().unwrap() {
        let previous = lease_tokens
            .insert(lease.name.clone(), lease.token)
            .unwrap_or(0);
        assert!(lease.token >= previous, "{at}: lease tokens only grow");
    }
}

/// Replays a log on any store.
fn replay<S: Store>(store: &mut S, log: &[LoggedEntry]) -> Vec<Applied> {
    log.iter()
        .map(|entry| match &entry.data {
            None => apply_noop(store, entry.index, entry.token),
            Some(bytes) => apply(store, entry.index, entry.token, bytes),
        })
        .map(Result::unwrap)
        .collect()
}

/// A store that keeps only encoded records under byte keys, like the RocksDB one will.
#[derive(Default)]
struct EncodedStore {
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

fn expiry_key(expires_at_ms: u64, k: &str) -> Vec<u8> {
    let mut rest = expires_at_ms.to_be_bytes().to_vec();
    rest.extend_from_slice(k.as_bytes());
    key(b'x', &rest)
}

impl EncodedStore {
    fn get<R: Message + Default>(
        &self,
        record: &'static str,
        k: Vec<u8>,
    ) -> Result<Option<R>, StoreError> {
        match self.kv.get(&k) {
            None => Ok(None),
            Some(bytes) => {
                R::decode(bytes.as_slice())
                    .map(Some)
                    .map_err(|source| StoreError::Corrupt {
                        record,
                        key: String::from_utf8_lossy(&k).into_owned(),
                        source,
                    })
            }
        }
    }

    fn scan<R: Message + Default>(&self, prefix: u8) -> impl Iterator<Item = (&[u8], R)> {
        self.kv.range(vec![prefix]..vec![prefix + 1]).map(|(k, v)| {
            (
                &k[1..],
                R::decode(v.as_slice()).expect("test store holds valid records"),
            )
        })
    }

    /// The same bytes as [`MemStore::encode_state`].
    fn encode_state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (marker, prefix) in [
            (b'M', b'm'),
            (b'P', b'p'),
            (b'E', b'e'),
            (b'I', b'i'),
            (b'L', b'l'),
        ] {
            out.push(marker);
            for (_, value) in self.kv.range(vec![prefix]..vec![prefix + 1]) {
                prost::encode_length_delimiter(value.len(), &mut out).unwrap();
                out.extend_from_slice(value);
            }
        }
        out
    }
}

impl Store for EncodedStore {
    fn meta(&self) -> Result<Option<MetaRecord>, StoreError> {
        self.get("meta", key(b'm', b""))
    }
    fn payment(&self, id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        self.get("payment", key(b'p', id.as_bytes()))
    }
    fn event(&self, index: Index) -> Result<Option<EventRecord>, StoreError> {
        self.get("event", key(b'e', &index.to_be_bytes()))
    }
    fn events_after(&self, after: Index, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        Ok(self
            .scan::<EventRecord>(b'e')
            .filter(|(_, e)| e.index > after)
            .take(limit)
            .map(|(_, e)| e)
            .collect())
    }
    fn idempotency(&self, k: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get("idempotency", key(b'i', k.as_bytes()))
    }
    fn idempotency_expiring_by(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<IdempotencyExpiry>, StoreError> {
        Ok(self
            .kv
            .range(vec![b'x']..vec![b'x' + 1])
            .map(|(k, _)| IdempotencyExpiry {
                expires_at_ms: u64::from_be_bytes(k[1..9].try_into().unwrap()),
                key: String::from_utf8(k[9..].to_vec()).unwrap(),
            })
            .take_while(|e| e.expires_at_ms <= now_ms)
            .take(limit)
            .collect())
    }
    fn lease(&self, name: &str) -> Result<Option<LeaseRecord>, StoreError> {
        self.get("lease", key(b'l', name.as_bytes()))
    }
    fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        Ok(self.scan::<LeaseRecord>(b'l').map(|(_, l)| l).collect())
    }
    fn put_meta(&mut self, meta: MetaRecord) {
        self.kv.insert(key(b'm', b""), meta.encode_to_vec());
    }
    fn put_payment(&mut self, payment: PaymentRecord) {
        self.kv.insert(
            key(b'p', payment.payment_id.as_bytes()),
            payment.encode_to_vec(),
        );
    }
    fn put_event(&mut self, event: EventRecord) {
        self.kv
            .insert(key(b'e', &event.index.to_be_bytes()), event.encode_to_vec());
    }
    fn delete_event(&mut self, index: Index) {
        self.kv.remove(&key(b'e', &index.to_be_bytes()));
    }
    fn put_idempotency(&mut self, record: IdempotencyRecord) {
        self.kv
            .insert(expiry_key(record.expires_at_ms, &record.key), Vec::new());
        self.kv
            .insert(key(b'i', record.key.as_bytes()), record.encode_to_vec());
    }
    fn delete_idempotency(&mut self, expiry: &IdempotencyExpiry) {
        self.kv
            .remove(&expiry_key(expiry.expires_at_ms, &expiry.key));
        let current: Option<IdempotencyRecord> = self.idempotency(&expiry.key).unwrap();
        if current.is_some_and(|r| r.expires_at_ms == expiry.expires_at_ms) {
            self.kv.remove(&key(b'i', expiry.key.as_bytes()));
        }
    }
    fn put_lease(&mut self, lease: LeaseRecord) {
        self.kv
            .insert(key(b'l', lease.name.as_bytes()), lease.encode_to_vec());
    }
}

const SEEDS: &[u64] = &[1, 2, 3, 42, 0xdead_beef, 0x5eed_cafe_f00d, 20_260_101];
const STEPS: usize = 1500;

#[test]
fn replicas_fed_the_same_random_entries_reach_byte_identical_state() {
    for &seed in SEEDS {
        eprintln!("determinism seed {seed} ({STEPS} steps)");
        let (log, outputs, generated) = generate(seed, STEPS);

        let mut replica = MemStore::new();
        let replica_outputs = replay(&mut replica, &log);
        assert_eq!(replica_outputs, outputs, "seed {seed}: same outputs");
        assert_eq!(
            replica.encode_state(),
            generated.encode_state(),
            "seed {seed}"
        );

        let mut encoded = EncodedStore::default();
        let encoded_outputs = replay(&mut encoded, &log);
        assert_eq!(
            encoded_outputs, outputs,
            "seed {seed}: same outputs on encoded storage"
        );
        assert_eq!(
            encoded.encode_state(),
            generated.encode_state(),
            "seed {seed}: records survive encoding"
        );
    }
}

#[test]
fn the_random_runs_exercise_every_rule() {
    let mut totals = MetaRecord::default();
    let mut granted = 0;
    let mut expired = 0;
    for &seed in SEEDS {
        eprintln!("coverage seed {seed}");
        let (_, outputs, store) = generate(seed, STEPS);
        let meta = store.meta().unwrap().unwrap();
        totals.events_recorded += meta.events_recorded;
        totals.idempotent_replays += meta.idempotent_replays;
        totals.key_reuse_rejections += meta.key_reuse_rejections;
        totals.invalid_transitions += meta.invalid_transitions;
        totals.stale_token_rejections += meta.stale_token_rejections;
        totals.fencing_rejections += meta.fencing_rejections;
        totals.malformed_commands += meta.malformed_commands;
        totals.idempotency_keys_pruned += meta.idempotency_keys_pruned;
        totals.events_compacted += meta.events_compacted;
        for applied in outputs {
            match applied {
                Applied::LeaseAcquired(out) if out.granted => granted += 1,
                Applied::LeaseExpired(out) if out.expired => expired += 1,
                _ => {}
            }
        }
    }
    eprintln!("{totals:?} granted {granted} expired {expired}");
    for (what, count) in [
        ("events", totals.events_recorded),
        ("replays", totals.idempotent_replays),
        ("key reuse", totals.key_reuse_rejections),
        ("invalid transitions", totals.invalid_transitions),
        ("stale tokens", totals.stale_token_rejections),
        ("fencing rejections", totals.fencing_rejections),
        ("malformed", totals.malformed_commands),
        ("pruned keys", totals.idempotency_keys_pruned),
        ("compacted events", totals.events_compacted),
        ("lease grants", granted),
        ("lease expiries", expired),
    ] {
        assert!(count >= 10, "{what}: only {count}");
    }
}

#[test]
fn a_replica_that_skipped_an_entry_diverges_visibly() {
    // The comparison above is only worth something if it notices a difference.
    let (log, _, generated) = generate(7, 300);
    let mut replica = MemStore::new();
    let skipped: Vec<LoggedEntry> = log
        .iter()
        .filter(|entry| entry.index != 150)
        .cloned()
        .collect();
    replay(&mut replica, &skipped);
    assert_ne!(replica.encode_state(), generated.encode_state());
}

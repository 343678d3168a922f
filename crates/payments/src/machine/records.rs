//! What the machine stores: payments, events, idempotency records, leases and its own
//! bookkeeping. Every record is a prost message, so a persistent store keeps it as bytes
//! (`prost::Message::encode_to_vec` to write, `prost::Message::decode` to read back).

use std::collections::BTreeMap;

use quorate_raft_core::{FencingToken, Index};

use super::commands::{EventKind, LeaseFence};
use super::outputs::RejectReason;

/// A Raft entry's fencing token `(term, sequence)` in storable form. Same fields and tags as
/// `quorate.payments.v1.FencingToken`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, prost::Message)]
pub struct FencingTokenRecord {
    /// The term of the leader that created the entry.
    #[prost(uint64, tag = "1")]
    pub term: u64,
    /// The entry's sequence number within its term.
    #[prost(uint64, tag = "2")]
    pub sequence: u64,
}

impl From<FencingToken> for FencingTokenRecord {
    fn from(token: FencingToken) -> Self {
        FencingTokenRecord {
            term: token.term,
            sequence: token.sequence,
        }
    }
}

impl From<FencingTokenRecord> for FencingToken {
    fn from(token: FencingTokenRecord) -> Self {
        FencingToken {
            term: token.term,
            sequence: token.sequence,
        }
    }
}

/// Where a payment is in its lifecycle, derived from its totals. The numbering matches
/// `quorate.payments.v1.PaymentState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PaymentState {
    /// Never reported for a stored payment.
    Unspecified = 0,
    /// Authorized; nothing captured yet.
    Authorized = 1,
    /// Part of the authorized amount has been captured.
    PartiallyCaptured = 2,
    /// The whole authorized amount has been captured.
    Captured = 3,
    /// The authorization was cancelled.
    Voided = 4,
    /// Part of the captured amount has been refunded.
    PartiallyRefunded = 5,
    /// The whole captured amount has been refunded.
    Refunded = 6,
}

impl PaymentState {
    /// The upper-case name used in messages (`"PARTIALLY_CAPTURED"`), as in the proto enum.
    pub fn name(self) -> &'static str {
        match self {
            PaymentState::Unspecified => "UNSPECIFIED",
            PaymentState::Authorized => "AUTHORIZED",
            PaymentState::PartiallyCaptured => "PARTIALLY_CAPTURED",
            PaymentState::Captured => "CAPTURED",
            PaymentState::Voided => "VOIDED",
            PaymentState::PartiallyRefunded => "PARTIALLY_REFUNDED",
            PaymentState::Refunded => "REFUNDED",
        }
    }
}

/// One payment: its totals and the indexes of its events, in order. Keyed by `payment_id`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PaymentRecord {
    /// The payment's id.
    #[prost(string, tag = "1")]
    pub payment_id: String,
    /// The currency every event of the payment uses.
    #[prost(string, tag = "3")]
    pub currency: String,
    /// The amount the AUTHORIZED event reserved.
    #[prost(int64, tag = "4")]
    pub authorized_minor: i64,
    /// The sum of the CAPTURED events.
    #[prost(int64, tag = "5")]
    pub captured_minor: i64,
    /// The sum of the REFUNDED events.
    #[prost(int64, tag = "6")]
    pub refunded_minor: i64,
    /// Whether a VOIDED event was recorded.
    #[prost(bool, tag = "8")]
    pub voided: bool,
    /// The Raft indexes of the payment's events still in the event log, in order; event `n`
    /// (1-based `payment_seq`) is at position `n - 1 - events_compacted`.
    #[prost(uint64, repeated, tag = "9")]
    pub event_indexes: Vec<Index>,
    /// How many of the payment's first events the event log no longer holds (compacted by
    /// `--event-retention`); their totals stay in the fields above.
    #[prost(uint64, tag = "10")]
    pub events_compacted: u64,
}

impl PaymentRecord {
    /// How many events the payment has had, compacted ones included: the `payment_seq` of
    /// its latest event.
    pub fn event_count(&self) -> u64 {
        self.events_compacted + self.event_indexes.len() as u64
    }

    /// The lifecycle state the totals amount to.
    pub fn state(&self) -> PaymentState {
        if self.voided {
            PaymentState::Voided
        } else if self.refunded_minor > 0 {
            if self.refunded_minor == self.captured_minor {
                PaymentState::Refunded
            } else {
                PaymentState::PartiallyRefunded
            }
        } else if self.captured_minor == 0 {
            PaymentState::Authorized
        } else if self.captured_minor < self.authorized_minor {
            PaymentState::PartiallyCaptured
        } else {
            PaymentState::Captured
        }
    }
}

/// One accepted event, keyed by the index of the entry that recorded it. Same fields and tags
/// as `quorate.payments.v1.PaymentEvent`, so its bytes decode as one.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EventRecord {
    /// The Raft index of the entry that recorded the event.
    #[prost(uint64, tag = "1")]
    pub index: Index,
    /// That entry's fencing token.
    #[prost(message, required, tag = "2")]
    pub token: FencingTokenRecord,
    /// The payment it belongs to.
    #[prost(string, tag = "3")]
    pub payment_id: String,
    /// 1, 2, 3, ... within the payment.
    #[prost(uint64, tag = "4")]
    pub payment_seq: u64,
    /// What happened, an [`EventKind`] as `i32` (use `kind()`).
    #[prost(enumeration = "EventKind", tag = "5")]
    pub kind: i32,
    /// The amount, in the currency's minor unit.
    #[prost(int64, tag = "6")]
    pub amount_minor: i64,
    /// The payment's currency.
    #[prost(string, tag = "7")]
    pub currency: String,
    /// The idempotency key it was submitted with.
    #[prost(string, tag = "8")]
    pub idempotency_key: String,
    /// The submitter's annotations.
    #[prost(btree_map = "string, string", tag = "9")]
    pub metadata: BTreeMap<String, String>,
    /// The writer lease that fenced the submission, if any.
    #[prost(message, optional, tag = "10")]
    pub fence: Option<LeaseFence>,
    /// The machine clock when the event was applied (milliseconds since the Unix epoch).
    #[prost(uint64, tag = "11")]
    pub recorded_at_unix_ms: u64,
}

/// A refusal as remembered under an idempotency key.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RecordedRejection {
    /// Why, a [`RejectReason`] as `i32` (use `reason()`).
    #[prost(enumeration = "RejectReason", tag = "1")]
    pub reason: i32,
    /// The human explanation given the first time.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The first outcome of an idempotency key.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum RecordedOutcome {
    /// The request was accepted: the index of the event it recorded.
    #[prost(uint64, tag = "4")]
    EventIndex(Index),
    /// The request was refused.
    #[prost(message, tag = "5")]
    Rejected(RecordedRejection),
    /// The request was accepted and the event log was compacted past its event since: the
    /// event itself, kept here until the key expires so that a retry still gets it.
    #[prost(message, tag = "6")]
    Event(EventRecord),
}

/// What an idempotency key was first used for and how that ended. Keyed by `key`, and
/// ordered for pruning by `(expires_at_ms, key)`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct IdempotencyRecord {
    /// The idempotency key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The canonical encoding of the request (see `idempotency`): a retry must match it
    /// byte for byte.
    #[prost(bytes = "vec", tag = "2")]
    pub request: Vec<u8>,
    /// The machine time from which the key is forgotten (`clock + window` when recorded).
    #[prost(uint64, tag = "3")]
    pub expires_at_ms: u64,
    /// The original outcome.
    #[prost(oneof = "RecordedOutcome", tags = "4, 5, 6")]
    pub outcome: Option<RecordedOutcome>,
}

/// Where a lease is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LeaseStatus {
    /// Never stored.
    Unspecified = 0,
    /// Granted and live.
    Held = 1,
    /// Given up by its holder: free.
    Released = 2,
    /// Timed out (an `ExpireLease` took effect): free.
    Expired = 3,
}

impl LeaseStatus {
    /// The lower-case word used in messages.
    pub fn describe(self) -> &'static str {
        match self {
            LeaseStatus::Unspecified => "unspecified",
            LeaseStatus::Held => "held",
            LeaseStatus::Released => "released",
            LeaseStatus::Expired => "expired",
        }
    }
}

/// A named writer lease: its latest grant and what became of it. Keyed by `name`. Records of
/// released and expired leases stay, so refusals can say what happened.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseRecord {
    /// The lease's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Who was granted it last.
    #[prost(string, tag = "2")]
    pub holder: String,
    /// The Raft index of the latest grant: a lease's tokens only grow.
    #[prost(uint64, tag = "3")]
    pub token: u64,
    /// Keep-alives applied since the latest grant.
    #[prost(uint64, tag = "4")]
    pub renewals: u64,
    /// How long the lease lives without a keep-alive.
    #[prost(uint64, tag = "5")]
    pub ttl_ms: u64,
    /// Held, released or expired, a [`LeaseStatus`] as `i32` (use `status()`).
    #[prost(enumeration = "LeaseStatus", tag = "6")]
    pub status: i32,
    /// Machine time of the latest grant (informational: expiry is the leader's decision).
    #[prost(uint64, tag = "7")]
    pub acquired_at_ms: u64,
    /// Machine time of the latest grant or keep-alive (informational).
    #[prost(uint64, tag = "8")]
    pub renewed_at_ms: u64,
}

impl LeaseRecord {
    /// Whether the lease is granted and neither released nor expired.
    pub fn is_held(&self) -> bool {
        self.status() == LeaseStatus::Held
    }
}

/// The machine's own bookkeeping: how far it has applied, its clock, and its counters.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MetaRecord {
    /// The highest index applied (rejected entries count: they were consumed).
    #[prost(uint64, tag = "1")]
    pub applied_index: Index,
    /// The token of the last entry that passed the fencing check; `None` before the first.
    #[prost(message, optional, tag = "2")]
    pub last_token: Option<FencingTokenRecord>,
    /// The machine clock, in milliseconds since the Unix epoch: moved only by leaders' stamps,
    /// within bounds (see `clock.rs`).
    #[prost(uint64, tag = "3")]
    pub clock_ms: u64,
    /// Entries refused because their fencing token did not increase.
    #[prost(uint64, tag = "4")]
    pub fencing_rejections: u64,
    /// Submits and keep-alives refused with `STALE_TOKEN`.
    #[prost(uint64, tag = "5")]
    pub stale_token_rejections: u64,
    /// Submits refused with `INVALID_TRANSITION`.
    #[prost(uint64, tag = "6")]
    pub invalid_transitions: u64,
    /// Submits refused with `IDEMPOTENCY_KEY_REUSED`.
    #[prost(uint64, tag = "7")]
    pub key_reuse_rejections: u64,
    /// Submits answered with their original outcome (`replayed = true`).
    #[prost(uint64, tag = "8")]
    pub idempotent_replays: u64,
    /// Commands that could not be decoded or failed validation at apply.
    #[prost(uint64, tag = "9")]
    pub malformed_commands: u64,
    /// Events recorded.
    #[prost(uint64, tag = "10")]
    pub events_recorded: u64,
    /// Expired idempotency keys deleted.
    #[prost(uint64, tag = "11")]
    pub idempotency_keys_pruned: u64,
    /// The leader term of the last stamped command applied (see `clock.rs`).
    #[prost(uint64, tag = "12")]
    pub clock_term: u64,
    /// The clock when that term's first stamp was applied.
    #[prost(uint64, tag = "13")]
    pub clock_anchor_ms: u64,
    /// That first stamp's monotonic reading (`LeaderClock::term_ms`).
    #[prost(uint64, tag = "14")]
    pub clock_anchor_term_ms: u64,
    /// Stamps whose wall clock lay outside what the leader's monotonic clock allowed, by more
    /// than `MAX_WALL_CLOCK_LEAD_MS`: a leader whose wall clock is wrong.
    #[prost(uint64, tag = "15")]
    pub leader_clock_corrections: u64,
    /// How far the event log's compaction has looked (`--event-retention`): no event at or
    /// below this index is held any more. Compaction's cursor: it may lie past the last event
    /// deleted, where there was none to delete; readers go by `last_compacted_event`.
    #[prost(uint64, tag = "16")]
    pub events_compacted_through: Index,
    /// How many events were compacted.
    #[prost(uint64, tag = "17")]
    pub events_compacted: u64,
    /// The event-log hash (`hash_events`) over the compacted events: where the hash of the
    /// rest goes on from, so that `HashEvents` gives the same answer with or without
    /// compaction. Meaningful only when `events_compacted` is not 0.
    #[prost(uint64, tag = "18")]
    pub events_compacted_hash: u64,
    /// The index of the last event compacted (0: none): a read of the events after any index
    /// at or above it misses nothing.
    #[prost(uint64, tag = "19")]
    pub last_compacted_event: Index,
}

impl MetaRecord {
    /// The first index whose event may still be read: every event compacted lies below it.
    pub fn first_event_index(&self) -> Index {
        self.last_compacted_event + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn payment(authorized: i64, captured: i64, refunded: i64, voided: bool) -> PaymentRecord {
        PaymentRecord {
            payment_id: "p".into(),
            currency: "USD".into(),
            authorized_minor: authorized,
            captured_minor: captured,
            refunded_minor: refunded,
            voided,
            event_indexes: vec![1],
            events_compacted: 0,
        }
    }

    #[test]
    fn payment_state_is_derived_from_the_totals() {
        assert_eq!(payment(1000, 0, 0, false).state(), PaymentState::Authorized);
        assert_eq!(
            payment(1000, 400, 0, false).state(),
            PaymentState::PartiallyCaptured
        );
        assert_eq!(
            payment(1000, 1000, 0, false).state(),
            PaymentState::Captured
        );
        assert_eq!(payment(1000, 0, 0, true).state(), PaymentState::Voided);
        assert_eq!(
            payment(1000, 400, 100, false).state(),
            PaymentState::PartiallyRefunded
        );
        assert_eq!(
            payment(1000, 400, 400, false).state(),
            PaymentState::Refunded
        );
    }

    #[test]
    fn every_record_survives_an_encode_decode_round_trip() {
        let mut metadata = BTreeMap::new();
        metadata.insert("k".to_owned(), "v".to_owned());
        let event = EventRecord {
            index: 7,
            token: FencingTokenRecord {
                term: 2,
                sequence: 3,
            },
            payment_id: "p".into(),
            payment_seq: 2,
            kind: EventKind::Captured as i32,
            amount_minor: 50,
            currency: "USD".into(),
            idempotency_key: "k1".into(),
            metadata,
            fence: Some(LeaseFence {
                lease: "w".into(),
                token: 4,
            }),
            recorded_at_unix_ms: 99,
        };
        assert_eq!(
            EventRecord::decode(event.encode_to_vec().as_slice()).unwrap(),
            event
        );
        let pay = payment(1000, 400, 100, false);
        assert_eq!(
            PaymentRecord::decode(pay.encode_to_vec().as_slice()).unwrap(),
            pay
        );
        for outcome in [
            RecordedOutcome::EventIndex(7),
            RecordedOutcome::Rejected(RecordedRejection {
                reason: RejectReason::StaleToken as i32,
                message: "no".into(),
            }),
        ] {
            let record = IdempotencyRecord {
                key: "k1".into(),
                request: vec![1, 2, 3],
                expires_at_ms: 10,
                outcome: Some(outcome),
            };
            assert_eq!(
                IdempotencyRecord::decode(record.encode_to_vec().as_slice()).unwrap(),
                record
            );
        }
        let lease = LeaseRecord {
            name: "w".into(),
            holder: "a".into(),
            token: 4,
            renewals: 2,
            ttl_ms: 5000,
            status: LeaseStatus::Expired as i32,
            acquired_at_ms: 1,
            renewed_at_ms: 2,
        };
        assert_eq!(
            LeaseRecord::decode(lease.encode_to_vec().as_slice()).unwrap(),
            lease
        );
        let meta = MetaRecord {
            applied_index: 9,
            last_token: Some(FencingTokenRecord {
                term: 1,
                sequence: 9,
            }),
            clock_ms: 3,
            fencing_rejections: 1,
            stale_token_rejections: 2,
            invalid_transitions: 3,
            key_reuse_rejections: 4,
            idempotent_replays: 5,
            malformed_commands: 6,
            events_recorded: 7,
            idempotency_keys_pruned: 8,
            clock_term: 2,
            clock_anchor_ms: 1,
            clock_anchor_term_ms: 10,
            leader_clock_corrections: 11,
            events_compacted_through: 12,
            events_compacted: 13,
            events_compacted_hash: 14,
            last_compacted_event: 15,
        };
        assert_eq!(
            MetaRecord::decode(meta.encode_to_vec().as_slice()).unwrap(),
            meta
        );
    }

    #[test]
    fn fencing_tokens_convert_both_ways_and_order_like_the_core() {
        let core = FencingToken {
            term: 3,
            sequence: 8,
        };
        let record = FencingTokenRecord::from(core);
        assert_eq!(FencingToken::from(record), core);
        let later = FencingTokenRecord {
            term: 4,
            sequence: 1,
        };
        assert!(record < later, "term first, then sequence");
    }
}

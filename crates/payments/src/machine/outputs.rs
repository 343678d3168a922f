//! What applying an entry produced, and its wire form.
//!
//! A follower forwards a client's command to the leader and gets the leader's [`Applied`]
//! back as bytes, so every output is encodable. Rejections are outcomes, not errors: they are
//! decided deterministically by the log, and every replica reaches the same one.

use bytes::Bytes;

use super::codec::{encode_variant, DecodeError};
use super::records::{EventRecord, FencingTokenRecord};

/// Why a request was refused. Each maps to the `google.rpc.ErrorInfo` reason of the same name
/// (the payments service's `status::rejected`; the machine runs without the protocol crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RejectReason {
    /// Never produced.
    Unspecified = 0,
    /// The event is not allowed in the payment's current state (`FAILED_PRECONDITION`).
    InvalidTransition = 1,
    /// The writer-lease token is not the lease's current one, or the lease is not live
    /// (`FAILED_PRECONDITION`).
    StaleToken = 2,
    /// The idempotency key was first used for a different request (`ALREADY_EXISTS`).
    IdempotencyKeyReused = 3,
}

/// A submit was accepted (now or, with `replayed`, the first time its key was used).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EventRecorded {
    /// The event, as recorded the first time.
    #[prost(message, required, tag = "1")]
    pub event: EventRecord,
    /// True when this is a retry of an idempotency key: nothing new was written.
    #[prost(bool, tag = "2")]
    pub replayed: bool,
}

/// A submit was refused.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SubmitRejected {
    /// Why, a [`RejectReason`] as `i32` (use `reason()`).
    #[prost(enumeration = "RejectReason", tag = "1")]
    pub reason: i32,
    /// A precise human explanation.
    #[prost(string, tag = "2")]
    pub message: String,
    /// True when this is the original refusal of an earlier request with the same key and
    /// the same content, answered again.
    #[prost(bool, tag = "3")]
    pub replayed: bool,
}

/// The answer to an `AcquireLease`; not being granted is an outcome, not an error.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseAcquired {
    /// Whether the caller now holds the lease.
    #[prost(bool, tag = "1")]
    pub granted: bool,
    /// The lease's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The holder: the caller if granted, otherwise whoever holds it.
    #[prost(string, tag = "3")]
    pub holder: String,
    /// The current token: the caller's new one if granted (the entry's index).
    #[prost(uint64, tag = "4")]
    pub token: u64,
    /// The holder's time to live; the leader's timer counts it down.
    #[prost(uint64, tag = "5")]
    pub ttl_ms: u64,
}

/// A keep-alive was accepted.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseKeptAlive {
    /// The lease's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its holder.
    #[prost(string, tag = "2")]
    pub holder: String,
    /// Its (unchanged) token.
    #[prost(uint64, tag = "3")]
    pub token: u64,
    /// Keep-alives since the grant, this one included.
    #[prost(uint64, tag = "4")]
    pub renewals: u64,
    /// The time to live, counted again from now.
    #[prost(uint64, tag = "5")]
    pub ttl_ms: u64,
}

/// A keep-alive was refused; the reason is always [`RejectReason::StaleToken`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KeepAliveRejected {
    /// Why: expired, released, superseded by a newer token, or held by someone else.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The answer to a `ReleaseLease`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseReleased {
    /// Whether the lease is now released by this holder and token.
    #[prost(bool, tag = "1")]
    pub released: bool,
    /// What happened, in words.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The answer to an `ExpireLease`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseExpired {
    /// Whether the lease expired now; false when a keep-alive, a new grant or a release came
    /// first.
    #[prost(bool, tag = "1")]
    pub expired: bool,
    /// What happened, in words.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An entry was refused because its fencing token did not increase: nothing was applied.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct FencingRejected {
    /// The entry's token.
    #[prost(message, required, tag = "1")]
    pub token: FencingTokenRecord,
    /// The token of the last entry applied, which it did not exceed.
    #[prost(message, required, tag = "2")]
    pub last_applied: FencingTokenRecord,
}

/// A command could not be decoded, or failed validation at apply: nothing was applied.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Malformed {
    /// What was wrong.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// What applying one log entry produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A leader's no-op entry was applied.
    Noop,
    /// A submit recorded an event (or replayed the one it recorded before).
    EventRecorded(EventRecorded),
    /// A submit was refused (or its original refusal was replayed).
    SubmitRejected(SubmitRejected),
    /// The answer to an `AcquireLease`.
    LeaseAcquired(LeaseAcquired),
    /// A keep-alive was accepted.
    LeaseKeptAlive(LeaseKeptAlive),
    /// A keep-alive was refused (`STALE_TOKEN`).
    KeepAliveRejected(KeepAliveRejected),
    /// The answer to a `ReleaseLease`.
    LeaseReleased(LeaseReleased),
    /// The answer to an `ExpireLease`.
    LeaseExpired(LeaseExpired),
    /// The entry's fencing token did not increase.
    FencingRejected(FencingRejected),
    /// The command was not understood.
    Malformed(Malformed),
}

/// Field tags of the output envelope.
mod tag {
    pub const NOOP: u8 = 1;
    pub const EVENT_RECORDED: u8 = 2;
    pub const SUBMIT_REJECTED: u8 = 3;
    pub const LEASE_ACQUIRED: u8 = 4;
    pub const LEASE_KEPT_ALIVE: u8 = 5;
    pub const KEEP_ALIVE_REJECTED: u8 = 6;
    pub const LEASE_RELEASED: u8 = 7;
    pub const LEASE_EXPIRED: u8 = 8;
    pub const FENCING_REJECTED: u8 = 9;
    pub const MALFORMED: u8 = 10;
}

impl Applied {
    /// The bytes a leader sends back to the follower that forwarded the command.
    pub fn encode(&self) -> Bytes {
        match self {
            Applied::Noop => encode_variant(tag::NOOP, &NoopApplied {}),
            Applied::EventRecorded(o) => encode_variant(tag::EVENT_RECORDED, o),
            Applied::SubmitRejected(o) => encode_variant(tag::SUBMIT_REJECTED, o),
            Applied::LeaseAcquired(o) => encode_variant(tag::LEASE_ACQUIRED, o),
            Applied::LeaseKeptAlive(o) => encode_variant(tag::LEASE_KEPT_ALIVE, o),
            Applied::KeepAliveRejected(o) => encode_variant(tag::KEEP_ALIVE_REJECTED, o),
            Applied::LeaseReleased(o) => encode_variant(tag::LEASE_RELEASED, o),
            Applied::LeaseExpired(o) => encode_variant(tag::LEASE_EXPIRED, o),
            Applied::FencingRejected(o) => encode_variant(tag::FENCING_REJECTED, o),
            Applied::Malformed(o) => encode_variant(tag::MALFORMED, o),
        }
    }

    /// Parses [`Applied::encode`]'s output. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Applied, DecodeError> {
        const WHAT: &str = "applied output";
        let envelope = <AppliedEnvelope as prost::Message>::decode(bytes)
            .map_err(|source| DecodeError::Protobuf { what: WHAT, source })?;
        Ok(match envelope.applied {
            Some(AppliedVariant::Noop(NoopApplied {})) => Applied::Noop,
            Some(AppliedVariant::EventRecorded(o)) => Applied::EventRecorded(o),
            Some(AppliedVariant::SubmitRejected(o)) => Applied::SubmitRejected(o),
            Some(AppliedVariant::LeaseAcquired(o)) => Applied::LeaseAcquired(o),
            Some(AppliedVariant::LeaseKeptAlive(o)) => Applied::LeaseKeptAlive(o),
            Some(AppliedVariant::KeepAliveRejected(o)) => Applied::KeepAliveRejected(o),
            Some(AppliedVariant::LeaseReleased(o)) => Applied::LeaseReleased(o),
            Some(AppliedVariant::LeaseExpired(o)) => Applied::LeaseExpired(o),
            Some(AppliedVariant::FencingRejected(o)) => Applied::FencingRejected(o),
            Some(AppliedVariant::Malformed(o)) => Applied::Malformed(o),
            None => return Err(DecodeError::UnknownVariant { what: WHAT }),
        })
    }
}

/// The empty payload of [`Applied::Noop`] on the wire.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
struct NoopApplied {}

/// The wire form of [`Applied`], used for decoding.
#[derive(Clone, PartialEq, prost::Message)]
struct AppliedEnvelope {
    #[prost(oneof = "AppliedVariant", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    applied: Option<AppliedVariant>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum AppliedVariant {
    #[prost(message, tag = "1")]
    Noop(NoopApplied),
    #[prost(message, tag = "2")]
    EventRecorded(EventRecorded),
    #[prost(message, tag = "3")]
    SubmitRejected(SubmitRejected),
    #[prost(message, tag = "4")]
    LeaseAcquired(LeaseAcquired),
    #[prost(message, tag = "5")]
    LeaseKeptAlive(LeaseKeptAlive),
    #[prost(message, tag = "6")]
    KeepAliveRejected(KeepAliveRejected),
    #[prost(message, tag = "7")]
    LeaseReleased(LeaseReleased),
    #[prost(message, tag = "8")]
    LeaseExpired(LeaseExpired),
    #[prost(message, tag = "9")]
    FencingRejected(FencingRejected),
    #[prost(message, tag = "10")]
    Malformed(Malformed),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::machine::commands::{EventKind, LeaseFence};
    use prost::Message;

    fn every_output() -> Vec<Applied> {
        let mut metadata = BTreeMap::new();
        metadata.insert("k".to_owned(), "v".to_owned());
        vec![
            Applied::Noop,
            Applied::EventRecorded(EventRecorded {
                event: EventRecord {
                    index: 3,
                    token: FencingTokenRecord {
                        term: 1,
                        sequence: 3,
                    },
                    payment_id: "p".into(),
                    payment_seq: 1,
                    kind: EventKind::Authorized as i32,
                    amount_minor: 10,
                    currency: "USD".into(),
                    idempotency_key: "k".into(),
                    metadata,
                    fence: Some(LeaseFence {
                        lease: "w".into(),
                        token: 2,
                    }),
                    recorded_at_unix_ms: 5,
                },
                replayed: true,
            }),
            Applied::SubmitRejected(SubmitRejected {
                reason: RejectReason::InvalidTransition as i32,
                message: "no".into(),
                replayed: true,
            }),
            Applied::LeaseAcquired(LeaseAcquired {
                granted: false,
                name: "w".into(),
                holder: "b".into(),
                token: 4,
                ttl_ms: 2000,
            }),
            Applied::LeaseKeptAlive(LeaseKeptAlive {
                name: "w".into(),
                holder: "b".into(),
                token: 4,
                renewals: 1,
                ttl_ms: 2000,
            }),
            Applied::KeepAliveRejected(KeepAliveRejected {
                message: "expired".into(),
            }),
            Applied::LeaseReleased(LeaseReleased {
                released: true,
                message: "ok".into(),
            }),
            Applied::LeaseExpired(LeaseExpired {
                expired: false,
                message: "renewed".into(),
            }),
            Applied::FencingRejected(FencingRejected {
                token: FencingTokenRecord {
                    term: 1,
                    sequence: 1,
                },
                last_applied: FencingTokenRecord {
                    term: 2,
                    sequence: 1,
                },
            }),
            Applied::Malformed(Malformed {
                message: "garbage".into(),
            }),
        ]
    }

    fn to_variant(applied: Applied) -> AppliedVariant {
        match applied {
            Applied::Noop => AppliedVariant::Noop(NoopApplied {}),
            Applied::EventRecorded(o) => AppliedVariant::EventRecorded(o),
            Applied::SubmitRejected(o) => AppliedVariant::SubmitRejected(o),
            Applied::LeaseAcquired(o) => AppliedVariant::LeaseAcquired(o),
            Applied::LeaseKeptAlive(o) => AppliedVariant::LeaseKeptAlive(o),
            Applied::KeepAliveRejected(o) => AppliedVariant::KeepAliveRejected(o),
            Applied::LeaseReleased(o) => AppliedVariant::LeaseReleased(o),
            Applied::LeaseExpired(o) => AppliedVariant::LeaseExpired(o),
            Applied::FencingRejected(o) => AppliedVariant::FencingRejected(o),
            Applied::Malformed(o) => AppliedVariant::Malformed(o),
        }
    }

    #[test]
    fn every_output_survives_an_encode_decode_round_trip() {
        for applied in every_output() {
            assert_eq!(Applied::decode(&applied.encode()).unwrap(), applied);
        }
    }

    #[test]
    fn the_encoding_is_the_envelope_protoc_would_produce() {
        for applied in every_output() {
            let envelope = AppliedEnvelope {
                applied: Some(to_variant(applied.clone())),
            };
            assert_eq!(applied.encode().to_vec(), envelope.encode_to_vec());
        }
    }

    #[test]
    fn undecodable_output_bytes_are_an_error_not_a_panic() {
        assert!(matches!(
            Applied::decode(&[0x12, 0x05, 0x01]).unwrap_err(),
            DecodeError::Protobuf { .. }
        ));
        assert_eq!(
            Applied::decode(&[]).unwrap_err(),
            DecodeError::UnknownVariant {
                what: "applied output"
            }
        );
    }
}

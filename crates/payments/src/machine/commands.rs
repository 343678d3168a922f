//! The commands the leader proposes and every replica applies, and their wire form.
//!
//! A command is built by whichever node a client reached, and carries no time of its own: the
//! leader, and only the leader, stamps it with a [`LeaderClock`] when it proposes it
//! ([`stamp`]). Applying reads no other clock; how far a stamp may move the machine clock is
//! decided in `clock.rs`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::codec::{encode_variant, DecodeError};

/// What happened to a payment. The numbering matches `quorate.payments.v1.EventKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EventKind {
    /// Not set: refused by validation.
    Unspecified = 0,
    /// Funds were reserved: creates the payment.
    Authorized = 1,
    /// Some or all of the authorized funds were taken.
    Captured = 2,
    /// The authorization was cancelled before anything was captured.
    Voided = 3,
    /// Captured funds were given back.
    Refunded = 4,
}

impl EventKind {
    /// The upper-case name used in messages (`"CAPTURED"`), as in the proto enum.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Unspecified => "UNSPECIFIED",
            EventKind::Authorized => "AUTHORIZED",
            EventKind::Captured => "CAPTURED",
            EventKind::Voided => "VOIDED",
            EventKind::Refunded => "REFUNDED",
        }
    }
}

/// A writer-lease fence on a submission: the submission is refused with `STALE_TOKEN` unless
/// `token` is the current token of the live lease `lease`. Same fields and tags as
/// `quorate.payments.v1.LeaseFence`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct LeaseFence {
    /// The lease's name.
    #[prost(string, tag = "1")]
    pub lease: String,
    /// The token the submitter was granted (the Raft index of its grant).
    #[prost(uint64, tag = "2")]
    pub token: u64,
}

/// Appends one event to a payment (`PaymentEvents.Submit`).
///
/// Fields 1 to 7 have the names and tags of `quorate.payments.v1.SubmitRequest`; the leader
/// adds `idempotency_window_ms` so that every replica decides the same way.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Submit {
    /// The payment the event belongs to.
    #[prost(string, tag = "1")]
    pub payment_id: String,
    /// The client's key for this logical request; retries reuse it. Keys are global.
    #[prost(string, tag = "2")]
    pub idempotency_key: String,
    /// What happened, an [`EventKind`] as `i32` (use `kind()` / `set_kind()`).
    #[prost(enumeration = "EventKind", tag = "3")]
    pub kind: i32,
    /// The amount in the currency's minor unit (cents); always positive.
    #[prost(int64, tag = "4")]
    pub amount_minor: i64,
    /// ISO 4217 code, three upper-case letters; one currency per payment.
    #[prost(string, tag = "5")]
    pub currency: String,
    /// Free-form annotations, kept with the event.
    #[prost(btree_map = "string, string", tag = "6")]
    pub metadata: BTreeMap<String, String>,
    /// The writer lease the submitter claims to hold, if any.
    #[prost(message, optional, tag = "7")]
    pub fence: Option<LeaseFence>,
    // Tag 8 carried the receiving node's wall clock in earlier versions: never reuse it.
    /// How long the idempotency key is remembered after this command, chosen by the leader
    /// and carried here so that every replica expires it at the same machine time.
    #[prost(uint64, tag = "9")]
    pub idempotency_window_ms: u64,
    /// How many indexes of event history to keep (0: all): applying this command also
    /// compacts the events more than this many indexes behind it, a few at a time. The
    /// `--event-retention` of the node that took the request, carried here so that every
    /// replica compacts the same events.
    #[prost(uint64, tag = "10")]
    pub event_retention: u64,
}

/// Takes (or, by its holder, re-takes with a fresh token) a named writer lease.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AcquireLease {
    /// The lease's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Who asks for it.
    #[prost(string, tag = "2")]
    pub holder: String,
    /// How long the lease lives without a keep-alive; the leader's timer enforces it.
    #[prost(uint64, tag = "3")]
    pub ttl_ms: u64,
    // Tag 4 carried the receiving node's wall clock in earlier versions: never reuse it.
}

/// Extends a lease its holder still holds with that token.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KeepAliveLease {
    /// The lease's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Who claims to hold it.
    #[prost(string, tag = "2")]
    pub holder: String,
    /// The token the holder was granted.
    #[prost(uint64, tag = "3")]
    pub token: u64,
    // Tag 4 carried the receiving node's wall clock in earlier versions: never reuse it.
}

/// Gives a lease up.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReleaseLease {
    /// The lease's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Who claims to hold it.
    #[prost(string, tag = "2")]
    pub holder: String,
    /// The token the holder was granted.
    #[prost(uint64, tag = "3")]
    pub token: u64,
    // Tag 4 carried the receiving node's wall clock in earlier versions: never reuse it.
}

/// Ends a lease whose time ran out. The leader proposes it when its timer for the lease
/// fires; it takes effect only if the lease still has this token and this renewal count, so
/// a keep-alive applied in between cancels it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExpireLease {
    /// The lease's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The token the timer was armed for.
    #[prost(uint64, tag = "2")]
    pub token: u64,
    /// The renewal count the timer was armed for.
    #[prost(uint64, tag = "3")]
    pub renewals: u64,
    // Tag 4 carried the receiving node's wall clock in earlier versions: never reuse it.
}

/// A command of the payments state machine: what a log entry of kind `Command` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// See [`Submit`].
    Submit(Submit),
    /// See [`AcquireLease`].
    AcquireLease(AcquireLease),
    /// See [`KeepAliveLease`].
    KeepAliveLease(KeepAliveLease),
    /// See [`ReleaseLease`].
    ReleaseLease(ReleaseLease),
    /// See [`ExpireLease`].
    ExpireLease(ExpireLease),
}

/// Field tags of the command envelope.
mod tag {
    pub const SUBMIT: u8 = 1;
    pub const ACQUIRE_LEASE: u8 = 2;
    pub const KEEP_ALIVE_LEASE: u8 = 3;
    pub const RELEASE_LEASE: u8 = 4;
    pub const EXPIRE_LEASE: u8 = 5;
}

impl Command {
    /// The command's bytes, without a clock: what a node that received the request proposes
    /// or forwards to the leader. The leader stamps them ([`stamp`]) before they enter the log.
    pub fn encode(&self) -> Bytes {
        match self {
            Command::Submit(c) => encode_variant(tag::SUBMIT, c),
            Command::AcquireLease(c) => encode_variant(tag::ACQUIRE_LEASE, c),
            Command::KeepAliveLease(c) => encode_variant(tag::KEEP_ALIVE_LEASE, c),
            Command::ReleaseLease(c) => encode_variant(tag::RELEASE_LEASE, c),
            Command::ExpireLease(c) => encode_variant(tag::EXPIRE_LEASE, c),
        }
    }

    /// Parses [`Command::encode`]'s (or [`stamp`]'s) output, ignoring any clock. Never
    /// panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        decode_stamped(bytes).map(|(command, _)| command)
    }
}

/// The time a leader gives a command when it proposes it: the only clock the machine reads.
///
/// `wall_ms` is the leader's wall clock; `term_ms` its monotonic clock, counted from some
/// instant of its term (only differences between stamps of one term mean anything, and one
/// term has one leader, one process). The machine trusts the monotonic part and lets the
/// wall clock move its clock only within a bound (see `clock.rs`).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct LeaderClock {
    /// The leader's wall clock when it proposed, in milliseconds since the Unix epoch.
    #[prost(uint64, tag = "1")]
    pub wall_ms: u64,
    /// The leader's monotonic clock when it proposed, in milliseconds.
    #[prost(uint64, tag = "2")]
    pub term_ms: u64,
}

/// Stamps command bytes with the leader's clock, replacing any stamp they carried: the leader
/// calls this on every command it proposes, its own and forwarded ones alike, so no other
/// node's clock can reach the log. Refuses bytes that are not a command.
pub fn stamp(command: &[u8], clock: LeaderClock) -> Result<Bytes, DecodeError> {
    let (variant, _) = decode_envelope(command)?;
    let envelope = CommandEnvelope {
        command: Some(variant),
        leader_clock: Some(clock),
    };
    Ok(Bytes::from(prost::Message::encode_to_vec(&envelope)))
}

/// Parses a log entry's command and the leader's stamp (`None`: the command was never
/// stamped, and moves no clock). Never panics, whatever the bytes.
pub fn decode_stamped(bytes: &[u8]) -> Result<(Command, Option<LeaderClock>), DecodeError> {
    let (variant, clock) = decode_envelope(bytes)?;
    let command = match variant {
        CommandVariant::Submit(c) => Command::Submit(c),
        CommandVariant::AcquireLease(c) => Command::AcquireLease(c),
        CommandVariant::KeepAliveLease(c) => Command::KeepAliveLease(c),
        CommandVariant::ReleaseLease(c) => Command::ReleaseLease(c),
        CommandVariant::ExpireLease(c) => Command::ExpireLease(c),
    };
    Ok((command, clock))
}

/// The envelope's command (refused when it carries none this version knows) and stamp.
fn decode_envelope(bytes: &[u8]) -> Result<(CommandVariant, Option<LeaderClock>), DecodeError> {
    const WHAT: &str = "command";
    let envelope = <CommandEnvelope as prost::Message>::decode(bytes)
        .map_err(|source| DecodeError::Protobuf { what: WHAT, source })?;
    let variant = envelope
        .command
        .ok_or(DecodeError::UnknownVariant { what: WHAT })?;
    Ok((variant, envelope.leader_clock))
}

/// The wire form of [`Command`], used for decoding and stamping.
#[derive(Clone, PartialEq, prost::Message)]
struct CommandEnvelope {
    #[prost(oneof = "CommandVariant", tags = "1, 2, 3, 4, 5")]
    command: Option<CommandVariant>,
    /// Set by the leader when it proposes ([`stamp`]).
    #[prost(message, optional, tag = "15")]
    leader_clock: Option<LeaderClock>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum CommandVariant {
    #[prost(message, tag = "1")]
    Submit(Submit),
    #[prost(message, tag = "2")]
    AcquireLease(AcquireLease),
    #[prost(message, tag = "3")]
    KeepAliveLease(KeepAliveLease),
    #[prost(message, tag = "4")]
    ReleaseLease(ReleaseLease),
    #[prost(message, tag = "5")]
    ExpireLease(ExpireLease),
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn every_command() -> Vec<Command> {
        let mut metadata = BTreeMap::new();
        metadata.insert("order".to_owned(), "o-17".to_owned());
        metadata.insert("channel".to_owned(), "web".to_owned());
        vec![
            Command::Submit(Submit {
                payment_id: "pay-1".into(),
                idempotency_key: "key-1".into(),
                kind: EventKind::Captured as i32,
                amount_minor: 1234,
                currency: "EUR".into(),
                metadata,
                fence: Some(LeaseFence {
                    lease: "writer".into(),
                    token: 42,
                }),
                idempotency_window_ms: 86_400_000,
                event_retention: 0,
            }),
            Command::AcquireLease(AcquireLease {
                name: "writer".into(),
                holder: "worker-a".into(),
                ttl_ms: 10_000,
            }),
            Command::KeepAliveLease(KeepAliveLease {
                name: "writer".into(),
                holder: "worker-a".into(),
                token: 9,
            }),
            Command::ReleaseLease(ReleaseLease {
                name: "writer".into(),
                holder: "worker-a".into(),
                token: 9,
            }),
            Command::ExpireLease(ExpireLease {
                name: "writer".into(),
                token: 9,
                renewals: 3,
            }),
        ]
    }

    #[test]
    fn every_command_survives_an_encode_decode_round_trip() {
        for command in every_command() {
            let bytes = command.encode();
            assert_eq!(Command::decode(&bytes).unwrap(), command);
        }
    }

    #[test]
    fn the_encoding_is_the_envelope_protoc_would_produce() {
        for command in every_command() {
            let variant = match command.clone() {
                Command::Submit(c) => CommandVariant::Submit(c),
                Command::AcquireLease(c) => CommandVariant::AcquireLease(c),
                Command::KeepAliveLease(c) => CommandVariant::KeepAliveLease(c),
                Command::ReleaseLease(c) => CommandVariant::ReleaseLease(c),
                Command::ExpireLease(c) => CommandVariant::ExpireLease(c),
            };
            let envelope = CommandEnvelope {
                command: Some(variant),
                leader_clock: None,
            };
            assert_eq!(command.encode().to_vec(), envelope.encode_to_vec());
        }
    }

    #[test]
    fn a_stamp_is_added_and_replaced_and_never_changes_the_command() {
        let first = LeaderClock {
            wall_ms: 1_700_000_000_000,
            term_ms: 5,
        };
        let second = LeaderClock {
            wall_ms: 17,
            term_ms: 9,
        };
        for command in every_command() {
            let unstamped = command.encode();
            assert_eq!(decode_stamped(&unstamped).unwrap(), (command.clone(), None));
            let stamped = stamp(&unstamped, first).unwrap();
            assert_eq!(
                decode_stamped(&stamped).unwrap(),
                (command.clone(), Some(first))
            );
            // A forwarded command that already carries a stamp gets the leader's instead.
            let restamped = stamp(&stamped, second).unwrap();
            assert_eq!(decode_stamped(&restamped).unwrap(), (command, Some(second)));
        }
    }

    #[test]
    fn stamping_refuses_bytes_that_are_not_a_command() {
        let clock = LeaderClock::default();
        assert!(matches!(
            stamp(&[0xff, 0xff, 0xff], clock),
            Err(DecodeError::Protobuf { .. })
        ));
        assert_eq!(
            stamp(&[], clock).unwrap_err(),
            DecodeError::UnknownVariant { what: "command" }
        );
    }

    #[test]
    fn garbage_bytes_are_a_decode_error_not_a_panic() {
        let err = Command::decode(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Protobuf {
                what: "command",
                ..
            }
        ));
    }

    #[test]
    fn an_empty_envelope_is_an_unknown_variant() {
        assert_eq!(
            Command::decode(&[]).unwrap_err(),
            DecodeError::UnknownVariant { what: "command" }
        );
        // Field 9 (a variant from some future version) is skipped as unknown.
        assert_eq!(
            Command::decode(&[(9 << 3) | 2, 0]).unwrap_err(),
            DecodeError::UnknownVariant { what: "command" }
        );
    }

    #[test]
    fn event_kind_names_match_the_proto_enum() {
        assert_eq!(EventKind::Authorized.name(), "AUTHORIZED");
        assert_eq!(EventKind::Captured.name(), "CAPTURED");
        assert_eq!(EventKind::Voided.name(), "VOIDED");
        assert_eq!(EventKind::Refunded.name(), "REFUNDED");
        assert_eq!(EventKind::try_from(3), Ok(EventKind::Voided));
    }
}

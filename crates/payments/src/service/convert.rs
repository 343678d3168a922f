//! Between the public contract (`quorate.payments.v1`) and the machine's types.

use quorate_proto::payments as pb;

use crate::machine::{self, EventRecord, PaymentRecord, PaymentState};

/// The machine's submit command for a request (the idempotency window and event retention
/// filled in by the caller; the time is the leader's stamp, added when it proposes).
pub fn submit_command(
    request: pb::SubmitRequest,
    window_ms: u64,
    event_retention: u64,
) -> machine::Submit {
    machine::Submit {
        payment_id: request.payment_id,
        idempotency_key: request.idempotency_key,
        // The two enums share their numbering (payments.proto's EventKind).
        kind: request.kind,
        amount_minor: request.amount_minor,
        currency: request.currency,
        metadata: request.metadata.into_iter().collect(),
        fence: request.fence.map(|f| machine::LeaseFence {
            lease: f.lease,
            token: f.token,
        }),
        idempotency_window_ms: window_ms,
        event_retention,
    }
}

/// An event as clients see it.
pub fn event_to_proto(e: EventRecord) -> pb::PaymentEvent {
    pb::PaymentEvent {
        index: e.index,
        token: Some(pb::FencingToken {
            term: e.token.term,
            sequence: e.token.sequence,
        }),
        payment_id: e.payment_id,
        payment_seq: e.payment_seq,
        kind: e.kind,
        amount_minor: e.amount_minor,
        currency: e.currency,
        idempotency_key: e.idempotency_key,
        metadata: e.metadata.into_iter().collect(),
        fence: e.fence.map(|f| pb::LeaseFence {
            lease: f.lease,
            token: f.token,
        }),
        recorded_at_unix_ms: e.recorded_at_unix_ms as i64,
    }
}

fn state_to_proto(state: PaymentState) -> pb::PaymentState {
    match state {
        PaymentState::Authorized => pb::PaymentState::Authorized,
        PaymentState::PartiallyCaptured => pb::PaymentState::PartiallyCaptured,
        PaymentState::Captured => pb::PaymentState::Captured,
        PaymentState::Voided => pb::PaymentState::Voided,
        PaymentState::PartiallyRefunded => pb::PaymentState::PartiallyRefunded,
        PaymentState::Refunded => pb::PaymentState::Refunded,
        PaymentState::Unspecified => pb::PaymentState::Unspecified,
    }
}

/// A payment with its events as clients see it.
pub fn payment_to_proto(payment: PaymentRecord, events: Vec<EventRecord>) -> pb::Payment {
    pb::Payment {
        state: state_to_proto(payment.state()) as i32,
        payment_id: payment.payment_id,
        currency: payment.currency,
        authorized_minor: payment.authorized_minor,
        captured_minor: payment.captured_minor,
        refunded_minor: payment.refunded_minor,
        events: events.into_iter().map(event_to_proto).collect(),
        events_compacted: payment.events_compacted,
    }
}

//! Rendering results as text or JSON.

use quorate_proto::payments as pb;
use serde_json::{json, Value};

/// The event kind's short name (`authorized`, ...).
pub fn kind_name(kind: i32) -> &'static str {
    match pb::EventKind::try_from(kind) {
        Ok(pb::EventKind::Authorized) => "authorized",
        Ok(pb::EventKind::Captured) => "captured",
        Ok(pb::EventKind::Voided) => "voided",
        Ok(pb::EventKind::Refunded) => "refunded",
        _ => "unspecified",
    }
}

/// The payment state's short name.
pub fn state_name(state: i32) -> &'static str {
    match pb::PaymentState::try_from(state) {
        Ok(pb::PaymentState::Authorized) => "authorized",
        Ok(pb::PaymentState::PartiallyCaptured) => "partially-captured",
        Ok(pb::PaymentState::Captured) => "captured",
        Ok(pb::PaymentState::Voided) => "voided",
        Ok(pb::PaymentState::PartiallyRefunded) => "partially-refunded",
        Ok(pb::PaymentState::Refunded) => "refunded",
        _ => "unspecified",
    }
}

/// One event as JSON.
pub fn event_json(e: &pb::PaymentEvent) -> Value {
    let token = e.token.unwrap_or_default();
    json!({
        "index": e.index,
        "token": { "term": token.term, "sequence": token.sequence },
        "payment_id": e.payment_id,
        "payment_seq": e.payment_seq,
        "kind": kind_name(e.kind),
        "amount_minor": e.amount_minor,
        "currency": e.currency,
        "idempotency_key": e.idempotency_key,
        "metadata": e.metadata,
        "fence": e.fence.as_ref().map(|f| json!({"lease": f.lease, "token": f.token})),
        "recorded_at_unix_ms": e.recorded_at_unix_ms,
    })
}

/// One event as a line of text.
pub fn event_line(e: &pb::PaymentEvent) -> String {
    let token = e.token.unwrap_or_default();
    format!(
        "index={} token={}.{} payment={} seq={} {} {} {}{}",
        e.index,
        token.term,
        token.sequence,
        e.payment_id,
        e.payment_seq,
        kind_name(e.kind),
        e.amount_minor,
        e.currency,
        e.fence
            .as_ref()
            .map(|f| format!(" fence={}@{}", f.lease, f.token))
            .unwrap_or_default()
    )
}

/// A payment as JSON.
pub fn payment_json(p: &pb::Payment) -> Value {
    json!({
        "payment_id": p.payment_id,
        "state": state_name(p.state),
        "currency": p.currency,
        "authorized_minor": p.authorized_minor,
        "captured_minor": p.captured_minor,
        "refunded_minor": p.refunded_minor,
        "events": p.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

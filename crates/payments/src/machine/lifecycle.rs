//! The payment lifecycle: which event may follow which, and what it does to the totals.
//!
//! - AUTHORIZED creates the payment; a second one is refused.
//! - CAPTURED may be partial (several captures); the captured total never exceeds the
//!   authorized amount; no capture after a void. (A refund does not end capturing: it returns
//!   money already captured, it does not release the authorization.)
//! - VOIDED only while nothing is captured; it releases the whole authorization, so its amount
//!   may not exceed the authorized amount.
//! - REFUNDED never more than captured minus refunded.
//! - Every event of a payment uses the payment's currency.
//!
//! Amounts are validated positive before this runs, and every comparison is a subtraction
//! of smaller from larger totals, so no arithmetic here can overflow.

use quorate_raft_core::Index;

use super::commands::EventKind;
use super::records::PaymentRecord;

/// The payment as it will be once an event of `kind` for `amount` in `currency`, recorded at
/// `index`, is applied, or a precise explanation of why the event is not allowed.
///
/// Takes the payment by value so that an accepted event updates it without copying; on a
/// refusal the caller has written nothing and simply drops it.
pub(crate) fn transition(
    payment: Option<PaymentRecord>,
    payment_id: &str,
    kind: EventKind,
    amount: i64,
    currency: &str,
    index: Index,
) -> Result<PaymentRecord, String> {
    let Some(mut payment) = payment else {
        if kind != EventKind::Authorized {
            return Err(format!(
                "payment {payment_id:?} does not exist: it must be AUTHORIZED before it can be {}",
                kind.name()
            ));
        }
        return Ok(PaymentRecord {
            payment_id: payment_id.to_owned(),
            currency: currency.to_owned(),
            authorized_minor: amount,
            captured_minor: 0,
            refunded_minor: 0,
            voided: false,
            event_indexes: vec![index],
            events_compacted: 0,
        });
    };
    if kind == EventKind::Authorized {
        return Err(format!(
            "payment {payment_id:?} is already authorized (state {}, authorized {} {})",
            payment.state().name(),
            payment.authorized_minor,
            payment.currency
        ));
    }
    if currency != payment.currency {
        return Err(format!(
            "currency {currency} does not match payment {payment_id:?}'s currency {}",
            payment.currency
        ));
    }
    match kind {
        EventKind::Captured => {
            if payment.voided {
                return Err(format!(
                    "payment {payment_id:?} is voided: nothing can be captured"
                ));
            }
            let capturable = payment.authorized_minor - payment.captured_minor;
            if amount > capturable {
                return Err(format!(
                    "capture of {amount} exceeds the {capturable} still capturable (authorized {}, captured {})",
                    payment.authorized_minor, payment.captured_minor
                ));
            }
            payment.captured_minor += amount;
        }
        EventKind::Voided => {
            if payment.voided {
                return Err(format!("payment {payment_id:?} is already voided"));
            }
            if payment.captured_minor > 0 {
                return Err(format!(
                    "payment {payment_id:?} cannot be voided: {} already captured (refund it instead)",
                    payment.captured_minor
                ));
            }
            if amount > payment.authorized_minor {
                return Err(format!(
                    "void of {amount} exceeds the authorized amount {}",
                    payment.authorized_minor
                ));
            }
            payment.voided = true;
        }
        EventKind::Refunded => {
            if payment.voided {
                return Err(format!(
                    "payment {payment_id:?} is voided: there is nothing to refund"
                ));
            }
            let refundable = payment.captured_minor - payment.refunded_minor;
            if amount > refundable {
                return Err(format!(
                    "refund of {amount} exceeds the {refundable} still refundable (captured {}, refunded {})",
                    payment.captured_minor, payment.refunded_minor
                ));
            }
            payment.refunded_minor += amount;
        }
        EventKind::Authorized | EventKind::Unspecified => {
            return Err(format!("event kind {} is not a transition", kind.name()));
        }
    }
    payment.event_indexes.push(index);
    Ok(payment)
}

#[cfg(test)]
mod tests {
    use crate::machine::outputs::RejectReason;
    use crate::machine::records::{FencingTokenRecord, PaymentState};
    use crate::machine::store::Store;
    use crate::machine::testing::*;
    use crate::machine::EventKind;

    /// Applies `command`, expects INVALID_TRANSITION with `message`, and checks that only the
    /// idempotency record and the counters changed.
    fn expect_invalid(h: &mut Harness, command: crate::machine::Command, message: &str) {
        let before = h.store.clone();
        let key = match &command {
            crate::machine::Command::Submit(s) => s.idempotency_key.clone(),
            _ => unreachable!(),
        };
        let (reason, got, replayed) = expect_rejection(h.run(command));
        assert_eq!(reason, RejectReason::InvalidTransition);
        assert_eq!(got, message);
        assert!(!replayed);
        assert!(before.idempotency(&key).unwrap().is_none());
        assert!(
            h.store.idempotency(&key).unwrap().is_some(),
            "the refusal is remembered"
        );
        let mut after = h.store.without_meta();
        after.delete_idempotency(&crate::machine::IdempotencyExpiry {
            expires_at_ms: h.store.idempotency(&key).unwrap().unwrap().expires_at_ms,
            key,
        });
        assert_eq!(after, before.without_meta(), "nothing else was written");
        assert_eq!(
            h.meta().invalid_transitions,
            before
                .meta()
                .unwrap()
                .unwrap_or_default()
                .invalid_transitions
                + 1
        );
    }

    #[test]
    fn authorizing_creates_the_payment_and_its_first_event() {
        let mut h = Harness::new();
        let event = h.accept(authorize("p1", "k1", 1000));
        assert_eq!(event.index, 1);
        assert_eq!(
            event.token,
            FencingTokenRecord {
                term: 1,
                sequence: 1
            }
        );
        assert_eq!(event.payment_id, "p1");
        assert_eq!(event.payment_seq, 1);
        assert_eq!(event.kind(), EventKind::Authorized);
        assert_eq!(event.amount_minor, 1000);
        assert_eq!(event.currency, "USD");
        assert_eq!(event.idempotency_key, "k1");
        assert_eq!(event.recorded_at_unix_ms, START_MS);
        let payment = h.payment("p1").unwrap();
        assert_eq!(payment.state(), PaymentState::Authorized);
        assert_eq!(payment.authorized_minor, 1000);
        assert_eq!(payment.event_indexes, vec![1]);
        assert_eq!(h.store.event(1).unwrap(), Some(event));
        assert_eq!(h.meta().events_recorded, 1);
    }

    #[test]
    fn a_second_authorization_is_an_invalid_transition() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        expect_invalid(
            &mut h,
            authorize("p1", "k2", 500),
            "payment \"p1\" is already authorized (state AUTHORIZED, authorized 1000 USD)",
        );
    }

    #[test]
    fn events_for_an_unknown_payment_are_invalid_transitions() {
        let mut h = Harness::new();
        expect_invalid(
            &mut h,
            capture("ghost", "k1", 10),
            "payment \"ghost\" does not exist: it must be AUTHORIZED before it can be CAPTURED",
        );
        expect_invalid(
            &mut h,
            void("ghost", "k2", 10),
            "payment \"ghost\" does not exist: it must be AUTHORIZED before it can be VOIDED",
        );
        expect_invalid(
            &mut h,
            refund("ghost", "k3", 10),
            "payment \"ghost\" does not exist: it must be AUTHORIZED before it can be REFUNDED",
        );
        assert_eq!(h.payment("ghost"), None);
    }

    #[test]
    fn partial_captures_add_up_to_the_authorized_amount() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        let first = h.accept(capture("p1", "k2", 300));
        assert_eq!(first.payment_seq, 2);
        assert_eq!(
            h.payment("p1").unwrap().state(),
            PaymentState::PartiallyCaptured
        );
        let second = h.accept(capture("p1", "k3", 700));
        assert_eq!(second.payment_seq, 3);
        let payment = h.payment("p1").unwrap();
        assert_eq!(payment.state(), PaymentState::Captured);
        assert_eq!(payment.captured_minor, 1000);
        assert_eq!(payment.event_indexes, vec![1, 2, 3]);
    }

    #[test]
    fn a_capture_above_what_remains_capturable_is_refused_with_the_amounts() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(capture("p1", "k2", 500));
        expect_invalid(
            &mut h,
            capture("p1", "k3", 700),
            "capture of 700 exceeds the 500 still capturable (authorized 1000, captured 500)",
        );
        h.accept(capture("p1", "k4", 500));
        expect_invalid(
            &mut h,
            capture("p1", "k5", 1),
            "capture of 1 exceeds the 0 still capturable (authorized 1000, captured 1000)",
        );
    }

    #[test]
    fn a_capture_after_a_void_is_refused() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(void("p1", "k2", 1000));
        expect_invalid(
            &mut h,
            capture("p1", "k3", 100),
            "payment \"p1\" is voided: nothing can be captured",
        );
    }

    #[test]
    fn a_capture_after_a_refund_may_use_what_is_still_authorized() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(capture("p1", "k2", 400));
        h.accept(refund("p1", "k3", 100));
        h.accept(capture("p1", "k4", 600));
        let payment = h.payment("p1").unwrap();
        assert_eq!(
            (payment.captured_minor, payment.refunded_minor),
            (1000, 100)
        );
        expect_invalid(
            &mut h,
            capture("p1", "k5", 1),
            "capture of 1 exceeds the 0 still capturable (authorized 1000, captured 1000)",
        );
    }

    #[test]
    fn a_void_of_the_authorized_amount_with_nothing_captured_voids_the_payment() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        let event = h.accept(void("p1", "k2", 1000));
        assert_eq!(event.kind(), EventKind::Voided);
        let payment = h.payment("p1").unwrap();
        assert_eq!(payment.state(), PaymentState::Voided);
        assert_eq!(payment.captured_minor, 0);
    }

    #[test]
    fn a_void_after_a_capture_is_refused() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(capture("p1", "k2", 1));
        expect_invalid(
            &mut h,
            void("p1", "k3", 1000),
            "payment \"p1\" cannot be voided: 1 already captured (refund it instead)",
        );
    }

    #[test]
    fn a_void_may_not_exceed_the_authorized_amount() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        expect_invalid(
            &mut h,
            void("p1", "k2", 1001),
            "void of 1001 exceeds the authorized amount 1000",
        );
        // Any amount up to the authorization voids the whole payment.
        h.accept(void("p1", "k3", 400));
        assert_eq!(h.payment("p1").unwrap().state(), PaymentState::Voided);
    }

    #[test]
    fn a_second_void_is_refused() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(void("p1", "k2", 1000));
        expect_invalid(
            &mut h,
            void("p1", "k3", 1000),
            "payment \"p1\" is already voided",
        );
    }

    #[test]
    fn refunds_up_to_the_captured_amount_are_accepted() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(capture("p1", "k2", 600));
        h.accept(refund("p1", "k3", 200));
        let payment = h.payment("p1").unwrap();
        assert_eq!(payment.state(), PaymentState::PartiallyRefunded);
        assert_eq!(payment.refunded_minor, 200);
        let last = h.accept(refund("p1", "k4", 400));
        assert_eq!(last.payment_seq, 4);
        let payment = h.payment("p1").unwrap();
        assert_eq!(payment.state(), PaymentState::Refunded);
        assert_eq!(
            (
                payment.authorized_minor,
                payment.captured_minor,
                payment.refunded_minor
            ),
            (1000, 600, 600)
        );
    }

    #[test]
    fn a_refund_above_captured_minus_refunded_is_refused() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        expect_invalid(
            &mut h,
            refund("p1", "k2", 1),
            "refund of 1 exceeds the 0 still refundable (captured 0, refunded 0)",
        );
        h.accept(capture("p1", "k3", 1000));
        h.accept(refund("p1", "k4", 500));
        expect_invalid(
            &mut h,
            refund("p1", "k5", 700),
            "refund of 700 exceeds the 500 still refundable (captured 1000, refunded 500)",
        );
    }

    #[test]
    fn a_refund_of_a_voided_payment_is_refused() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(void("p1", "k2", 1000));
        expect_invalid(
            &mut h,
            refund("p1", "k3", 10),
            "payment \"p1\" is voided: there is nothing to refund",
        );
    }

    #[test]
    fn an_event_in_another_currency_is_an_invalid_transition() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        let mut in_euros = submit("p1", "k2", EventKind::Captured, 100);
        in_euros.currency = "EUR".into();
        expect_invalid(
            &mut h,
            crate::machine::Command::Submit(in_euros),
            "currency EUR does not match payment \"p1\"'s currency USD",
        );
    }

    #[test]
    fn payments_are_independent() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k1", 1000));
        h.accept(authorize("p2", "k2", 50));
        let event = h.accept(capture("p2", "k3", 50));
        assert_eq!(event.payment_seq, 2);
        assert_eq!(h.payment("p1").unwrap().state(), PaymentState::Authorized);
        assert_eq!(h.payment("p2").unwrap().state(), PaymentState::Captured);
    }
}

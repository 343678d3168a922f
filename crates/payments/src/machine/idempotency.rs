//! Idempotency keys, with Stripe's semantics.
//!
//! Keys are global. The first use of a key records the request's canonical encoding and its
//! outcome (an event, or a refusal). A later use with the same request gets the original
//! outcome back with `replayed = true` and writes nothing; with a different request it is
//! refused with `IDEMPOTENCY_KEY_REUSED` (and that refusal is not recorded). A key is
//! forgotten at `clock + window` (the window travels in the command): from then on it counts
//! as unused, and apply deletes expired keys a bounded number at a time, in expiry order.

use super::commands::{EventKind, Submit};
use super::records::{IdempotencyRecord, RecordedOutcome};
use super::store::IdempotencyExpiry;

/// How long idempotency keys are remembered unless the operator says otherwise: a day. The
/// server's `--idempotency-window` and the simulator start from it.
pub const DEFAULT_IDEMPOTENCY_WINDOW_MS: u64 = 86_400_000;

/// The most expired keys one applied entry deletes. Each entry records at most one key, so
/// pruning keeps up with any sustained rate of submits.
pub const PRUNE_LIMIT_PER_APPLY: usize = 32;

/// The canonical encoding of a submit's request: the submit's own protobuf encoding with the
/// fields that may differ between retries (the key itself, the leader's window and
/// event retention) cleared, so
/// what remains is exactly payment id, kind, amount, currency, metadata (encoded in key
/// order) and fence. Compared byte for byte, never hashed.
///
/// Takes the submit mutably to avoid copying it; the fields are restored before returning.
pub(crate) fn canonical_request(submit: &mut Submit) -> Vec<u8> {
    let key = std::mem::take(&mut submit.idempotency_key);
    let window_ms = std::mem::take(&mut submit.idempotency_window_ms);
    let retention = std::mem::take(&mut submit.event_retention);
    let bytes = prost::Message::encode_to_vec(&*submit);
    submit.idempotency_key = key;
    submit.idempotency_window_ms = window_ms;
    submit.event_retention = retention;
    bytes
}

/// A canonical request in words, for the `IDEMPOTENCY_KEY_REUSED` message.
fn describe_request(request: &[u8]) -> String {
    match <Submit as prost::Message>::decode(request) {
        Ok(first) => {
            let kind = EventKind::try_from(first.kind).unwrap_or(EventKind::Unspecified);
            let fence = match &first.fence {
                Some(fence) => format!(" fenced by lease {:?} token {}", fence.lease, fence.token),
                None => String::new(),
            };
            format!(
                "{} of {} {} on payment {:?}{fence}",
                kind.name(),
                first.amount_minor,
                first.currency,
                first.payment_id
            )
        }
        Err(_) => "another request".to_owned(),
    }
}

/// What an idempotency key means for a new request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyUse {
    /// The key is unused (or its previous use expired, given here so it can be deleted).
    Fresh {
        /// The expired record of the key, if one is still stored.
        expired: Option<IdempotencyExpiry>,
    },
    /// The same request was made before: answer with its outcome.
    Replay(RecordedOutcome),
    /// A different request was made with this key: refuse, explaining what it was.
    Reused {
        /// The `IDEMPOTENCY_KEY_REUSED` message.
        message: String,
    },
}

/// Classifies a request with canonical encoding `request` against the key's stored record,
/// at machine time `clock_ms`.
pub(crate) fn classify(
    existing: Option<IdempotencyRecord>,
    key: &str,
    request: &[u8],
    clock_ms: u64,
) -> KeyUse {
    let Some(record) = existing else {
        return KeyUse::Fresh { expired: None };
    };
    if record.expires_at_ms <= clock_ms {
        return KeyUse::Fresh {
            expired: Some(IdempotencyExpiry {
                expires_at_ms: record.expires_at_ms,
                key: record.key,
            }),
        };
    }
    if record.request != request {
        return KeyUse::Reused {
            message: format!(
                "idempotency key {key:?} was already used for a different request ({}); reuse a key only to retry the identical request",
                describe_request(&record.request)
            ),
        };
    }
    match record.outcome {
        Some(outcome) => KeyUse::Replay(outcome),
        // Never written by this machine; treat the key as unusable rather than guess.
        None => KeyUse::Reused {
            message: format!("idempotency key {key:?} has no recorded outcome"),
        },
    }
}

/// When a key recorded at machine time `clock_ms` with window `window_ms` expires.
pub(crate) fn expires_at(clock_ms: u64, window_ms: u64) -> u64 {
    clock_ms.saturating_add(window_ms)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::machine::commands::{Command, LeaseFence};
    use crate::machine::outputs::{Applied, RejectReason};
    use crate::machine::records::RecordedRejection;
    use crate::machine::store::Store;
    use crate::machine::testing::*;

    #[test]
    fn the_canonical_request_ignores_key_and_window_and_restores_them() {
        let mut a = submit("p1", "k1", EventKind::Captured, 10);
        let mut b = Submit {
            idempotency_key: "other".into(),
            idempotency_window_ms: 5,
            event_retention: 0,
            ..a.clone()
        };
        let original = a.clone();
        assert_eq!(canonical_request(&mut a), canonical_request(&mut b));
        assert_eq!(a, original, "the submit is left as it was");
    }

    #[test]
    fn the_canonical_request_covers_every_request_field() {
        let base = {
            let mut s = submit("p1", "k1", EventKind::Captured, 10);
            s.metadata = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
            s
        };
        let variants = [
            Submit {
                payment_id: "p2".into(),
                ..base.clone()
            },
            Submit {
                kind: EventKind::Refunded as i32,
                ..base.clone()
            },
            Submit {
                amount_minor: 11,
                ..base.clone()
            },
            Submit {
                currency: "EUR".into(),
                ..base.clone()
            },
            Submit {
                metadata: BTreeMap::from([("a".to_owned(), "2".to_owned())]),
                ..base.clone()
            },
            Submit {
                metadata: BTreeMap::new(),
                ..base.clone()
            },
            Submit {
                fence: Some(LeaseFence {
                    lease: "w".into(),
                    token: 1,
                }),
                ..base.clone()
            },
        ];
        let canonical = canonical_request(&mut base.clone());
        for mut variant in variants {
            assert_ne!(canonical_request(&mut variant), canonical, "{variant:?}");
        }
    }

    #[test]
    fn a_retry_of_an_accepted_request_replays_the_original_event_and_writes_nothing() {
        let mut h = Harness::new();
        let original = h.accept(authorize("p1", "k1", 1000));
        h.advance(5_000);
        let before = h.store.without_meta();
        match h.run(authorize("p1", "k1", 1000)) {
            Applied::EventRecorded(out) => {
                assert!(out.replayed);
                assert_eq!(out.event, original);
            }
            other => panic!("expected a replay, got {other:?}"),
        }
        assert_eq!(h.store.without_meta(), before);
        assert_eq!(h.meta().idempotent_replays, 1);
        assert_eq!(h.meta().events_recorded, 1);
    }

    #[test]
    fn a_retry_of_a_refused_request_replays_the_original_refusal_even_if_it_would_now_succeed() {
        let mut h = Harness::new();
        let (reason, message, _) = expect_rejection(h.run(capture("p1", "k1", 100)));
        assert_eq!(reason, RejectReason::InvalidTransition);
        h.accept(authorize("p1", "k2", 1000));
        let before = h.store.without_meta();
        let (replayed_reason, replayed_message, replayed) =
            expect_rejection(h.run(capture("p1", "k1", 100)));
        assert_eq!(
            (replayed_reason, replayed_message, replayed),
            (reason, message, true)
        );
        assert_eq!(h.store.without_meta(), before);
        assert_eq!(h.meta().idempotent_replays, 1);
        assert_eq!(
            h.meta().invalid_transitions,
            1,
            "the replay is not counted again"
        );
    }

    #[test]
    fn a_different_request_with_a_used_key_is_refused_and_not_recorded() {
        let mut h = Harness::new();
        let original = h.accept(authorize("p1", "k1", 1000));
        let before = h.store.without_meta();
        let (reason, message, replayed) = expect_rejection(h.run(authorize("p1", "k1", 999)));
        assert_eq!(reason, RejectReason::IdempotencyKeyReused);
        assert_eq!(
            message,
            "idempotency key \"k1\" was already used for a different request (AUTHORIZED of 1000 USD on payment \"p1\"); reuse a key only to retry the identical request"
        );
        assert!(!replayed);
        assert_eq!(h.store.without_meta(), before, "nothing written");
        assert_eq!(h.meta().key_reuse_rejections, 1);
        // The key still answers with its first outcome.
        match h.run(authorize("p1", "k1", 1000)) {
            Applied::EventRecorded(out) => assert_eq!((out.event, out.replayed), (original, true)),
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    #[test]
    fn keys_are_global_across_payments() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "shared", 1000));
        let (reason, _, _) = expect_rejection(h.run(authorize("p2", "shared", 1000)));
        assert_eq!(reason, RejectReason::IdempotencyKeyReused);
        assert_eq!(h.payment("p2"), None);
    }

    #[test]
    fn a_key_is_forgotten_once_its_window_has_passed() {
        let mut h = Harness::new();
        let mut short = match authorize("p1", "k1", 1000) {
            Command::Submit(s) => s,
            _ => unreachable!(),
        };
        short.idempotency_window_ms = 10_000;
        h.accept(Command::Submit(short));
        h.advance(9_999);
        let (reason, _, _) = expect_rejection(h.run(authorize("p2", "k1", 5)));
        assert_eq!(
            reason,
            RejectReason::IdempotencyKeyReused,
            "still remembered"
        );
        h.advance(1);
        let event = h.accept(authorize("p2", "k1", 5));
        assert_eq!(event.payment_id, "p2");
        let record = h.store.idempotency("k1").unwrap().unwrap();
        assert_eq!(
            record.outcome,
            Some(RecordedOutcome::EventIndex(event.index))
        );
        assert_eq!(record.expires_at_ms, START_MS + 10_000 + DAY_MS);
    }

    #[test]
    fn a_refusal_is_remembered_until_the_window_passes() {
        let mut h = Harness::new();
        let (_, message, _) = expect_rejection(h.run(capture("p1", "k1", 100)));
        let record = h.store.idempotency("k1").unwrap().unwrap();
        assert_eq!(
            record.outcome,
            Some(RecordedOutcome::Rejected(RecordedRejection {
                reason: RejectReason::InvalidTransition as i32,
                message,
            }))
        );
        assert_eq!(record.expires_at_ms, START_MS + DAY_MS);
    }

    #[test]
    fn expired_keys_are_pruned_in_expiry_order_a_bounded_number_per_entry() {
        let mut h = Harness::new();
        let total = PRUNE_LIMIT_PER_APPLY + 8;
        for i in 0..total {
            h.accept(authorize(&format!("p{i}"), &format!("k{i:03}"), 10));
            h.advance(1);
        }
        assert_eq!(h.store.idempotency_key_count(), total);
        // Nothing has expired yet: a no-op prunes nothing.
        h.noop();
        assert_eq!(h.meta().idempotency_keys_pruned, 0);

        // Past the first key's expiry only: one key goes.
        h.now_ms = START_MS + DAY_MS;
        h.accept(authorize("late", "late-1", 10));
        assert_eq!(h.meta().idempotency_keys_pruned, 1);
        assert_eq!(h.store.idempotency("k000").unwrap(), None);
        assert!(h.store.idempotency("k001").unwrap().is_some());

        // Past every key's expiry: at most the limit per entry, oldest first.
        h.now_ms = START_MS + 2 * DAY_MS;
        h.run(acquire("lease", "a", 5_000));
        assert_eq!(
            h.meta().idempotency_keys_pruned,
            1 + PRUNE_LIMIT_PER_APPLY as u64
        );
        let last_pruned = format!("k{:03}", PRUNE_LIMIT_PER_APPLY);
        let first_kept = format!("k{:03}", PRUNE_LIMIT_PER_APPLY + 1);
        assert_eq!(h.store.idempotency(&last_pruned).unwrap(), None);
        assert!(h.store.idempotency(&first_kept).unwrap().is_some());
        h.noop();
        // The rest (7 old keys and "late-1") go with the next entry.
        assert_eq!(h.store.idempotency_key_count(), 0);
        assert_eq!(h.meta().idempotency_keys_pruned, total as u64 + 1);
    }

    #[test]
    fn an_expired_key_that_was_not_yet_pruned_counts_as_unused() {
        let mut h = Harness::new();
        for i in 0..=PRUNE_LIMIT_PER_APPLY {
            h.accept(authorize(&format!("p{i}"), &format!("k{i:03}"), 10));
        }
        // All keys expire at the same time, so the pruning order is the key order and the
        // last key survives the first pruning pass...
        h.advance(DAY_MS);
        let last = format!("k{PRUNE_LIMIT_PER_APPLY:03}");
        // ...yet it is treated as unused by this very entry, and recorded afresh.
        let event = h.accept(authorize("fresh", &last, 7));
        let record = h.store.idempotency(&last).unwrap().unwrap();
        assert_eq!(
            record.outcome,
            Some(RecordedOutcome::EventIndex(event.index))
        );
        assert_eq!(record.expires_at_ms, START_MS + 2 * DAY_MS);
        assert_eq!(h.store.idempotency_key_count(), 1);
        assert_eq!(
            h.store
                .idempotency_expiring_by(u64::MAX, 100)
                .unwrap()
                .len(),
            1,
            "the expiry index has exactly the new record"
        );
    }
}

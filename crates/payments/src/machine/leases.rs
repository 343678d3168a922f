//! Writer leases: named locks whose tokens fence submissions.
//!
//! A grant's token is the Raft index of the entry that granted it, so a lease's tokens only
//! grow and a holder's older incarnation is recognisably stale. The machine never times a
//! lease out by itself: the leader's timer proposes [`ExpireLease`], which takes effect only
//! if no keep-alive, grant or release came first.
//!
//! Each function here decides one command from the lease's current record and returns the
//! outcome and the record to write, if any; the caller reads and writes.

use quorate_raft_core::Index;

use super::commands::{AcquireLease, ExpireLease, KeepAliveLease, LeaseFence, ReleaseLease};
use super::outputs::{
    Applied, KeepAliveRejected, LeaseAcquired, LeaseExpired, LeaseKeptAlive, LeaseReleased,
};
use super::records::{LeaseRecord, LeaseStatus};

/// What a lease command decided: the output, and the lease record to write (if it changed).
pub(crate) type LeaseDecision = (Applied, Option<LeaseRecord>);

/// Grants the lease unless someone else holds it. Re-acquiring by the holder is a fresh grant.
pub(crate) fn acquire(
    current: Option<LeaseRecord>,
    command: AcquireLease,
    index: Index,
    clock_ms: u64,
) -> LeaseDecision {
    if let Some(lease) = current {
        if lease.is_held() && lease.holder != command.holder {
            let refusal = LeaseAcquired {
                granted: false,
                name: lease.name,
                holder: lease.holder,
                token: lease.token,
                ttl_ms: lease.ttl_ms,
            };
            return (Applied::LeaseAcquired(refusal), None);
        }
        debug_assert!(
            index > lease.token,
            "grant tokens are increasing log indexes"
        );
    }
    let granted = LeaseRecord {
        name: command.name,
        holder: command.holder,
        token: index,
        renewals: 0,
        ttl_ms: command.ttl_ms,
        status: LeaseStatus::Held as i32,
        acquired_at_ms: clock_ms,
        renewed_at_ms: clock_ms,
    };
    let outcome = LeaseAcquired {
        granted: true,
        name: granted.name.clone(),
        holder: granted.holder.clone(),
        token: granted.token,
        ttl_ms: granted.ttl_ms,
    };
    (Applied::LeaseAcquired(outcome), Some(granted))
}

/// Extends the lease if the caller holds it with that token; otherwise says why not.
pub(crate) fn keep_alive(
    current: Option<LeaseRecord>,
    command: KeepAliveLease,
    clock_ms: u64,
) -> LeaseDecision {
    if let Err(message) = check_claim(
        current.as_ref(),
        &command.name,
        Some(&command.holder),
        command.token,
    ) {
        return (
            Applied::KeepAliveRejected(KeepAliveRejected { message }),
            None,
        );
    }
    let mut lease = current.expect("check_claim accepts only an existing lease");
    lease.renewals += 1;
    lease.renewed_at_ms = clock_ms;
    let outcome = LeaseKeptAlive {
        name: lease.name.clone(),
        holder: lease.holder.clone(),
        token: lease.token,
        renewals: lease.renewals,
        ttl_ms: lease.ttl_ms,
    };
    (Applied::LeaseKeptAlive(outcome), Some(lease))
}

/// Releases the lease if the caller holds it with that token. Releasing again with the same
/// holder and token says `released: true` again (a retry is safe) and writes nothing.
pub(crate) fn release(current: Option<LeaseRecord>, command: ReleaseLease) -> LeaseDecision {
    if let Some(lease) = &current {
        if lease.status() == LeaseStatus::Released
            && lease.holder == command.holder
            && lease.token == command.token
        {
            let outcome = LeaseReleased {
                released: true,
                message: format!(
                    "lease {:?} was already released (token {})",
                    lease.name, lease.token
                ),
            };
            return (Applied::LeaseReleased(outcome), None);
        }
    }
    if let Err(message) = check_claim(
        current.as_ref(),
        &command.name,
        Some(&command.holder),
        command.token,
    ) {
        let outcome = LeaseReleased {
            released: false,
            message,
        };
        return (Applied::LeaseReleased(outcome), None);
    }
    let mut lease = current.expect("check_claim accepts only an existing lease");
    lease.status = LeaseStatus::Released as i32;
    let outcome = LeaseReleased {
        released: true,
        message: format!("lease {:?} released (token {})", lease.name, lease.token),
    };
    (Applied::LeaseReleased(outcome), Some(lease))
}

/// Expires the lease if it is still held with exactly the token and renewal count the
/// leader's timer was armed for.
pub(crate) fn expire(current: Option<LeaseRecord>, command: ExpireLease) -> LeaseDecision {
    let not_expired = |message: String| {
        let outcome = LeaseExpired {
            expired: false,
            message,
        };
        (Applied::LeaseExpired(outcome), None)
    };
    let name = &command.name;
    let Some(mut lease) = current else {
        return not_expired(format!("lease {name:?} has never been granted"));
    };
    if command.token != lease.token {
        return not_expired(format!(
            "token {} of lease {name:?} was superseded by token {} ({})",
            command.token,
            lease.token,
            standing(&lease)
        ));
    }
    if !lease.is_held() {
        return not_expired(format!(
            "lease {name:?} is already {} (token {})",
            lease.status().describe(),
            lease.token
        ));
    }
    if command.renewals != lease.renewals {
        return not_expired(format!(
            "lease {name:?} was kept alive after the timer was armed (renewals {}, timer armed at {})",
            lease.renewals, command.renewals
        ));
    }
    lease.status = LeaseStatus::Expired as i32;
    let outcome = LeaseExpired {
        expired: true,
        message: format!(
            "lease {name:?} expired (token {}, held by {:?})",
            lease.token, lease.holder
        ),
    };
    (Applied::LeaseExpired(outcome), Some(lease))
}

/// Whether a submission fenced by `fence` may be applied: the lease exists, is held, and its
/// current token is `fence.token`. The error is a precise `STALE_TOKEN` explanation.
pub(crate) fn check_fence(current: Option<&LeaseRecord>, fence: &LeaseFence) -> Result<(), String> {
    check_claim(current, &fence.lease, None, fence.token)
}

/// Whether `token` (and `holder`, when given) is the live current grant of lease `name`.
fn check_claim(
    current: Option<&LeaseRecord>,
    name: &str,
    holder: Option<&str>,
    token: u64,
) -> Result<(), String> {
    let Some(lease) = current else {
        return Err(format!("lease {name:?} has never been granted"));
    };
    if token < lease.token {
        return Err(format!(
            "token {token} of lease {name:?} was superseded by token {} ({})",
            lease.token,
            standing(lease)
        ));
    }
    if token > lease.token {
        return Err(format!(
            "token {token} was never granted for lease {name:?} (its latest token is {}, {})",
            lease.token,
            standing(lease)
        ));
    }
    match lease.status() {
        LeaseStatus::Held => {}
        LeaseStatus::Expired => {
            return Err(format!(
                "lease {name:?} expired (token {token}, held by {:?})",
                lease.holder
            ))
        }
        LeaseStatus::Released | LeaseStatus::Unspecified => {
            return Err(format!(
                "lease {name:?} was released (token {token}, by {:?})",
                lease.holder
            ))
        }
    }
    if let Some(holder) = holder {
        if holder != lease.holder {
            return Err(format!(
                "lease {name:?} is held by {:?} with token {token}, not by {holder:?}",
                lease.holder
            ));
        }
    }
    Ok(())
}

/// Who has or had the lease, in words: `held by "a"`, `expired, last held by "a"`.
fn standing(lease: &LeaseRecord) -> String {
    match lease.status() {
        LeaseStatus::Held => format!("held by {:?}", lease.holder),
        LeaseStatus::Expired => format!("expired, last held by {:?}", lease.holder),
        LeaseStatus::Released | LeaseStatus::Unspecified => {
            format!("released by {:?}", lease.holder)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::machine::outputs::{Applied, RejectReason};
    use crate::machine::records::LeaseStatus;
    use crate::machine::testing::*;
    use crate::machine::LeaseFence;

    fn expect_acquired(applied: Applied) -> crate::machine::LeaseAcquired {
        match applied {
            Applied::LeaseAcquired(out) => out,
            other => panic!("expected an acquire outcome, got {other:?}"),
        }
    }

    fn expect_keep_alive_refused(applied: Applied) -> String {
        match applied {
            Applied::KeepAliveRejected(out) => out.message,
            other => panic!("expected a keep-alive refusal, got {other:?}"),
        }
    }

    fn expect_released(applied: Applied) -> (bool, String) {
        match applied {
            Applied::LeaseReleased(out) => (out.released, out.message),
            other => panic!("expected a release outcome, got {other:?}"),
        }
    }

    fn expect_expired(applied: Applied) -> (bool, String) {
        match applied {
            Applied::LeaseExpired(out) => (out.expired, out.message),
            other => panic!("expected an expire outcome, got {other:?}"),
        }
    }

    /// A fenced submit must be refused with STALE_TOKEN and `message`.
    fn expect_fence_refused(h: &mut Harness, token: u64, key: &str, message: &str) {
        let before_payments = h.payment("p1");
        let (reason, got, replayed) =
            expect_rejection(h.run(fenced(capture("p1", key, 10), "writer", token)));
        assert_eq!(reason, RejectReason::StaleToken);
        assert_eq!(got, message);
        assert!(!replayed);
        assert_eq!(h.payment("p1"), before_payments, "the payment is untouched");
    }

    #[test]
    fn a_free_lease_is_granted_with_the_entry_index_as_token() {
        let mut h = Harness::new();
        h.noop();
        h.noop();
        let out = expect_acquired(h.run(acquire("writer", "a", 5_000)));
        assert!(out.granted);
        assert_eq!((out.name.as_str(), out.holder.as_str()), ("writer", "a"));
        assert_eq!(out.token, 3);
        assert_eq!(out.ttl_ms, 5_000);
        let lease = h.lease("writer").unwrap();
        assert_eq!(lease.status(), LeaseStatus::Held);
        assert_eq!((lease.token, lease.renewals), (3, 0));
        assert_eq!(lease.acquired_at_ms, START_MS);
    }

    #[test]
    fn a_held_lease_is_refused_to_others_naming_its_holder_and_token() {
        let mut h = Harness::new();
        let token = h.grant("writer", "a");
        let before = h.store.without_meta();
        let out = expect_acquired(h.run(acquire("writer", "b", 5_000)));
        assert!(!out.granted);
        assert_eq!(out.holder, "a");
        assert_eq!(out.token, token);
        assert_eq!(out.ttl_ms, 10_000);
        assert_eq!(h.store.without_meta(), before, "nothing written");
    }

    #[test]
    fn the_holder_reacquiring_gets_a_new_larger_token() {
        let mut h = Harness::new();
        let first = h.grant("writer", "a");
        h.run(keep_alive("writer", "a", first));
        let second = h.grant("writer", "a");
        assert!(second > first);
        let lease = h.lease("writer").unwrap();
        assert_eq!((lease.token, lease.renewals), (second, 0));
        // The older incarnation's token is now stale.
        let message = expect_keep_alive_refused(h.run(keep_alive("writer", "a", first)));
        assert_eq!(
            message,
            format!("token {first} of lease \"writer\" was superseded by token {second} (held by \"a\")")
        );
    }

    #[test]
    fn a_released_or_expired_lease_can_be_acquired_by_anyone() {
        let mut h = Harness::new();
        let token = h.grant("writer", "a");
        h.run(release("writer", "a", token));
        let b = h.grant("writer", "b");
        h.run(expire("writer", b, 0));
        let c = h.grant("writer", "c");
        assert!(token < b && b < c);
        assert_eq!(h.lease("writer").unwrap().holder, "c");
    }

    #[test]
    fn a_keep_alive_by_the_holder_counts_a_renewal() {
        let mut h = Harness::new();
        let token = h.grant("writer", "a");
        h.advance(1_000);
        match h.run(keep_alive("writer", "a", token)) {
            Applied::LeaseKeptAlive(out) => {
                assert_eq!((out.token, out.renewals, out.ttl_ms), (token, 1, 10_000));
                assert_eq!(out.holder, "a");
            }
            other => panic!("expected a keep-alive, got {other:?}"),
        }
        let lease = h.lease("writer").unwrap();
        assert_eq!(lease.renewals, 1);
        assert_eq!(lease.renewed_at_ms, START_MS + 1_000);
    }

    #[test]
    fn a_keep_alive_is_refused_with_stale_token_saying_why() {
        let mut h = Harness::new();
        let message = expect_keep_alive_refused(h.run(keep_alive("writer", "a", 1)));
        assert_eq!(message, "lease \"writer\" has never been granted");

        let a = h.grant("writer", "a");
        let message = expect_keep_alive_refused(h.run(keep_alive("writer", "b", a)));
        assert_eq!(
            message,
            format!("lease \"writer\" is held by \"a\" with token {a}, not by \"b\"")
        );
        let message = expect_keep_alive_refused(h.run(keep_alive("writer", "a", a + 100)));
        assert_eq!(
            message,
            format!(
                "token {} was never granted for lease \"writer\" (its latest token is {a}, held by \"a\")",
                a + 100
            )
        );

        h.run(expire("writer", a, 0));
        let message = expect_keep_alive_refused(h.run(keep_alive("writer", "a", a)));
        assert_eq!(
            message,
            format!("lease \"writer\" expired (token {a}, held by \"a\")")
        );

        let b = h.grant("writer", "b");
        let message = expect_keep_alive_refused(h.run(keep_alive("writer", "a", a)));
        assert_eq!(
            message,
            format!("token {a} of lease \"writer\" was superseded by token {b} (held by \"b\")")
        );

        h.run(release("writer", "b", b));
        let before = h.store.without_meta();
        let message = expect_keep_alive_refused(h.run(keep_alive("writer", "b", b)));
        assert_eq!(
            message,
            format!("lease \"writer\" was released (token {b}, by \"b\")")
        );
        assert_eq!(h.store.without_meta(), before, "a refusal writes nothing");
        assert_eq!(h.meta().stale_token_rejections, 6);
    }

    #[test]
    fn release_by_the_holder_frees_the_lease_and_a_retry_says_released_again() {
        let mut h = Harness::new();
        let token = h.grant("writer", "a");
        let (released, message) = expect_released(h.run(release("writer", "a", token)));
        assert!(released);
        assert_eq!(
            message,
            format!("lease \"writer\" released (token {token})")
        );
        assert_eq!(h.lease("writer").unwrap().status(), LeaseStatus::Released);
        let before = h.store.without_meta();
        let (released, message) = expect_released(h.run(release("writer", "a", token)));
        assert!(released);
        assert_eq!(
            message,
            format!("lease \"writer\" was already released (token {token})")
        );
        assert_eq!(h.store.without_meta(), before);
    }

    #[test]
    fn release_without_the_current_holder_and_token_releases_nothing() {
        let mut h = Harness::new();
        let (released, message) = expect_released(h.run(release("writer", "a", 1)));
        assert!(!released);
        assert_eq!(message, "lease \"writer\" has never been granted");
        let token = h.grant("writer", "a");
        let before = h.store.without_meta();
        let (released, message) = expect_released(h.run(release("writer", "b", token)));
        assert!(!released);
        assert_eq!(
            message,
            format!("lease \"writer\" is held by \"a\" with token {token}, not by \"b\"")
        );
        let (released, _) = expect_released(h.run(release("writer", "a", token - 1)));
        assert!(!released);
        assert_eq!(h.store.without_meta(), before);
        assert!(h.lease("writer").unwrap().is_held());
    }

    #[test]
    fn expire_takes_effect_with_the_current_token_and_renewal_count() {
        let mut h = Harness::new();
        let token = h.grant("writer", "a");
        h.run(keep_alive("writer", "a", token));
        let (expired, message) = expect_expired(h.run(expire("writer", token, 1)));
        assert!(expired);
        assert_eq!(
            message,
            format!("lease \"writer\" expired (token {token}, held by \"a\")")
        );
        assert_eq!(h.lease("writer").unwrap().status(), LeaseStatus::Expired);
        let (expired, message) = expect_expired(h.run(expire("writer", token, 1)));
        assert!(!expired);
        assert_eq!(
            message,
            format!("lease \"writer\" is already expired (token {token})")
        );
    }

    #[test]
    fn a_keep_alive_applied_after_the_timer_was_armed_cancels_the_expiry() {
        let mut h = Harness::new();
        let token = h.grant("writer", "a");
        h.run(keep_alive("writer", "a", token));
        let before = h.store.without_meta();
        let (expired, message) = expect_expired(h.run(expire("writer", token, 0)));
        assert!(!expired);
        assert_eq!(
            message,
            "lease \"writer\" was kept alive after the timer was armed (renewals 1, timer armed at 0)"
        );
        assert_eq!(h.store.without_meta(), before);
        assert!(h.lease("writer").unwrap().is_held());
    }

    #[test]
    fn an_expiry_armed_for_an_older_grant_does_nothing() {
        let mut h = Harness::new();
        let first = h.grant("writer", "a");
        let second = h.grant("writer", "a");
        let (expired, message) = expect_expired(h.run(expire("writer", first, 0)));
        assert!(!expired);
        assert_eq!(
            message,
            format!("token {first} of lease \"writer\" was superseded by token {second} (held by \"a\")")
        );
        let (expired, message) = expect_expired(h.run(expire("nobody", 1, 0)));
        assert!(!expired);
        assert_eq!(message, "lease \"nobody\" has never been granted");
        assert!(h.lease("writer").unwrap().is_held());
    }

    #[test]
    fn a_fenced_submit_with_the_current_token_is_accepted_and_keeps_its_fence() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k0", 1000));
        let token = h.grant("writer", "a");
        let event = h.accept(fenced(capture("p1", "k1", 10), "writer", token));
        assert_eq!(
            event.fence,
            Some(LeaseFence {
                lease: "writer".into(),
                token
            })
        );
    }

    #[test]
    fn a_fenced_submit_with_a_superseded_token_is_refused_even_if_it_arrives_late() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k0", 1000));
        let old = h.grant("writer", "a");
        // "a" pauses; its lease is taken over by a fresh grant, then its write arrives.
        let new = h.grant("writer", "a");
        expect_fence_refused(
            &mut h,
            old,
            "k1",
            &format!(
                "token {old} of lease \"writer\" was superseded by token {new} (held by \"a\")"
            ),
        );
        assert_eq!(h.meta().stale_token_rejections, 1);
    }

    #[test]
    fn a_fenced_submit_is_refused_after_the_lease_expired() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k0", 1000));
        let token = h.grant("writer", "a");
        h.run(expire("writer", token, 0));
        expect_fence_refused(
            &mut h,
            token,
            "k1",
            &format!("lease \"writer\" expired (token {token}, held by \"a\")"),
        );
    }

    #[test]
    fn a_fenced_submit_is_refused_after_the_lease_was_released() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k0", 1000));
        let token = h.grant("writer", "a");
        h.run(release("writer", "a", token));
        expect_fence_refused(
            &mut h,
            token,
            "k1",
            &format!("lease \"writer\" was released (token {token}, by \"a\")"),
        );
    }

    #[test]
    fn a_fenced_submit_is_refused_while_someone_else_holds_the_lease() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k0", 1000));
        let a = h.grant("writer", "a");
        h.run(expire("writer", a, 0));
        let b = h.grant("writer", "b");
        expect_fence_refused(
            &mut h,
            a,
            "k1",
            &format!("token {a} of lease \"writer\" was superseded by token {b} (held by \"b\")"),
        );
        expect_fence_refused(
            &mut h,
            b + 1,
            "k2",
            &format!(
                "token {} was never granted for lease \"writer\" (its latest token is {b}, held by \"b\")",
                b + 1
            ),
        );
    }

    #[test]
    fn a_fenced_submit_on_a_lease_never_granted_is_refused() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k0", 1000));
        expect_fence_refused(&mut h, 1, "k1", "lease \"writer\" has never been granted");
    }

    #[test]
    fn a_fence_refusal_is_remembered_under_the_idempotency_key() {
        let mut h = Harness::new();
        h.accept(authorize("p1", "k0", 1000));
        let old = h.grant("writer", "a");
        h.grant("writer", "a");
        let (_, message, _) =
            expect_rejection(h.run(fenced(capture("p1", "k1", 10), "writer", old)));
        let (reason, replayed_message, replayed) =
            expect_rejection(h.run(fenced(capture("p1", "k1", 10), "writer", old)));
        assert_eq!(reason, RejectReason::StaleToken);
        assert_eq!(replayed_message, message);
        assert!(replayed);
        assert_eq!(h.meta().stale_token_rejections, 1);
        assert_eq!(h.meta().idempotent_replays, 1);
    }
}

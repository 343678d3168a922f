//! Every gRPC status the payments services return is built here: one place that maps
//! rejections and node errors to codes and `ErrorInfo` reasons (domain `quorate`).

use quorate_node::NodeError;
use quorate_proto::errors::{self, reason};
use tonic::{Code, Status};

use crate::machine::{FieldViolation, RejectReason, StoreError};

/// `INVALID_ARGUMENT` naming the field (in `ErrorInfo` metadata and a `BadRequest` detail).
pub fn invalid_field(v: &FieldViolation) -> Status {
    invalid(v.field, &v.description)
}

/// `INVALID_ARGUMENT` for `field`.
pub fn invalid(field: &str, description: &str) -> Status {
    errors::status_with(
        Code::InvalidArgument,
        reason::INVALID_ARGUMENT,
        format!("{field}: {description}"),
        &[("field", field.to_string())],
        |details| {
            details.add_bad_request_violation(field, description);
        },
    )
}

/// A rejection decided by the state machine.
pub fn rejected(why: RejectReason, message: &str, replayed: bool) -> Status {
    let (code, why) = contract(why);
    errors::status(
        code,
        why,
        message.to_string(),
        &[("replayed", replayed.to_string())],
    )
}

/// The code and reason of the public contract for a rejection.
fn contract(why: RejectReason) -> (Code, &'static str) {
    match why {
        RejectReason::InvalidTransition => (Code::FailedPrecondition, reason::INVALID_TRANSITION),
        RejectReason::StaleToken => (Code::FailedPrecondition, reason::STALE_TOKEN),
        RejectReason::IdempotencyKeyReused => (Code::AlreadyExists, reason::IDEMPOTENCY_KEY_REUSED),
        // (Never recorded: an output that says so is damage.)
        RejectReason::Unspecified => (Code::Internal, reason::INTERNAL),
    }
}

/// `FAILED_PRECONDITION` / `STALE_TOKEN` for a lease operation.
pub fn stale_token(message: &str) -> Status {
    rejected(RejectReason::StaleToken, message, false)
}

/// `NOT_FOUND`.
pub fn not_found(what: String) -> Status {
    errors::status(Code::NotFound, reason::NOT_FOUND, what, &[])
}

/// `INTERNAL`, for what should never happen (an undecodable output, storage failure).
pub fn internal(message: String) -> Status {
    errors::status(Code::Internal, reason::INTERNAL, message, &[])
}

/// A read of the machine that failed: `OUT_OF_RANGE` / `COMPACTED` with the first index still
/// held (`first_available_index` in the metadata) for events the event log no longer holds,
/// `INTERNAL` for a storage failure.
pub fn read_failed(e: StoreError) -> Status {
    match e {
        StoreError::Compacted {
            after,
            first_available,
        } => errors::status(
            Code::OutOfRange,
            reason::COMPACTED,
            format!(
                "the events after index {after} are no longer held: the event log was compacted \
                 (--event-retention); the first event index still held is {first_available}, \
                 so ask again with after_index {} or more",
                first_available - 1
            ),
            &[
                ("after_index", after.to_string()),
                ("first_available_index", first_available.to_string()),
            ],
        ),
        other => internal(other.to_string()),
    }
}

/// A node error (no quorum, outcome unknown, ...).
pub fn node(e: &NodeError) -> Status {
    e.to_status()
}

#[cfg(test)]
mod tests {
    use super::*;

    use tonic_types::StatusExt;

    /// Each rejection the machine records reaches the client with the contract's code and
    /// reason, and says whether it was a replay.
    #[test]
    fn rejections_carry_the_contract_code_and_reason() {
        for (why, code, name) in [
            (
                RejectReason::InvalidTransition,
                Code::FailedPrecondition,
                "INVALID_TRANSITION",
            ),
            (
                RejectReason::StaleToken,
                Code::FailedPrecondition,
                "STALE_TOKEN",
            ),
            (
                RejectReason::IdempotencyKeyReused,
                Code::AlreadyExists,
                "IDEMPOTENCY_KEY_REUSED",
            ),
        ] {
            let status = rejected(why, "no", true);
            assert_eq!(status.code(), code, "{why:?}");
            let info = status.get_details_error_info().unwrap();
            assert_eq!(info.reason, name);
            assert_eq!(info.domain, "quorate");
            assert_eq!(info.metadata["replayed"], "true");
        }
    }

    /// A compacted range is refused with the contract's code and reason and the first index
    /// a reader can ask for; anything else a read fails with is internal.
    #[test]
    fn a_compacted_read_says_where_the_event_log_starts() {
        let status = read_failed(StoreError::Compacted {
            after: 3,
            first_available: 129,
        });
        assert_eq!(status.code(), Code::OutOfRange);
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "COMPACTED");
        assert_eq!(info.metadata["first_available_index"], "129");
        assert_eq!(info.metadata["after_index"], "3");
        assert!(
            status.message().contains("after_index 128"),
            "{}",
            status.message()
        );

        let status = read_failed(StoreError::Inconsistent("x".into()));
        assert_eq!(status.code(), Code::Internal);
    }
}

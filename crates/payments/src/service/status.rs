//! Every gRPC status the payments services return is built here: one place that maps
//! rejections and node errors to codes and `ErrorInfo` reasons (domain `quorate`).

use std::collections::HashMap;

use quorate_node::NodeError;
use quorate_proto::errors::{reason, ERROR_DOMAIN};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::machine::{FieldViolation, RejectReason};

/// `INVALID_ARGUMENT` naming the field (in `ErrorInfo` metadata and a `BadRequest` detail).
pub fn invalid_field(v: &FieldViolation) -> Status {
    invalid(v.field, &v.description)
}

/// `INVALID_ARGUMENT` for `field`.
pub fn invalid(field: &str, description: &str) -> Status {
    let mut details = ErrorDetails::with_error_info(
        reason::INVALID_ARGUMENT,
        ERROR_DOMAIN,
        HashMap::from([("field".to_string(), field.to_string())]),
    );
    details.add_bad_request_violation(field, description);
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
    )
}

/// A rejection decided by the state machine.
pub fn rejected(why: RejectReason, message: &str, replayed: bool) -> Status {
    let code = match why {
        RejectReason::InvalidTransition | RejectReason::StaleToken => Code::FailedPrecondition,
        RejectReason::IdempotencyKeyReused => Code::AlreadyExists,
        _ => Code::Internal,
    };
    let metadata = HashMap::from([("replayed".to_string(), replayed.to_string())]);
    let details = ErrorDetails::with_error_info(why.code(), ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message.to_string(), details)
}

/// `FAILED_PRECONDITION` / `STALE_TOKEN` for a lease operation.
pub fn stale_token(message: &str) -> Status {
    rejected(RejectReason::StaleToken, message, false)
}

/// `NOT_FOUND`.
pub fn not_found(what: String) -> Status {
    let details = ErrorDetails::with_error_info(reason::NOT_FOUND, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::NotFound, what, details)
}

/// `INTERNAL`, for what should never happen (an undecodable output, storage failure).
pub fn internal(message: String) -> Status {
    let details = ErrorDetails::with_error_info(reason::INTERNAL, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::Internal, message, details)
}

/// A node error (no quorum, outcome unknown, ...).
pub fn node(e: &NodeError) -> Status {
    e.to_status()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine names its rejections itself (it runs without the protocol crate, in the
    /// simulator); they must be the contract's names.
    #[test]
    fn the_machine_rejections_use_the_contract_names() {
        assert_eq!(
            RejectReason::InvalidTransition.code(),
            reason::INVALID_TRANSITION
        );
        assert_eq!(RejectReason::StaleToken.code(), reason::STALE_TOKEN);
        assert_eq!(
            RejectReason::IdempotencyKeyReused.code(),
            reason::IDEMPOTENCY_KEY_REUSED
        );
    }
}

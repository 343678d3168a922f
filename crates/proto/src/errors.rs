//! The error contract every Quorate service follows (DESIGN.md, "Errors"): a gRPC status whose
//! `google.rpc.ErrorInfo` detail (domain [`ERROR_DOMAIN`]) carries one of the [`reason`]s, and
//! the one rule clients follow to decide whether a failed write may be sent again. The servers
//! build their statuses with these names; `quoratectl` and the integration tests retry with
//! [`retryable`].

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo` domain of every Quorate error.
pub const ERROR_DOMAIN: &str = "quorate";

/// The `ErrorInfo` reasons. Clients match on these strings: they are part of the public
/// contract and never change.
pub mod reason {
    /// No leader this node can reach has a quorum: nothing was written (UNAVAILABLE).
    pub const NO_QUORUM: &str = "NO_QUORUM";
    /// Not the leader, and forwarding was impossible; metadata names the leader (UNAVAILABLE).
    pub const NOT_LEADER: &str = "NOT_LEADER";
    /// The write may or may not have been committed (UNAVAILABLE).
    pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";
    /// The node is stopping; another node can take the request (UNAVAILABLE).
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    /// The node found its log in conflict with a committed entry and takes no part in the
    /// cluster; another node can take the request (DATA_LOSS).
    pub const CORRUPT: &str = "CORRUPT";
    /// A field is invalid; metadata and a `BadRequest` detail name it (INVALID_ARGUMENT).
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    /// No such payment (NOT_FOUND).
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// A fencing token older than one already applied (FAILED_PRECONDITION).
    pub const STALE_TOKEN: &str = "STALE_TOKEN";
    /// The payment's lifecycle forbids the event (FAILED_PRECONDITION).
    pub const INVALID_TRANSITION: &str = "INVALID_TRANSITION";
    /// The idempotency key was used for a different request (ALREADY_EXISTS).
    pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
    /// A failure inside the node (INTERNAL).
    pub const INTERNAL: &str = "INTERNAL";
    /// A membership change that cannot be made now; the message says why (another change
    /// is in progress, the member does not exist...) (FAILED_PRECONDITION).
    pub const MEMBERSHIP_CHANGE_REFUSED: &str = "MEMBERSHIP_CHANGE_REFUSED";
    /// A learner to promote is not caught up yet; metadata gives `match_index` and
    /// `last_index`: wait and retry (FAILED_PRECONDITION).
    pub const LEARNER_BEHIND: &str = "LEARNER_BEHIND";
    /// The sender was removed from the cluster: its requests are refused for good
    /// (PERMISSION_DENIED).
    pub const MEMBER_REMOVED: &str = "MEMBER_REMOVED";
    /// A peer request from another cluster (FAILED_PRECONDITION).
    pub const CLUSTER_MISMATCH: &str = "CLUSTER_MISMATCH";
    /// The node is at one of its limits (requests in flight, queued, open `Watch` streams,
    /// pending proposals): nothing was done. Metadata names the `limit`; a `RetryInfo` detail
    /// says how long to wait before trying again, here or on another node
    /// (RESOURCE_EXHAUSTED).
    pub const RESOURCE_EXHAUSTED: &str = "RESOURCE_EXHAUSTED";
    /// The node cannot do this now but will soon (a snapshot streams to a follower, nothing
    /// was applied yet): nothing was done; retry shortly (UNAVAILABLE).
    pub const BUSY: &str = "BUSY";
    /// The events asked for are no longer held: the event log was compacted
    /// (`--event-retention`). Metadata gives `first_available_index`: for `List` and `Watch`
    /// the first event index still held (ask again with `after_index` one below it), for
    /// `HashEvents` the lowest index a hash can be asked for (OUT_OF_RANGE).
    pub const COMPACTED: &str = "COMPACTED";
    /// The caller has no valid client certificate or bearer token (UNAUTHENTICATED).
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// The caller's identity lacks the role the method needs; metadata names the `identity`,
    /// the `method` and the `role` required (PERMISSION_DENIED).
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
}

/// A status with `code`, a Quorate `reason` and `metadata` in its `ErrorInfo` (domain
/// [`ERROR_DOMAIN`]): how every Quorate service builds an error.
pub fn status(code: Code, reason: &str, message: String, metadata: &[(&str, String)]) -> Status {
    status_with(code, reason, message, metadata, |_| {})
}

/// [`status`], with the other details `more` adds (a `BadRequest` naming a field, a
/// `RetryInfo`).
pub fn status_with(
    code: Code,
    reason: &str,
    message: String,
    metadata: &[(&str, String)],
    more: impl FnOnce(&mut ErrorDetails),
) -> Status {
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect();
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    more(&mut details);
    Status::with_error_details(code, message, details)
}

/// The Quorate reason of a status (its `ErrorInfo`'s), if it carries one.
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// [`retryable`], for a status as a client received it.
pub fn status_retryable(status: &Status) -> bool {
    retryable(reason_of(status).as_deref(), status.code())
}

/// Whether a failed write may be sent again, to any node, with the same idempotency key, in
/// the hope of a definite answer: the node did not decide it (no quorum, not the leader,
/// stopping, corrupt) or may have decided it without saying (outcome unknown). A status
/// without a Quorate reason is retryable when the call may never have reached a node, or was
/// cut off on the way back (UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN: a broken connection).
/// An overloaded node (resource exhausted) did nothing: the write may be sent again after the
/// delay its `RetryInfo` gives. Every other reason is a definite answer: retrying repeats it.
pub fn retryable(reason: Option<&str>, code: Code) -> bool {
    match reason {
        Some(
            reason::OUTCOME_UNKNOWN
            | reason::NO_QUORUM
            | reason::NOT_LEADER
            | reason::SHUTTING_DOWN
            | reason::CORRUPT
            | reason::RESOURCE_EXHAUSTED
            | reason::BUSY,
        ) => true,
        Some(_) => false,
        None => matches!(
            code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_undecided_writes_are_retried() {
        for reason in [
            reason::OUTCOME_UNKNOWN,
            reason::NO_QUORUM,
            reason::NOT_LEADER,
            reason::SHUTTING_DOWN,
            reason::CORRUPT,
            reason::RESOURCE_EXHAUSTED,
            reason::BUSY,
        ] {
            assert!(retryable(Some(reason), Code::Unavailable), "{reason}");
        }
        for reason in [
            reason::STALE_TOKEN,
            reason::INVALID_TRANSITION,
            reason::IDEMPOTENCY_KEY_REUSED,
            reason::INVALID_ARGUMENT,
            reason::NOT_FOUND,
            reason::INTERNAL,
            reason::MEMBERSHIP_CHANGE_REFUSED,
            reason::LEARNER_BEHIND,
            reason::MEMBER_REMOVED,
            reason::CLUSTER_MISMATCH,
            reason::UNAUTHENTICATED,
            reason::PERMISSION_DENIED,
        ] {
            assert!(!retryable(Some(reason), Code::Unavailable), "{reason}");
        }
        assert!(retryable(None, Code::Unknown), "a connection cut mid-call");
        assert!(!retryable(None, Code::PermissionDenied));
    }
}

//! Why a request to the node failed, and how that maps to a gRPC status.
//!
//! The mapping lives here, once: every service of the node reports these errors the same way,
//! as a status with a `google.rpc.ErrorInfo` detail (domain `quorate`) whose reason clients
//! can match on.

use quorate_raft_core::NodeId;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use quorate_proto::errors::reason;
pub use quorate_proto::errors::ERROR_DOMAIN;

/// What can go wrong with a proposal or a read.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeError {
    /// No leader this node can reach has a quorum: nothing was written.
    #[error("no quorum: {reason}")]
    NoQuorum {
        /// What the node knows.
        reason: String,
    },
    /// The request must go to the leader and could not be forwarded.
    #[error("not the leader; the leader is {leader:?} at {address:?}")]
    NotLeader {
        /// The leader, when known.
        leader: Option<NodeId>,
        /// Its peer address, when known.
        address: Option<String>,
    },
    /// The write may or may not have been committed (leadership changed, or the wait timed
    /// out). Retrying with the same idempotency key is safe.
    #[error("outcome unknown: {reason}; retry with the same idempotency key")]
    OutcomeUnknown {
        /// What happened.
        reason: String,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The request is malformed (for example a transfer to a non-member).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Storage or another internal failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// This node found its log in conflict with a committed entry it holds and stopped taking
    /// part in the cluster; the text says what it found.
    #[error("{0}")]
    Corrupt(String),
}

/// A status with `code`, a Quorate `reason` (see `quorate_proto::errors::reason`) and, when
/// the error is about one request field, that field (in `ErrorInfo` metadata and a
/// `BadRequest` detail): for services whose errors are not [`NodeError`]s.
pub fn error_status(code: Code, why: &str, message: String, field: Option<&str>) -> Status {
    let metadata = field
        .map(|f| std::collections::HashMap::from([("field".to_string(), f.to_string())]))
        .unwrap_or_default();
    let mut details = ErrorDetails::with_error_info(why, ERROR_DOMAIN, metadata);
    if let Some(field) = field {
        details.add_bad_request_violation(field, message.clone());
    }
    Status::with_error_details(code, message, details)
}

impl NodeError {
    /// The machine-readable reason carried in `ErrorInfo`.
    pub fn reason(&self) -> &'static str {
        match self {
            NodeError::NoQuorum { .. } => reason::NO_QUORUM,
            NodeError::NotLeader { .. } => reason::NOT_LEADER,
            NodeError::OutcomeUnknown { .. } => reason::OUTCOME_UNKNOWN,
            NodeError::ShuttingDown => reason::SHUTTING_DOWN,
            NodeError::Invalid(_) => reason::INVALID_ARGUMENT,
            NodeError::Internal(_) => reason::INTERNAL,
            NodeError::Corrupt(_) => reason::CORRUPT,
        }
    }

    /// The gRPC status clients see.
    pub fn to_status(&self) -> Status {
        let code = match self {
            NodeError::Invalid(_) => Code::InvalidArgument,
            NodeError::Internal(_) => Code::Internal,
            NodeError::Corrupt(_) => Code::DataLoss,
            _ => Code::Unavailable,
        };
        let mut metadata = std::collections::HashMap::new();
        if let NodeError::NotLeader { leader, address } = self {
            if let Some(leader) = leader {
                metadata.insert("leader_id".to_string(), leader.to_string());
            }
            if let Some(address) = address {
                metadata.insert("leader_address".to_string(), address.clone());
            }
        }
        let details = ErrorDetails::with_error_info(self.reason(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, self.to_string(), details)
    }

    /// Reads back a status produced by [`NodeError::to_status`] on another node (a forwarded
    /// request). Statuses without a Quorate reason are transport failures: the leader could not
    /// be reached, or did not answer in time.
    pub fn from_status(status: &Status) -> NodeError {
        let info = status.get_details_error_info();
        let why = info.as_ref().map(|i| i.reason.as_str());
        let message = status.message().to_string();
        match why {
            Some(reason::NO_QUORUM) => NodeError::NoQuorum { reason: message },
            Some(reason::NOT_LEADER) => {
                let info = info.as_ref().expect("present");
                NodeError::NotLeader {
                    leader: info.metadata.get("leader_id").and_then(|l| l.parse().ok()),
                    address: info.metadata.get("leader_address").cloned(),
                }
            }
            Some(reason::OUTCOME_UNKNOWN) => NodeError::OutcomeUnknown { reason: message },
            Some(reason::SHUTTING_DOWN) => NodeError::OutcomeUnknown {
                reason: "the leader is shutting down".into(),
            },
            Some(reason::INVALID_ARGUMENT) => NodeError::Invalid(message),
            Some(_) => NodeError::Internal(message),
            // A transport failure after the request may have left: the leader may have
            // received and committed it.
            None => NodeError::OutcomeUnknown {
                reason: format!("the leader did not answer ({:?}: {message})", status.code()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_a_trip_through_a_grpc_status() {
        let errors = [
            NodeError::NoQuorum {
                reason: "cut off".into(),
            },
            NodeError::NotLeader {
                leader: Some(3),
                address: Some("10.0.0.3:2380".into()),
            },
            NodeError::Invalid("bad".into()),
        ];
        for error in errors {
            let status = error.to_status();
            let info = status.get_details_error_info().expect("ErrorInfo attached");
            assert_eq!(info.reason, error.reason());
            assert_eq!(info.domain, "quorate");
            let back = NodeError::from_status(&status);
            assert_eq!(back.reason(), error.reason());
            if let NodeError::NotLeader { leader, address } = back {
                assert_eq!(leader, Some(3));
                assert_eq!(address.as_deref(), Some("10.0.0.3:2380"));
            }
        }
        assert_eq!(
            NodeError::NoQuorum {
                reason: String::new()
            }
            .to_status()
            .code(),
            Code::Unavailable
        );
    }

    #[test]
    fn a_bare_transport_failure_leaves_the_outcome_unknown() {
        // The request may have reached the leader before the connection broke.
        for status in [
            Status::unavailable("connection reset"),
            Status::deadline_exceeded("slow"),
            Status::cancelled("timeout expired"),
        ] {
            assert_eq!(NodeError::from_status(&status).reason(), "OUTCOME_UNKNOWN");
        }
    }
}

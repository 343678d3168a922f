//! Why a request to the node failed, and how that maps to a gRPC status.
//!
//! The mapping lives here, once: every service of the node reports these errors the same way,
//! as a status with a `google.rpc.ErrorInfo` detail (domain `quorate`) whose reason clients
//! can match on.

use quorate_raft_core::{Error as RaftError, NodeId};
use tonic::{Code, Status};
use tonic_types::StatusExt;

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
    /// A membership change that cannot be made now; the text says why.
    #[error("membership change refused: {0}")]
    MembershipRefused(String),
    /// The node is at one of its limits; nothing was proposed. Retrying after a pause is safe.
    #[error("overloaded: {reason}; retry later")]
    Overloaded {
        /// Which limit, and its value.
        reason: String,
    },
    /// The node cannot do this now, but will soon (a snapshot streams to a follower, nothing
    /// was applied yet); nothing was done. Retrying shortly is safe.
    #[error("busy: {0}; retry shortly")]
    Busy(String),
    /// A learner to promote is not caught up yet.
    #[error(
        "node {id} is not caught up yet: its log matches the leader's up to index {match_index}, \
         the leader's ends at {last_index} (a learner at most {max_lag} entries behind may be \
         promoted); wait and retry"
    )]
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// How far its log is known to match the leader's.
        match_index: u64,
        /// The leader's last index.
        last_index: u64,
        /// The most entries behind that may be promoted.
        max_lag: u64,
    },
}

/// A status with `code`, a Quorate `reason` (see `quorate_proto::errors::reason`) and, when
/// the error is about one request field, that field (in `ErrorInfo` metadata and a
/// `BadRequest` detail): for services whose errors are not [`NodeError`]s.
pub fn error_status(code: Code, why: &str, message: String, field: Option<&str>) -> Status {
    let metadata: Vec<(&str, String)> = field
        .map(|f| ("field", f.to_string()))
        .into_iter()
        .collect();
    let violation = field.map(|f| (f.to_string(), message.clone()));
    quorate_proto::errors::status_with(code, why, message, &metadata, |details| {
        if let Some((field, description)) = violation {
            details.add_bad_request_violation(field, description);
        }
    })
}

/// How long an overloaded node asks callers to wait before trying again.
pub const OVERLOADED_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

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
            NodeError::MembershipRefused(_) => reason::MEMBERSHIP_CHANGE_REFUSED,
            NodeError::LearnerBehind { .. } => reason::LEARNER_BEHIND,
            NodeError::Overloaded { .. } => reason::RESOURCE_EXHAUSTED,
            NodeError::Busy(_) => reason::BUSY,
        }
    }

    /// The request field an invalid request is refused for: the messages of
    /// [`NodeError::Invalid`] that are about one field start with its name (`node_id: ...`).
    fn field(&self) -> Option<&str> {
        let NodeError::Invalid(message) = self else {
            return None;
        };
        let (field, _) = message.split_once(": ")?;
        let is_name = !field.is_empty()
            && field
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
        is_name.then_some(field)
    }

    /// The gRPC status clients see.
    pub fn to_status(&self) -> Status {
        if let Some(field) = self.field() {
            return error_status(
                Code::InvalidArgument,
                reason::INVALID_ARGUMENT,
                self.to_string(),
                Some(field),
            );
        }
        let code = match self {
            NodeError::Invalid(_) => Code::InvalidArgument,
            NodeError::Internal(_) => Code::Internal,
            NodeError::Corrupt(_) => Code::DataLoss,
            NodeError::MembershipRefused(_) | NodeError::LearnerBehind { .. } => {
                Code::FailedPrecondition
            }
            NodeError::Overloaded { .. } => Code::ResourceExhausted,
            _ => Code::Unavailable,
        };
        let mut metadata: Vec<(&str, String)> = Vec::new();
        if let NodeError::LearnerBehind {
            id,
            match_index,
            last_index,
            max_lag,
        } = self
        {
            for (key, value) in [
                ("node_id", id),
                ("match_index", match_index),
                ("last_index", last_index),
                ("max_lag", max_lag),
            ] {
                metadata.push((key, value.to_string()));
            }
        }
        if let NodeError::NotLeader { leader, address } = self {
            if let Some(leader) = leader {
                metadata.push(("leader_id", leader.to_string()));
            }
            if let Some(address) = address {
                metadata.push(("leader_address", address.clone()));
            }
        }
        if let NodeError::Overloaded { .. } = self {
            metadata.push(("limit", "pending_proposals".to_string()));
        }
        let overloaded = matches!(self, NodeError::Overloaded { .. });
        quorate_proto::errors::status_with(code, self.reason(), self.to_string(), &metadata, |d| {
            if overloaded {
                d.set_retry_info(Some(OVERLOADED_RETRY_DELAY));
            }
        })
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
            // (The message is this error's own text: keep what follows its prefix.)
            Some(reason::INVALID_ARGUMENT) => NodeError::Invalid(
                message
                    .strip_prefix("invalid request: ")
                    .unwrap_or(&message)
                    .to_string(),
            ),
            Some(reason::MEMBERSHIP_CHANGE_REFUSED) => NodeError::MembershipRefused(
                message
                    .strip_prefix("membership change refused: ")
                    .unwrap_or(&message)
                    .to_string(),
            ),
            // The leader refused this node, which was removed: nothing was proposed.
            Some(reason::MEMBER_REMOVED) => NodeError::NoQuorum {
                reason: format!("this node was removed from the cluster ({message})"),
            },
            Some(reason::RESOURCE_EXHAUSTED) => NodeError::Overloaded {
                reason: message
                    .strip_prefix("overloaded: ")
                    .and_then(|m| m.strip_suffix("; retry later"))
                    .unwrap_or(&message)
                    .to_string(),
            },
            Some(reason::BUSY) => NodeError::Busy(
                message
                    .strip_prefix("busy: ")
                    .and_then(|m| m.strip_suffix("; retry shortly"))
                    .unwrap_or(&message)
                    .to_string(),
            ),
            Some(reason::LEARNER_BEHIND) => {
                let info = info.as_ref().expect("present");
                let number = |key: &str| {
                    info.metadata
                        .get(key)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_default()
                };
                NodeError::LearnerBehind {
                    id: number("node_id"),
                    match_index: number("match_index"),
                    last_index: number("last_index"),
                    max_lag: number("max_lag"),
                }
            }
            Some(_) => NodeError::Internal(message),
            // A transport failure after the request may have left: the leader may have
            // received and committed it.
            None => NodeError::OutcomeUnknown {
                reason: format!("the leader did not answer ({:?}: {message})", status.code()),
            },
        }
    }
}

/// What a refusal of the Raft core means for the caller (`leader_address` names a known
/// leader's peer address).
pub(crate) fn raft_error(
    e: RaftError,
    leader_address: impl Fn(NodeId) -> Option<String>,
) -> NodeError {
    match e {
        RaftError::NotLeader {
            leader_hint: Some(leader),
        } => NodeError::NotLeader {
            leader: Some(leader),
            address: leader_address(leader),
        },
        RaftError::NotLeader { leader_hint: None } => NodeError::NoQuorum {
            reason: "this node knows no leader".into(),
        },
        RaftError::NoQuorum => NodeError::NoQuorum {
            reason: "this node lost contact with a majority (check-quorum) and knows no leader"
                .into(),
        },
        RaftError::TransferInProgress { target } => NodeError::NoQuorum {
            reason: format!("leadership is being handed to node {target}; retry shortly"),
        },
        RaftError::InvalidTransferTarget { target, reason } => {
            NodeError::Invalid(format!("cannot hand leadership to node {target}: {reason}"))
        }
        RaftError::ProposalTooLarge { size, max } => {
            NodeError::Invalid(format!("command of {size} bytes exceeds {max} bytes"))
        }
        RaftError::MembershipChangeRefused { reason } => NodeError::MembershipRefused(reason),
        RaftError::LearnerBehind {
            id,
            match_index,
            last_index,
            max_lag,
        } => NodeError::LearnerBehind {
            id,
            match_index,
            last_index,
            max_lag,
        },
        other => NodeError::Internal(other.to_string()),
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
            NodeError::Invalid("node_id: node 4 is already a member".into()),
            NodeError::MembershipRefused("a change is in progress".into()),
            NodeError::Overloaded {
                reason: "8192 proposals pending".into(),
            },
            NodeError::Busy("a snapshot streams to node 3".into()),
            NodeError::LearnerBehind {
                id: 4,
                match_index: 10,
                last_index: 5000,
                max_lag: 1000,
            },
        ];
        for error in errors {
            let status = error.to_status();
            let info = status.get_details_error_info().expect("ErrorInfo attached");
            assert_eq!(info.reason, error.reason());
            assert_eq!(info.domain, "quorate");
            let back = NodeError::from_status(&status);
            assert_eq!(back.reason(), error.reason());
            if matches!(
                error,
                NodeError::Invalid(_)
                    | NodeError::MembershipRefused(_)
                    | NodeError::Overloaded { .. }
                    | NodeError::Busy(_)
            ) {
                assert_eq!(back, error, "no doubled prefix");
            }
            if let NodeError::Invalid(why) = &error {
                let field = info.metadata.get("field").map(String::as_str);
                assert_eq!(field, why.split_once(": ").map(|(f, _)| f), "{why}");
            }
            if matches!(error, NodeError::LearnerBehind { .. }) {
                assert_eq!(back, error, "the numbers travel in the metadata");
                assert_eq!(status.code(), Code::FailedPrecondition);
            }
            if matches!(error, NodeError::Overloaded { .. }) {
                assert_eq!(status.code(), Code::ResourceExhausted);
                let delay = status.get_details_retry_info().and_then(|r| r.retry_delay);
                assert_eq!(delay, Some(OVERLOADED_RETRY_DELAY), "a retry hint");
            }
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

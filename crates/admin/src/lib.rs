//! # quorate-admin
//!
//! The `quorate.admin.v1.Admin` service: what operators ask a node. Today: `Status`.
//! Membership, leadership control and the split-brain report arrive with their milestone.
#![deny(missing_docs)]

use std::sync::Arc;

use quorate_node::{NodeHandle, NodeStatus};
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_server::{Admin, AdminServer};
use quorate_raft_core::Role;
use tonic::{Request, Response, Status};

/// Reads the application's counters (the admin crate does not know the application).
pub type CounterSource = Arc<dyn Fn() -> pb::Counters + Send + Sync>;

/// The admin service of one node.
#[derive(Clone)]
pub struct AdminService {
    node: NodeHandle,
    client_address: String,
    counters: CounterSource,
}

impl AdminService {
    /// The service for `node`, whose clients reach it at `client_address`; `counters` reads
    /// the application's counters.
    pub fn new(node: NodeHandle, client_address: String, counters: CounterSource) -> Self {
        AdminService {
            node,
            client_address,
            counters,
        }
    }

    /// The tonic server.
    pub fn into_server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }
}

/// The role as the admin API names it.
pub fn role_to_proto(role: Role) -> pb::Role {
    match role {
        Role::Follower => pb::Role::Follower,
        Role::PreCandidate => pb::Role::PreCandidate,
        Role::Candidate => pb::Role::Candidate,
        Role::Leader => pb::Role::Leader,
        Role::Learner => pb::Role::Learner,
    }
}

/// The `Status` answer for a node status.
pub fn status_to_proto(
    status: &NodeStatus,
    client_address: &str,
    counters: pb::Counters,
) -> pb::StatusResponse {
    let raft = &status.raft;
    pb::StatusResponse {
        node_id: raft.id,
        role: role_to_proto(raft.role) as i32,
        term: raft.term,
        leader_id: raft.leader_id.unwrap_or(0),
        commit_index: raft.commit_index,
        applied_index: raft.applied_index,
        last_log_index: raft.last_log_index,
        last_log_term: raft.last_log_term,
        persisted_index: raft.persisted_index,
        has_leader: status.has_leader(),
        quorum_active: raft.quorum_active,
        lease_remaining_ms: status.lease_remaining().as_millis() as u64,
        peer_address: status.peers.get(&raft.id).cloned().unwrap_or_default(),
        client_address: client_address.to_string(),
        leader_peer_address: status.leader_address().unwrap_or_default().to_string(),
        voters: raft.conf.voters.iter().copied().collect(),
        counters: Some(counters),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(status_to_proto(
            &self.node.status(),
            &self.client_address,
            (self.counters)(),
        )))
    }
}

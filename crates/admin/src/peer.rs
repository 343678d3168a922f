//! The operator's peer RPCs: probes (for another node's split-brain report) and leadership
//! transfers forwarded to the leader. Raft messages and forwarded writes are the node's own
//! (`quorate_node::NodePeer`).

use quorate_node::OperatorRpcs;
use quorate_proto::raft as pb;
use quorate_raft_core::NodeId;
use tonic::Status;

use crate::AdminService;

/// What `quorate_node::NodePeer` calls for probes and transfers.
#[derive(Clone)]
pub struct AdminPeer {
    pub(crate) admin: AdminService,
}

impl OperatorRpcs for AdminPeer {
    async fn probe(&self, request: pb::ProbeRequest) -> Result<pb::ProbeResponse, Status> {
        let status = self.admin.local_status().await;
        let (hash, hash_error) = match request.hash_index {
            None => (None, String::new()),
            Some(index) => match self.admin.hash(index).await {
                Ok(hash) => (Some(hash), String::new()),
                Err(e) => (None, e.to_string()),
            },
        };
        let (state, state_error) = match request.state_hash {
            false => (None, String::new()),
            true => match self.admin.state_hash().await {
                Ok((applied_index, hash)) => (
                    Some(pb::StateHash {
                        applied_index,
                        hash,
                    }),
                    String::new(),
                ),
                Err(e) => (None, e.to_string()),
            },
        };
        Ok(pb::ProbeResponse {
            status: Some(status),
            hash,
            hash_error,
            state,
            state_error,
        })
    }

    async fn transfer(&self, target: NodeId) -> Result<NodeId, Status> {
        let node = self.admin.node();
        let result = if target == 0 {
            node.step_down().await
        } else {
            node.transfer_leadership(target).await.map(|()| target)
        };
        result.map_err(|e| e.to_status())
    }
}

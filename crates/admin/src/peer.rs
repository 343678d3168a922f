//! The peer-port handler: Raft messages and forwarded writes go to the node; probes and
//! leadership transfers are answered here.

use bytes::Bytes;
use quorate_proto::raft as pb;
use quorate_raft_core::{Index, Message, NodeId, Term};
use quorate_transport::PeerHandler;
use tonic::Status;

use crate::AdminService;

/// What the transport's server calls.
#[derive(Clone)]
pub struct AdminPeer {
    pub(crate) admin: AdminService,
}

impl PeerHandler for AdminPeer {
    async fn deliver(&self, message: Message) -> Result<Option<Message>, Status> {
        self.admin.node().deliver(message).await
    }

    async fn forward(&self, command: Bytes) -> Result<(Index, Term, Bytes), Status> {
        match self.admin.node().propose_here(command).await {
            Ok(applied) => Ok((applied.index, applied.term, applied.output)),
            Err(e) => Err(e.to_status()),
        }
    }

    async fn probe(&self, hash_index: Option<u64>) -> Result<pb::ProbeResponse, Status> {
        let status = self.admin.local_status().await;
        let (hash, hash_error) = match hash_index {
            None => (None, String::new()),
            Some(index) => match self.admin.hash(index).await {
                Ok(hash) => (Some(hash), String::new()),
                Err(e) => (None, e),
            },
        };
        Ok(pb::ProbeResponse {
            status: Some(status),
            hash,
            hash_error,
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

//! The peer port's handler: Raft messages, forwarded writes and forwarded membership changes
//! go to this node, the write path's own hops; the operator's peer RPCs (a probe for the
//! split-brain report, a leadership transfer) go to whoever the server wires in
//! (`quorate-admin`).

use std::future::Future;

use bytes::Bytes;
use quorate_proto::raft as pb;
use quorate_raft_core::{Index, Message, NodeId, Term};
use quorate_transport::PeerHandler;
use tonic::Status;

use crate::{MemberOp, NodeHandle};

/// The peer RPCs that serve operators rather than the write path.
pub trait OperatorRpcs: Clone + Send + Sync + 'static {
    /// This node's own view, with the hashes `request` asks for.
    fn probe(
        &self,
        request: pb::ProbeRequest,
    ) -> impl Future<Output = Result<pb::ProbeResponse, Status>> + Send;

    /// Hands leadership to `target` (0: to the best follower); returns the target.
    fn transfer(&self, target: NodeId) -> impl Future<Output = Result<NodeId, Status>> + Send;
}

/// What the peer port calls on a running node.
#[derive(Clone)]
pub struct NodePeer<O> {
    node: NodeHandle,
    operator: O,
}

impl<O: OperatorRpcs> NodePeer<O> {
    /// The handler for `node`, with `operator` answering probes and transfers.
    pub fn new(node: NodeHandle, operator: O) -> Self {
        NodePeer { node, operator }
    }
}

impl<O: OperatorRpcs> PeerHandler for NodePeer<O> {
    async fn deliver(&self, message: Message) -> Result<Option<Message>, Status> {
        self.node.deliver(message).await
    }

    async fn forward(&self, command: Bytes) -> Result<(Index, Term, Bytes), Status> {
        match self.node.propose_here(command).await {
            Ok(applied) => Ok((applied.index, applied.term, applied.output)),
            Err(e) => Err(e.to_status()),
        }
    }

    async fn probe(&self, request: pb::ProbeRequest) -> Result<pb::ProbeResponse, Status> {
        self.operator.probe(request).await
    }

    async fn transfer(&self, target: NodeId) -> Result<NodeId, Status> {
        self.operator.transfer(target).await
    }

    async fn change_membership(
        &self,
        changes: Vec<pb::MemberChange>,
    ) -> Result<(Index, Term), Status> {
        let ops = changes
            .iter()
            .map(MemberOp::from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_status())?;
        match self.node.change_membership_here(ops).await {
            Ok(applied) => Ok((applied.index, applied.term)),
            Err(e) => Err(e.to_status()),
        }
    }
}

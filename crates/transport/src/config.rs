//! Transport settings.

use std::collections::BTreeMap;
use std::time::Duration;

use quorate_raft_core::NodeId;

/// How a node talks to its peers.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Identifies the cluster; messages from another cluster are refused.
    pub cluster_id: u64,
    /// This node.
    pub node_id: NodeId,
    /// Every other member's peer address (`host:port`).
    pub peers: BTreeMap<NodeId, String>,
    /// Deadline of one RPC.
    pub rpc_timeout: Duration,
    /// Deadline for establishing a connection.
    pub connect_timeout: Duration,
    /// AppendEntries RPCs in flight per peer.
    pub max_appends_in_flight: usize,
    /// Messages queued per peer before new ones are dropped.
    pub queue_capacity: usize,
    /// Largest gRPC message accepted or sent.
    pub max_message_bytes: usize,
    /// First back-off after a failed RPC; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// This node's timing settings, sent with every request; peers refuse requests whose
    /// settings differ from theirs.
    pub timing: quorate_proto::raft::Timing,
    /// Peer TLS (`--peer-cert-file` and the rest): this node's side of the handshakes it
    /// starts, and the server settings of its peer port. None: plain TCP.
    pub tls: Option<quorate_security::tls::PeerTls>,
}

impl TransportConfig {
    /// The header of a request from this node to `to`, sent in `term`.
    pub fn header(&self, to: NodeId, term: u64) -> quorate_proto::raft::Header {
        quorate_proto::raft::Header {
            cluster_id: self.cluster_id,
            from: self.node_id,
            to,
            term,
            timing: Some(self.timing),
        }
    }

    /// Defaults suited to a LAN, for `node_id` talking to `peers`.
    pub fn new(cluster_id: u64, node_id: NodeId, peers: BTreeMap<NodeId, String>) -> Self {
        TransportConfig {
            cluster_id,
            node_id,
            peers,
            rpc_timeout: Duration::from_millis(1_000),
            connect_timeout: Duration::from_millis(500),
            max_appends_in_flight: 64,
            queue_capacity: 4_096,
            max_message_bytes: 16 << 20,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(1_000),
            timing: quorate_proto::raft::Timing::default(),
            tls: None,
        }
    }
}

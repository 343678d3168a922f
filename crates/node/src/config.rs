//! Node settings, in wall-clock units, and their translation into the core's ticks.

use std::collections::BTreeMap;
use std::time::Duration;

use quorate_raft_core::{Config, NodeId, CONTACT_SILENCE_HEARTBEATS};

/// The defaults, once: `NodeConfig::new`, `quorate serve` and its `--help` use these.
/// Suited to a LAN, as etcd's are.
pub mod defaults {
    use std::time::Duration;

    /// How often a leader sends heartbeats.
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
    /// The minimum election timeout.
    pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(1_000);
    /// The clock-drift bound the lease allows for.
    pub const MAX_CLOCK_DRIFT: Duration = Duration::from_millis(100);
    /// Lease reads on.
    pub const LEASE_READS: bool = true;
    /// How long a write may wait to be applied before its outcome is reported unknown.
    pub const REQUEST_TIMEOUT: Duration =
        Duration::from_millis(quorate_raft_core::DEFAULT_REQUEST_TIMEOUT_MS);
    /// Entries applied between two compactions of the log.
    pub const SNAPSHOT_COUNT: u64 = 10_000;
    /// Entries kept behind the compaction point for slow followers.
    pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5_000;
    /// Proposals a leader holds between proposing and applying; more are refused with
    /// `RESOURCE_EXHAUSTED`. (About a second and a half of writes at this machine's best
    /// rate: a backlog beyond it would only be answered after clients gave up.)
    pub const MAX_PENDING_PROPOSALS: usize = 8_192;
}

/// Core ticks per heartbeat interval: a tick is half a heartbeat interval.
const HEARTBEAT_TICKS: u32 = 2;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node.
    pub id: NodeId,
    /// Identifies the cluster (derived from the initial membership).
    pub cluster_id: u64,
    /// Every member's peer address, this node included.
    pub peers: BTreeMap<NodeId, String>,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// The minimum election timeout; the randomized timeout lies in `[t, 2t)`. Also the
    /// window of check-quorum and leader stickiness.
    pub election_timeout: Duration,
    /// The most two members' clocks may drift apart over one election timeout; the leader
    /// lease is shorter than the election timeout by this much.
    pub max_clock_drift: Duration,
    /// Serve linearizable reads from the leader lease while it holds.
    pub lease_reads: bool,
    /// How long a proposal may wait to be applied before its outcome is reported unknown.
    pub request_timeout: Duration,
    /// Compact the log once this many entries were applied since the last compaction (0:
    /// never).
    pub snapshot_count: u64,
    /// Entries kept in the log behind the compaction point, so that a follower slightly
    /// behind catches up with appends rather than a snapshot.
    pub snapshot_catch_up_entries: u64,
    /// The most proposals the leader holds between proposing and applying; a proposal beyond
    /// it is refused with [`crate::NodeError::Overloaded`], before it reaches the log.
    pub max_pending_proposals: usize,
    /// Peer TLS (None: plain TCP between peers).
    pub peer_tls: Option<quorate_security::tls::PeerTls>,
    /// Where the node records its metrics (fsync, apply and commit latencies, peer round
    /// trips, snapshots). A fresh set by default; `quorate serve` registers it for `/metrics`.
    pub metrics: quorate_telemetry::Metrics,
}

impl NodeConfig {
    /// The [`defaults`]: 100 ms heartbeats, 1 s election timeout, 100 ms drift bound, lease
    /// reads on, 5 s request timeout.
    pub fn new(id: NodeId, cluster_id: u64, peers: BTreeMap<NodeId, String>) -> Self {
        NodeConfig {
            id,
            cluster_id,
            peers,
            heartbeat_interval: defaults::HEARTBEAT_INTERVAL,
            election_timeout: defaults::ELECTION_TIMEOUT,
            max_clock_drift: defaults::MAX_CLOCK_DRIFT,
            lease_reads: defaults::LEASE_READS,
            request_timeout: defaults::REQUEST_TIMEOUT,
            snapshot_count: defaults::SNAPSHOT_COUNT,
            snapshot_catch_up_entries: defaults::SNAPSHOT_CATCH_UP_ENTRIES,
            max_pending_proposals: defaults::MAX_PENDING_PROPOSALS,
            peer_tls: None,
            metrics: Default::default(),
        }
    }

    /// The length of one core tick: half a heartbeat interval.
    pub fn tick(&self) -> Duration {
        self.heartbeat_interval / HEARTBEAT_TICKS
    }

    fn ticks(&self, d: Duration) -> u32 {
        let tick = self.tick().as_micros().max(1);
        d.as_micros().div_ceil(tick).min(u128::from(u32::MAX)) as u32
    }

    /// The settings the leader lease depends on, as peers exchange them: every member must
    /// run with the same (the peer port refuses a request carrying others).
    pub fn timing(&self) -> quorate_proto::raft::Timing {
        quorate_proto::raft::Timing {
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            election_timeout_ms: self.election_timeout.as_millis() as u64,
            max_clock_drift_ms: self.max_clock_drift.as_millis() as u64,
        }
    }

    /// The core's configuration.
    pub fn raft_config(&self) -> Config {
        let election_min = self.ticks(self.election_timeout);
        Config {
            election_timeout_min_ticks: election_min,
            election_timeout_max_ticks: election_min * 2,
            heartbeat_interval_ticks: HEARTBEAT_TICKS,
            max_clock_drift_ticks: self.ticks(self.max_clock_drift),
            lease_reads: self.lease_reads,
            ..Config::new(self.id)
        }
    }

    /// Ticks of silence after which this node refuses requests at once (`Status::contact`):
    /// [`CONTACT_SILENCE_HEARTBEATS`] heartbeat intervals.
    pub fn contact_silence_ticks(&self) -> u32 {
        HEARTBEAT_TICKS * CONTACT_SILENCE_HEARTBEATS
    }

    /// A cluster id derived from the initial membership, so nodes started with different
    /// `--initial-cluster` flags refuse each other's messages.
    pub fn cluster_id_for(peers: &BTreeMap<NodeId, String>) -> u64 {
        // FNV-1a over "id=address," pairs: stable across platforms and releases.
        let mut hash = quorate_raft_core::fnv::Fnv1a::default();
        for (id, address) in peers {
            hash.write(format!("{id}={address},").as_bytes());
        }
        hash.finish()
    }
}

/// Parses `--initial-cluster`: `1=host:port,2=host:port` (ids from 1, each once, every
/// address with a port). The error names the flag and the part that is wrong.
pub fn parse_initial_cluster(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut members = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, address) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster: {part:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("--initial-cluster: {id:?} is not a node id (a number)"))?;
        if id == 0 {
            return Err("--initial-cluster: node ids start at 1".into());
        }
        let address = address.trim();
        if address
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            return Err(format!(
                "--initial-cluster: {address:?} (node {id}) is not HOST:PORT"
            ));
        }
        if members.insert(id, address.to_string()).is_some() {
            return Err(format!("--initial-cluster: node {id} is listed twice"));
        }
    }
    if members.is_empty() {
        return Err("--initial-cluster is empty".into());
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_translate_into_a_valid_core_config_with_a_lease() {
        let peers = BTreeMap::from([(1, "a:1".to_string())]);
        let config = NodeConfig::new(1, 7, peers);
        let raft = config.raft_config();
        raft.validate().unwrap();
        assert_eq!(config.tick(), Duration::from_millis(50));
        assert_eq!(raft.election_timeout_min_ticks, 20);
        assert_eq!(raft.max_clock_drift_ticks, 2);
        // 20 - 2 - 1 ticks of 50 ms.
        assert_eq!(raft.lease_ticks(), 17);
    }

    #[test]
    fn cluster_id_depends_on_the_whole_membership() {
        let a = BTreeMap::from([(1, "h1:2380".to_string()), (2, "h2:2380".to_string())]);
        let mut b = a.clone();
        b.insert(2, "h3:2380".into());
        assert_ne!(
            NodeConfig::cluster_id_for(&a),
            NodeConfig::cluster_id_for(&b)
        );
        assert_eq!(
            NodeConfig::cluster_id_for(&a),
            NodeConfig::cluster_id_for(&a.clone())
        );
    }
}

//! Before the Raft node runs: which cluster and member the data directory belongs to, and what
//! a node whose store is blank does.
//!
//! A blank store (no identity, no hard state, no entry) is ambiguous: a member of a cluster
//! that starts for the first time, a new member joining a running cluster, or a member whose
//! disk was lost or replaced, which must not act as if it had never voted or acknowledged
//! anything. The node asks every peer for its term, its log and what its membership makes of
//! this node (`Probe` on the peer port) and does what [`quorate_raft_core::bootstrap::decide`]
//! says: start a new cluster, join as a new member, rejoin as a non-voter, wait for the peers
//! that did not answer, or refuse with the command that recovers it. While
//! it waits it answers its peers' probes as blank ([`StartingPeer`]), so the members of a new
//! cluster, all blank, find each other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quorate_log_store::{Identity, LogStore};
use quorate_proto::{admin as admin_pb, raft as pb};
use quorate_raft_core::bootstrap::{self, ClusterState, Decision, PeerState, Standing};
use quorate_raft_core::{Index, LogWriter, Message, NodeId, Term};
use quorate_transport::{PeerHandler, StatsTable, Transport, TransportConfig};
use tokio::sync::mpsc;
use tonic::Status;

use crate::{NodeConfig, NodeError};

/// How long one probe of a peer may take.
const PROBE_DEADLINE: Duration = Duration::from_secs(1);
/// Pause between two rounds of probes while some peers have not answered.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How often the node says, while it waits, which peers it is waiting for.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Checks that `store` belongs to this member, and readies a blank store as `mode`
/// (`--initial-cluster-state`) and the peers' answers say. Returns the cluster's id once the
/// Raft node may start over `store`; an error says why it must not and what to do.
///
/// The cluster id is created once, when the cluster first starts (from its initial
/// membership), and stored: a node that restarts keeps it whatever its flags say now, and a
/// new member that joins a running cluster learns it from the members it asks.
pub async fn prepare_store(
    store: &LogStore,
    config: &NodeConfig,
    mode: ClusterState,
) -> Result<u64, NodeError> {
    let storage = |e: quorate_log_store::LogStoreError| NodeError::Internal(e.to_string());
    if let Some(found) = store.identity().map_err(storage)? {
        return check_identity(store, found, config);
    }
    if !store.is_blank().map_err(storage)? {
        // Written by a release that kept no identity: it is this member's own.
        let identity = Identity {
            cluster_id: config.cluster_id,
            member_id: config.id,
        };
        store.set_identity(&identity).map_err(storage)?;
        return Ok(config.cluster_id);
    }
    let (decision, cluster_id) = ask_peers(config, mode).await?;
    match decision {
        Decision::Bootstrap => {
            tracing::info!("every peer answered and none holds data: starting a new cluster");
        }
        Decision::Rejoin(hard_state) => {
            tracing::warn!(
                term = hard_state.term,
                "rejoining with an empty data directory: this member will neither vote nor \
                 campaign until a leader elected without it has brought it up to date"
            );
            let mut writer = store.clone();
            writer
                .persist(Some(&hard_state), &[], true)
                .map_err(|e| NodeError::Internal(e.to_string()))?;
        }
        Decision::Join => {
            tracing::info!(
                cluster = format!("{cluster_id:016x}"),
                "joining the cluster as a new member: the leader sends the log (or a \
                 snapshot) once this member is added (quoratectl members add)"
            );
            store.start_without_membership().map_err(storage)?;
        }
        Decision::Refuse(reason) => return Err(NodeError::Invalid(reason)),
        Decision::Wait { .. } | Decision::NotYetAdded => {
            unreachable!("ask_peers waits until the decision is final")
        }
    }
    let identity = Identity {
        cluster_id,
        member_id: config.id,
    };
    store.set_identity(&identity).map_err(storage)?;
    Ok(cluster_id)
}

fn check_identity(
    store: &LogStore,
    found: Identity,
    config: &NodeConfig,
) -> Result<u64, NodeError> {
    if found.member_id != config.id {
        return Err(NodeError::Invalid(format!(
            "the data directory {} belongs to member {} of cluster {:016x}, but this node was \
             started as member {}: --id must be the one the data directory was created with",
            store.path().display(),
            found.member_id,
            found.cluster_id,
            config.id
        )));
    }
    if found.cluster_id != config.cluster_id {
        tracing::info!(
            cluster = format!("{:016x}", found.cluster_id),
            "the data directory belongs to this cluster (its id was fixed when the cluster \
             first started; --initial-cluster now serves only as the addresses to start with)"
        );
    }
    Ok(found.cluster_id)
}

/// Whether a peer refused the probe because this node was removed from the cluster.
fn is_member_removed(status: &Status) -> bool {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .is_some_and(|info| info.reason == quorate_proto::errors::reason::MEMBER_REMOVED)
}

/// What `status`, a peer's answer, makes of node `me`.
fn standing(status: &admin_pb::StatusResponse, me: NodeId) -> Standing {
    if status.removed_ids.contains(&me) {
        Standing::Removed
    } else if status.voters.contains(&me) || status.voters_outgoing.contains(&me) {
        Standing::Voter
    } else if status.learners.contains(&me) {
        Standing::Learner
    } else {
        Standing::Unknown
    }
}

/// Probes every peer until [`bootstrap::decide`] gives a final answer; returns it with the
/// cluster's id (for `existing`, the one the peers report).
async fn ask_peers(config: &NodeConfig, mode: ClusterState) -> Result<(Decision, u64), NodeError> {
    let mut peers: BTreeMap<NodeId, String> = config
        .peers
        .iter()
        .filter(|(&id, _)| id != config.id)
        .map(|(&id, address)| (id, address.clone()))
        .collect();
    // A member that joins a running cluster does not know its id yet: it asks as cluster 0,
    // which members answer for probes only.
    let asking_as = match mode {
        ClusterState::New => config.cluster_id,
        ClusterState::Existing => 0,
    };
    // A transport of its own, for probes only: nothing is ever sent through its queues.
    let (inbox, _unused) = mpsc::channel(1);
    let transport = Transport::start(
        TransportConfig {
            timing: config.timing(),
            tls: config.peer_tls.clone(),
            ..TransportConfig::new(asking_as, config.id, peers.clone())
        },
        inbox,
        Arc::new(StatsTable::default()),
    )
    .map_err(|e| NodeError::Invalid(e.to_string()))?;
    tracing::info!(
        ?mode,
        peers = ?peers.keys().collect::<Vec<_>>(),
        "the data directory is empty: asking every peer whether the cluster already holds data"
    );
    let started = Instant::now();
    let mut reported: Option<Instant> = None;
    loop {
        let mut answers = BTreeMap::new();
        let mut failures = Vec::new();
        let mut cluster_ids = BTreeMap::new();
        // The leader the answers name, when `--initial-cluster` did not list it (a joining
        // node may be given an old list): it is asked too, since only it knows whether this
        // node acknowledged anything. (Not every member: one that is down for good, say the
        // one being replaced, would keep this node waiting for ever.)
        let mut named: BTreeMap<NodeId, String> = BTreeMap::new();
        for &peer in peers.keys() {
            let answer = match transport.probe(peer, None, PROBE_DEADLINE).await {
                Ok(reply) => reply.status.map(|s| {
                    if s.cluster_id != 0 {
                        cluster_ids.insert(peer, s.cluster_id);
                    }
                    let leader = s.leader_id;
                    if mode == ClusterState::Existing
                        && leader != 0
                        && leader != config.id
                        && !s.leader_peer_address.is_empty()
                    {
                        named.insert(leader, s.leader_peer_address.clone());
                    }
                    // (Only a leader tracks how far each member matches its log.)
                    let asker_match = s
                        .peers
                        .iter()
                        .find(|p| p.node_id == config.id)
                        .map_or(0, |p| p.match_index);
                    PeerState {
                        term: s.term,
                        last_index: s.last_log_index,
                        asker: standing(&s, config.id),
                        asker_match,
                    }
                }),
                Err(status) if is_member_removed(&status) => Some(PeerState {
                    term: 0,
                    last_index: 0,
                    asker: Standing::Removed,
                    asker_match: 0,
                }),
                Err(status) => {
                    failures.push(format!("{peer}: {}", status.message()));
                    None
                }
            };
            answers.insert(peer, answer);
        }
        let unasked: BTreeMap<NodeId, String> = named
            .into_iter()
            .filter(|(id, _)| !peers.contains_key(id))
            .collect();
        if !unasked.is_empty() {
            tracing::info!(
                leader = ?unasked.keys().collect::<Vec<_>>(),
                "the members name a leader that --initial-cluster does not list: asking it too"
            );
            peers.extend(unasked);
            transport
                .set_peers(&peers)
                .map_err(|e| NodeError::Invalid(e.to_string()))?;
            continue;
        }
        let cluster_id = match mode {
            ClusterState::New => config.cluster_id,
            ClusterState::Existing => {
                let distinct: std::collections::BTreeSet<u64> =
                    cluster_ids.values().copied().collect();
                if distinct.len() > 1 {
                    return Err(NodeError::Invalid(format!(
                        "the peers given in --initial-cluster belong to different clusters \
                         (peer: cluster id {cluster_ids:x?}): list the members of one cluster"
                    )));
                }
                distinct.first().copied().unwrap_or(0)
            }
        };
        match bootstrap::decide(config.id, mode, &answers) {
            Decision::Wait { missing } => {
                if reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    reported = Some(Instant::now());
                    tracing::warn!(
                        ?missing,
                        waited_s = started.elapsed().as_secs(),
                        errors = failures.join("; "),
                        "an empty member starts only once every peer has answered (one that \
                         stays silent may hold the only record of what this member promised \
                         before): still waiting"
                    );
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Decision::NotYetAdded => {
                if reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    reported = Some(Instant::now());
                    tracing::warn!(
                        waited_s = started.elapsed().as_secs(),
                        "no member lists this node yet: waiting to be added (quoratectl \
                         members add {} --peer-url <this node's peer address>)",
                        config.id
                    );
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
            // (Peers of a release that did not report the id: the flags' one.)
            decision if cluster_id == 0 => return Ok((decision, config.cluster_id)),
            decision => return Ok((decision, cluster_id)),
        }
    }
}

/// The peer-port handler while the node waits in [`prepare_store`]: it answers probes as a
/// blank member and refuses everything else as unavailable.
#[derive(Clone)]
pub struct StartingPeer {
    /// This node.
    pub id: NodeId,
}

impl StartingPeer {
    fn unavailable(&self) -> Status {
        Status::unavailable(format!(
            "member {} is starting: its data directory is empty and it waits for every peer \
             to answer before it runs",
            self.id
        ))
    }
}

impl PeerHandler for StartingPeer {
    async fn deliver(&self, _message: Message) -> Result<Option<Message>, Status> {
        Err(self.unavailable())
    }

    async fn forward(&self, _command: Bytes) -> Result<(Index, Term, Bytes), Status> {
        Err(self.unavailable())
    }

    async fn probe(&self, _request: pb::ProbeRequest) -> Result<pb::ProbeResponse, Status> {
        Ok(pb::ProbeResponse {
            status: Some(admin_pb::StatusResponse {
                node_id: self.id,
                ..Default::default()
            }),
            hash: None,
            hash_error: "the node is starting".to_string(),
            state: None,
            state_error: "the node is starting".to_string(),
        })
    }

    async fn transfer(&self, _target: NodeId) -> Result<NodeId, Status> {
        Err(self.unavailable())
    }

    async fn change_membership(
        &self,
        _changes: Vec<pb::MemberChange>,
    ) -> Result<(Index, Term), Status> {
        Err(self.unavailable())
    }
}

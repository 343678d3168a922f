//! A node's own status and its view of every peer, as the admin API reports them.

use std::time::Instant;

use quorate_node::{NodeHandle, NodeStatus};
use quorate_proto::admin as pb;
use quorate_raft_core::Role;

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

fn millis_since(at: Option<Instant>) -> Option<u64> {
    at.map(|t| t.elapsed().as_millis() as u64)
}

/// This node's view of every other member: from its own RPCs, and (as leader) from Raft's
/// progress tracking. A peer is reachable when an RPC this node sent it succeeded within the
/// election timeout (a success needs both directions to work).
pub fn peer_views(node: &NodeHandle, status: &NodeStatus) -> Vec<pb::PeerView> {
    let stats = node.peer_stats();
    let window = node.config().election_timeout;
    let last_index = status.raft.last_log_index;
    status
        .peers
        .iter()
        .filter(|(&id, _)| id != status.raft.id)
        .map(|(&id, address)| {
            let seen = stats.get(&id).cloned().unwrap_or_default();
            let progress = status.raft.progress.get(&id);
            pb::PeerView {
                node_id: id,
                peer_address: address.clone(),
                last_sent_ok_ms: millis_since(seen.last_sent_ok),
                last_received_ms: millis_since(seen.last_received),
                rtt_us: seen.rtt.map_or(0, |r| r.as_micros() as u64),
                peer_term: seen.peer_term.unwrap_or(0),
                consecutive_failures: seen.consecutive_failures,
                last_error: seen.last_error.unwrap_or_default(),
                match_index: progress.map_or(0, |p| p.match_index),
                lag: progress.map_or(0, |p| last_index.saturating_sub(p.match_index)),
                reachable: seen.last_sent_ok.is_some_and(|t| t.elapsed() < window),
                // Filled in by the admin service, which keeps the probes' results.
                clock_offset_ms: None,
            }
        })
        .collect()
}

/// The `Status` answer.
pub fn status_to_proto(
    node: &NodeHandle,
    status: &NodeStatus,
    client_address: &str,
    counters: pb::Counters,
    data_size_bytes: u64,
) -> pb::StatusResponse {
    let raft = &status.raft;
    pb::StatusResponse {
        node_id: raft.id,
        role: role_to_proto(raft.role) as i32,
        term: raft.term,
        leader_id: raft.leader_id.unwrap_or(0),
        commit_index: raft.commit_index,
        applied_index: raft.applied_index,
        first_log_index: raft.first_log_index,
        snapshot_index: status.snapshot_index,
        last_log_index: raft.last_log_index,
        last_log_term: raft.last_log_term,
        persisted_index: raft.persisted_index,
        // Not just "a leader id is known": one this node can reach now (the same test that
        // makes writes fail fast with NO_QUORUM).
        has_leader: node.check_quorum_reachable().is_ok(),
        quorum_active: raft.quorum_active,
        lease_remaining_ms: status.lease_remaining().as_millis() as u64,
        peer_address: status.peers.get(&raft.id).cloned().unwrap_or_default(),
        client_address: client_address.to_string(),
        leader_peer_address: status.leader_address().unwrap_or_default().to_string(),
        voters: raft.conf.voters.iter().copied().collect(),
        counters: Some(counters),
        peers: peer_views(node, status),
        data_size_bytes,
        leader_contact_ms: if raft.role == Role::Leader {
            0
        } else {
            (status.tick * raft.ticks_since_leader_contact.min(1 << 20)).as_millis() as u64
        },
        uptime_seconds: node.started_at().elapsed().as_secs(),
        wall_clock_unix_ms: quorate_node::wall_clock_ms(),
        rejoining_after_term: raft.rejoining,
        corrupt: status.corrupt.clone().unwrap_or_default(),
        writes_held: status.writes_held.clone().unwrap_or_default(),
        learners: raft.conf.learners.iter().copied().collect(),
        voters_outgoing: raft.conf.voters_outgoing.iter().copied().collect(),
        cluster_id: node.config().cluster_id,
        membership_index: status.membership_index,
        removed: status.is_removed(),
        removed_ids: status.removed.iter().copied().collect(),
        // Filled in by the admin service, which reads the store.
        log_size_bytes: 0,
    }
}

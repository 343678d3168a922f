//! A node that lost its disk: it rejoins without voting until a leader elected without it has
//! brought it up to date (`HardState::rejoining`, `bootstrap::decide`).

use std::collections::BTreeMap;

use super::Cluster;
use crate::bootstrap::{decide, ClusterState, Decision, PeerState, Standing};
use crate::{HardState, NodeId, Payload, Role, VoteRejection};

/// What `decide` tells `me` to write, from the other nodes' current state.
fn rejoin_state(cluster: &Cluster, me: NodeId) -> HardState {
    let answers: BTreeMap<NodeId, Option<PeerState>> = cluster
        .nodes
        .iter()
        .filter(|(&id, _)| id != me)
        .map(|(&id, n)| {
            let s = n.status();
            let answer = PeerState {
                term: s.term,
                last_index: s.last_log_index,
                asker: Standing::in_conf(&s.conf, me),
                asker_match: s.progress.get(&me).map_or(0, |p| p.match_index),
            };
            (id, Some(answer))
        })
        .collect();
    match decide(me, ClusterState::Existing, &answers) {
        Decision::Rejoin(hard_state) => hard_state,
        other => panic!("expected a rejoin, got {other:?}"),
    }
}

/// The scenario: 2 lags, 1 and 3 commit entries 2..=6, 3 loses its disk, 1 goes down.
/// Returns the cluster with 1 isolated and 3 rejoining.
fn committed_on_a_majority_that_then_loses_a_disk(tweak: impl Fn(&mut crate::Config)) -> Cluster {
    let mut cluster = Cluster::new(3, tweak);
    cluster.elect(1);
    cluster.isolate(2);
    for i in 0..5u8 {
        cluster.propose(1, &[i]);
        cluster.settle();
    }
    assert_eq!(cluster.commit(1), 6, "committed by 1 and 3");
    assert_eq!(cluster.nodes[&2].status().last_log_index, 1, "2 lags");
    let hard_state = rejoin_state(&cluster, 3);
    cluster.lose_disk(3, hard_state);
    cluster.heal();
    cluster.isolate(1);
    cluster
}

#[test]
fn a_rejoining_node_neither_votes_nor_campaigns() {
    let mut cluster = committed_on_a_majority_that_then_loses_a_disk(|_| {});
    let status = cluster.nodes[&3].status();
    assert_eq!((status.term, status.rejoining), (2, Some(1)));
    for _ in 0..100 {
        cluster.tick_all_and_settle(1);
        assert_ne!(cluster.role(3), Role::Candidate, "3 campaigned");
        assert_ne!(cluster.role(3), Role::PreCandidate, "3 campaigned");
        assert_ne!(
            cluster.role(2),
            Role::Leader,
            "2 won without the entries 1 and 3 committed"
        );
    }
    // 2 did ask, and 3 said why it refused.
    let refused = cluster.readies[&3]
        .iter()
        .flat_map(|r| &r.messages)
        .any(|m| {
            matches!(&m.payload, Payload::VoteResponse(r)
            if r.rejection == Some(VoteRejection::Rejoining))
        });
    assert!(refused, "3 never refused a vote as rejoining");
}

#[test]
fn a_rejoining_node_votes_again_once_a_leader_elected_without_it_brought_it_up_to_date() {
    let mut cluster = committed_on_a_majority_that_then_loses_a_disk(|_| {});
    cluster.heal();
    // The leader of term 1 (which 3 may have voted for, and which believes 3 still holds
    // entries 1..=6) hears of term 2 and steps down.
    cluster.tick_all_and_settle(1);
    assert!(cluster.leaders().is_empty());
    assert_eq!(cluster.nodes[&3].status().rejoining, Some(1));
    // 1 and 2 elect 1 in a later term; it brings 3 up to date.
    cluster.tick_all_and_settle(40);
    assert_eq!(
        cluster.leaders(),
        vec![1],
        "only 1 holds what was committed"
    );
    let status = cluster.nodes[&3].status();
    assert!(status.term > 2);
    assert_eq!(status.rejoining, None, "3 is whole again");
    assert_eq!(cluster.log_terms(3), cluster.log_terms(1));
    // And it may be elected again (a transfer skips the others' stickiness).
    cluster.node(1).transfer_leadership(3).unwrap();
    cluster.settle();
    assert_eq!(cluster.leaders(), vec![3]);
}

#[cfg(feature = "bug-injection")]
#[test]
fn an_amnesiac_voter_elects_a_leader_without_committed_entries() {
    use crate::InjectedBug;
    let mut cluster = committed_on_a_majority_that_then_loses_a_disk(|c| {
        c.injected_bug = Some(InjectedBug::AmnesiacVoter);
    });
    cluster.tick_all_and_settle(40);
    assert_eq!(
        cluster.leaders(),
        vec![2],
        "3's vote elected the lagging node"
    );
    assert!(
        cluster.log_terms(2).len() < 6,
        "the new leader lacks entries 1 and 3 committed"
    );
}

//! What a node with an empty store does before it runs: start a new cluster, rejoin one it
//! belonged to before its disk was lost, wait, or refuse.
//!
//! An empty data directory is ambiguous: a member of a cluster that is starting for the first
//! time, or a member whose disk was lost or replaced. The second must not act as if it had
//! never promised anything (it may have voted in a term, or acknowledged entries that a leader
//! then counted as committed). Its peers know which case it is: [`decide`] reads their answers.
//!
//! - A **new** cluster starts only when every peer answered and none holds anything (no term,
//!   no entry): then no member of this cluster can ever have voted or acknowledged.
//! - A member whose peers hold data lost its disk. Started as `new` it refuses, with the
//!   command that recovers it; started as `existing` it **rejoins**: once every peer has
//!   answered, it knows the highest term `M` any of them reached, which is at least every term
//!   it voted or acknowledged in before the loss (the candidate or leader it answered had
//!   persisted that term first). It takes term `M + 1`, so a leader of `M` (possibly elected
//!   with its lost vote, and believing it still holds entries it lost) steps down when it hears
//!   from it, and it neither votes nor campaigns until a leader of a term after `M`, elected
//!   without it, has brought it up to date ([`crate::HardState::rejoining`]).
//!
//! - A member the peers know only as a **learner**, and that the leader has never heard
//!   acknowledge anything, **joins**: it never voted, and it has nothing to remember. It
//!   starts empty and the leader that added it sends it the log. A learner that did
//!   acknowledge entries rejoins like a voter: the leader counts it as holding them, and a
//!   promotion on that belief would count entries it lost. One that no peer knows yet
//!   **waits** to be added (`quoratectl members add`); one the peers say was **removed**
//!   refuses: its id never comes back.
//!
//! Every peer must answer because a single silent one may be the candidate this node voted for
//! just before the loss, the only holder of the term that vote was in (or the only one whose
//! log already made this node a voter). The simulator runs this function for every node it
//! restarts after a disk loss.

use std::collections::BTreeMap;

use crate::types::{ConfState, HardState, Index, NodeId, Term};

/// How the operator started the node (`--initial-cluster-state`, as in etcd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Form a new cluster (the default): every member starts empty.
    New,
    /// Join a cluster that already runs: this member's disk was lost or replaced.
    Existing,
}

/// What one peer says about itself, and about the node that asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerState {
    /// Its current term.
    pub term: Term,
    /// Its last log index.
    pub last_index: Index,
    /// What the membership in force on it makes of the node that asks.
    pub asker: Standing,
    /// As leader: how far it counts the asker's log as matching its own (0 when it does not
    /// lead, or the asker never acknowledged anything in its term).
    pub asker_match: Index,
}

/// What a peer's membership makes of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Standing {
    /// Not a member (not added yet, as far as this peer knows).
    #[default]
    Unknown,
    /// A learner: it votes for nothing and its acknowledgements count for no commit.
    Learner,
    /// A voter (of either half of a joint configuration).
    Voter,
    /// Removed from the cluster: its id never comes back.
    Removed,
}

impl Standing {
    /// What `conf` makes of `id` (a configuration alone cannot say who was removed).
    pub fn in_conf(conf: &ConfState, id: NodeId) -> Self {
        if conf.is_voter(id) {
            Standing::Voter
        } else if conf.learners.contains(&id) {
            Standing::Learner
        } else {
            Standing::Unknown
        }
    }
}

impl PeerState {
    /// Whether the peer has taken part in the cluster (seen a term or stored an entry).
    pub fn has_data(&self) -> bool {
        self.term > 0 || self.last_index > 0
    }
}

/// What an empty node must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start a new cluster: write nothing special, run.
    Bootstrap,
    /// Rejoin: persist this hard state, then run.
    Rejoin(HardState),
    /// Join as a new member: start empty, with no membership of its own (the leader's log or
    /// snapshot brings it).
    Join,
    /// Every peer answered, and none lists this node: ask again once it has been added.
    NotYetAdded,
    /// Ask again later: these peers have not answered.
    Wait {
        /// The peers that did not answer.
        missing: Vec<NodeId>,
    },
    /// Do not start; the reason says what to do instead.
    Refuse(String),
}

/// Decides what node `me`, whose store is empty, does. `answers` holds one entry per peer:
/// `None` if it has not answered (yet).
pub fn decide(
    me: NodeId,
    mode: ClusterState,
    answers: &BTreeMap<NodeId, Option<PeerState>>,
) -> Decision {
    let with_data: Vec<NodeId> = answers
        .iter()
        .filter(|(_, a)| a.is_some_and(|a| a.has_data()))
        .map(|(&id, _)| id)
        .collect();
    let missing: Vec<NodeId> = answers
        .iter()
        .filter(|(_, a)| a.is_none())
        .map(|(&id, _)| id)
        .collect();
    match mode {
        ClusterState::New if !with_data.is_empty() => Decision::Refuse(format!(
            "member {me} has an empty data directory, but the cluster already runs (members \
             {with_data:?} hold data): this member lost its disk or was replaced, and starting it \
             as a new member could let it vote against what it promised before. Start it again \
             with --initial-cluster-state existing: it will rejoin as a non-voter and vote again \
             once a leader has brought it up to date"
        )),
        // (One peer that says so is enough, whoever else is silent.)
        ClusterState::Existing
            if answers
                .values()
                .flatten()
                .any(|a| a.asker == Standing::Removed) =>
        {
            Decision::Refuse(format!(
                "member {me} was removed from the cluster, and a removed id never comes back: \
                 wipe its data directory and add it as a new member with a new id \
                 (quoratectl members add)"
            ))
        }
        _ if !missing.is_empty() => Decision::Wait { missing },
        ClusterState::New => Decision::Bootstrap,
        ClusterState::Existing if with_data.is_empty() => Decision::Refuse(format!(
            "member {me} was started with --initial-cluster-state existing, but no member of \
             the cluster holds any data: the cluster has never run. Start every member with \
             --initial-cluster-state new"
        )),
        ClusterState::Existing
            if answers
                .values()
                .flatten()
                .all(|a| a.asker == Standing::Unknown) =>
        {
            Decision::NotYetAdded
        }
        ClusterState::Existing
            if !answers
                .values()
                .flatten()
                .any(|a| a.asker == Standing::Voter || a.asker_match > 0) =>
        {
            Decision::Join
        }
        ClusterState::Existing => {
            let term = answers
                .values()
                .flatten()
                .map(|a| a.term)
                .max()
                .unwrap_or(0);
            Decision::Rejoin(HardState {
                term: term + 1,
                vote: None,
                commit: 0,
                rejoining: Some(term),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(list: &[(NodeId, Option<(Term, Index)>)]) -> BTreeMap<NodeId, Option<PeerState>> {
        list.iter()
            .map(|&(id, a)| {
                let a = a.map(|(term, last_index)| PeerState {
                    term,
                    last_index,
                    asker: if term > 0 {
                        Standing::Voter
                    } else {
                        Standing::Unknown
                    },
                    asker_match: 0,
                });
                (id, a)
            })
            .collect()
    }

    #[test]
    fn a_new_cluster_starts_only_when_every_peer_answered_empty() {
        let some = answers(&[(2, Some((0, 0))), (3, None)]);
        assert_eq!(
            decide(1, ClusterState::New, &some),
            Decision::Wait { missing: vec![3] }
        );
        let all = answers(&[(2, Some((0, 0))), (3, Some((0, 0)))]);
        assert_eq!(decide(1, ClusterState::New, &all), Decision::Bootstrap);
    }

    #[test]
    fn a_new_member_whose_peers_hold_data_refuses_at_once() {
        // One peer with data is enough to know: no need to wait for the silent one.
        let a = answers(&[(2, Some((4, 200))), (3, None)]);
        let Decision::Refuse(reason) = decide(3, ClusterState::New, &a) else {
            panic!("must refuse");
        };
        assert!(
            reason.contains("--initial-cluster-state existing"),
            "{reason}"
        );
        assert!(reason.contains("member 3"), "{reason}");
    }

    #[test]
    fn a_rejoining_member_takes_the_highest_term_of_all_peers() {
        let partial = answers(&[(1, None), (2, Some((4, 200)))]);
        assert_eq!(
            decide(3, ClusterState::Existing, &partial),
            Decision::Wait { missing: vec![1] }
        );
        let all = answers(&[(1, Some((7, 150))), (2, Some((4, 200)))]);
        let Decision::Rejoin(hard_state) = decide(3, ClusterState::Existing, &all) else {
            panic!("must rejoin");
        };
        assert_eq!(hard_state.term, 8);
        assert_eq!(hard_state.vote, None);
        assert_eq!(hard_state.rejoining, Some(7));
    }

    #[test]
    fn a_learner_joins_empty_one_not_added_waits_and_a_removed_one_is_refused() {
        let standing = |asker| {
            let state = |term| {
                Some(PeerState {
                    term,
                    last_index: 90,
                    asker,
                    asker_match: 0,
                })
            };
            BTreeMap::from([(1, state(5)), (2, state(6))])
        };
        assert_eq!(
            decide(4, ClusterState::Existing, &standing(Standing::Learner)),
            Decision::Join
        );
        assert_eq!(
            decide(4, ClusterState::Existing, &standing(Standing::Unknown)),
            Decision::NotYetAdded
        );
        // One peer that has appended the entry adding it is enough.
        let mut one = standing(Standing::Unknown);
        one.get_mut(&1).unwrap().as_mut().unwrap().asker = Standing::Learner;
        assert_eq!(decide(4, ClusterState::Existing, &one), Decision::Join);
        let Decision::Refuse(reason) =
            decide(4, ClusterState::Existing, &standing(Standing::Removed))
        else {
            panic!("a removed member must be refused");
        };
        assert!(reason.contains("new id"), "{reason}");
        // Whoever else has not answered yet.
        let mut one_removed = standing(Standing::Removed);
        one_removed.insert(3, None);
        assert!(matches!(
            decide(4, ClusterState::Existing, &one_removed),
            Decision::Refuse(_)
        ));
        // A learner the leader heard acknowledge entries lost what the leader counts it as
        // holding: it rejoins (the new term resets every leader's view of it).
        let mut acked = standing(Standing::Learner);
        acked.get_mut(&2).unwrap().as_mut().unwrap().asker_match = 40;
        assert!(matches!(
            decide(4, ClusterState::Existing, &acked),
            Decision::Rejoin(_)
        ));
        // One peer that counts it as a voter is enough: it may have voted.
        let mut mixed = standing(Standing::Learner);
        mixed.get_mut(&2).unwrap().as_mut().unwrap().asker = Standing::Voter;
        assert!(matches!(
            decide(4, ClusterState::Existing, &mixed),
            Decision::Rejoin(_)
        ));
    }

    #[test]
    fn existing_is_refused_for_a_cluster_that_never_ran() {
        let a = answers(&[(1, Some((0, 0))), (2, Some((0, 0)))]);
        assert!(matches!(
            decide(3, ClusterState::Existing, &a),
            Decision::Refuse(_)
        ));
    }
}

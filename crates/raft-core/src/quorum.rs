//! Majority arithmetic, for simple and joint configurations.
//!
//! Every decision that needs "a majority" goes through here: elections, commit, check-quorum,
//! leases and read-index rounds. A joint configuration (Raft §6) needs a majority of *both*
//! voter sets.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{ConfState, NodeId};

/// The outcome of a vote count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused, so the election cannot be won.
    Lost,
    /// Neither yet.
    Pending,
}

/// The number of votes that make a majority of `n` voters.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Counts votes for one voter set. An empty set wins everything (it imposes no constraint,
/// which is what the outgoing half of a non-joint configuration needs).
fn vote_result_of(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for id in voters {
        match votes.get(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let needed = majority(voters.len());
    if granted >= needed {
        VoteResult::Won
    } else if granted + missing >= needed {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// Counts `votes` (voter → granted) against a possibly joint configuration.
pub fn vote_result(conf: &ConfState, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let incoming = vote_result_of(&conf.voters, votes);
    let outgoing = vote_result_of(&conf.voters_outgoing, votes);
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// The largest value that a majority of `voters` has reached, where `value_of` gives each
/// voter's value (e.g. its match index). `u64::MAX` for an empty set.
fn committed_value_of(voters: &BTreeSet<NodeId>, value_of: &impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut values: Vec<u64> = voters.iter().map(|&id| value_of(id)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[majority(values.len()) - 1]
}

/// The largest value a quorum of the (possibly joint) configuration has reached.
pub fn committed_value(conf: &ConfState, value_of: impl Fn(NodeId) -> u64) -> u64 {
    committed_value_of(&conf.voters, &value_of)
        .min(committed_value_of(&conf.voters_outgoing, &value_of))
}

/// Whether the voters for which `active` holds form a quorum.
pub fn is_quorum(conf: &ConfState, active: impl Fn(NodeId) -> bool) -> bool {
    let votes: BTreeMap<NodeId, bool> = conf
        .members()
        .into_iter()
        .map(|id| (id, active(id)))
        .collect();
    vote_result(conf, &votes) == VoteResult::Won
}

#[cfg(test)]
mod tests {
    use super::*;

    fn votes(pairs: &[(NodeId, bool)]) -> BTreeMap<NodeId, bool> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn majority_needs_more_than_half() {
        assert_eq!(
            [1, 2, 3, 4, 5, 7].map(majority),
            [1, 2, 2, 3, 3, 4],
            "majorities of 1, 2, 3, 4, 5, 7 voters"
        );
    }

    #[test]
    fn election_is_won_only_by_a_counted_majority() {
        let conf = ConfState::with_voters([1, 2, 3, 4, 5]);
        assert_eq!(
            vote_result(&conf, &votes(&[(1, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            vote_result(&conf, &votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            vote_result(&conf, &votes(&[(1, true), (2, true), (3, true)])),
            VoteResult::Won
        );
        assert_eq!(
            vote_result(
                &conf,
                &votes(&[(1, true), (2, false), (3, false), (4, false)])
            ),
            VoteResult::Lost
        );
        // Votes from non-members do not count.
        assert_eq!(
            vote_result(&conf, &votes(&[(1, true), (8, true), (9, true)])),
            VoteResult::Pending
        );
    }

    #[test]
    fn joint_configuration_needs_both_majorities() {
        let conf = ConfState {
            voters: [1, 2, 3].into(),
            voters_outgoing: [3, 4, 5].into(),
            ..ConfState::default()
        };
        assert_eq!(
            vote_result(&conf, &votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            vote_result(&conf, &votes(&[(1, true), (2, true), (4, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            vote_result(&conf, &votes(&[(1, true), (3, true), (4, true)])),
            VoteResult::Won
        );
        let matches = [(1, 9), (2, 9), (3, 5), (4, 4), (5, 3)];
        let value = |id: NodeId| matches.iter().find(|m| m.0 == id).unwrap().1;
        assert_eq!(committed_value(&conf, value), 4);
    }

    #[test]
    fn committed_value_is_the_majority_th_largest() {
        let conf = ConfState::with_voters([1, 2, 3]);
        let matches = [(1, 7), (2, 3), (3, 5)];
        let value = |id: NodeId| matches.iter().find(|m| m.0 == id).unwrap().1;
        assert_eq!(committed_value(&conf, value), 5);
        assert!(is_quorum(&conf, |id| id != 3));
        assert!(!is_quorum(&conf, |id| id == 3));
    }
}

//! Membership changes: learners, joint consensus, one change at a time, a removed leader, a
//! configuration in force from its append.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::Cluster;
use crate::{ConfState, Error, MemberChange, Message, Payload, Role};

fn conf(voters: &[u64], learners: &[u64], outgoing: &[u64]) -> ConfState {
    ConfState {
        voters: voters.iter().copied().collect(),
        learners: learners.iter().copied().collect(),
        voters_outgoing: outgoing.iter().copied().collect(),
    }
}

/// A 3-node cluster led by 1 that has committed an entry of its term.
fn led_by_one() -> Cluster {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x");
    cluster.settle();
    cluster
}

#[test]
fn a_learner_receives_the_log_but_never_counts() {
    let mut cluster = led_by_one();
    cluster.add_node(4, |_| {});
    assert_eq!(cluster.role(4), Role::Learner, "a new node waits");
    cluster.change(1, &[MemberChange::AddLearner(4)]).unwrap();
    for id in 1..=4 {
        assert_eq!(cluster.conf(id), conf(&[1, 2, 3], &[4], &[]), "node {id}");
    }
    assert_eq!(cluster.role(4), Role::Learner);
    assert_eq!(cluster.applied_data(4), vec![Bytes::from_static(b"x")]);
    // With both other voters cut off, the leader and the learner are no quorum.
    cluster.isolate(2);
    cluster.isolate(3);
    let commit = cluster.commit(1);
    cluster.propose(1, b"y");
    cluster.settle();
    assert_eq!(cluster.nodes[&4].status().last_log_index, commit + 1);
    assert_eq!(cluster.commit(1), commit, "a learner's copy made no commit");
    // A learner never campaigns.
    cluster.heal();
    cluster.isolate(1);
    for _ in 0..50 {
        cluster.tick(4);
    }
    assert_eq!(cluster.term(4), cluster.term(1));
}

#[test]
fn promotion_waits_until_the_learner_caught_up_then_joint_consensus_is_left_at_once() {
    let mut cluster = led_by_one();
    cluster.add_node(4, |_| {});
    cluster.change(1, &[MemberChange::AddLearner(4)]).unwrap();
    cluster.isolate(4);
    for i in 0..5 {
        cluster.propose(1, &[i]);
        cluster.settle();
    }
    cluster.node(1).raft.config.max_learner_lag_to_promote = 2;
    let refused = cluster
        .node(1)
        .propose_membership(&[MemberChange::AddVoter(4)], Bytes::new());
    assert!(
        matches!(refused, Err(Error::LearnerBehind { id: 4, .. })),
        "{refused:?}"
    );
    assert_eq!(
        cluster.conf(1),
        conf(&[1, 2, 3], &[4], &[]),
        "nothing changed"
    );
    cluster.heal();
    // A learner that never answered (it may not even run yet) is not promoted, however short
    // the log.
    cluster.add_node(5, |_| {});
    cluster.isolate(5);
    cluster.change(1, &[MemberChange::AddLearner(5)]).unwrap();
    cluster.node(1).raft.config.max_learner_lag_to_promote = 1000;
    let silent = cluster
        .node(1)
        .propose_membership(&[MemberChange::AddVoter(5)], Bytes::new());
    assert!(
        matches!(
            silent,
            Err(Error::LearnerBehind {
                id: 5,
                match_index: 0,
                ..
            })
        ),
        "{silent:?}"
    );
    cluster.change(1, &[MemberChange::Remove(5)]).unwrap();
    cluster.tick_all_and_settle(2);
    let (joint_index, _) = {
        cluster
            .node(1)
            .propose_membership(&[MemberChange::AddVoter(4)], Bytes::new())
            .unwrap();
        cluster.node(1).membership()
    };
    assert_eq!(
        cluster.conf(1),
        conf(&[1, 2, 3, 4], &[], &[1, 2, 3]),
        "joint from its append"
    );
    cluster.flush(1);
    cluster.settle();
    for id in 1..=4 {
        assert_eq!(cluster.conf(id), conf(&[1, 2, 3, 4], &[], &[]), "node {id}");
        assert_eq!(cluster.nodes[&id].membership().0, joint_index + 1);
    }
    assert_eq!(cluster.role(4), Role::Follower);
}

#[test]
fn a_joint_configuration_commits_only_with_both_majorities() {
    let mut cluster = led_by_one();
    cluster.add_node(4, |_| {});
    cluster.add_node(5, |_| {});
    let changes = [
        MemberChange::AddVoter(4),
        MemberChange::AddVoter(5),
        MemberChange::Remove(2),
        MemberChange::Remove(3),
    ];
    // Only the incoming half hears the leader: its majority alone commits nothing.
    cluster.isolate(2);
    cluster.isolate(3);
    let commit = cluster.commit(1);
    cluster
        .node(1)
        .propose_membership(&changes, Bytes::new())
        .unwrap();
    cluster.flush(1);
    cluster.settle();
    cluster.tick_all_and_settle(3);
    assert_eq!(cluster.conf(1), conf(&[1, 4, 5], &[], &[1, 2, 3]));
    assert_eq!(
        cluster.commit(1),
        commit,
        "no majority of the outgoing voters"
    );
    assert_eq!(cluster.nodes[&4].status().last_log_index, commit + 1);
    // Once the old voters answer, the joint entry commits and the leader leaves it.
    cluster.heal();
    cluster.tick_all_and_settle(3);
    for id in [1, 4, 5] {
        assert_eq!(cluster.conf(id), conf(&[1, 4, 5], &[], &[]), "node {id}");
    }
    // The removed nodes take no part in commits any more. (They never receive the entry that
    // removed them: the leader stops replicating to them once it is appended. The server
    // refuses their messages by member id, and they campaign in vain: see
    // `a_removed_node_that_never_learnt_of_it_does_not_disrupt_the_cluster`.)
    cluster.isolate(2);
    cluster.isolate(3);
    cluster.propose(1, b"without 2 and 3");
    cluster.settle();
    assert_eq!(cluster.commit(1), cluster.nodes[&1].status().last_log_index);
    assert_eq!(cluster.conf(2), conf(&[1, 4, 5], &[], &[1, 2, 3]));
}

#[test]
fn a_configuration_is_in_force_from_its_append_and_gone_with_its_entry() {
    let mut cluster = led_by_one();
    cluster.add_node(4, |_| {});
    // Node 1 appends a change that reaches nobody, then loses its leadership.
    cluster.isolate(1);
    cluster
        .node(1)
        .propose_membership(&[MemberChange::AddVoter(4)], Bytes::new())
        .unwrap();
    cluster.flush(1);
    assert_eq!(
        cluster.conf(1),
        conf(&[1, 2, 3, 4], &[], &[1, 2, 3]),
        "uncommitted, yet in force"
    );
    cluster.tick_all_and_settle(30);
    let leader = cluster.leaders().into_iter().find(|&id| id != 1).unwrap();
    cluster.propose(leader, b"y");
    cluster.settle();
    cluster.heal();
    cluster.tick_all_and_settle(3);
    assert_eq!(cluster.role(1), Role::Follower);
    assert_eq!(
        cluster.conf(1),
        conf(&[1, 2, 3], &[], &[]),
        "the new leader's log replaced the entry, and the configuration with it"
    );
    assert_eq!(cluster.nodes[&1].membership().0, 0);
}

#[test]
fn one_change_at_a_time_and_none_before_the_leader_committed_in_its_term() {
    let mut cluster = led_by_one();
    cluster.add_node(4, |_| {});
    cluster.add_node(5, |_| {});
    // Node 2 takes over (a transfer); before its first entry commits it refuses changes.
    cluster.node(1).transfer_leadership(2).unwrap();
    cluster.flush(1);
    cluster.deliver(|m| matches!(m.payload, Payload::TimeoutNow));
    let is_vote = |m: &Message| {
        matches!(
            m.payload,
            Payload::VoteRequest(_) | Payload::VoteResponse(_)
        )
    };
    cluster.deliver(is_vote);
    cluster.deliver(is_vote);
    assert_eq!(cluster.role(2), Role::Leader);
    let early = cluster
        .node(2)
        .propose_membership(&[MemberChange::AddLearner(5)], Bytes::new());
    assert!(
        matches!(&early, Err(Error::MembershipChangeRefused { reason }) if reason.contains("not committed an entry of its term")),
        "{early:?}"
    );
    cluster.settle();
    // The next change waits until the last one is committed.
    cluster.isolate(1);
    cluster.isolate(3);
    cluster
        .node(2)
        .propose_membership(&[MemberChange::AddLearner(4)], Bytes::new())
        .unwrap();
    let second = cluster
        .node(2)
        .propose_membership(&[MemberChange::AddLearner(5)], Bytes::new());
    assert!(
        matches!(&second, Err(Error::MembershipChangeRefused { reason }) if reason.contains("not committed yet")),
        "{second:?}"
    );
    cluster.heal();
    cluster.tick_all_and_settle(2);
    cluster.change(2, &[MemberChange::AddLearner(5)]).unwrap();
    assert_eq!(cluster.conf(3), conf(&[1, 2, 3], &[4, 5], &[]));
}

#[test]
fn a_removed_leader_hands_over_then_steps_down_and_stays_out() {
    let mut cluster = led_by_one();
    cluster.change(1, &[MemberChange::Remove(1)]).unwrap();
    cluster.tick_all_and_settle(3);
    assert_eq!(cluster.conf(2), conf(&[2, 3], &[], &[]));
    let leaders = cluster.leaders();
    assert_eq!(leaders.len(), 1);
    assert!(leaders[0] == 2 || leaders[0] == 3, "{leaders:?}");
    assert_eq!(cluster.role(1), Role::Learner, "node 1 is out");
    let leader = leaders[0];
    let term = cluster.term(leader);
    // The removed node never campaigns, however long it hears nothing.
    cluster.isolate(1);
    for _ in 0..100 {
        cluster.tick(1);
    }
    cluster.heal();
    cluster.tick_all_and_settle(5);
    assert_eq!(cluster.leaders(), vec![leader]);
    assert_eq!(cluster.term(leader), term);
    cluster.propose(leader, b"still writing");
    cluster.settle();
    let status = cluster.nodes[&leader].status();
    assert_eq!(status.commit_index, status.last_log_index);
}

#[test]
fn a_removed_node_that_never_learnt_of_it_does_not_disrupt_the_cluster() {
    let mut cluster = led_by_one();
    cluster.isolate(3);
    cluster.change(1, &[MemberChange::Remove(3)]).unwrap();
    assert_eq!(cluster.conf(1), conf(&[1, 2], &[], &[]));
    assert_eq!(cluster.conf(3), conf(&[1, 2, 3], &[], &[]), "3 never heard");
    let term = cluster.term(1);
    // Node 3 times out and asks for (pre-)votes again and again: the members refuse (their
    // leader is alive, and 3's log lacks the removal), and none adopts a new term.
    cluster.heal();
    for _ in 0..60 {
        cluster.tick(3);
        cluster.tick(1);
        cluster.tick(2);
        cluster.settle();
    }
    assert_eq!(cluster.leaders(), vec![1]);
    assert_eq!((cluster.term(1), cluster.term(2)), (term, term));
    // Nor can it make a member campaign past the others' stickiness: only the leader's
    // TimeoutNow counts.
    let timeout_now = Message {
        from: 3,
        to: 2,
        term,
        payload: Payload::TimeoutNow,
    };
    cluster.node(2).step(timeout_now).unwrap();
    cluster.settle();
    assert_eq!((cluster.role(2), cluster.term(2)), (Role::Follower, term));
    cluster.propose(1, b"undisturbed");
    cluster.settle();
    assert_eq!(cluster.commit(1), cluster.nodes[&1].status().last_log_index);
}

#[test]
fn a_snapshot_carries_the_membership_in_force_at_its_index() {
    let mut cluster = led_by_one();
    let before = cluster.commit(1);
    cluster.add_node(4, |_| {});
    let context = Bytes::from_static(b"4=10.0.0.4:7400");
    cluster
        .node(1)
        .propose_membership(&[MemberChange::AddLearner(4)], context.clone())
        .unwrap();
    cluster.flush(1);
    cluster.settle();
    let after = cluster.commit(1);
    assert_eq!(
        cluster.node(1).snapshot_meta(before).unwrap().conf_state,
        conf(&[1, 2, 3], &[], &[])
    );
    let meta = cluster.node(1).snapshot_meta(after).unwrap();
    assert_eq!(meta.conf_state, conf(&[1, 2, 3], &[4], &[]));
    assert_eq!(meta.conf_context, context, "the context goes with it");
    // A member that joined knows no membership before the entry that added it.
    assert!(matches!(
        cluster.node(4).snapshot_meta(before),
        Err(Error::InvalidConfig(_))
    ));
    // A new learner behind the compaction point gets the membership with the snapshot.
    cluster.compact(1, after).unwrap();
    cluster.add_node(5, |_| {});
    let context5 = Bytes::from_static(b"4=10.0.0.4:7400,5=10.0.0.5:7400");
    cluster
        .node(1)
        .propose_membership(&[MemberChange::AddLearner(5)], context5.clone())
        .unwrap();
    cluster.flush(1);
    cluster.settle();
    cluster.tick_all_and_settle(2);
    assert_eq!(cluster.conf(5), conf(&[1, 2, 3], &[4, 5], &[]));
    assert_eq!(cluster.nodes[&5].status().first_log_index, after + 1);
    // A restart from the snapshot alone keeps the context it carries.
    let commit = cluster.commit(1);
    cluster.compact(1, commit).unwrap();
    cluster.restart(1);
    assert_eq!(cluster.nodes[&1].status().first_log_index, commit + 1);
    assert_eq!(cluster.nodes[&1].membership().1.context, context5);
    // And after a restart every node rebuilds its membership from snapshot and log.
    for id in 1..=5 {
        let expected = cluster.conf(id);
        cluster.restart(id);
        assert_eq!(cluster.conf(id), expected, "node {id}");
    }
}

#[test]
fn the_lease_restarts_with_a_new_configuration() {
    let mut cluster = led_by_one();
    cluster.tick_all_and_settle(2);
    assert!(cluster.nodes[&1].has_valid_lease());
    cluster.add_node(4, |_| {});
    cluster.add_node(5, |_| {});
    cluster
        .node(1)
        .propose_membership(
            &[MemberChange::AddVoter(4), MemberChange::AddVoter(5)],
            Bytes::new(),
        )
        .unwrap();
    assert!(
        !cluster.nodes[&1].has_valid_lease(),
        "the old quorum's confirmations do not hold for the new configuration"
    );
    cluster.flush(1);
    cluster.settle();
    cluster.tick_all_and_settle(3);
    assert!(cluster.nodes[&1].has_valid_lease());
    assert_eq!(cluster.conf(5), conf(&[1, 2, 3, 4, 5], &[], &[]));
}

#[test]
fn members_of_a_configuration_no_log_lists_yet_are_heard() {
    // Node 2 was cut off while 4 was added and 1 removed; 4 then leads. Node 2 follows it
    // although its own log does not list 4.
    let mut cluster = led_by_one();
    cluster.add_node(4, |_| {});
    cluster.change(1, &[MemberChange::AddLearner(4)]).unwrap();
    cluster.tick_all_and_settle(2);
    cluster.isolate(2);
    cluster.change(1, &[MemberChange::AddVoter(4)]).unwrap();
    cluster.tick_all_and_settle(2);
    cluster.change(1, &[MemberChange::Remove(1)]).unwrap();
    cluster.tick_all_and_settle(5);
    let leaders: BTreeSet<u64> = cluster.leaders().into_iter().collect();
    assert!(leaders.is_subset(&BTreeSet::from([3, 4])), "{leaders:?}");
    assert_eq!(leaders.len(), 1);
    assert!(!cluster.conf(2).voters.contains(&4));
    cluster.heal();
    cluster.tick_all_and_settle(5);
    assert_eq!(cluster.conf(2), conf(&[2, 3, 4], &[], &[]));
    let leader = *leaders.iter().next().unwrap();
    assert_eq!(cluster.nodes[&2].status().leader_id, Some(leader));
}

#[test]
fn a_learner_that_lost_its_disk_is_brought_up_to_date_again() {
    let mut cluster = led_by_one();
    cluster.add_node(4, |_| {});
    cluster.change(1, &[MemberChange::AddLearner(4)]).unwrap();
    for i in 0..5 {
        cluster.propose(1, &[i]);
        cluster.settle();
    }
    let last = cluster.nodes[&1].status().last_log_index;
    assert_eq!(cluster.nodes[&1].status().progress[&4].match_index, last);
    // Its disk is replaced by an empty one (it joins as a learner: nothing to rejoin).
    cluster.lose_disk(4, crate::HardState::default());
    assert_eq!(cluster.nodes[&4].status().last_log_index, 0);
    // It rejects the leader's next append, below what it acknowledged: the leader forgets
    // that and sends it the whole log again.
    cluster.propose(1, b"next");
    cluster.tick_all_and_settle(3);
    let status = cluster.nodes[&4].status();
    assert_eq!(status.last_log_index, last + 1, "caught up again");
    assert_eq!(
        cluster.nodes[&1].status().progress[&4].match_index,
        last + 1
    );
}

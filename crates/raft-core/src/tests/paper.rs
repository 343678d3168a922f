//! Scenarios from the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable
//! Consensus Algorithm", 2014), each named after the section or figure it checks.

use super::{hs, Cluster};
use crate::{
    AppendOutcome, AppendRequest, Config, HardState, Message, Payload, Role, VoteRejection,
    VoteRequest,
};

/// Paper Raft: no pre-vote, no check-quorum, so scenarios play out exactly as in the paper.
fn plain(config: &mut Config) {
    config.pre_vote = false;
    config.check_quorum = false;
    config.lease_reads = false;
}

fn vote_responses(cluster: &Cluster, from: u64, to: u64) -> Vec<(bool, Option<VoteRejection>)> {
    cluster
        .in_flight
        .iter()
        .filter(|m| m.from == from && m.to == to)
        .filter_map(|m| match &m.payload {
            Payload::VoteResponse(r) => Some((r.granted, r.rejection)),
            _ => None,
        })
        .collect()
}

/// §5.2: a candidate wins only with votes from a majority; a node that cannot reach one never
/// becomes leader, however long it waits (the incident's bug).
#[test]
fn election_requires_votes_from_a_majority_section_5_2() {
    for pre_vote in [false, true] {
        let mut cluster = Cluster::new(5, |c| {
            plain(c);
            c.pre_vote = pre_vote;
        });
        for id in [3, 4, 5] {
            cluster.isolate(id);
        }
        // Nodes 1 and 2 reach each other but not a majority of five.
        for _ in 0..300 {
            cluster.tick(1);
            cluster.tick(2);
            cluster.settle();
            assert!(
                cluster.leaders().is_empty(),
                "a leader without a majority (pre_vote={pre_vote})"
            );
        }
        cluster.heal();
        cluster.tick_all_and_settle(60);
        assert_eq!(cluster.leaders().len(), 1, "once healed, one leader");
    }
}

/// §5.2: each server votes for at most one candidate in a given term.
#[test]
fn one_vote_per_term_section_5_2() {
    let mut cluster = Cluster::new(3, plain);
    cluster.node(1).campaign().unwrap();
    cluster.node(3).campaign().unwrap();
    cluster.flush_all();
    assert_eq!((cluster.term(1), cluster.term(3)), (1, 1));
    // Node 2 hears node 1 first, then node 3: it grants only the first.
    cluster.deliver(|m| m.from == 1 && m.to == 2);
    cluster.deliver(|m| m.from == 3 && m.to == 2);
    assert_eq!(vote_responses(&cluster, 2, 1), vec![(true, None)]);
    assert_eq!(
        vote_responses(&cluster, 2, 3),
        vec![(false, Some(VoteRejection::AlreadyVoted))]
    );
    assert_eq!(cluster.nodes[&2].status().vote, Some(1));
    cluster.settle();
    assert_eq!(cluster.leaders(), vec![1]);
}

/// §5.4.1: a voter denies its vote to a candidate whose log is less up to date.
#[test]
fn vote_refused_to_candidate_with_stale_log_section_5_4_1() {
    // Node 1's last entry has an older term; node 4's log is as long but older still... each
    // case: (candidate log, voter log, granted?)
    let cases: &[(&[u64], &[u64], bool)] = &[
        (&[1], &[1, 2], false),       // older last term
        (&[1, 2], &[1, 2, 2], false), // same last term, shorter
        (&[1, 2, 2], &[1, 2, 2], true),
        (&[1, 3], &[1, 2, 2, 2], true), // newer last term beats length
    ];
    for (candidate, voter, granted) in cases {
        let logs = vec![
            (candidate.to_vec(), hs(3)),
            (voter.to_vec(), hs(3)),
            (voter.to_vec(), hs(3)),
        ];
        let mut cluster = Cluster::with_logs(&logs, plain);
        cluster.node(1).campaign().unwrap();
        cluster.deliver(|m| m.from == 1 && m.to == 2);
        let expected = if *granted {
            (true, None)
        } else {
            (false, Some(VoteRejection::StaleLog))
        };
        assert_eq!(
            vote_responses(&cluster, 2, 1),
            vec![expected],
            "candidate {candidate:?} voter {voter:?}"
        );
    }
}

/// Figure 2: a message from an older term is refused with the current term, and changes
/// nothing.
#[test]
fn stale_term_messages_are_ignored_figure_2() {
    let logs = vec![(vec![1, 2], hs(5)), (vec![1], hs(3)), (vec![1], hs(3))];
    let mut cluster = Cluster::with_logs(&logs, plain);
    let before = cluster.nodes[&1].status();
    let append = Message {
        from: 2,
        to: 1,
        term: 3,
        payload: Payload::AppendRequest(AppendRequest {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![super::entry(2, 3, b"stale")],
            leader_commit: 2,
            round: 1,
            request_id: 7,
        }),
    };
    cluster.node(1).step(append).unwrap();
    let vote = Message {
        from: 3,
        to: 1,
        term: 4,
        payload: Payload::VoteRequest(VoteRequest {
            pre_vote: false,
            last_log_index: 9,
            last_log_term: 4,
            leadership_transfer: false,
            request_id: 8,
        }),
    };
    cluster.node(1).step(vote).unwrap();
    cluster.flush(1);
    let after = cluster.nodes[&1].status();
    assert_eq!(after.term, before.term);
    assert_eq!(after.vote, None);
    assert_eq!(cluster.log_terms(1), vec![1, 2], "log unchanged");
    assert_eq!(after.commit_index, 0);
    // Both were answered with term 5, so the senders learn they are stale.
    let replies: Vec<(u64, u64, bool)> = cluster
        .in_flight
        .iter()
        .map(|m| {
            let refused = match &m.payload {
                Payload::AppendResponse(r) => matches!(r.outcome, AppendOutcome::Rejected { .. }),
                Payload::VoteResponse(r) => !r.granted,
                _ => false,
            };
            (m.to, m.term, refused)
        })
        .collect();
    assert_eq!(replies, vec![(2, 5, true), (3, 5, true)]);
}

/// §5.2: a candidate that hears from a leader of its own term returns to follower.
#[test]
fn candidate_falls_back_on_hearing_a_leader_of_its_term_section_5_2() {
    let mut cluster = Cluster::new(3, plain);
    cluster.node(1).campaign().unwrap();
    cluster.node(2).campaign().unwrap();
    // Node 3 votes for 1; node 2 gets no vote from anyone.
    cluster.deliver(|m| m.from == 1 && m.to == 3);
    cluster.drop_where(|m| m.from == 2);
    cluster.deliver(|m| m.from == 3 && m.to == 1);
    assert_eq!(cluster.role(1), Role::Leader);
    assert_eq!(cluster.role(2), Role::Candidate);
    assert_eq!(cluster.term(2), cluster.term(1));
    cluster.settle();
    assert_eq!(cluster.role(2), Role::Follower);
    assert_eq!(cluster.nodes[&2].status().leader_id, Some(1));
}

/// Figure 7: whatever a follower's log looks like, the leader repairs it to match its own.
#[test]
fn leader_repairs_every_follower_log_of_figure_7() {
    let leader: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: &[(&str, &[u64])] = &[
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 1, 4]),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", &[1, 1, 1, 4, 4, 4, 4]),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, follower) in followers {
        let logs = vec![
            (leader.to_vec(), hs(7)),
            (follower.to_vec(), hs(7)),
            (leader.to_vec(), hs(7)),
        ];
        let mut cluster = Cluster::with_logs(&logs, plain);
        cluster.elect(1);
        assert_eq!(cluster.term(1), 8);
        let mut expected = leader.to_vec();
        expected.push(8); // the new leader's no-op
        assert_eq!(cluster.log_terms(2), expected, "follower ({name})");
        assert_eq!(cluster.commit(2), 11, "follower ({name}) learns the commit");
    }
}

/// Delivers vote requests and responses until none is left, and nothing else.
fn deliver_votes(cluster: &mut Cluster) {
    while cluster.deliver(|m| {
        matches!(
            m.payload,
            Payload::VoteRequest(_) | Payload::VoteResponse(_)
        )
    }) > 0
    {}
}

/// Campaigns (only vote traffic flows) until `id` wins; a first campaign may lose against
/// voters that already voted in that term.
fn win_election(cluster: &mut Cluster, id: u64) {
    for _ in 0..3 {
        cluster.node(id).campaign().unwrap();
        deliver_votes(cluster);
        if cluster.role(id) == Role::Leader {
            return;
        }
    }
    panic!("node {id} could not win an election");
}

/// Figure 8: an entry from an older term stored on a majority is NOT committed by counting
/// replicas, because a later leader may still overwrite it. Here it is overwritten, exactly as
/// in the figure; had the leader counted it committed, a committed entry would be lost.
#[test]
fn old_term_entry_on_a_majority_is_not_committed_figure_8() {
    let mut cluster = Cluster::new(5, |c| {
        plain(c);
        c.max_bytes_per_message = 1; // one entry per append: full control over who has what
    });
    cluster.elect(1);
    assert_eq!(cluster.commit(1), 1);
    // (a) S1 replicates index 2 ("x", term 1) to S2 only.
    let x = cluster.propose(1, b"x");
    assert_eq!((x.index, x.term), (2, 1));
    cluster.deliver(|m| m.to == 2 && matches!(m.payload, Payload::AppendRequest(_)));
    cluster.drop_where(|_| true);
    assert_eq!(cluster.log_terms(2), vec![1, 1]);
    // (b) S1 crashes; S5 wins term 2 with votes from S3 and S4 (S2's log is newer) and
    // appends its no-op at index 2, then crashes before replicating it.
    cluster.isolate(1);
    win_election(&mut cluster, 5);
    assert_eq!(cluster.term(5), 2);
    cluster.isolate(5);
    // (c) S1 restarts and wins term 3. It sends index 2 (term 1) to S3 and S4, so S1, S3, S4
    // store it: a majority. S2 hears nothing.
    cluster.isolated.remove(&1);
    cluster.restart(1);
    win_election(&mut cluster, 1);
    assert_eq!(cluster.term(1), 3);
    cluster.drop_where(|m| m.to == 2);
    // The first probes (for index 3) are rejected: S3 and S4 lack index 2 ...
    assert_eq!(
        cluster.deliver(|m| matches!(m.payload, Payload::AppendRequest(_))),
        2
    );
    cluster.deliver(|m| matches!(m.payload, Payload::AppendResponse(_)));
    // ... so S1 backs off and sends index 2 alone, which both accept.
    assert_eq!(
        cluster
            .deliver(|m| matches!(&m.payload, Payload::AppendRequest(r) if r.prev_log_index == 1)),
        2
    );
    cluster.deliver(|m| matches!(m.payload, Payload::AppendResponse(_)));
    for id in [1, 3, 4] {
        assert_eq!(
            cluster.log_terms(id)[1],
            1,
            "S{id} stores index 2 of term 1"
        );
    }
    assert_eq!(
        cluster.commit(1),
        1,
        "index 2 is of term 1, not the leader's term 3: counting replicas must not commit it"
    );
    // (d) S1 crashes before index 3 gets anywhere; S5 wins term 4 (S2, S3, S4 vote: its last
    // entry has term 2) and overwrites index 2 everywhere it can.
    cluster.in_flight.clear();
    cluster.isolate(1);
    cluster.isolated.remove(&5);
    cluster.restart(5);
    win_election(&mut cluster, 5);
    cluster.settle();
    for id in [2, 3, 4, 5] {
        assert_eq!(
            cluster.log_terms(id)[1],
            2,
            "S{id} index 2 is S5's term-2 entry"
        );
        assert!(!cluster
            .applied_data(id)
            .contains(&bytes::Bytes::from_static(b"x")));
    }
    assert!(cluster.commit(5) >= 3);
}

/// §5.3: entries proposed to the leader are committed once on a majority and applied
/// everywhere in the same order.
#[test]
fn committed_entries_are_applied_in_order_everywhere_section_5_3() {
    let mut cluster = Cluster::new(3, plain);
    cluster.elect(1);
    for data in [&b"a"[..], b"b", b"c"] {
        cluster.propose(1, data);
    }
    cluster.settle();
    cluster.tick_all_and_settle(2);
    for id in 1..=3 {
        let applied = cluster.applied_data(id);
        assert_eq!(applied, [&b"a"[..], b"b", b"c"], "node {id}");
    }
}

/// Figure 2 ("votedFor ... persistent"): the vote is in the hard state of the very Ready that
/// carries the granted response, and that Ready must be synced before it is sent.
#[test]
fn vote_is_durable_before_the_response_figure_2() {
    let mut cluster = Cluster::new(3, plain);
    cluster.node(1).campaign().unwrap();
    cluster.deliver(|m| m.from == 1 && m.to == 2);
    let granted_in = cluster.readies[&2]
        .iter()
        .find(|r| {
            r.messages
                .iter()
                .any(|m| matches!(&m.payload, Payload::VoteResponse(v) if v.granted && !v.pre_vote))
        })
        .expect("node 2 granted its vote")
        .clone();
    assert_eq!(
        granted_in.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(1),
            commit: 0,
            rejoining: None,
        })
    );
    assert!(
        granted_in.must_sync,
        "the vote must be fsynced before it is sent"
    );
}

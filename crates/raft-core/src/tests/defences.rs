//! Tests of the split-brain defences layered on top of paper Raft: pre-vote, check-quorum and
//! leader stickiness, the leader lease, ReadIndex, leadership transfer and fencing tokens.

use bytes::Bytes;

use super::Cluster;
use crate::{
    Error, FencingToken, LogWriter, Message, Payload, ReadMode, ReadState, Role, VoteRejection,
};

/// Defaults: pre-vote, check-quorum and lease reads on.
fn defaults(_: &mut crate::Config) {}

/// Check-quorum: a leader cut off from the majority stops being leader (and so stops
/// accepting writes) within one minimum election timeout.
#[test]
fn leader_without_quorum_steps_down_and_refuses_writes() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.tick_all_and_settle(30);
    let leader = cluster.leaders()[0];
    cluster.isolate(leader);
    let min = cluster.nodes[&leader].config().election_timeout_min_ticks;
    let mut ticks = 0;
    while cluster.role(leader) == Role::Leader {
        assert!(
            cluster
                .node(leader)
                .propose(Bytes::from_static(b"w"))
                .is_ok(),
            "still within the window, writes are accepted"
        );
        cluster.tick(leader);
        ticks += 1;
        assert!(
            ticks <= min,
            "still leader after {ticks} ticks without a quorum"
        );
    }
    assert_eq!(
        cluster.node(leader).propose(Bytes::from_static(b"w")),
        Err(Error::NoQuorum),
        "the deposed leader says why it refuses"
    );
    // Once it hears from a leader again, it points clients there instead.
    cluster.heal();
    cluster.tick_all_and_settle(30);
    let new_leader = cluster.leaders()[0];
    if new_leader != leader {
        assert_eq!(
            cluster.node(leader).propose(Bytes::from_static(b"w")),
            Err(Error::NotLeader {
                leader_hint: Some(new_leader)
            })
        );
    }
}

/// Leader stickiness: a follower that heard from its leader within the minimum election
/// timeout refuses a disruptive candidate without adopting its term.
#[test]
fn follower_that_heard_from_its_leader_ignores_vote_requests() {
    let mut cluster = Cluster::new(3, |c| c.pre_vote = false);
    cluster.tick_all_and_settle(30);
    let leader = cluster.leaders()[0];
    let (voter, rogue) = match leader {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    let term = cluster.term(voter);
    // The rogue node was cut off from the leader only, timed out and campaigns.
    cluster.node(rogue).campaign().unwrap();
    cluster.deliver(|m| m.from == rogue && m.to == voter);
    let refusals: Vec<_> = cluster
        .in_flight
        .iter()
        .filter(|m| m.from == voter && m.to == rogue)
        .filter_map(|m| match &m.payload {
            Payload::VoteResponse(r) => Some((r.granted, r.rejection)),
            _ => None,
        })
        .collect();
    assert_eq!(refusals, vec![(false, Some(VoteRejection::LeaderAlive))]);
    assert_eq!(
        cluster.term(voter),
        term,
        "the voter did not adopt the rogue term"
    );
    assert_eq!(cluster.role(leader), Role::Leader);
}

/// Leader stickiness whatever the term: a follower that acknowledged its leader moments ago can
/// be pushed into a later term by a message that is not a vote request (here, a stray answer
/// from the rogue node). It then has no leader and no vote in that term, but it still honours
/// the lease of the leader it acknowledged, so the rogue's vote request is refused. Without
/// this, a lease-holding leader and a newly elected one could coexist.
#[test]
fn follower_pushed_into_a_later_term_still_refuses_votes_inside_the_lease() {
    let mut cluster = Cluster::new(3, |c| c.pre_vote = false);
    cluster.tick_all_and_settle(30);
    let leader = cluster.leaders()[0];
    let (voter, rogue) = match leader {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    // The rogue node campaigns in a later term; its request to the voter is held back.
    cluster.node(rogue).campaign().unwrap();
    cluster.flush(rogue);
    let rogue_term = cluster.term(rogue);
    let vote_request: Vec<_> = cluster
        .in_flight
        .iter()
        .filter(|m| m.from == rogue && m.to == voter)
        .cloned()
        .collect();
    assert_eq!(vote_request.len(), 1);
    cluster.drop_where(|m| m.from == rogue || m.to == rogue);
    // A stray message of the rogue's term reaches the voter first: it adopts the term
    // without a leader and without a vote.
    cluster
        .node(voter)
        .step(crate::Message {
            from: rogue,
            to: voter,
            term: rogue_term,
            payload: Payload::HeartbeatResponse(crate::HeartbeatResponse {
                round: 0,
                request_id: 0,
            }),
        })
        .unwrap();
    cluster.flush(voter);
    assert_eq!(cluster.term(voter), rogue_term);
    // Now the vote request, in the voter's own term.
    cluster.in_flight.extend(vote_request);
    cluster.deliver(|m| m.from == rogue && m.to == voter);
    let answers: Vec<_> = cluster
        .in_flight
        .iter()
        .filter(|m| m.from == voter && m.to == rogue)
        .filter_map(|m| match &m.payload {
            Payload::VoteResponse(r) => Some((r.granted, r.rejection)),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![(false, Some(VoteRejection::LeaderAlive))]);
}

/// Pre-vote: a node that was partitioned away does not inflate its term, so when it returns
/// the healthy leader keeps its leadership. Without pre-vote (and check-quorum) the same
/// scenario deposes the leader, which shows what the defence buys.
#[test]
fn pre_vote_keeps_a_rejoining_node_from_deposing_the_leader() {
    for pre_vote in [true, false] {
        let mut cluster = Cluster::new(3, |c| {
            c.pre_vote = pre_vote;
            c.check_quorum = pre_vote;
            c.lease_reads = pre_vote;
        });
        cluster.tick_all_and_settle(30);
        let leader = cluster.leaders()[0];
        let term = cluster.term(leader);
        let outsider = if leader == 3 { 1 } else { 3 };
        cluster.isolate(outsider);
        cluster.tick_all_and_settle(100);
        cluster.heal();
        cluster.tick_all_and_settle(30);
        if pre_vote {
            assert_eq!(cluster.leaders(), vec![leader], "the leader survived");
            assert_eq!(cluster.term(leader), term, "no term inflation");
            assert_eq!(cluster.term(outsider), term);
        } else {
            assert!(
                cluster.term(leader) > term,
                "without pre-vote the rejoining node forces a new term"
            );
        }
    }
}

/// Pre-vote must not prevent elections when the leader is really gone.
#[test]
fn pre_vote_still_elects_when_the_leader_is_gone() {
    let mut cluster = Cluster::new(5, defaults);
    cluster.tick_all_and_settle(30);
    let old = cluster.leaders()[0];
    cluster.isolate(old);
    let max = cluster.nodes[&old].config().election_timeout_max_ticks;
    let others: Vec<u64> = (1..=5).filter(|&id| id != old).collect();
    let mut ticks = 0;
    loop {
        for &id in &others {
            cluster.tick(id);
        }
        cluster.settle();
        ticks += 1;
        let leaders: Vec<u64> = cluster
            .leaders()
            .into_iter()
            .filter(|&id| id != old)
            .collect();
        if leaders.len() == 1 {
            break;
        }
        assert!(ticks < 4 * max, "no new leader after {ticks} ticks");
    }
}

/// ReadIndex (thesis §6.4): a new leader answers reads only after an entry of its own term is
/// committed, since before that its commit index may be behind.
#[test]
fn read_index_on_a_new_leader_waits_for_a_current_term_commit() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.node(1).campaign().unwrap();
    while cluster.deliver(|m| {
        matches!(
            m.payload,
            Payload::VoteRequest(_) | Payload::VoteResponse(_)
        )
    }) > 0
    {}
    assert_eq!(cluster.role(1), Role::Leader);
    cluster.node(1).read_index(7, ReadMode::Quorum).unwrap();
    // Heartbeats confirm leadership, but the no-op is not committed yet.
    cluster.drop_where(|m| matches!(m.payload, Payload::AppendRequest(_)));
    cluster.tick(1);
    while cluster.deliver(|m| {
        matches!(
            m.payload,
            Payload::HeartbeatRequest(_) | Payload::HeartbeatResponse(_)
        )
    }) > 0
    {}
    assert!(
        cluster.reads[&1].is_empty(),
        "answered before a current-term commit"
    );
    assert_eq!(cluster.commit(1), 0);
    // Once the no-op commits, the read is answered at the commit index.
    cluster.tick_all_and_settle(1);
    assert_eq!(cluster.commit(1), 1);
    assert_eq!(
        cluster.reads[&1],
        vec![ReadState {
            read_id: 7,
            index: Some(1)
        }]
    );
}

/// A follower's read is forwarded to the leader and answered with the leader's commit index.
#[test]
fn follower_read_index_is_confirmed_by_the_leader() {
    let mut cluster = Cluster::new(3, |c| c.lease_reads = false);
    cluster.elect(1);
    cluster.propose(1, b"a");
    cluster.settle();
    cluster.node(2).read_index(42, ReadMode::Quorum).unwrap();
    cluster.settle();
    assert_eq!(
        cluster.reads[&2],
        vec![ReadState {
            read_id: 42,
            index: Some(2)
        }]
    );
}

/// The reads a follower takes between two Readys go to the leader as one request (one per
/// mode), and the index confirmed for it serves each of them.
#[test]
fn follower_forwards_the_reads_of_one_ready_as_one_request() {
    let mut cluster = Cluster::new(3, |c| c.lease_reads = false);
    cluster.elect(1);
    cluster.propose(1, b"a");
    cluster.settle();
    for read_id in [10, 11, 12] {
        cluster
            .node(2)
            .read_index(read_id, ReadMode::Quorum)
            .unwrap();
    }
    cluster.node(2).read_index(13, ReadMode::Lease).unwrap();
    cluster.flush(2);
    let requests: Vec<ReadMode> = cluster
        .in_flight
        .iter()
        .filter_map(|m| match &m.payload {
            Payload::ReadIndexRequest(r) if m.from == 2 => Some(r.mode),
            _ => None,
        })
        .collect();
    assert_eq!(requests, [ReadMode::Quorum, ReadMode::Lease]);
    cluster.settle();
    let mut served = cluster.reads[&2].clone();
    served.sort_by_key(|r| r.read_id);
    let expected: Vec<ReadState> = (10..=13)
        .map(|read_id| ReadState {
            read_id,
            index: Some(2),
        })
        .collect();
    assert_eq!(served, expected);
}

/// A follower that lost its leader before its batch left refuses the reads in it at once.
#[test]
fn reads_gathered_without_a_leader_are_refused() {
    let mut cluster = Cluster::new(3, |c| c.lease_reads = false);
    cluster.elect(1);
    cluster.node(2).read_index(7, ReadMode::Quorum).unwrap();
    // Node 2 campaigns before its Ready: it follows no one when the batch would leave.
    cluster.node(2).campaign().unwrap();
    cluster.flush(2);
    assert!(cluster.reads[&2].contains(&ReadState {
        read_id: 7,
        index: None
    }));
}

/// Reads waiting for confirmation are refused, not left hanging, when the leader steps down.
#[test]
fn pending_reads_are_refused_when_leadership_is_lost() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.node(1).read_index(9, ReadMode::Quorum).unwrap();
    for _ in 0..20 {
        cluster.tick(1);
    }
    assert_ne!(cluster.role(1), Role::Leader);
    assert_eq!(
        cluster.reads[&1],
        vec![ReadState {
            read_id: 9,
            index: None
        }]
    );
}

/// The lease answers reads without a round trip while it holds, and not after it lapses.
#[test]
fn lease_read_is_answered_at_once_only_while_the_lease_holds() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.elect(1);
    cluster.tick_all_and_settle(2);
    assert!(cluster.nodes[&1].has_valid_lease());
    cluster.node(1).read_index(1, ReadMode::Lease).unwrap();
    cluster.flush(1);
    assert_eq!(cluster.reads[&1].len(), 1, "answered without any message");
    // Cut off, the leader keeps its lease for at most lease_ticks.
    cluster.isolate(1);
    let lease_ticks = cluster.nodes[&1].config().lease_ticks();
    for _ in 0..lease_ticks {
        cluster.tick(1);
    }
    assert!(!cluster.nodes[&1].has_valid_lease());
    cluster.node(1).read_index(2, ReadMode::Lease).unwrap();
    cluster.flush(1);
    assert_eq!(
        cluster.reads[&1].len(),
        1,
        "no lease: must wait for a quorum round"
    );
}

/// A restarted node cannot know whether it acknowledged a heartbeat just before crashing, so
/// it honours a possible lease: it ignores vote requests for the minimum election timeout.
#[test]
fn restarted_node_honours_the_leader_lease_it_may_have_granted() {
    let mut cluster = Cluster::new(3, |c| c.pre_vote = false);
    cluster.elect(1);
    cluster.tick_all_and_settle(2);
    cluster.restart(2);
    cluster.isolate(1);
    cluster.node(3).campaign().unwrap();
    cluster.deliver(|m| m.from == 3 && m.to == 2);
    let refused = cluster.in_flight.iter().any(|m| {
        matches!(&m.payload, Payload::VoteResponse(r)
            if m.from == 2 && r.rejection == Some(VoteRejection::LeaderAlive))
    });
    assert!(refused, "node 2 voted right after restarting");
}

/// Leadership transfer: proposals are refused while it runs; the target takes over; the old
/// leader gives up its lease for the rest of its term.
#[test]
fn leadership_transfer_refuses_proposals_and_hands_over() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.elect(1);
    cluster.tick_all_and_settle(2);
    // Node 3 falls behind, so the transfer must first catch it up.
    cluster.isolate(3);
    cluster.propose(1, b"a");
    cluster.settle();
    cluster.heal();
    cluster.node(1).transfer_leadership(3).unwrap();
    assert_eq!(
        cluster.node(1).propose(Bytes::from_static(b"b")),
        Err(Error::TransferInProgress { target: 3 })
    );
    // The next heartbeat reveals what node 3 lacks; once it has everything it is told to
    // campaign.
    cluster.tick_all_and_settle(2);
    assert!(!cluster.nodes[&1].has_valid_lease());
    assert_eq!(cluster.leaders(), vec![3]);
    assert_eq!(cluster.role(1), Role::Follower);
    cluster.propose(3, b"c");
    cluster.settle();
    cluster.tick_all_and_settle(1);
    let applied: Vec<&[u8]> = cluster.applied[&1]
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.data.as_ref())
        .collect();
    assert_eq!(applied, [&b"a"[..], b"c"]);
}

/// A transfer that cannot complete is abandoned after an election timeout; the old leader
/// accepts proposals again but holds no lease for the rest of the term (a late TimeoutNow
/// could still start the target's campaign).
#[test]
fn abandoned_transfer_leaves_no_lease_for_the_term() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.elect(1);
    cluster.tick_all_and_settle(2);
    cluster.node(1).transfer_leadership(2).unwrap();
    cluster.drop_where(|m| matches!(m.payload, Payload::TimeoutNow));
    cluster.tick_all_and_settle(12);
    assert_eq!(cluster.leaders(), vec![1]);
    assert!(cluster.node(1).propose(Bytes::from_static(b"x")).is_ok());
    assert!(!cluster.nodes[&1].has_valid_lease());
}

/// Fencing tokens: the sequence restarts at 1 with each leader term and grows by one per
/// entry, so tokens strictly increase in log order across leader changes.
#[test]
fn fencing_tokens_restart_with_each_leader_term() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.elect(1);
    let a = cluster.propose(1, b"a");
    let b = cluster.propose(1, b"b");
    let t1 = cluster.term(1);
    assert_eq!(
        a.token,
        FencingToken {
            term: t1,
            sequence: 2
        }
    );
    assert_eq!(
        b.token,
        FencingToken {
            term: t1,
            sequence: 3
        }
    );
    cluster.settle();
    cluster.node(1).transfer_leadership(2).unwrap();
    cluster.settle();
    let c = cluster.propose(2, b"c");
    assert_eq!(
        c.token,
        FencingToken {
            term: cluster.term(2),
            sequence: 2
        }
    );
    cluster.settle();
    cluster.tick_all_and_settle(1);
    let tokens: Vec<FencingToken> = cluster.applied[&3].iter().map(|e| e.token()).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    assert_eq!(tokens.len(), 5); // no-op, a, b, no-op, c
}

/// Time missed during a pause is fed before the next decision (`tick_to`): a leader frozen
/// past its lease neither serves a lease read nor keeps leading when it runs again.
#[test]
fn tick_to_feeds_the_time_a_pause_took_before_the_next_decision() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.tick_all_and_settle(30);
    let leader = cluster.leaders()[0];
    assert!(cluster.node(leader).has_valid_lease());
    let now = cluster.nodes[&leader].status().now_tick;
    let pause = u64::from(cluster.nodes[&leader].config().election_timeout_max_ticks) * 3;
    assert_eq!(cluster.node(leader).tick_to(now + pause).unwrap(), pause);
    assert!(!cluster.node(leader).has_valid_lease());
    assert_ne!(
        cluster.role(leader),
        Role::Leader,
        "check-quorum saw the silence"
    );
    // Nothing more to feed: the clock is up to date.
    assert_eq!(cluster.node(leader).tick_to(now + pause).unwrap(), 0);
}

/// The fail-fast rule (`Status::contact`): a follower that has not heard from its leader
/// for the silence limit, or a leader whose majority went quiet, cannot commit or confirm
/// anything and says why.
#[test]
fn contact_is_lost_after_the_silence_limit() {
    use crate::NoContact;
    let mut cluster = Cluster::new(3, defaults);
    cluster.tick_all_and_settle(30);
    let leader = cluster.leaders()[0];
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    assert_eq!(cluster.nodes[&leader].status().contact(6), Ok(()));
    assert_eq!(cluster.nodes[&follower].status().contact(6), Ok(()));
    cluster.isolate(leader);
    for _ in 0..7 {
        cluster.tick(follower);
        cluster.tick(leader);
    }
    assert_eq!(
        cluster.nodes[&follower].status().contact(6),
        Err(NoContact::LeaderSilent {
            leader,
            silent_ticks: 7
        })
    );
    assert_eq!(
        cluster.nodes[&leader].status().contact(6),
        Err(NoContact::LeaderWithoutQuorum {
            recent: 1,
            voters: 3
        })
    );
}

/// Raft thesis §10.2.1: the leader sends its new entries before its own write of them is
/// durable, and counts its own copy towards the commit only once `advance` says it persisted.
#[test]
fn leader_replicates_before_its_own_persist_and_counts_itself_only_after() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.elect(1);
    let commit_before = cluster.commit(1);
    let proposal = cluster
        .node(1)
        .propose(bytes::Bytes::from_static(b"x"))
        .unwrap();
    let ready = cluster.node(1).ready().unwrap();
    assert_eq!(ready.entries.len(), 1);
    let appends: Vec<Message> = ready
        .early_messages
        .iter()
        .filter(|m| matches!(&m.payload, Payload::AppendRequest(r) if !r.entries.is_empty()))
        .cloned()
        .collect();
    assert_eq!(appends.len(), 2, "the entry goes to both followers at once");
    assert!(
        !ready
            .messages
            .iter()
            .any(|m| matches!(m.payload, Payload::AppendRequest(_))),
        "no append waits for the leader's own persist"
    );
    // Follower 2 stores the entry and acknowledges it while the leader's write is still in
    // progress: one acknowledgement plus the leader's unpersisted copy is not a quorum.
    let to_2 = appends.into_iter().find(|m| m.to == 2).unwrap();
    cluster.node(2).step(to_2).unwrap();
    cluster.flush(2);
    let acks: Vec<Message> = std::mem::take(&mut cluster.in_flight)
        .into_iter()
        .filter(|m| m.to == 1 && matches!(m.payload, Payload::AppendResponse(_)))
        .collect();
    assert!(!acks.is_empty(), "node 2 acknowledged");
    for ack in acks {
        cluster.node(1).step(ack).unwrap();
    }
    assert_eq!(
        cluster.commit(1),
        commit_before,
        "committed before the leader persisted its own copy"
    );
    // The leader's write completes: now two of three hold it durably.
    cluster
        .node(1)
        .store_mut()
        .persist(ready.hard_state.as_ref(), &ready.entries, ready.must_sync)
        .unwrap();
    cluster.node(1).advance().unwrap();
    assert_eq!(cluster.commit(1), proposal.index);
}

/// Only a leader's appends and heartbeats leave before the Ready is persisted: votes,
/// acknowledgements, a candidate's requests and anything sent in a Ready that changes the
/// term or the vote wait for the sync.
#[test]
fn votes_and_acknowledgements_never_leave_before_the_sync() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.elect(1);
    for data in [&b"a"[..], b"b", b"c"] {
        cluster.propose(1, data);
        cluster.settle();
    }
    cluster.tick_all_and_settle(3);
    // A second election (by transfer), so that votes are granted in a later term too.
    cluster.node(1).transfer_leadership(2).unwrap();
    cluster.settle();
    assert_eq!(cluster.role(2), Role::Leader);
    cluster.propose(2, b"d");
    cluster.settle();
    let mut early = 0;
    for (id, readies) in &cluster.readies {
        let mut term_and_vote = (0, None);
        for ready in readies {
            let changed = ready
                .hard_state
                .is_some_and(|h| (h.term, h.vote) != term_and_vote);
            if let Some(h) = ready.hard_state {
                term_and_vote = (h.term, h.vote);
            }
            for m in &ready.early_messages {
                early += 1;
                assert!(
                    matches!(
                        m.payload,
                        Payload::AppendRequest(_) | Payload::HeartbeatRequest(_)
                    ),
                    "node {id} sent {} before its sync",
                    m.payload.kind()
                );
                assert!(
                    !changed,
                    "node {id} sent {} early in a Ready that changed its term or vote",
                    m.payload.kind()
                );
            }
        }
    }
    assert!(early > 0, "the leaders sent nothing early");
}

/// The event counts behind the election metrics: an election won, the leader seen by all, a
/// check-quorum step-down, and pre-votes refused to a node that cannot win.
#[test]
fn elections_leader_changes_and_step_downs_are_counted() {
    let mut cluster = Cluster::new(3, defaults);
    cluster.tick_all_and_settle(30);
    let leader = cluster.leaders()[0];
    let events = |c: &mut Cluster, id| c.node(id).status().events;
    let first = events(&mut cluster, leader);
    assert_eq!(
        (
            first.pre_elections_started,
            first.elections_started,
            first.elections_won
        ),
        (1, 1, 1),
        "{first:?}"
    );
    for id in 1..=3 {
        assert_eq!(events(&mut cluster, id).leader_changes_seen, 1, "node {id}");
        assert_eq!(
            events(&mut cluster, id).check_quorum_step_downs,
            0,
            "node {id}"
        );
    }
    // Cut off, the leader steps down; the others elect one of them.
    cluster.isolate(leader);
    cluster.tick_all_and_settle(30);
    let after = events(&mut cluster, leader);
    assert_eq!(after.check_quorum_step_downs, 1, "{after:?}");
    assert_eq!(after.elections_won, 1, "{after:?}");
    let new_leader = cluster
        .leaders()
        .into_iter()
        .find(|&id| id != leader)
        .expect("the majority elects a leader");
    let seen = events(&mut cluster, new_leader);
    assert_eq!(seen.leader_changes_seen, 2, "{seen:?}");
    assert_eq!(seen.elections_won, 1, "{seen:?}");
    // The old leader, still cut off, keeps asking for pre-votes; back in touch, the others
    // refuse them (they hear from their leader), and it follows the new leader.
    let asked = after.pre_elections_started;
    assert!(asked >= 1, "{after:?}");
    cluster.heal();
    cluster.tick_all_and_settle(30);
    assert_eq!(cluster.leaders(), vec![new_leader]);
    assert_eq!(events(&mut cluster, leader).leader_changes_seen, 2);
}

//! Snapshots: where the log may be compacted, and how a follower installs (or declines) the
//! leader's snapshot.

use super::{encode_machine, entry, hs, Cluster};
use crate::{
    AppendOutcome, Error, HardState, Message, Payload, RawNode, Role, Snapshot, SnapshotMeta,
    SnapshotRequest, Storage, StorageError,
};

/// `snapshot`, sent by `from` to `to` in `term`.
fn snapshot_request(from: u64, to: u64, term: u64, snapshot: Snapshot, request_id: u64) -> Message {
    Message {
        from,
        to,
        term,
        payload: Payload::SnapshotRequest(SnapshotRequest {
            snapshot,
            round: 0,
            request_id,
        }),
    }
}

fn is_snapshot(m: &Message) -> bool {
    matches!(m.payload, Payload::SnapshotRequest(_))
}

/// A 3-node cluster led by 1 in which 3 missed `n` proposals (each committed by 1 and 2).
fn with_lagging_follower(n: u8) -> Cluster {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.isolate(3);
    for i in 0..n {
        cluster.propose(1, &[i]);
        cluster.settle();
    }
    cluster
}

/// The match index `to`'s last answer to `from` carried.
fn last_match(cluster: &Cluster, from: u64, to: u64) -> Option<u64> {
    cluster.readies[&from]
        .iter()
        .flat_map(|r| r.messages.iter())
        .filter(|m| m.to == to)
        .filter_map(|m| match m.payload {
            Payload::AppendResponse(ref r) => match r.outcome {
                AppendOutcome::Accepted { match_index } => Some(match_index),
                AppendOutcome::Rejected { .. } => None,
            },
            _ => None,
        })
        .last()
}

#[test]
fn the_log_is_compacted_only_up_to_the_applied_index() {
    let mut cluster = with_lagging_follower(5);
    let status = cluster.nodes[&1].status();
    assert_eq!((status.applied_index, status.commit_index), (6, 6));

    // Beyond what was applied: refused, nothing changes.
    cluster.propose(1, b"unapplied"); // index 7, not yet committed
    assert!(matches!(
        cluster.compact(1, 7),
        Err(Error::SnapshotBeyondApplied {
            index: 7,
            applied: 6
        })
    ));
    assert_eq!(cluster.nodes[&1].store().first_index(), 1);

    // Up to the applied index: the prefix is gone, its last (index, term) kept.
    cluster.compact(1, 4).unwrap();
    let store = cluster.nodes[&1].store();
    assert_eq!(store.first_index(), 5);
    assert_eq!(
        store.term(4),
        Ok(1),
        "the compacted entry's term stays known"
    );
    assert_eq!(store.term(3), Err(StorageError::Compacted(3)));
    assert!(cluster.nodes[&1].log_entries(4, 6).is_err());
    assert_eq!(cluster.nodes[&1].log_entries(5, 7).unwrap().len(), 2);
    let snapshot = store.snapshot().unwrap();
    assert_eq!((snapshot.meta.index, snapshot.meta.term), (4, 1));

    // Not below the snapshot again.
    assert!(cluster.compact(1, 3).is_err());
    // The node goes on: it commits and applies after the compaction.
    cluster.settle();
    assert_eq!(cluster.nodes[&1].status().applied_index, 7);
}

#[test]
fn a_follower_far_behind_catches_up_through_a_snapshot_then_appends() {
    let mut cluster = with_lagging_follower(20);
    cluster.compact(1, 15).unwrap();
    cluster.heal();
    // The heartbeat's answer reveals that 3 lags; it needs entries 2.. which are compacted.
    cluster.tick_all_and_settle(3);
    let sent: usize = cluster.readies[&1]
        .iter()
        .flat_map(|r| r.messages.iter().chain(&r.early_messages))
        .filter(|m| is_snapshot(m) && m.to == 3)
        .count();
    assert_eq!(sent, 1, "exactly one snapshot sent");
    let installed: Vec<&super::SeenReady> = cluster.readies[&3]
        .iter()
        .filter(|r| r.must_sync && r.hard_state.is_some_and(|h| h.commit == 15))
        .collect();
    assert!(!installed.is_empty(), "3 persisted the snapshot's commit");
    // Then the entries after it arrived by appends, and 3 applied everything 1 applied.
    let s3 = cluster.nodes[&3].status();
    assert_eq!(s3.last_log_index, 21);
    assert_eq!(s3.applied_index, 21);
    assert_eq!(cluster.nodes[&3].store().first_index(), 16);
    assert_eq!(cluster.applied_data(3), cluster.applied_data(1));
    // The leader streams to it again.
    let progress = &cluster.nodes[&1].status().progress[&3];
    assert_eq!(progress.state, crate::ProgressState::Replicate);
    assert_eq!(progress.match_index, 21);

    // A restart comes back from the snapshot and the log tail.
    cluster.restart(3);
    let s3 = cluster.nodes[&3].status();
    assert_eq!((s3.applied_index, s3.last_log_index), (21, 21));
}

#[test]
fn a_snapshot_no_newer_than_the_commit_index_changes_nothing() {
    let mut cluster = with_lagging_follower(5);
    cluster.compact(1, 6).unwrap();
    let stale = cluster.nodes[&1].store().snapshot().unwrap();
    cluster.heal();
    cluster.tick_all_and_settle(3);
    assert_eq!(cluster.commit(3), 6);
    cluster.propose(1, b"more");
    cluster.settle();
    cluster.tick_all_and_settle(1);
    assert_eq!(cluster.commit(3), 7);
    let readies_before = cluster.readies[&3].len();
    let first_before = cluster.nodes[&3].store().first_index();

    // A duplicated InstallSnapshot of index 6 arrives late.
    let term = cluster.term(1);
    let late = snapshot_request(1, 3, term, stale, 99);
    cluster.node(3).step(late).unwrap();
    cluster.flush(3);
    let seen = &cluster.readies[&3][readies_before..];
    assert!(
        seen.iter().all(|r| !r.must_sync && r.hard_state.is_none()),
        "nothing was written: {seen:?}"
    );
    let s3 = cluster.nodes[&3].status();
    assert_eq!((s3.commit_index, s3.last_log_index), (7, 7));
    assert_eq!(
        cluster.nodes[&3].store().first_index(),
        first_before,
        "log untouched"
    );
    assert_eq!(
        last_match(&cluster, 3, 1),
        Some(7),
        "answered with its commit"
    );
}

#[test]
fn a_snapshot_the_log_already_holds_keeps_the_matching_suffix() {
    // 3 holds entries 1..=6 of term 1 uncommitted-beyond-2.
    let logs = vec![
        (vec![1; 6], hs(1)),
        (vec![1; 6], hs(1)),
        (vec![1; 6], HardState { commit: 2, ..hs(1) }),
    ];
    let mut cluster = Cluster::with_logs(&logs, |_| {});
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            index: 4,
            term: 1,
            conf_state: cluster.nodes[&3].status().conf,
            ..SnapshotMeta::default()
        },
        data: encode_machine(&[]),
    };
    let m = snapshot_request(1, 3, 1, snapshot, 7);
    cluster.node(3).step(m).unwrap();
    cluster.flush(3);
    let s3 = cluster.nodes[&3].status();
    assert_eq!(s3.commit_index, 4, "the commit index moved to the snapshot");
    assert_eq!(s3.last_log_index, 6, "entries 5 and 6 stay");
    assert_eq!(
        cluster.nodes[&3].store().first_index(),
        1,
        "nothing replaced"
    );
    assert_eq!(
        cluster.applied[&3]
            .iter()
            .map(|e| e.index)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "entries up to the snapshot are applied from the log itself"
    );
    assert_eq!(last_match(&cluster, 3, 1), Some(4));
}

#[test]
fn a_snapshot_that_conflicts_with_the_log_replaces_all_of_it() {
    // 3 holds entries 3..=5 of a deposed leader's term 2; the snapshot says index 4 has term 3.
    let logs = vec![
        (vec![1, 1, 3, 3], hs(3)),
        (vec![1, 1, 3, 3], hs(3)),
        (vec![1, 1, 2, 2, 2], HardState { commit: 2, ..hs(3) }),
    ];
    let mut cluster = Cluster::with_logs(&logs, |_| {});
    let applied = vec![entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 3, b"c")];
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            index: 4,
            term: 3,
            conf_state: cluster.nodes[&3].status().conf,
            ..SnapshotMeta::default()
        },
        data: encode_machine(&applied),
    };
    let m = snapshot_request(1, 3, 3, snapshot, 7);
    cluster.node(3).step(m).unwrap();
    cluster.flush(3);
    let node = &cluster.nodes[&3];
    let s3 = node.status();
    assert_eq!(
        (s3.commit_index, s3.last_log_index, s3.applied_index),
        (4, 4, 4)
    );
    assert_eq!(node.store().first_index(), 5);
    assert_eq!(node.term_at(4), Some(3));
    assert_eq!(node.term_at(5), None, "the conflicting entry 5 is gone");
    assert_eq!(cluster.applied[&3], applied, "the machine was restored");
    assert_eq!(last_match(&cluster, 3, 1), Some(4));
    // The acknowledgement left only after the snapshot was synced.
    let ready = cluster.readies[&3].last().unwrap();
    assert!(ready.must_sync && ready.early_messages.is_empty());
}

#[test]
fn a_lost_snapshot_is_sent_again() {
    let mut cluster = with_lagging_follower(10);
    cluster.compact(1, 8).unwrap();
    cluster.heal();
    cluster.tick(1);
    while cluster.deliver(|m| !is_snapshot(m)) > 0 {}
    assert!(cluster.in_flight.iter().any(is_snapshot));
    cluster.drop_where(is_snapshot);
    let waiting = cluster.nodes[&1].status().progress[&3].state;
    assert_eq!(waiting, crate::ProgressState::Snapshot);
    // The follower still answers heartbeats; after an election timeout without an answer
    // the leader probes again and sends the snapshot anew.
    cluster.tick_all_and_settle(12);
    assert_eq!(cluster.nodes[&3].status().applied_index, 11);
    assert_eq!(cluster.applied_data(3), cluster.applied_data(1));
    assert_eq!(cluster.role(1), Role::Leader);
}

#[test]
fn a_restart_needs_the_machine_restored_from_the_snapshot() {
    let mut cluster = with_lagging_follower(5);
    cluster.compact(1, 5).unwrap();
    let node = &cluster.nodes[&1];
    let storage = node.store().clone();
    let config = node.config().clone();
    // A state machine that lost its state cannot start over the compacted log...
    let refused = RawNode::new(config.clone(), storage.clone(), 0);
    assert!(
        matches!(&refused, Err(Error::Storage(StorageError::Io(why))) if why.contains("restore")),
        "{:?}",
        refused.err()
    );
    // ...but one restored from the snapshot can.
    let snapshot = storage.snapshot().unwrap();
    let node = RawNode::new(config, storage, snapshot.meta.index).unwrap();
    assert_eq!(node.status().applied_index, 5);
    assert_eq!(snapshot.data, encode_machine(&cluster.applied[&1][..5]));
}

/// Found by the simulator (seed 1042, 5 nodes, with snapshots): a paused follower handled, in
/// one Ready, an append from the leader of term 3 (acknowledging entry 78) and then one from
/// the leader of term 4 that replaced its log from 71 on. The first acknowledgement left after
/// the Ready was persisted, when the follower no longer held entry 78 (`acked-before-durable`).
/// A replacement retracts the acknowledgements still waiting in the Ready, and so does a
/// snapshot install.
#[test]
fn an_acknowledgement_replaced_in_the_same_ready_never_leaves() {
    use crate::{AppendRequest, EntryKind};
    let logs = vec![(vec![1], hs(4)), (vec![1], hs(4)), (vec![1], hs(2))];
    let mut cluster = Cluster::with_logs(&logs, |_| {});
    let append = |from, term, entries: Vec<crate::Entry>, request_id| Message {
        from,
        to: 3,
        term,
        payload: Payload::AppendRequest(AppendRequest {
            prev_log_index: 1,
            prev_log_term: 1,
            entries,
            leader_commit: 1,
            round: 0,
            request_id,
        }),
    };
    let noop = |index, term| crate::Entry {
        kind: EntryKind::Noop,
        ..entry(index, term, b"")
    };
    // Both arrive while 3 does not run a Ready (a pause, a long fsync).
    let node = cluster.node(3);
    node.step(append(1, 3, vec![noop(2, 3), entry(3, 3, b"x")], 1))
        .unwrap();
    node.step(append(2, 4, vec![noop(2, 4)], 2)).unwrap();
    cluster.flush(3);
    let acks: Vec<(u64, u64)> = cluster.readies[&3]
        .iter()
        .flat_map(|r| r.messages.iter().chain(&r.early_messages))
        .filter_map(|m| match m.payload {
            Payload::AppendResponse(ref r) => match r.outcome {
                AppendOutcome::Accepted { match_index } => Some((m.to, match_index)),
                AppendOutcome::Rejected { .. } => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        vec![(2, 2)],
        "only the acknowledgement of the log 3 holds leaves"
    );
    assert_eq!(cluster.nodes[&3].term_at(2), Some(4));
}

/// A driver may step messages while a Ready is out (one that persists and applies in the
/// background). A snapshot arriving then must not make `advance` fail for the entries that
/// Ready handed out (found in review: `restore` once cut the persisted index below them).
#[test]
fn a_snapshot_stepped_while_a_ready_is_out_leaves_that_ready_valid() {
    use crate::LogWriter;
    let logs = vec![
        (vec![1; 6], hs(1)),
        (vec![1; 6], hs(1)),
        (vec![1; 6], HardState { commit: 4, ..hs(1) }),
    ];
    let mut cluster = Cluster::with_logs(&logs, |_| {});
    let conf = cluster.nodes[&3].status().conf;
    let node = cluster.node(3);
    let ready = node.ready().unwrap();
    let handed_out: Vec<u64> = ready.committed_entries.iter().map(|e| e.index).collect();
    assert_eq!(handed_out, vec![1, 2, 3, 4]);
    // The leader's snapshot (of another history after the commit index) arrives meanwhile.
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            index: 9,
            term: 2,
            conf_state: conf,
            ..SnapshotMeta::default()
        },
        data: encode_machine(&[]),
    };
    node.step(snapshot_request(1, 3, 2, snapshot, 1)).unwrap();
    node.store_mut()
        .persist(ready.hard_state.as_ref(), &ready.entries, ready.must_sync)
        .unwrap();
    node.advance().unwrap();
    assert_eq!(node.status().applied_index, 4);
    // The next Ready installs the snapshot.
    let ready = node.ready().unwrap();
    assert_eq!(ready.snapshot.as_ref().map(|s| s.meta.index), Some(9));
    assert!(ready.committed_entries.is_empty());
    node.store_mut()
        .apply_snapshot(ready.snapshot.as_ref().unwrap())
        .unwrap();
    node.store_mut()
        .persist(ready.hard_state.as_ref(), &ready.entries, ready.must_sync)
        .unwrap();
    node.advance().unwrap();
    let status = node.status();
    assert_eq!(
        (
            status.applied_index,
            status.commit_index,
            status.last_log_index
        ),
        (9, 9, 9)
    );
}

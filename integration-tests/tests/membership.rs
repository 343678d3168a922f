//! Membership changes between real processes, while clients write: a node replaced by a
//! brand-new one (fresh data directory, new address) with `quoratectl members replace`, the
//! removed node refused when it comes back; a cluster grown from 3 to 5 voters and shrunk back
//! to 3, its leader removed on the way; a node whose disk was lost replaced the way the report
//! advises. No acknowledged write is lost, every member ends with the same event log, and the
//! longest pause between two acknowledged writes is measured.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quorate_integration_tests::client::{
    all_events, authorize, write_authorizations, Clients, Pick,
};
use quorate_integration_tests::Cluster;
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_client::AdminClient;

/// One cluster at a time: two cores cannot run several without starving elections.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The default election timeout the nodes run with.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// What a writer saw: every write acknowledged, and the longest time without one.
struct Written {
    acknowledged: Vec<String>,
    longest_pause: Duration,
}

/// Writes authorizations one after another through random nodes among `targets` (the
/// members a client knows of: the test updates them as members come and go) until `stop`.
async fn write_until(
    cluster: &Cluster,
    prefix: &str,
    stop: &AtomicBool,
    targets: &Mutex<Vec<u64>>,
) -> Written {
    let mut clients = Clients::default();
    let mut pick = Pick::new(7);
    let mut acknowledged = Vec::new();
    let mut last = Instant::now();
    let mut longest_pause = Duration::ZERO;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("{prefix}-{i}");
        i += 1;
        let request = authorize(&id, &id, 10);
        let targets = || targets.lock().unwrap().clone();
        match clients
            .submit_among(
                cluster,
                targets,
                &mut pick,
                &request,
                Duration::from_secs(20),
            )
            .await
        {
            Ok(_) => {
                longest_pause = longest_pause.max(last.elapsed());
                last = Instant::now();
                acknowledged.push(id);
            }
            Err(e) => panic!("{id} was never acknowledged: {e}"),
        }
    }
    Written {
        acknowledged,
        longest_pause,
    }
}

/// `n` authorizations `{prefix}-{i}`, each written until acknowledged
/// ([`write_authorizations`]); returns their payment ids.
async fn acknowledged_writes(cluster: &Cluster, prefix: &str, n: usize) -> Vec<String> {
    write_authorizations(cluster, prefix, n, 3).await;
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn members(cluster: &Cluster, via: u64) -> pb::ListMembersResponse {
    let mut admin = AdminClient::new(cluster.channel(via).await.unwrap());
    admin
        .list_members(pb::ListMembersRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Every acknowledged write is on every one of `ids`, and they all hold the same events.
async fn nothing_lost(cluster: &Cluster, ids: &[u64], acknowledged: &[String]) {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let commit = cluster.status(leader).await.unwrap().commit_index;
    cluster
        .wait_applied(commit, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails(30)));
    let mut first: Option<Vec<(u64, String)>> = None;
    for &id in ids {
        let events = all_events(cluster, id).await;
        let held: BTreeSet<&str> = events.iter().map(|e| e.payment_id.as_str()).collect();
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|p| !held.contains(p.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks {} acknowledged writes, first {:?}",
            missing.len(),
            missing.first()
        );
        let log: Vec<(u64, String)> = events
            .iter()
            .map(|e| (e.index, e.payment_id.clone()))
            .collect();
        match &first {
            None => first = Some(log),
            Some(reference) => assert_eq!(&log, reference, "node {id}'s event log differs"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_swaps_a_node_for_a_new_one_while_writing_and_the_old_one_is_refused() {
    let _serial = SERIAL.lock().await;
    // Frequent compactions: the new member needs entries long compacted, so it catches up
    // through a snapshot, which carries the membership and the member table.
    let mut cluster =
        Cluster::start_with_args(3, quorate_integration_tests::frequent_compactions()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let old = (1..=3).find(|&id| id != leader).unwrap();
    let stays: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    cluster.start_joining(4, &[1, 2, 3]).unwrap();
    let stop = AtomicBool::new(false);
    let targets = Mutex::new(vec![1, 2, 3]);
    let writer = write_until(&cluster, "replace", &stop, &targets);
    let (written, replaced) = tokio::join!(writer, async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let peer_url = cluster.nodes[&4].spec.peer.clone();
        let result = cluster
            .quoratectl(
                &stays,
                &[
                    "members",
                    "replace",
                    "--old",
                    &old.to_string(),
                    "--new",
                    "4",
                    "--peer-url",
                    &peer_url,
                ],
            )
            .await;
        // The clients move to the new membership; writes go on a little longer.
        *targets.lock().unwrap() = stays.iter().copied().chain([4]).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        result
    });
    assert!(replaced.0, "replace failed: {}", replaced.2);
    assert!(replaced.2.contains("4/4 removing node"), "{}", replaced.2);
    eprintln!(
        "{} writes acknowledged during the replacement; longest pause {:?}",
        written.acknowledged.len(),
        written.longest_pause
    );
    assert!(written.acknowledged.len() > 20, "writes kept flowing");
    assert!(
        written.longest_pause < ELECTION_TIMEOUT,
        "writes stopped for {:?}",
        written.longest_pause
    );
    let list = members(&cluster, 4).await;
    let ids: BTreeSet<u64> = list.members.iter().map(|m| m.node_id).collect();
    let expected: BTreeSet<u64> = stays.iter().copied().chain([4]).collect();
    assert_eq!(ids, expected);
    assert!(list.members.iter().all(|m| m.voter && !m.learner));
    assert!(!list.joint);
    assert!(
        cluster.log(4).contains("installed the leader's snapshot"),
        "the new member caught up through a snapshot"
    );
    cluster.sigkill(old).unwrap();
    let mut members_now = stays.clone();
    members_now.push(4);
    nothing_lost(&cluster, &members_now, &written.acknowledged).await;
    // The new member restarts from its compacted store: the snapshot gave it the members'
    // addresses, and it still reaches them.
    cluster.sigterm(4, Duration::from_secs(10)).unwrap();
    cluster.restart(4).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails(30)));
    let seen_by_4 = members(&cluster, 4).await;
    for m in &seen_by_4.members {
        assert_eq!(m.peer_address, cluster.nodes[&m.node_id].spec.peer, "{m:?}");
    }

    // The old node comes back with its data: refused by every member, it changes nothing.
    let term = cluster.status(4).await.unwrap().term;
    cluster.restart(old).unwrap();
    tokio::time::sleep(ELECTION_TIMEOUT * 4).await;
    let log = cluster.log(old);
    assert!(
        log.contains("this node was removed from the cluster"),
        "{}",
        cluster.log_tails(20)
    );
    let status = cluster.status(old).await.expect("the old node answers");
    assert!(status.removed, "{status:?}");
    for &id in &members_now {
        let s = cluster.status(id).await.unwrap();
        assert_eq!(
            s.term, term,
            "node {id}'s term moved: the old node disturbed it"
        );
    }
    // A client that reaches it is told where things stand, not served.
    let mut client = cluster.payments(old).await.unwrap();
    let refused = client
        .submit(authorize("to-the-removed", "to-the-removed", 1))
        .await
        .unwrap_err();
    eprintln!("a write to the removed node: {refused}");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_to_five_to_three_voters_removing_the_leader_while_writing() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    cluster.start_joining(4, &[1, 2, 3]).unwrap();
    cluster.start_joining(5, &[1, 2, 3]).unwrap();
    let stop = AtomicBool::new(false);
    let all = [1, 2, 3, 4, 5];
    let targets = Mutex::new(vec![1, 2, 3]);
    let writer = write_until(&cluster, "grow", &stop, &targets);
    let (written, removed) = tokio::join!(writer, async {
        for id in [4u64, 5] {
            let peer = cluster.nodes[&id].spec.peer.clone();
            let (ok, _, err) = cluster
                .quoratectl(
                    &[1, 2, 3],
                    &["members", "add", &id.to_string(), "--peer-url", &peer],
                )
                .await;
            assert!(ok, "{err}");
        }
        for id in [4u64, 5] {
            // Refused until caught up; retried like `replace` does.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (ok, _, err) = cluster
                    .quoratectl(&[1, 2, 3], &["members", "promote", &id.to_string()])
                    .await;
                if ok {
                    break;
                }
                assert!(
                    err.contains("LEARNER_BEHIND") || err.contains("MEMBERSHIP_CHANGE_REFUSED"),
                    "{err}"
                );
                assert!(Instant::now() < deadline, "node {id} never caught up");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let five = members(&cluster, 1).await;
        assert_eq!(five.members.iter().filter(|m| m.voter).count(), 5);
        *targets.lock().unwrap() = all.to_vec();
        // Shrink back to three, the leader first.
        let leader = cluster
            .wait_for_leader(Duration::from_secs(15))
            .await
            .unwrap();
        let other = all.into_iter().find(|&id| id != leader && id <= 3).unwrap();
        let mut removed = Vec::new();
        for id in [leader, other] {
            let via: Vec<u64> = all
                .into_iter()
                .filter(|v| !removed.contains(v) && *v != id)
                .collect();
            let (ok, _, err) = cluster
                .quoratectl(&via, &["members", "remove", &id.to_string()])
                .await;
            assert!(ok, "{err}");
            removed.push(id);
            targets.lock().unwrap().retain(|&t| t != id);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        removed
    });
    eprintln!(
        "{} writes acknowledged while growing to 5 and shrinking to 3 (removed {removed:?}); \
         longest pause {:?}",
        written.acknowledged.len(),
        written.longest_pause
    );
    assert!(
        written.longest_pause < ELECTION_TIMEOUT,
        "writes stopped for {:?}",
        written.longest_pause
    );
    for id in &removed {
        cluster.sigkill(*id).unwrap();
    }
    let remaining: Vec<u64> = all.into_iter().filter(|id| !removed.contains(id)).collect();
    let list = members(&cluster, remaining[0]).await;
    let voters: Vec<u64> = list
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    assert_eq!(voters, remaining);
    nothing_lost(&cluster, &remaining, &written.acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_was_lost_is_replaced_by_a_fresh_member() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut acknowledged = acknowledged_writes(&cluster, "before", 30).await;
    // The machine of a follower dies with its disk.
    let lost = (1..=3).find(|&id| id != leader).unwrap();
    cluster.sigkill(lost).unwrap();
    std::fs::remove_dir_all(&cluster.nodes[&lost].spec.data_dir).unwrap();
    // The report names it unreachable and says how to replace it; the operator follows it.
    let stays: Vec<u64> = (1..=3).filter(|&id| id != lost).collect();
    tokio::time::sleep(ELECTION_TIMEOUT).await;
    let (_, report, _) = cluster.quoratectl(&stays, &["split-brain", "report"]).await;
    let advice = format!("quoratectl members replace --old {lost} --new 4 --peer-url");
    assert!(report.contains(&advice), "{report}");
    assert!(report.contains("--id 4"), "{report}");
    // The new node is given an incomplete member list (without the leader): it asks the
    // members the first one names too, the leader among them.
    let follower = stays.iter().copied().find(|&id| id != leader).unwrap();
    cluster.start_joining(4, &[follower]).unwrap();
    let peer_url = cluster.nodes[&4].spec.peer.clone();
    let (ok, _, err) = cluster
        .quoratectl(
            &stays,
            &[
                "members",
                "replace",
                "--old",
                &lost.to_string(),
                "--new",
                "4",
                "--peer-url",
                &peer_url,
            ],
        )
        .await;
    assert!(ok, "{err}");
    acknowledged.extend(acknowledged_writes(&cluster, "after", 10).await);
    let mut members_now = stays.clone();
    members_now.push(4);
    nothing_lost(&cluster, &members_now, &acknowledged).await;
    assert!(
        cluster.log(4).contains("asking it too"),
        "{}",
        cluster.log_tails(20)
    );
    // The lost member's id is gone for good: started again under it on an empty disk, it
    // refuses to start, and adding it again is refused.
    cluster
        .restart_with(lost, &["--initial-cluster-state", "existing"])
        .unwrap();
    let exited = cluster.wait_exit(lost, Duration::from_secs(20)).unwrap();
    assert!(
        exited.is_some_and(|s| !s.success()),
        "{}",
        cluster.log_tails(20)
    );
    assert!(
        cluster.log(lost).contains("was removed from the cluster"),
        "{}",
        cluster.log_tails(20)
    );
    let (ok, _, err) = cluster
        .quoratectl(
            &stays,
            &[
                "members",
                "add",
                &lost.to_string(),
                "--peer-url",
                "127.0.0.1:1",
            ],
        )
        .await;
    assert!(!ok);
    assert!(err.contains("removed") && err.contains("node_id"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_moves_to_a_new_peer_address() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut acknowledged = acknowledged_writes(&cluster, "before", 10).await;
    // A follower's machine moves: stop it, record its new address, start it listening there.
    let moved = (1..=3).find(|&id| id != leader).unwrap();
    cluster.sigkill(moved).unwrap();
    let new_address = format!("127.0.0.1:{}", quorate_integration_tests::free_port());
    let others: Vec<u64> = (1..=3).filter(|&id| id != moved).collect();
    let (ok, out, err) = cluster
        .quoratectl(
            &others,
            &[
                "members",
                "update",
                &moved.to_string(),
                "--peer-url",
                &new_address,
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains(&new_address), "{out}");
    acknowledged.extend(acknowledged_writes(&cluster, "while-moving", 10).await);
    cluster.nodes.get_mut(&moved).unwrap().spec.peer = new_address.clone();
    cluster.restart(moved).unwrap();
    acknowledged.extend(acknowledged_writes(&cluster, "after", 10).await);
    nothing_lost(&cluster, &[1, 2, 3], &acknowledged).await;
    // Every member, the moved one included, lists it at its new address.
    for id in 1..=3 {
        let list = members(&cluster, id).await;
        let entry = list.members.iter().find(|m| m.node_id == moved).unwrap();
        assert_eq!(entry.peer_address, new_address, "as node {id} sees it");
    }
}

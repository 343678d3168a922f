//! Real three-node clusters: elections, writes through every node, crashes, freezes, restarts.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use quorate_integration_tests::client::{all_events, authorize, Clients, Pick};
use quorate_integration_tests::{Cluster, MAX_ELECTION_TIMEOUT};
use quorate_proto::admin::Role;
use quorate_proto::payments as pb;

/// One cluster at a time: two cores cannot run several without starving elections.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Acknowledged writes: payment id -> the event index the cluster returned.
type Acked = RefCell<BTreeMap<String, u64>>;

/// Submits authorizations `{prefix}-{i}` for `range` through random live nodes with `workers`
/// concurrent clients, retrying each with its idempotency key until acknowledged.
async fn submit_range(
    cluster: &Cluster,
    prefix: &str,
    range: std::ops::Range<usize>,
    workers: usize,
    acked: &Acked,
) {
    let next = RefCell::new(range.start);
    let worker = |w: usize| {
        let next = &next;
        let range = range.clone();
        async move {
            let mut clients = Clients::default();
            let mut pick = Pick::new(w as u64 * 7919 + 17);
            loop {
                let i = {
                    let mut n = next.borrow_mut();
                    if *n >= range.end {
                        return;
                    }
                    *n += 1;
                    *n - 1
                };
                let id = format!("{prefix}-{i}");
                let request = authorize(&id, &format!("key-{id}"), 1000 + i as i64);
                let (reply, _) = clients
                    .submit(cluster, &mut pick, &request, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|e| panic!("{id} never acknowledged: {e}"));
                let event = reply.event.expect("an event");
                acked.borrow_mut().insert(id, event.index);
            }
        }
    };
    join_all((0..workers).map(worker)).await;
}

/// Every acknowledged payment, read with a linearizable Get on node `id`, has exactly its one
/// authorization at the acknowledged index.
async fn check_all_readable(cluster: &Cluster, id: u64, acked: &BTreeMap<String, u64>) {
    let mut client = cluster.payments(id).await.expect("client");
    for (payment_id, index) in acked {
        let reply = client
            .get(pb::GetRequest {
                payment_id: payment_id.clone(),
                consistency: pb::Consistency::Linearizable as i32,
            })
            .await
            .unwrap_or_else(|e| panic!("node {id}: {payment_id}: {e}"))
            .into_inner();
        let payment = reply.payment.expect("payment");
        let indexes: Vec<u64> = payment.events.iter().map(|e| e.index).collect();
        assert_eq!(
            indexes,
            vec![*index],
            "node {id}: {payment_id} must have exactly its acknowledged event"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_exactly_one_leader() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut leaders = Vec::new();
    let mut terms = Vec::new();
    for id in 1..=3 {
        let s = cluster.status(id).await.expect("status");
        if s.role == Role::Leader as i32 {
            leaders.push(id);
        }
        terms.push(s.term);
        assert_eq!(s.leader_id, leader, "node {id} follows the leader");
    }
    assert_eq!(leaders, vec![leader]);
    assert!(terms.windows(2).all(|t| t[0] == t[1]), "{terms:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_submits_through_random_nodes_are_readable_on_every_node() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let acked = Acked::default();
    let started = Instant::now();
    submit_range(&cluster, "thousand", 0..1000, 16, &acked).await;
    eprintln!("1000 submits acknowledged in {:?}", started.elapsed());
    let acked = acked.into_inner();
    assert_eq!(acked.len(), 1000);
    for id in 1..=3 {
        check_all_readable(&cluster, id, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_fails_over_fast_and_loses_no_acknowledged_event() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    let old_leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let acked = Acked::default();
    submit_range(&cluster, "before", 0..100, 8, &acked).await;

    let killed_at = Instant::now();
    cluster.sigkill(old_leader).unwrap();
    // The first write accepted after the kill, retried with one idempotency key.
    let mut clients = Clients::default();
    let mut pick = Pick::new(3);
    let probe = authorize("failover-probe", "failover-probe", 1);
    let (reply, via) = clients
        .submit(&cluster, &mut pick, &probe, Duration::from_secs(20))
        .await
        .expect("a write is accepted after the leader died");
    let failover = killed_at.elapsed();
    eprintln!(
        "leader {old_leader} SIGKILLed; first accepted write after {failover:?} (via node {via})"
    );
    assert!(
        failover < MAX_ELECTION_TIMEOUT * 2,
        "failover took {failover:?}, more than twice the maximum election timeout"
    );
    acked
        .borrow_mut()
        .insert("failover-probe".into(), reply.event.unwrap().index);
    submit_range(&cluster, "after", 0..100, 8, &acked).await;
    let acked = acked.into_inner();
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(new_leader, old_leader);

    // The old leader comes back, rejoins as a follower and catches up.
    cluster.restart(old_leader).unwrap();
    let commit = cluster.status(new_leader).await.unwrap().commit_index;
    cluster
        .wait_applied(commit, Duration::from_secs(20))
        .await
        .unwrap();
    let rejoined = cluster.status(old_leader).await.unwrap();
    assert_eq!(rejoined.role, Role::Follower as i32);
    assert_eq!(rejoined.leader_id, new_leader);
    for id in 1..=3 {
        check_all_readable(&cluster, id, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_all_nodes_and_restart_keeps_everything() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let acked = Acked::default();
    submit_range(&cluster, "durable", 0..200, 8, &acked).await;
    for id in 1..=3 {
        let (status, took) = cluster.sigterm(id, Duration::from_secs(15)).unwrap();
        eprintln!("node {id} exited with {status} {took:?} after SIGTERM");
        assert!(status.success(), "node {id} exited with {status}");
        // The peer server's graceful shutdown waits for its calls, and waited 5 s for the
        // leader's append stream, which never ends by itself, until the server ended it.
        assert!(
            took < Duration::from_secs(3),
            "node {id} took {took:?} to stop after SIGTERM"
        );
    }
    for id in 1..=3 {
        cluster.restart(id).unwrap();
    }
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let acked = acked.into_inner();
    for id in 1..=3 {
        check_all_readable(&cluster, id, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leader_steps_down_and_nothing_it_acknowledged_is_lost_or_doubled() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    let frozen = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let acked = Acked::default();
    submit_range(&cluster, "pre-freeze", 0..50, 4, &acked).await;

    cluster.sigstop(frozen).unwrap();
    // Frozen past the election timeout: the others elect a leader and keep accepting writes.
    submit_range(&cluster, "frozen", 0..100, 4, &acked).await;
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(new_leader, frozen);
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.sigcont(frozen).unwrap();
    // Resumed, the old leader learns of the new term and steps down.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = cluster.status(frozen).await;
        if let Some(s) = &s {
            if s.role == Role::Follower as i32 && s.leader_id == new_leader {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "old leader did not step down: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    submit_range(&cluster, "thawed", 0..50, 4, &acked).await;
    let acked = acked.into_inner();
    let commit = cluster.status(new_leader).await.unwrap().commit_index;
    cluster
        .wait_applied(commit, Duration::from_secs(20))
        .await
        .unwrap();
    for id in 1..=3 {
        check_all_readable(&cluster, id, &acked).await;
    }
    // Nothing doubled: every payment appears once in the whole event log.
    let mut seen = BTreeMap::new();
    for e in all_events(&cluster, new_leader).await {
        *seen.entry(e.payment_id).or_insert(0) += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        doubled.is_empty(),
        "payments with more than one event: {doubled:?}"
    );
    assert_eq!(seen.len(), acked.len());
}

/// The acceptance scenario: exactly the DESIGN.md flags; 400 events through random nodes with
/// the leader SIGKILLed midway; every node exits 0 within 15 s of SIGTERM; after a restart
/// every event is readable with a linearizable Get on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_events_survive_a_leader_kill_and_a_full_restart() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let acked = Acked::default();
    submit_range(&cluster, "accept", 0..200, 8, &acked).await;
    cluster.sigkill(leader).unwrap();
    submit_range(&cluster, "accept", 200..300, 8, &acked).await;
    cluster.restart(leader).unwrap();
    submit_range(&cluster, "accept", 300..400, 8, &acked).await;
    let acked = acked.into_inner();
    assert_eq!(acked.len(), 400);
    for id in 1..=3 {
        let (status, took) = cluster.sigterm(id, Duration::from_secs(15)).unwrap();
        eprintln!("node {id}: {status} {took:?} after SIGTERM");
        assert!(status.success());
    }
    for id in 1..=3 {
        cluster.restart(id).unwrap();
    }
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    for id in 1..=3 {
        check_all_readable(&cluster, id, &acked).await;
    }
}

/// SIGHUP means "reload certificates and roles", never "exit": not during start-up, and not
/// on a node that has nothing to reload (no TLS, no roles file), where the signal's default
/// action used to end the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_during_start_up_and_after_never_stops_a_node() {
    use quorate_integration_tests::Signal;
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::unstarted(3, Vec::new()).unwrap();
    cluster.start_all().unwrap();
    // Start-up: the processes run, no leader yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in 1..=3 {
        cluster.signal(id, Signal::SIGHUP).unwrap();
    }
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    // Running.
    for id in 1..=3 {
        cluster.signal(id, Signal::SIGHUP).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in 1..=3 {
        let exited = cluster.wait_exit(id, Duration::from_millis(50)).unwrap();
        assert!(
            exited.is_none(),
            "node {id} exited after SIGHUP: {exited:?}"
        );
    }
    let acked = Acked::default();
    submit_range(&cluster, "hangup", 0..20, 4, &acked).await;
    assert_eq!(acked.into_inner().len(), 20);
    assert!(
        cluster.log(1).contains("SIGHUP received"),
        "node 1 does not log the signal"
    );
}

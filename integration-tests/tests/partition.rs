//! Real network partitions between network namespaces (root only).
//!
//! A node cut off from its peers, but not from its clients, must refuse writes with
//! `NO_QUORUM` within one election timeout while the majority keeps committing, and must
//! catch up once the partition heals.

use std::time::{Duration, Instant};

use quorate_integration_tests::client::{authorize, reason, Clients, Pick};
use quorate_integration_tests::Cluster;
use quorate_proto::admin::Role;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ELECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends a write to `target` every 50 ms until one is refused with NO_QUORUM; returns how long
/// that took and the other outcomes seen before it.
async fn until_no_quorum(cluster: &Cluster, target: u64, label: &str) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let mut client = cluster.payments(target).await.unwrap();
    let mut before = Vec::new();
    for attempt in 0.. {
        let id = format!("{label}-{attempt}");
        match client.submit(authorize(&id, &id, 10)).await {
            Err(status) if reason(&status).as_deref() == Some("NO_QUORUM") => {
                return (started.elapsed(), before);
            }
            other => before.push(format!(
                "{:?}",
                other
                    .map(|r| r.into_inner().event.map(|e| e.index))
                    .map_err(|e| (e.code(), reason(&e)))
            )),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "node {target} never refused with NO_QUORUM: {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_follower_refuses_writes_and_catches_up_after_healing() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start_in_namespaces(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let mut clients = Clients::default();
    let mut pick = Pick::new(1);
    for i in 0..20 {
        let id = format!("warm-{i}");
        clients
            .submit(
                &cluster,
                &mut pick,
                &authorize(&id, &id, 5),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(cluster.payments_health(follower).await.unwrap(), SERVING);
    cluster.isolate(follower).unwrap();
    let (took, before) = until_no_quorum(&cluster, follower, "to-minority").await;
    assert_ne!(
        cluster.payments_health(follower).await.unwrap(),
        SERVING,
        "a node cut off from the majority must not report itself SERVING"
    );
    eprintln!("isolated follower {follower} refused a write with NO_QUORUM after {took:?} (before: {before:?})");
    assert!(took <= ELECTION_TIMEOUT, "took {took:?}");
    // Reads that need a quorum are refused too; stale reads are served.
    let mut client = cluster.payments(follower).await.unwrap();
    let linearizable = client
        .get(quorate_proto::payments::GetRequest {
            payment_id: "warm-0".into(),
            consistency: quorate_proto::payments::Consistency::Linearizable as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&linearizable).as_deref(), Some("NO_QUORUM"));
    let stale = client
        .get(quorate_proto::payments::GetRequest {
            payment_id: "warm-0".into(),
            consistency: quorate_proto::payments::Consistency::Stale as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stale.stale);

    // The majority keeps committing.
    let mut majority = cluster.payments(leader).await.unwrap();
    let mut last = 0;
    for i in 0..50 {
        let id = format!("majority-{i}");
        last = majority
            .submit(authorize(&id, &id, 7))
            .await
            .expect("the majority commits while the minority is cut off")
            .into_inner()
            .event
            .unwrap()
            .index;
    }
    assert!(cluster.status(follower).await.unwrap().applied_index < last);

    cluster.heal().unwrap();
    cluster
        .wait_applied(last, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(cluster.payments_health(follower).await.unwrap(), SERVING);
    let s = cluster.status(follower).await.unwrap();
    assert_eq!(s.role, Role::Follower as i32);
    assert_eq!(
        s.leader_id, leader,
        "the healthy leader kept its leadership"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_stops_accepting_writes_and_the_majority_elects_another() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start_in_namespaces(3).unwrap();
    let old = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();

    cluster.isolate(old).unwrap();
    let isolated_at = Instant::now();
    let (took, before) = until_no_quorum(&cluster, old, "to-old-leader").await;
    eprintln!(
        "isolated leader {old} refused a write with NO_QUORUM after {took:?} (before: {before:?})"
    );
    assert!(took <= ELECTION_TIMEOUT, "took {took:?}");
    // Check-quorum: it steps down within an election timeout of losing its majority.
    loop {
        let status = cluster.status(old).await.unwrap();
        if status.role != Role::Leader as i32 {
            break;
        }
        assert!(
            isolated_at.elapsed() < ELECTION_TIMEOUT + Duration::from_millis(500),
            "still leader {:?} after the isolation",
            isolated_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "isolated leader {old} stepped down {:?} after the isolation",
        isolated_at.elapsed()
    );

    // The other two elect a leader and commit.
    let others: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_leader = loop {
        let mut found = None;
        for &id in &others {
            if let Some(s) = cluster.status(id).await {
                if s.role == Role::Leader as i32 {
                    found = Some(id);
                }
            }
        }
        if let Some(id) = found {
            break id;
        }
        assert!(Instant::now() < deadline, "the majority elected no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "majority elected node {new_leader} {:?} after the isolation",
        isolated_at.elapsed()
    );
    let mut client = cluster.payments(new_leader).await.unwrap();
    let index = client
        .submit(authorize("after-split", "after-split", 3))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap()
        .index;

    cluster.heal().unwrap();
    cluster
        .wait_applied(index, Duration::from_secs(15))
        .await
        .unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(leader, new_leader);
    // None of the writes the old leader was sent after the isolation took effect.
    let mut old_client = cluster.payments(old).await.unwrap();
    let page = old_client
        .list(quorate_proto::payments::ListRequest {
            after_index: 0,
            limit: 1000,
            // What the old leader itself holds.
            consistency: quorate_proto::payments::Consistency::Stale as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let leaked: Vec<_> = page
        .events
        .iter()
        .filter(|e| e.payment_id.starts_with("to-old-leader"))
        .map(|e| e.payment_id.clone())
        .collect();
    // Only writes answered OUTCOME_UNKNOWN may have committed; refused ones never.
    let refused_then_committed: Vec<_> = leaked
        .iter()
        .filter(|id| {
            let n: usize = id.trim_start_matches("to-old-leader-").parse().unwrap();
            n >= before.len()
        })
        .collect();
    eprintln!("writes sent to the cut-off leader that committed later: {leaked:?}");
    assert!(
        refused_then_committed.is_empty(),
        "writes refused with NO_QUORUM were committed: {refused_then_committed:?}"
    );
}

/// Split-brain forensics during a real partition that isolates the leader: the majority's
/// report names the isolated node, the majority and its new leader, and the old leader as
/// stale until it steps down; the isolated node's own report says it is in the minority; after
/// healing the verdict is HEALTHY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_report_during_a_partition_that_isolates_the_leader() {
    use quorate_proto::admin::admin_client::AdminClient;
    use quorate_proto::admin::{SplitBrainReportRequest, SplitBrainReportResponse, Verdict};
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start_in_namespaces(3).unwrap();
    let old = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let majority_node = (1..=3).find(|&id| id != old).unwrap();
    let report = |id: u64| {
        let cluster = &cluster;
        async move {
            let mut admin = AdminClient::new(cluster.channel(id).await.unwrap());
            admin
                .split_brain_report(SplitBrainReportRequest {})
                .await
                .unwrap()
                .into_inner()
        }
    };
    let verdict = |r: &SplitBrainReportResponse| Verdict::try_from(r.verdict).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await; // let every view fill in
    assert_eq!(verdict(&report(majority_node).await), Verdict::Healthy);

    cluster.isolate(old).unwrap();
    let isolated_at = Instant::now();
    let mut named_stale = false;
    let degraded = loop {
        let r = report(majority_node).await;
        if r.stale_leaders.iter().any(|s| s.node_id == old) {
            named_stale = true;
            eprintln!(
                "{:?} after the isolation: {:?}, stale leader: {}",
                isolated_at.elapsed(),
                verdict(&r),
                r.stale_leaders[0].reason
            );
        }
        if verdict(&r) == Verdict::Degraded {
            break r;
        }
        assert!(
            isolated_at.elapsed() < Duration::from_secs(15),
            "no DEGRADED verdict: {r:?}"
        );
    };
    assert!(named_stale, "the old leader was never named stale");
    let majority = degraded.majority.clone().unwrap();
    assert!(!majority.node_ids.contains(&old));
    assert_eq!(majority.node_ids.len(), 2);
    assert_ne!(majority.leader_id, old);
    assert!(
        degraded.stale_leaders.is_empty(),
        "it has stepped down by now"
    );
    assert!(degraded
        .recommended_action
        .contains(&format!("node {old} cannot be reached")));
    eprintln!("majority's report: {}", degraded.recommended_action);

    // The isolated node's own report says it is in the minority.
    let deadline = Instant::now() + Duration::from_secs(10);
    let own = loop {
        let r = report(old).await;
        if !r.reporter_in_majority {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the isolated node thinks it is in the majority"
        );
    };
    assert_eq!(verdict(&own), Verdict::NoMajority);
    assert!(own.recommended_action.contains("is in a minority"));
    eprintln!("isolated node's report: {}", own.recommended_action);

    cluster.heal().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = report(majority_node).await;
        if verdict(&r) == Verdict::Healthy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy after healing: {}",
            r.recommended_action
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

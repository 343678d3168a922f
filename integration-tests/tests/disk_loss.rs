//! A member whose disk is lost must not vote as if it had never promised anything.
//!
//! The scenario from the hardening issue, with real processes: B lags (SIGSTOP), leader A and
//! follower C acknowledge 200 writes, C's data directory is removed and A is killed. Before,
//! C restarted empty, voted B in, and B's no-op overwrote the acknowledged writes. Now C, started
//! with the same flags, waits for every member, learns that the cluster holds data and refuses
//! with the command that recovers it; started with `--initial-cluster-state existing` it waits
//! for A, rejoins as a non-voter, and no acknowledged write is lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use quorate_integration_tests::client::{all_events, authorize};
use quorate_integration_tests::Cluster;

const WRITES: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_disk_never_votes_away_acknowledged_writes() {
    let mut cluster = Cluster::start(3).expect("a cluster");
    let a = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a first leader");
    let followers: Vec<u64> = (1..=3).filter(|&id| id != a).collect();
    let (b, c) = (followers[0], followers[1]);

    // B lags; A and C acknowledge every write.
    cluster.sigstop(b).unwrap();
    let mut client = cluster.payments(a).await.unwrap();
    for i in 0..WRITES {
        client
            .submit(authorize(
                &format!("pay-{i}"),
                &format!("key-{i}"),
                100 + i as i64,
            ))
            .await
            .unwrap_or_else(|e| panic!("write {i} not acknowledged: {e}"));
    }
    drop(client);

    // C's disk is replaced; A crashes.
    cluster.sigkill(c).unwrap();
    std::fs::remove_dir_all(&cluster.nodes[&c].spec.data_dir).unwrap();
    cluster.sigkill(a).unwrap();

    // The operator starts C as before; B resumes. Before the fix, C came up empty at once,
    // voted B in, and B overwrote the acknowledged writes. Now no node may lead without them.
    cluster.restart(c).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.sigcont(b).unwrap();
    let acknowledged_last = WRITES + 1; // the first leader's no-op, then the writes
    let watch_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watch_until {
        for id in [b, c] {
            if let Some(s) = cluster.status(id).await {
                assert!(
                    !(s.role == quorate_proto::admin::Role::Leader as i32
                        && s.last_log_index < acknowledged_last),
                    "node {id} leads term {} without the acknowledged writes (last index {}):\n{}",
                    s.term,
                    s.last_log_index,
                    cluster.log_tails(20)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // C waited while B was frozen and A down (it cannot hear from every member), then learnt
    // from B that the cluster holds data and refused, saying how to recover.
    let exit = cluster
        .wait_exit(c, Duration::from_secs(10))
        .unwrap()
        .unwrap_or_else(|| panic!("C kept running:\n{}", cluster.log_tails(20)));
    assert!(!exit.success(), "a refusal exits non-zero");
    let log = cluster.log(c);
    assert!(
        log.contains("still waiting"),
        "C says what it waits for:\n{log}"
    );
    assert!(
        log.contains("already runs") && log.contains("--initial-cluster-state existing"),
        "C's refusal names the recovery:\n{log}"
    );

    // The operator follows the advice. C waits for A (down); B alone elects nobody.
    cluster
        .restart_with(c, &["--initial-cluster-state", "existing"])
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b_status = cluster.status(b).await.expect("B answers");
    assert_ne!(
        b_status.role,
        quorate_proto::admin::Role::Leader as i32,
        "B must not lead without A's entries: {b_status:?}"
    );

    // A returns: A and B elect A (B lacks the writes), C rejoins and catches up.
    cluster.restart(a).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails(30)));
    assert_eq!(leader, a, "only A holds the acknowledged writes");
    let leader_status = cluster.status(a).await.unwrap();
    cluster
        .wait_applied(leader_status.commit_index, Duration::from_secs(30))
        .await
        .unwrap();

    let expected: BTreeSet<String> = (0..WRITES).map(|i| format!("key-{i}")).collect();
    for id in [a, b, c] {
        let keys: BTreeSet<String> = all_events(&cluster, id)
            .await
            .into_iter()
            .map(|e| e.idempotency_key)
            .collect();
        let missing: Vec<&String> = expected.difference(&keys).collect();
        assert!(
            missing.is_empty(),
            "node {id} lost {} acknowledged writes, e.g. {:?}",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
    }

    // C is whole again once a leader of a later term brought it up to date.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cluster.status(c).await;
        if status
            .as_ref()
            .is_some_and(|s| s.rejoining_after_term.is_none())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "C still rejoining: {status:?}\n{}",
            cluster.log_tails(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

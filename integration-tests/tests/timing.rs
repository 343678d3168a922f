//! Timing settings the leader lease depends on must agree across the cluster.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quorate_integration_tests::client::authorize;
use quorate_integration_tests::Cluster;
use quorate_proto::admin::Role;

/// Issue 9: the lease was computed from the leader's own `--election-timeout` and stickiness
/// from each follower's own, so a node started with another timeout (a rolling change) could
/// let a leader hold its lease longer than that follower waited before voting for another.
/// Now members refuse each other's requests unless their settings agree: node 3, started with
/// a 3 s election timeout, never joins; nodes 1 and 2 elect a leader and commit without it;
/// the leader's view of node 3 says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_election_timeout_is_kept_out() {
    let env = BTreeMap::from([(
        3,
        vec![("QUORATE_ELECTION_TIMEOUT".to_string(), "3s".to_string())],
    )]);
    let cluster = Cluster::start_with_node_env(3, env).expect("cluster starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let mut leaders = Vec::new();
        for id in [1, 2] {
            if let Some(s) = cluster.status(id).await {
                if s.role() == Role::Leader {
                    leaders.push(id);
                }
            }
        }
        if let [leader] = leaders[..] {
            break leader;
        }
        assert!(Instant::now() < deadline, "nodes 1 and 2 elected no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut client = cluster.payments(leader).await.expect("client");
    client
        .submit(authorize("timing-1", "timing-1", 5))
        .await
        .expect("nodes 1 and 2 commit without node 3");

    let status = cluster
        .status(3)
        .await
        .expect("node 3 answers its own status");
    assert_ne!(status.role(), Role::Leader, "{status:?}");
    assert_eq!(
        status.commit_index, 0,
        "node 3 received nothing: {status:?}"
    );
    // The leader's view of node 3 says why: node 3 refuses its heartbeats.
    let status = cluster.status(leader).await.expect("leader status");
    let view = status
        .peers
        .iter()
        .find(|p| p.node_id == 3)
        .expect("the leader's view of node 3");
    assert!(
        view.last_error.contains("same timing settings")
            && view.last_error.contains("--election-timeout 3000ms"),
        "the leader's view of node 3 names the mismatch: {view:?}"
    );
}

//! Log compaction and InstallSnapshot between real processes: a follower that was down while
//! the leader compacted its log catches up through a snapshot streamed over the peer port,
//! then through appends, and restarts from its own compacted store.

use std::time::Duration;

use quorate_integration_tests::client::{authorize, Clients, Pick};
use quorate_integration_tests::Cluster;
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_client::AdminClient;

async fn write_some(cluster: &Cluster, prefix: &str, n: usize) {
    let mut clients = Clients::default();
    let mut pick = Pick::new(23);
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        clients
            .submit(
                cluster,
                &mut pick,
                &authorize(&id, &id, 10),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
    }
}

/// Every node's (events, hash) of its event log up to `index`.
async fn hashes(cluster: &Cluster, index: u64) -> Vec<(u64, u64, String)> {
    let mut out = Vec::new();
    for id in cluster.live() {
        let mut admin = AdminClient::new(cluster.channel(id).await.unwrap());
        let h = admin
            .hash_events(pb::HashEventsRequest { index })
            .await
            .unwrap_or_else(|e| panic!("node {id}: {e}"))
            .into_inner();
        out.push((id, h.events, h.hash));
    }
    out
}

async fn all_applied_and_equal(cluster: &Cluster, events: u64) {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let index = cluster.status(leader).await.unwrap().commit_index;
    cluster
        .wait_applied(index, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails(30)));
    let hashes = hashes(cluster, index).await;
    assert_eq!(hashes.len(), 3, "{hashes:?}");
    assert!(
        hashes.iter().all(|h| h.1 == events && h.2 == hashes[0].2),
        "every node holds the same {events} events at index {index}: {hashes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_during_compactions_catches_up_through_a_snapshot() {
    let args = [
        "--snapshot-count",
        "40",
        "--snapshot-catch-up-entries",
        "10",
    ];
    let mut cluster = Cluster::start_with_args(3, args.map(String::from).to_vec()).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    write_some(&cluster, "before", 10).await;
    let follower = if leader == 1 { 2 } else { 1 };
    cluster.sigkill(follower).unwrap();
    // Enough for several compactions, each leaving 10 entries: the follower's next entry is
    // long gone from every log.
    write_some(&cluster, "while-down", 150).await;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    assert!(
        cluster.log(leader).contains("compacted the log"),
        "{}",
        cluster.log(leader)
    );
    cluster.restart(follower).unwrap();
    all_applied_and_equal(&cluster, 160).await;
    let leader_log = cluster.log(leader);
    assert!(
        leader_log.contains("sending a snapshot"),
        "the leader sent no snapshot:\n{leader_log}"
    );
    let follower_log = cluster.log(follower);
    assert!(
        follower_log.contains("installed the leader's snapshot"),
        "the follower installed no snapshot:\n{follower_log}"
    );

    // Appends go on after the snapshot, and the follower restarts from its compacted store.
    write_some(&cluster, "after", 20).await;
    all_applied_and_equal(&cluster, 180).await;
    cluster.sigkill(follower).unwrap();
    cluster.restart(follower).unwrap();
    write_some(&cluster, "after-restart", 5).await;
    all_applied_and_equal(&cluster, 185).await;
}

//! Log compaction and InstallSnapshot between real processes: a follower that was down while
//! the leader compacted its log catches up through a snapshot streamed over the peer port,
//! then through appends, and restarts from its own compacted store.

use std::time::Duration;

use std::collections::BTreeMap;

use quorate_integration_tests::client::write_authorizations;
use quorate_integration_tests::Cluster;
use quorate_node::NodeConfig;
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_client::AdminClient;
use quorate_proto::raft as raft_pb;
use quorate_proto::raft::raft_client::RaftClient;
use quorate_proto::raft_convert::snapshot_checksum;

/// One cluster at a time: two cores cannot run several without starving elections.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn write_some(cluster: &Cluster, prefix: &str, n: usize) {
    write_authorizations(cluster, prefix, n, 23).await;
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
    let _serial = SERIAL.lock().await;
    let mut cluster =
        Cluster::start_with_args(3, quorate_integration_tests::frequent_compactions()).unwrap();
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
    // Status shows where the log now starts: past everything the follower held.
    let status = cluster.status(leader).await.unwrap();
    assert!(
        status.first_log_index > 11 && status.first_log_index <= status.commit_index,
        "first log index {} (commit {})",
        status.first_log_index,
        status.commit_index
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

/// Sends one InstallSnapshot stream of `chunks` to node `to` as member `from` would.
async fn install(
    cluster: &Cluster,
    from: u64,
    to: u64,
    mut chunks: Vec<raft_pb::InstallSnapshotChunk>,
) -> Result<raft_pb::AppendEntriesResponse, tonic::Status> {
    let peers: BTreeMap<u64, String> = cluster
        .nodes
        .iter()
        .map(|(&id, n)| (id, n.spec.peer.clone()))
        .collect();
    let config = NodeConfig::new(from, NodeConfig::cluster_id_for(&peers), peers.clone());
    chunks[0].header = Some(raft_pb::Header {
        cluster_id: config.cluster_id,
        from,
        to,
        term: 1,
        timing: Some(config.timing()),
    });
    let mut client = RaftClient::connect(format!("http://{}", peers[&to]))
        .await
        .unwrap();
    client
        .install_snapshot(futures_util::stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

fn first_chunk(
    index: u64,
    data: &[u8],
    total_bytes: u64,
    checksum: u64,
) -> raft_pb::InstallSnapshotChunk {
    raft_pb::InstallSnapshotChunk {
        index,
        term: 1,
        voters: vec![1, 2, 3],
        total_bytes,
        checksum,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

/// Bad snapshots get a status that says what is wrong, and change nothing: a damaged
/// transfer (wrong checksum, fewer bytes than announced), one over the size limit, and one
/// whose image is not of the index it claims (which the node must never install: it would
/// diverge silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_snapshots_are_refused_with_a_reason_and_change_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    write_some(&cluster, "before", 5).await;
    all_applied_and_equal(&cluster, 5).await;
    let target = if leader == 1 { 2 } else { 1 };
    let from = 6 - leader - target;

    let damaged = install(&cluster, from, target, vec![first_chunk(900, b"abc", 3, 1)]).await;
    let status = damaged.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    assert!(status.message().contains("checksum"), "{status:?}");

    let short = install(
        &cluster,
        from,
        target,
        vec![first_chunk(900, b"abc", 10, snapshot_checksum(b"abc"))],
    )
    .await
    .unwrap_err();
    assert_eq!(short.code(), tonic::Code::InvalidArgument, "{short:?}");
    assert!(
        short.message().contains("after 3 of total_bytes 10"),
        "{short:?}"
    );

    let huge = install(
        &cluster,
        from,
        target,
        vec![first_chunk(900, b"", 2 << 30, 0)],
    )
    .await
    .unwrap_err();
    assert_eq!(huge.code(), tonic::Code::ResourceExhausted, "{huge:?}");

    // Well formed, but the (empty) image is of index 0, not of 900.
    let lying = install(
        &cluster,
        from,
        target,
        vec![first_chunk(900, b"", 0, snapshot_checksum(b""))],
    )
    .await;
    assert!(lying.is_err(), "{lying:?}");
    let log = cluster.log(target);
    assert!(
        log.contains("refused a snapshot: it claims index 900 but its image is of index 0"),
        "{log}"
    );

    // Nothing changed: the cluster goes on, every node agrees.
    write_some(&cluster, "after", 5).await;
    all_applied_and_equal(&cluster, 10).await;
}

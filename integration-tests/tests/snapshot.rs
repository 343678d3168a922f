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

/// `quoratectl -o json` output, one document.
fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The state of payment `id` on node `on` (linearizable), or the gRPC code it failed with.
async fn payment(cluster: &Cluster, on: u64, id: &str) -> Result<(i32, i64), tonic::Code> {
    let mut client = cluster.payments(on).await.unwrap();
    client
        .get(quorate_proto::payments::GetRequest {
            payment_id: id.into(),
            ..Default::default()
        })
        .await
        .map(|r| {
            let p = r.into_inner().payment.unwrap_or_default();
            (p.state, p.authorized_minor)
        })
        .map_err(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_a_new_cluster_that_the_old_members_cannot_reach() {
    let _serial = SERIAL.lock().await;
    let mut old =
        Cluster::start_with_args(3, quorate_integration_tests::frequent_compactions()).unwrap();
    let leader = old.wait_for_leader(Duration::from_secs(15)).await.unwrap();
    write_some(&old, "saved", 60).await;

    // A snapshot on demand compacts every node's log and shows in Status.
    let (ok, stdout, _) = old
        .quoratectl(&[1, 2, 3], &["-o", "json", "snapshot", "take"])
        .await;
    assert!(ok, "snapshot take failed");
    for (line, id) in stdout.lines().zip(1..) {
        let taken = json(line);
        let status = old.status(id).await.unwrap();
        assert_eq!(
            status.snapshot_index,
            taken["index"].as_u64().unwrap(),
            "{line}"
        );
        assert_eq!(
            status.first_log_index,
            taken["first_log_index"].as_u64().unwrap()
        );
        assert!(
            status.first_log_index > 1,
            "node {id} compacted nothing: {line}"
        );
        assert!(status.log_size_bytes > 0, "node {id} reports no log size");
        // What it freed: the deleted entries' files are compacted away (on the store's
        // compaction thread) before `after` is measured.
        assert!(
            taken["log_size_bytes_after"].as_u64() < taken["log_size_bytes_before"].as_u64(),
            "node {id} freed nothing: {line}"
        );
    }

    // A backup from a follower, checked and described.
    let follower = if leader == 1 { 2 } else { 1 };
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("backup.qbk");
    let file_arg = file.to_str().unwrap();
    let (ok, stdout, _) = old
        .quoratectl(&[follower], &["-o", "json", "snapshot", "save", file_arg])
        .await;
    assert!(ok, "snapshot save failed");
    let saved = json(&stdout);
    let index = saved["index"].as_u64().unwrap();
    let events_hash = saved["events_hash"].as_str().unwrap().to_string();
    let (ok, stdout, _) = old
        .quoratectl(&[follower], &["-o", "json", "snapshot", "status", file_arg])
        .await;
    assert!(ok);
    assert_eq!(json(&stdout)["sha256"], saved["sha256"]);
    // The old cluster's own hash at that index is what the backup says.
    let old_hashes = hashes(&old, index).await;
    assert!(
        old_hashes.iter().all(|h| h.2 == events_hash),
        "{old_hashes:?} vs {events_hash}"
    );
    // Written after the backup: not in the restored cluster.
    write_some(&old, "later", 5).await;

    // A damaged copy restores nothing, and leaves no directory behind.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let damaged = files.path().join("damaged.qbk");
    std::fs::write(&damaged, &bytes).unwrap();
    let nowhere = files.path().join("nowhere");
    let (ok, _, stderr) = old
        .quoratectl(
            &[follower],
            &[
                "snapshot",
                "restore",
                damaged.to_str().unwrap(),
                "--data-dir",
                nowhere.to_str().unwrap(),
                "--id",
                "1",
                "--initial-cluster",
                old.initial_cluster(),
            ],
        )
        .await;
    assert!(!ok && stderr.contains("SHA-256"), "{stderr}");
    assert!(!nowhere.exists());

    // Every member of the new cluster from the same file and the same --initial-cluster.
    let mut new = Cluster::unstarted(3, Vec::new()).unwrap();
    for id in 1..=3u64 {
        let data_dir = new.nodes[&id].spec.data_dir.clone();
        let id_arg = id.to_string();
        let restore = [
            "-o",
            "json",
            "snapshot",
            "restore",
            file_arg,
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--id",
            &id_arg,
            "--initial-cluster",
            new.initial_cluster(),
        ];
        let (ok, stdout, stderr) = new.quoratectl(&[id], &restore).await;
        assert!(ok, "restore of member {id}: {stderr}");
        let restored = json(&stdout);
        assert_eq!(restored["index"].as_u64(), Some(index));
        assert_eq!(restored["events_hash"].as_str(), Some(events_hash.as_str()));
        // A second restore into the same directory is refused.
        let (again, _, stderr) = new.quoratectl(&[id], &restore).await;
        assert!(!again && stderr.contains("not empty"), "{stderr}");
    }
    new.start_all().unwrap();
    let new_leader = new
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", new.log_tails(30)));
    let new_status = new.status(new_leader).await.unwrap();
    let old_status = old.status(leader).await.unwrap();
    assert_ne!(
        new_status.cluster_id, old_status.cluster_id,
        "a new cluster id"
    );
    assert!(
        new_status.term > saved["term"].as_u64().unwrap(),
        "terms go on"
    );

    // The same events at the backup's index on every new member, every saved payment, none
    // of the later ones; and it takes writes.
    let new_hashes = hashes(&new, index).await;
    assert_eq!(new_hashes.len(), 3);
    assert!(
        new_hashes.iter().all(|h| h.2 == events_hash),
        "{new_hashes:?} vs {events_hash}"
    );
    for i in 0..60 {
        let id = format!("saved-{i}");
        assert_eq!(
            payment(&new, new_leader, &id).await,
            payment(&old, leader, &id).await,
            "{id}"
        );
    }
    assert_eq!(
        payment(&new, new_leader, "later-0").await,
        Err(tonic::Code::NotFound)
    );
    write_some(&new, "restored", 5).await;

    // A member of the old cluster pointed at the new one is refused: it cannot vote there
    // or take it over, and says why.
    let term_before = new.status(new_leader).await.unwrap().term;
    old.sigkill(3).unwrap();
    let port = || format!("127.0.0.1:{}", quorate_integration_tests::free_port());
    let stray_log = files.path().join("stray.log");
    let mut stray = std::process::Command::new(quorate_integration_tests::binary("quorate"))
        .arg("serve")
        .args(["--id", "3", "--data-dir"])
        .arg(&old.nodes[&3].spec.data_dir)
        .args(["--listen-client", &port()])
        .args(["--listen-peer", &port()])
        .args(["--listen-metrics", &port()])
        .args(["--initial-cluster", new.initial_cluster()])
        .env("QUORATE_LOG", "info")
        .stdout(std::fs::File::create(&stray_log).unwrap())
        .stderr(std::fs::File::create(files.path().join("stray.err")).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stray.kill();
    let _ = stray.wait();
    let stray_output = std::fs::read_to_string(&stray_log).unwrap()
        + &std::fs::read_to_string(files.path().join("stray.err")).unwrap();
    let logs: String = (1..=3).map(|id| new.log(id)).collect();
    assert!(
        logs.contains("of another cluster") && logs.contains("CLUSTER_MISMATCH"),
        "no member of the new cluster logged the refusal; the stray said:\n{stray_output}"
    );
    let after = new.status(new_leader).await.unwrap();
    assert_eq!(
        after.term, term_before,
        "the old member disturbed the new cluster"
    );
    assert_eq!(after.leader_id, new_leader);
}

/// The first available index a COMPACTED refusal names, or a panic describing `status`.
fn compacted_first_available(status: &tonic::Status) -> u64 {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "COMPACTED", "{status:?}");
    info.metadata["first_available_index"]
        .parse()
        .expect("a number")
}

/// `--event-retention`: old events are deleted on every node alike, including one that caught
/// up through a snapshot, and nothing a client relies on goes with them: reads of the deleted
/// range are refused with the first index still held, a payment keeps its state and says how
/// many of its events went, a retry of a compacted event's key still gets the event, and the
/// nodes' event-log hashes agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_retention_deletes_old_events_and_keeps_every_answer() {
    use quorate_proto::payments as ppb;
    let _serial = SERIAL.lock().await;
    let mut args = quorate_integration_tests::frequent_compactions();
    args.extend(["--event-retention".to_string(), "100".to_string()]);
    let mut cluster = Cluster::start_with_args(3, args).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    write_some(&cluster, "early", 50).await;
    let follower = if leader == 1 { 2 } else { 1 };
    cluster.sigkill(follower).unwrap();
    write_some(&cluster, "late", 250).await;
    cluster.restart(follower).unwrap();
    all_applied_and_equal(&cluster, 300).await;

    for id in cluster.live() {
        let mut client = cluster.payments(id).await.unwrap();
        let stale = ppb::Consistency::Stale as i32;
        let refused = client
            .list(ppb::ListRequest {
                after_index: 0,
                limit: 10,
                consistency: stale,
            })
            .await
            .expect_err("the start of the event log is gone");
        let first = compacted_first_available(&refused);
        assert!(first > 100, "node {id}: first available index {first}");
        let page = client
            .list(ppb::ListRequest {
                after_index: first - 1,
                limit: 1000,
                consistency: stale,
            })
            .await
            .unwrap_or_else(|e| panic!("node {id}: listing from {first}: {e}"))
            .into_inner();
        assert!(
            !page.events.is_empty() && page.events[0].index >= first,
            "node {id}: {:?}",
            page.events.first()
        );
        assert!(
            page.events.len() <= 300,
            "node {id}: {} events",
            page.events.len()
        );

        let payment = client
            .get(ppb::GetRequest {
                payment_id: "early-0".into(),
                consistency: stale,
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(
            (
                payment.events.len(),
                payment.events_compacted,
                payment.authorized_minor
            ),
            (0, 1, 10),
            "node {id}: {payment:?}"
        );

        let mut watch = client
            .watch(ppb::WatchRequest {
                after_index: 0,
                consistency: stale,
            })
            .await
            .unwrap()
            .into_inner();
        let ended = watch
            .message()
            .await
            .expect_err("a watch from 0 is refused");
        assert_eq!(compacted_first_available(&ended), first, "node {id}");
    }

    // A retry of the first write, long compacted, still gets its original event.
    let mut client = cluster.payments(leader).await.unwrap();
    let replay = client
        .submit(quorate_integration_tests::client::authorize(
            "early-0", "early-0", 10,
        ))
        .await
        .unwrap()
        .into_inner();
    let event = replay.event.unwrap();
    assert!(replay.replayed);
    assert_eq!(
        (event.payment_id.as_str(), event.payment_seq),
        ("early-0", 1)
    );

    // A backup's header hashes the events its image holds (the hash of the whole history),
    // as HashEvents does at the same index.
    let mut admin = AdminClient::new(cluster.channel(leader).await.unwrap());
    let mut backup = admin
        .save_snapshot(pb::SaveSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let header = match backup.message().await.unwrap() {
        Some(pb::SnapshotChunk {
            part: Some(pb::snapshot_chunk::Part::Header(header)),
        }) => header,
        other => panic!("a backup starts with its header, not {other:?}"),
    };
    let at_index = admin
        .hash_events(pb::HashEventsRequest {
            index: header.index,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        header.events_hash, at_index.hash,
        "at index {}",
        header.index
    );
    assert_eq!(at_index.events, 300);

    // The event-log hash is still there at every index held, and refused below.
    let refused = admin
        .hash_events(pb::HashEventsRequest { index: 1 })
        .await
        .expect_err("index 1 is below the compaction point");
    assert!(compacted_first_available(&refused) > 1);
}

//! The admin service and split-brain forensics against real processes.

use std::process::Command;
use std::time::{Duration, Instant};

use quorate_integration_tests::client::write_authorizations;
use quorate_integration_tests::{binary, Cluster};
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_client::AdminClient;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn admin(cluster: &Cluster, id: u64) -> AdminClient<tonic::transport::Channel> {
    AdminClient::new(cluster.channel(id).await.unwrap())
}

async fn report(cluster: &Cluster, id: u64) -> (pb::SplitBrainReportResponse, Duration) {
    let started = Instant::now();
    let r = admin(cluster, id)
        .await
        .split_brain_report(pb::SplitBrainReportRequest {})
        .await
        .unwrap()
        .into_inner();
    (r, started.elapsed())
}

fn verdict(r: &pb::SplitBrainReportResponse) -> pb::Verdict {
    pb::Verdict::try_from(r.verdict).unwrap()
}

async fn write_some(cluster: &Cluster, prefix: &str, n: usize) {
    write_authorizations(cluster, prefix, n, 11).await;
}

fn endpoints(cluster: &Cluster) -> String {
    cluster
        .nodes
        .values()
        .map(|n| n.spec.client.clone())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_and_health_says_serving() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::{
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(cluster.channel(1).await.unwrap());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection answer {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "quorate.admin.v1.Admin",
        "quorate.payments.v1.PaymentEvents",
        "quorate.payments.v1.Leases",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "quorate.raft.v1.Raft"),
        "the peer protocol is not on the client port"
    );
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    for id in 1..=3 {
        assert_eq!(cluster.payments_health(id).await.unwrap(), serving);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_table_has_one_row_per_node_and_transfer_moves_leadership() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let output = Command::new(binary("quoratectl"))
        .args(["--endpoints", &endpoints(&cluster), "status", "-w", "table"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("{text}");
    assert!(output.status.success());
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| 127.0.0.1"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows.iter().filter(|r| r.contains("| true ")).count(), 1);

    // Transfer to a follower, asked through another follower: it leads within 5 s.
    let target = (1..=3).find(|&id| id != leader).unwrap();
    let via = (1..=3).find(|&id| id != leader && id != target).unwrap();
    let started = Instant::now();
    let reply = admin(&cluster, via)
        .await
        .transfer_leadership(pb::TransferLeadershipRequest { target_id: target })
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    eprintln!(
        "leadership moved from node {leader} to node {target} in {took:?} (asked via node {via})"
    );
    assert_eq!(reply.leader_id, target);
    assert!(took < Duration::from_secs(5));
    assert_eq!(
        cluster
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap(),
        target
    );
    // Step-down through the CLI hands it to someone else.
    let output = Command::new(binary("quoratectl"))
        .args(["--endpoints", &endpoints(&cluster), "leader", "step-down"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(
        cluster
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap(),
        target
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_agree_at_a_common_index_and_reports_follow_a_frozen_leader() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    write_some(&cluster, "hash", 50).await;
    let index = cluster.status(leader).await.unwrap().commit_index;
    cluster
        .wait_applied(index, Duration::from_secs(10))
        .await
        .unwrap();
    let mut hashes = Vec::new();
    for id in 1..=3 {
        let h = admin(&cluster, id)
            .await
            .hash_events(pb::HashEventsRequest { index })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(h.index, index);
        assert_eq!(h.events, 50);
        hashes.push(h.hash);
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    let too_far = admin(&cluster, 1)
        .await
        .hash_events(pb::HashEventsRequest {
            index: index + 1000,
        })
        .await
        .unwrap_err();
    assert!(
        too_far.message().contains("available for indexes 1 to"),
        "{}",
        too_far.message()
    );

    let (healthy, took) = report(&cluster, leader).await;
    eprintln!(
        "healthy report in {took:?} (server side {} ms)",
        healthy.duration_ms
    );
    assert_eq!(
        verdict(&healthy),
        pb::Verdict::Healthy,
        "{}",
        healthy.recommended_action
    );

    // Freeze the leader: once the others elect a new one, the cluster is degraded, naming it.
    cluster.sigstop(leader).unwrap();
    let other = (1..=3).find(|&id| id != leader).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let degraded = loop {
        let (r, took) = report(&cluster, other).await;
        if verdict(&r) == pb::Verdict::Degraded {
            eprintln!(
                "degraded report in {took:?} (server side {} ms)",
                r.duration_ms
            );
            break r;
        }
        assert!(Instant::now() < deadline, "no DEGRADED verdict: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let frozen = degraded
        .members
        .iter()
        .find(|m| m.node_id == leader)
        .unwrap();
    assert!(!frozen.answered);
    assert!(
        degraded
            .recommended_action
            .contains(&format!("node {leader} cannot be reached")),
        "{}",
        degraded.recommended_action
    );
    assert_ne!(degraded.majority.unwrap().leader_id, leader);
    eprintln!("recommended action: {}", degraded.recommended_action);

    cluster.sigcont(leader).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (r, _) = report(&cluster, other).await;
        if verdict(&r) == pb::Verdict::Healthy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy again: {}",
            r.recommended_action
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The CLI's exit status carries the verdict.
    let status = Command::new(binary("quoratectl"))
        .args(["--endpoints", &endpoints(&cluster), "split-brain", "report"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A follower's stored events are altered offline (test-only tampering of its RocksDB); the
/// report names it DIVERGED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_tampered_storage_is_reported_diverged() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    write_some(&cluster, "tamper", 20).await;
    let index = cluster.status(leader).await.unwrap().commit_index;
    cluster
        .wait_applied(index, Duration::from_secs(10))
        .await
        .unwrap();
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    let (status, _) = cluster.sigterm(victim, Duration::from_secs(15)).unwrap();
    assert!(status.success());
    let index = quorate_integration_tests::tamper_with_first_event(
        &cluster.nodes[&victim].spec.data_dir,
        1_000_000,
    )
    .unwrap();
    eprintln!("tampered with event {index} of node {victim}");
    cluster.restart(victim).unwrap();
    cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    cluster
        .wait_applied(index, Duration::from_secs(15))
        .await
        .unwrap();
    let (r, _) = report(&cluster, leader).await;
    assert_eq!(
        verdict(&r),
        pb::Verdict::Diverged,
        "{}",
        r.recommended_action
    );
    assert_eq!(
        r.divergence.clone().unwrap().diverged_node_ids,
        vec![victim]
    );
    assert!(r.recommended_action.contains(&format!("node {victim}")));
    eprintln!("recommended action: {}", r.recommended_action);
    let status = Command::new(binary("quoratectl"))
        .args(["--endpoints", &endpoints(&cluster), "split-brain", "report"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(5), "exit status names the verdict");
}

/// A client that was told its write is done and then asks the same node for its status sees
/// a commit index and an applied index that include the write. (The driver used to publish
/// the status only at the end of its turn, after the replies had left: a `Status` right after
/// an acknowledgement could show the commit index from before it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_after_an_acknowledged_write_includes_it() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(15))
        .await
        .unwrap();
    let writers = (0..8).map(|w| {
        let cluster = &cluster;
        async move {
            let mut payments = cluster.payments(leader).await.unwrap();
            let mut admin = admin(cluster, leader).await;
            let mut behind = Vec::new();
            for i in 0..60 {
                let id = format!("ryw-{w}-{i}");
                let written = payments
                    .submit(quorate_integration_tests::client::authorize(&id, &id, 10))
                    .await
                    .unwrap()
                    .into_inner()
                    .event
                    .unwrap()
                    .index;
                let status = admin
                    .status(pb::StatusRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                if status.commit_index < written || status.applied_index < written {
                    behind.push((written, status.commit_index, status.applied_index));
                }
            }
            behind
        }
    });
    let behind: Vec<_> = futures_util::future::join_all(writers)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        behind.is_empty(),
        "{} statuses behind the write just acknowledged (index, commit, applied): {:?}",
        behind.len(),
        &behind[..behind.len().min(5)]
    );
}

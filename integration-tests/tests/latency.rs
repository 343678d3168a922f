//! Latency regressions that only real sockets show.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use quorate_integration_tests::client::authorize;
use quorate_integration_tests::{Cluster, MAX_ELECTION_TIMEOUT};
use quorate_proto::admin::Role;

/// Linux delays an ACK by up to 40 ms; a write that waits for one is at least this slow.
const DELAYED_ACK: Duration = Duration::from_millis(40);

/// One client writing sequentially: the median latency of `count` submissions through node
/// `id`, each carrying `metadata_bytes` of metadata (key and value together).
async fn median_submit_latency(
    cluster: &Cluster,
    id: u64,
    label: &str,
    metadata_bytes: usize,
    count: usize,
) -> Duration {
    let mut client = cluster.payments(id).await.expect("a client");
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let payment = format!("{label}-{id}-{i}");
        let mut request = authorize(&payment, &format!("key-{payment}"), 1_000);
        if metadata_bytes > 0 {
            let key = "note".to_string();
            let value = "x".repeat(metadata_bytes - key.len());
            request.metadata = HashMap::from([(key, value)]);
        }
        let started = Instant::now();
        client
            .submit(request)
            .await
            .unwrap_or_else(|e| panic!("{payment} through node {id}: {e}"));
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies[count / 2]
}

/// Issue 15: accepted sockets kept Nagle's algorithm (tonic's `tcp_nodelay` does not reach a
/// listener passed in as a stream), so every response of more than one segment waited for a
/// delayed ACK: from about 180 bytes of metadata on, every write took 44 ms instead of 2.
/// Through the leader (client port) and through a follower (client port, then `Forward` on
/// the peer port), writes with 256 B and 4 KiB of metadata must cost about what an empty
/// one costs, far below the delayed-ACK time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_with_realistic_payloads_pay_no_delayed_ack() {
    let cluster = Cluster::start(3).expect("cluster starts");
    let leader = cluster
        .wait_for_leader(MAX_ELECTION_TIMEOUT * 5)
        .await
        .expect("a leader");
    let follower = *cluster
        .nodes
        .keys()
        .find(|&&id| id != leader)
        .expect("a follower");
    // Warm up connections (client and peer channels) before measuring.
    median_submit_latency(&cluster, leader, "warm", 256, 5).await;
    median_submit_latency(&cluster, follower, "warm", 256, 5).await;

    let mut report = Vec::new();
    for (via, id) in [("leader", leader), ("follower", follower)] {
        let empty = median_submit_latency(&cluster, id, "empty", 0, 40).await;
        for bytes in [256, 4096] {
            let median = median_submit_latency(&cluster, id, &format!("m{bytes}"), bytes, 40).await;
            report.push(format!(
                "via {via}: {bytes} B metadata p50 {median:?}, 0 B p50 {empty:?}"
            ));
            // Half the delayed-ACK time: a stalled write cannot be that fast, and a healthy
            // one (an fsync and two loopback round trips) is several times faster.
            assert!(
                median < DELAYED_ACK / 2,
                "writes with {bytes} B of metadata via the {via} take {median:?} at the median \
                 (0 B: {empty:?}): a delayed-ACK stall\n{}",
                report.join("\n")
            );
        }
    }
    let status = cluster.status(leader).await.expect("leader status");
    assert_eq!(status.role(), Role::Leader, "the leader stayed in office");
    println!("{}", report.join("\n"));
}

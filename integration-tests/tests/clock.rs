//! Wall clocks: one node's clock a day and an hour fast (libfaketime, from Debian's
//! `faketime`) must not move the replicated clock, so idempotency keys are not forgotten
//! early and a retried capture is replayed, never recorded twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quorate_integration_tests::client::{authorize, Clients};
use quorate_integration_tests::{Cluster, MAX_ELECTION_TIMEOUT};
use quorate_proto::admin::admin_client::AdminClient;
use quorate_proto::admin::{Role, TransferLeadershipRequest};
use quorate_proto::payments as pb;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const HOUR_MS: i64 = 3_600_000;
/// The fast node's lead: more than the default idempotency window (24 h).
const FAST_BY_MS: i64 = 25 * HOUR_MS;
const FAST_NODE: u64 = 3;

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

fn capture(payment: &str, key: &str, amount_minor: i64) -> pb::SubmitRequest {
    pb::SubmitRequest {
        kind: pb::EventKind::Captured as i32,
        ..authorize(payment, key, amount_minor)
    }
}

/// Submits `request` through node `via`, retrying with the same key while the outcome is
/// unknown; returns the answer.
async fn submit_via(
    cluster: &Cluster,
    via: u64,
    request: &pb::SubmitRequest,
) -> pb::SubmitResponse {
    let mut clients = Clients::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut client = clients.payments(cluster, via).await.expect("a client");
        match client.submit(request.clone()).await {
            Ok(reply) => return reply.into_inner(),
            Err(status) if std::time::Instant::now() < deadline => {
                eprintln!(
                    "{} via node {via}: {status}; retrying",
                    request.idempotency_key
                );
                clients.forget(via);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("{} via node {via}: {status}", request.idempotency_key),
        }
    }
}

/// The machine clock every node reports, and how far it is from true time.
async fn machine_clock_lag(cluster: &Cluster, id: u64) -> i64 {
    let status = cluster.status(id).await.expect("status");
    let clock = status.counters.expect("counters").machine_clock_unix_ms as i64;
    clock - wall_ms()
}

/// A capture, its retries through every node (each replayed), and a write through the fast
/// node in between, which before the fix pushed the machine clock 25 h ahead and made the
/// retry a second capture.
async fn captures_are_exactly_once(cluster: &Cluster, payment: &str, round: &str) -> (String, u64) {
    let key = format!("{payment}-capture-{round}");
    let first = submit_via(cluster, 1, &capture(payment, &key, 100)).await;
    assert!(!first.replayed, "{key}: the first capture is new");
    let index = first.event.expect("an event").index;
    // Any write through the fast node: before the fix its clock became the machine clock.
    let poke = format!("{payment}-poke-{round}");
    submit_via(cluster, FAST_NODE, &authorize(&poke, &poke, 1)).await;
    for via in [1, 2, FAST_NODE] {
        let retry = submit_via(cluster, via, &capture(payment, &key, 100)).await;
        assert!(
            retry.replayed,
            "{key} retried through node {via} was recorded again (index {}) instead of \
             replayed (index {index}): the idempotency key was forgotten early",
            retry.event.map_or(0, |e| e.index)
        );
        assert_eq!(retry.event.expect("the original event").index, index);
    }
    (key, index)
}

/// Retries of `key` through every node are replayed from `index`.
async fn replayed_everywhere(cluster: &Cluster, payment: &str, key: &str, index: u64) {
    for via in [1, 2, FAST_NODE] {
        let retry = submit_via(cluster, via, &capture(payment, key, 100)).await;
        assert!(
            retry.replayed,
            "{key} retried through node {via} while node {FAST_NODE} leads was recorded again"
        );
        assert_eq!(retry.event.expect("the original event").index, index);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_a_day_fast_never_makes_a_retried_capture_count_twice() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install Debian's `faketime` (scripts/ensure-deps does)"
    );
    let env = BTreeMap::from([(
        FAST_NODE,
        vec![
            ("LD_PRELOAD".to_string(), LIBFAKETIME.to_string()),
            (
                "FAKETIME".to_string(),
                format!("+{}h", FAST_BY_MS / HOUR_MS),
            ),
            // Only the wall clock is wrong; the monotonic clock (leases, ticks) is the host's.
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
            ("FAKETIME_DONT_RESET".to_string(), "1".to_string()),
        ],
    )]);
    // libfaketime works here: `date +%s%3N` under the same environment reads the fast clock.
    let date = std::process::Command::new("date")
        .arg("+%s%3N")
        .envs(env[&FAST_NODE].iter().map(|(k, v)| (k, v)))
        .output()
        .expect("date runs");
    let faked: i64 = String::from_utf8_lossy(&date.stdout)
        .trim()
        .parse()
        .expect("date prints milliseconds");
    let lead = faked - wall_ms();
    assert!(
        (FAST_BY_MS - 60_000..FAST_BY_MS + 60_000).contains(&lead),
        "libfaketime did not move the wall clock: `date` under it leads by {lead} ms"
    );
    let cluster = Cluster::start_with_node_env(3, env).expect("cluster starts");
    let leader = cluster
        .wait_for_leader(MAX_ELECTION_TIMEOUT * 5)
        .await
        .expect("a leader");

    // The fast node follows: its forwarded writes are stamped by the leader.
    if leader == FAST_NODE {
        transfer(&cluster, FAST_NODE, 1).await;
    }
    let payment = "pay-clock";
    submit_via(&cluster, 2, &authorize(payment, "pay-clock-auth", 10_000)).await;
    let (first_key, first_index) =
        captures_are_exactly_once(&cluster, payment, "fast-follower").await;
    let lag = machine_clock_lag(&cluster, 1).await;
    assert!(
        lag.abs() < 60_000,
        "with the fast node following, the machine clock is {lag} ms from true time"
    );

    // The fast node leads: its wall clock moves the machine clock by at most the per-term
    // bound (5 s), and every correction is counted.
    let current = cluster
        .wait_for_leader(MAX_ELECTION_TIMEOUT * 5)
        .await
        .expect("a leader");
    transfer(&cluster, current, FAST_NODE).await;
    captures_are_exactly_once(&cluster, payment, "fast-leader").await;
    // The key recorded before node 3 led is still remembered now that its stamps reach the log.
    replayed_everywhere(&cluster, payment, &first_key, first_index).await;
    let lag = machine_clock_lag(&cluster, FAST_NODE).await;
    assert!(
        lag.abs() < 60_000,
        "with the fast node leading, the machine clock is {lag} ms from true time"
    );
    let status = cluster.status(FAST_NODE).await.expect("status");
    let corrections = status.counters.expect("counters").leader_clock_corrections;
    assert!(
        corrections > 0,
        "the fast leader's stamps were corrected, and the corrections counted"
    );

    // The fast node reports its own wall clock, and every node says how far it is from its own.
    let status = cluster
        .status(FAST_NODE)
        .await
        .expect("status of the fast node");
    let reported = status.wall_clock_unix_ms as i64 - wall_ms();
    assert!(
        (FAST_BY_MS - 60_000..FAST_BY_MS + 60_000).contains(&reported),
        "node {FAST_NODE} reports a wall clock {reported} ms from true time"
    );
    let status = cluster.status(1).await.expect("status of node 1");
    let seen = status
        .peers
        .iter()
        .find(|p| p.node_id == FAST_NODE)
        .and_then(|p| p.clock_offset_ms)
        .expect("node 1 measured node 3's clock");
    assert!(
        (FAST_BY_MS - 60_000..FAST_BY_MS + 60_000).contains(&seen),
        "node 1 sees node {FAST_NODE}'s clock {seen} ms off"
    );

    // Two captures of 100 in all, however many retries.
    let mut client = cluster.payments(1).await.expect("client");
    let payment = client
        .get(pb::GetRequest {
            payment_id: payment.into(),
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await
        .expect("get")
        .into_inner()
        .payment
        .expect("the payment");
    assert_eq!(payment.captured_minor, 200, "{payment:?}");
    println!(
        "node {FAST_NODE} runs {reported} ms fast; node 1 measured {seen} ms; machine clock \
         {lag} ms from true time after it led; {corrections} stamps corrected"
    );
}

/// Moves leadership from `from` to `to` and waits until `to` leads.
async fn transfer(cluster: &Cluster, from: u64, to: u64) {
    let mut admin = AdminClient::new(cluster.channel(from).await.expect("channel"));
    admin
        .transfer_leadership(TransferLeadershipRequest { target_id: to })
        .await
        .expect("transfer");
    for _ in 0..100 {
        if cluster
            .status(to)
            .await
            .is_some_and(|s| s.role() == Role::Leader)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {to} did not take over leadership from node {from}");
}

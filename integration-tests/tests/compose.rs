//! The docker-compose cluster as a user runs it (DESIGN.md test layer 6): the image built
//! locally by `deploy/build-image` (FROM scratch, no registry), `deploy/compose/three-nodes.yml`
//! unchanged, clients on the host ports it publishes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quorate_integration_tests::client::authorize;
use quorate_integration_tests::{agreed_leader, binary};
use quorate_proto::admin::admin_client::AdminClient;
use quorate_proto::admin::{HashEventsRequest, StatusRequest, StatusResponse};
use quorate_proto::payments::payment_events_client::PaymentEventsClient;
use quorate_proto::payments::ListRequest;
use tonic::transport::{Channel, Endpoint};

const PROJECT: &str = "quorate-it";

/// A compose file of `deploy/compose/` and how many nodes it runs.
#[derive(Clone, Copy, Debug)]
struct Topology {
    file: &'static str,
    nodes: u64,
}

const THREE: Topology = Topology {
    file: "three-nodes.yml",
    nodes: 3,
};
const FIVE: Topology = Topology {
    file: "five-nodes.yml",
    nodes: 5,
};

/// The tests share the project, the container names and the host ports: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Runs `docker-compose` on `topology`'s file; an error carries its output.
fn compose(topology: Topology, args: &[&str]) -> Result<String> {
    compose_over(topology, None, &[], args)
}

/// [`compose`] with `overlay` (a file of `deploy/compose/`) laid over the topology's file, and
/// `env` set for docker-compose.
fn compose_over(
    topology: Topology,
    overlay: Option<&str>,
    env: &[(&str, &Path)],
    args: &[&str],
) -> Result<String> {
    let mut command = Command::new("docker-compose");
    command
        .arg("-f")
        .arg(repo().join("deploy/compose").join(topology.file));
    if let Some(overlay) = overlay {
        command
            .arg("-f")
            .arg(repo().join("deploy/compose").join(overlay));
    }
    let output = command
        .args(["-p", PROJECT])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .context("running docker-compose")?;
    if !output.status.success() {
        bail!(
            "docker-compose {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Removes the cluster's containers, network and volumes when the test ends, failed or not.
struct Cleanup(Topology);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = compose(self.0, &["down", "-v", "--remove-orphans", "-t", "5"]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Builds the image (no registry) and removes whatever an interrupted run left; the returned
/// guard removes the cluster when the test ends.
fn fresh_cluster(topology: Topology) -> Result<Cleanup> {
    let bin_dir = binary("quorate")
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    let built = Command::new(repo().join("deploy/build-image"))
        .arg("quorate:local")
        .env("QUORATE_BIN_DIR", &bin_dir)
        .output()
        .context("running deploy/build-image")?;
    if !built.status.success() {
        bail!(
            "deploy/build-image: {}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    eprintln!("{}", String::from_utf8_lossy(&built.stdout).trim());
    // (Networks go by id: an interrupted `up` can leave two of the same name, which
    // `docker-compose down` then refuses to pick between.)
    let networks = Command::new("docker")
        .args(["network", "ls", "-q", "--filter"])
        .arg(format!("name=^{PROJECT}_"))
        .output()?;
    for id in String::from_utf8_lossy(&networks.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["network", "rm", id]).output();
    }
    compose(topology, &["down", "-v", "--remove-orphans", "-t", "5"])?;
    Ok(Cleanup(topology))
}

async fn channel(id: u64) -> Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://127.0.0.1:2379{id}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

async fn status(id: u64) -> Option<StatusResponse> {
    let mut admin = AdminClient::new(channel(id).await.ok()?);
    let reply = tokio::time::timeout(Duration::from_secs(1), admin.status(StatusRequest {}));
    reply.await.ok()?.ok().map(|r| r.into_inner())
}

async fn wait_for_leader(topology: Topology, timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut statuses = Vec::new();
        for id in 1..=topology.nodes {
            statuses.push(status(id).await);
        }
        if let Some(leader) = agreed_leader(&statuses) {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            bail!(
                "no agreed leader within {timeout:?}: {statuses:?}\n{}",
                compose(topology, &["logs", "--tail", "20"]).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn health(container: &str) -> String {
    Command::new("docker")
        .args(["inspect", "--format", "{{.State.Health.Status}}", container])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Builds the image without a registry, starts the three-node compose file, checks that the
/// containers turn healthy and that clients on the host reach every node (writes through each,
/// the same event-log hash on each), then `down` and `up` with the volumes kept: the cluster
/// comes back with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_cluster_serves_the_host_and_keeps_its_data_across_down_and_up() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let _cleanup = fresh_cluster(THREE)?;
    let started = Instant::now();
    compose(THREE, &["up", "-d"])?;
    let leader = wait_for_leader(THREE, Duration::from_secs(60)).await?;
    eprintln!(
        "leader {leader} elected {} ms after up",
        started.elapsed().as_millis()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in 1..=THREE.nodes {
        let container = format!("quorate-{id}");
        while health(&container) != "healthy" {
            if Instant::now() > deadline {
                bail!("{container} is {:?}, not healthy", health(&container));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Writes through every node (followers forward), acknowledged.
    let writes = 30;
    for i in 0..writes {
        let id = i % THREE.nodes + 1;
        let mut client = PaymentEventsClient::new(channel(id).await?);
        let key = format!("compose-{i}");
        client.submit(authorize(&key, &key, 100 + i as i64)).await?;
    }
    let commit = status(leader)
        .await
        .expect("the leader answers")
        .commit_index;
    let hashes = hashes_once_applied(THREE, commit).await?;
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "hashes differ: {hashes:?}"
    );

    // Down and up with the volumes kept: every acknowledged write is still there.
    compose(THREE, &["down", "-t", "15"])?;
    compose(THREE, &["up", "-d"])?;
    wait_for_leader(THREE, Duration::from_secs(60)).await?;
    for id in 1..=THREE.nodes {
        assert_eq!(payment_ids(id).await?.len(), writes as usize, "node {id}");
    }
    Ok(())
}

/// A write acknowledged to a client.
#[derive(Clone, Debug)]
struct Acked {
    payment_id: String,
    /// The node that answered.
    node: u64,
    at: Instant,
}

/// A client of node `id` that connects when first used, with a deadline per call.
fn lazy_client(id: u64) -> Result<PaymentEventsClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:2379{id}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    Ok(PaymentEventsClient::new(channel))
}

/// `writers` clients writing authorizations until `stop`, each through the nodes in turn,
/// retrying a write through the next node with the same idempotency key until it is
/// acknowledged. Returns what was acknowledged.
fn spawn_writers(
    topology: Topology,
    writers: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Result<Vec<Acked>>>> {
    (0..writers)
        .map(|w| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let nodes = topology.nodes;
                let clients: Vec<_> = (1..=nodes).map(lazy_client).collect::<Result<_>>()?;
                let mut acked = Vec::new();
                let mut turn = w;
                for n in 0.. {
                    if *stop.borrow() {
                        break;
                    }
                    let id = format!("chaos-{w}-{n}");
                    let request = authorize(&id, &id, 100);
                    let given_up = Instant::now() + Duration::from_secs(90);
                    loop {
                        turn += 1;
                        let node = turn % nodes + 1;
                        let mut client = clients[(node - 1) as usize].clone();
                        match client.submit(request.clone()).await {
                            Ok(_) => {
                                acked.push(Acked {
                                    payment_id: id.clone(),
                                    node,
                                    at: Instant::now(),
                                });
                                break;
                            }
                            Err(status)
                                if matches!(
                                    status.code(),
                                    tonic::Code::InvalidArgument
                                        | tonic::Code::FailedPrecondition
                                        | tonic::Code::AlreadyExists
                                ) =>
                            {
                                bail!("write {id} refused for good: {status:?}");
                            }
                            Err(status) if Instant::now() > given_up => {
                                bail!("write {id} not acknowledged within 90 s: {status:?}");
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
                Ok(acked)
            })
        })
        .collect()
}

fn docker(args: &[&str]) -> Result<()> {
    let output = Command::new("docker").args(args).output()?;
    if !output.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Waits until the nodes other than `old` agree on a leader other than `old`; returns it and
/// how long that took from `since`.
async fn new_leader(
    topology: Topology,
    old: u64,
    since: Instant,
    bound: Duration,
) -> Result<(u64, Duration)> {
    loop {
        let mut statuses = Vec::new();
        for id in (1..=topology.nodes).filter(|&id| id != old) {
            statuses.push(status(id).await);
        }
        if let Some(leader) = agreed_leader(&statuses).filter(|&l| l != old) {
            return Ok((leader, since.elapsed()));
        }
        if since.elapsed() > bound {
            bail!("no new leader within {bound:?} of cutting node {old} off: {statuses:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The compose cluster under container faults while clients write through every node: the
/// leader's network disconnected then reconnected, the leader paused then unpaused, a node
/// killed then started, the whole cluster down then up with its volumes. After each fault a
/// new leader within the bound; the cut-off leader acknowledged nothing while cut off; at the
/// end every acknowledged write is on every node exactly once, and the hashes agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_faults_lose_no_acknowledged_write_three_nodes() -> Result<()> {
    container_faults(THREE).await
}

/// The same on the five-node compose file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_faults_lose_no_acknowledged_write_five_nodes() -> Result<()> {
    container_faults(FIVE).await
}

async fn container_faults(topology: Topology) -> Result<()> {
    let _serial = SERIAL.lock().await;
    let _cleanup = fresh_cluster(topology)?;
    compose(topology, &["up", "-d"])?;
    let network = format!("{PROJECT}_quorate");
    let bound = Duration::from_secs(15);
    let mut leader = wait_for_leader(topology, Duration::from_secs(60)).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers = spawn_writers(topology, 4, stop_rx);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut cut_off: Vec<(u64, Instant, Instant)> = Vec::new();

    for fault in ["disconnect", "pause", "kill"] {
        let container = format!("quorate-{leader}");
        let cut = Instant::now();
        match fault {
            "disconnect" => docker(&["network", "disconnect", &network, &container])?,
            "pause" => docker(&["pause", &container])?,
            _ => docker(&["kill", &container])?,
        }
        let (next, took) = new_leader(topology, leader, cut, bound).await?;
        eprintln!(
            "{fault} leader {leader}: node {next} leads after {} ms",
            took.as_millis()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let healed = Instant::now();
        match fault {
            "disconnect" => docker(&["network", "connect", &network, &container])?,
            "pause" => docker(&["unpause", &container])?,
            _ => docker(&["start", &container])?,
        }
        cut_off.push((leader, cut, healed));
        leader = wait_for_leader(topology, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    compose(topology, &["down", "-t", "15"])?;
    compose(topology, &["up", "-d"])?;
    leader = wait_for_leader(topology, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    stop_tx.send_replace(true);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await??);
    }
    eprintln!("{} writes acknowledged", acked.len());
    assert!(acked.len() > 50, "the writers made progress");
    // A node cut off (disconnected, paused, killed) acknowledged nothing from half a second
    // after the cut (a reply already on the wire may land just after) until it was back.
    for &(node, cut, healed) in &cut_off {
        let late: Vec<&Acked> = acked
            .iter()
            .filter(|a| a.node == node && a.at > cut + Duration::from_millis(500) && a.at < healed)
            .collect();
        assert!(
            late.is_empty(),
            "node {node} acknowledged while cut off: {late:?}"
        );
    }

    // Every acknowledged write on every node, exactly once; the same hash everywhere.
    let commit = status(leader)
        .await
        .expect("the leader answers")
        .commit_index;
    let hashes = hashes_once_applied(topology, commit).await?;
    for id in 1..=topology.nodes {
        let ids = payment_ids(id).await?;
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "node {id} holds a write twice");
        let missing: Vec<&String> = acked
            .iter()
            .map(|a| &a.payment_id)
            .filter(|p| !unique.contains(p))
            .collect();
        assert!(
            missing.is_empty(),
            "node {id} lost acknowledged writes: {missing:?}"
        );
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "hashes differ: {hashes:?}"
    );
    Ok(())
}

/// Waits until every node applied `commit`, then returns each node's event-log hash there.
async fn hashes_once_applied(topology: Topology, commit: u64) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut hashes = Vec::new();
    for id in 1..=topology.nodes {
        while status(id).await.is_none_or(|s| s.applied_index < commit) {
            if Instant::now() > deadline {
                bail!("node {id} did not apply {commit}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut admin = AdminClient::new(channel(id).await?);
        let hash = admin
            .hash_events(HashEventsRequest { index: commit })
            .await?
            .into_inner();
        hashes.push(hash.hash);
    }
    Ok(hashes)
}

/// The payment id of every event a node holds, by `List`.
async fn payment_ids(id: u64) -> Result<Vec<String>> {
    let mut client = PaymentEventsClient::new(channel(id).await?);
    let mut after = 0;
    let mut ids = Vec::new();
    loop {
        let page = client
            .list(ListRequest {
                after_index: after,
                limit: 1000,
                ..Default::default()
            })
            .await?
            .into_inner();
        if page.events.is_empty() {
            return Ok(ids);
        }
        ids.extend(page.events.into_iter().map(|e| e.payment_id));
        after = page.next_after_index;
    }
}

/// The monitoring overlay (public Prometheus and Grafana images, which cannot be pulled here)
/// is a valid compose file over both clusters, and mounts the scrape config and the rules
/// that `promtool` checks in CI.
#[test]
fn the_monitoring_overlay_is_a_valid_compose_file() {
    for topology in [THREE, FIVE] {
        let config = compose_over(topology, Some("monitoring.yml"), &[], &["config"])
            .expect("a valid compose file");
        let prometheus = repo().join("deploy/prometheus");
        assert!(
            config.contains(&format!("{}:/etc/prometheus:ro", prometheus.display())),
            "{config}"
        );
        assert!(config.contains("quorate-grafana"), "{config}");
    }
}

/// `quoratectl` with the client certificate `deploy/gen-certs` made in `certs`, against
/// `endpoints` of the compose cluster (host ports); returns whether it succeeded, and its output.
fn quoratectl_tls(certs: &Path, endpoints: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary("quoratectl"))
        .args(["--endpoints", endpoints, "--timeout", "3s", "--cacert"])
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(certs.join("client.pem"))
        .arg("--key")
        .arg(certs.join("client-key.pem"))
        .args(args)
        .output()
        .expect("quoratectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The compose cluster with TLS on both ports, as a user sets it up: `deploy/gen-certs`, then
/// `deploy/compose/tls.yml` over the three-node file. Clients with the client certificate
/// write through every node (followers forward over the peers' mutual TLS) and read the same
/// hash from each; a client without TLS, or with TLS but no certificate, gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_cluster_over_tls_serves_only_clients_with_a_certificate() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let _cleanup = fresh_cluster(THREE)?;
    let certs = tempfile::tempdir()?;
    let made = Command::new(repo().join("deploy/gen-certs"))
        .arg(certs.path())
        .arg("3")
        .output()?;
    assert!(
        made.status.success(),
        "deploy/gen-certs: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    compose_over(
        THREE,
        Some("tls.yml"),
        &[("QUORATE_TLS_DIR", certs.path())],
        &["up", "-d"],
    )?;
    let all = "127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793";

    // The first write waits for the cluster to come up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let submit = |endpoints: &str, id: &str| {
        quoratectl_tls(
            certs.path(),
            endpoints,
            &[
                "payment",
                "submit",
                "--payment-id",
                id,
                "--kind",
                "authorized",
                "--amount",
                "100",
                "--currency",
                "EUR",
            ],
        )
    };
    loop {
        let (ok, out) = submit(all, "tls-0");
        if ok {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "no write over TLS within 60 s: {out}\n{}",
                compose(THREE, &["logs", "--tail", "20"]).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Through each node on its own: two of them are followers, which forward.
    for id in 1..=THREE.nodes {
        let (ok, out) = submit(&format!("127.0.0.1:2379{id}"), &format!("tls-{id}"));
        assert!(ok, "a write through node {id}: {out}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out) = quoratectl_tls(certs.path(), all, &["hash"]);
        let hashes: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split(" hash ").nth(1))
            .collect();
        if ok
            && hashes.len() == 3
            && hashes.iter().all(|h| *h == hashes[0])
            && hashes[0].ends_with("(4 events)")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the nodes' hashes: {out}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // No TLS: the node speaks only TLS on that port, and quoratectl says what to pass.
    assert!(
        status(1).await.is_none(),
        "a plain connection got an answer"
    );
    let output = Command::new(binary("quoratectl"))
        .args(["--endpoints", all, "--timeout", "3s", "status"])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.lines().count() == 3 && text.lines().all(|l| l.contains("pass --cacert")),
        "a client without TLS: {text}"
    );
    // TLS, but no client certificate: refused in the handshake.
    let output = Command::new(binary("quoratectl"))
        .args(["--endpoints", all, "--timeout", "3s", "--cacert"])
        .arg(certs.path().join("ca.pem"))
        .arg("status")
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.lines().count() == 3
            && text
                .lines()
                .all(|l| !l.contains("leader, true") && l.contains("pass --cert and --key")),
        "a client without a certificate: {text}"
    );
    Ok(())
}

/// Each TLS overlay fits its cluster file: every node gets its own certificate on both ports.
#[test]
fn each_tls_overlay_gives_every_node_its_own_certificate() {
    for (topology, overlay) in [(THREE, "tls.yml"), (FIVE, "tls-five-nodes.yml")] {
        let certs = Path::new("/certs");
        let config = compose_over(
            topology,
            Some(overlay),
            &[("QUORATE_TLS_DIR", certs)],
            &["config"],
        )
        .expect("a valid compose file");
        for id in 1..=topology.nodes {
            for flag in ["QUORATE_CERT_FILE", "QUORATE_PEER_CERT_FILE"] {
                let line = format!("{flag}: /etc/quorate/tls/node-{id}.pem");
                assert!(config.contains(&line), "{overlay}: no {line:?}");
            }
        }
        assert_eq!(
            config.matches("/certs:/etc/quorate/tls:ro").count(),
            topology.nodes as usize,
            "{overlay}: {config}"
        );
    }
}

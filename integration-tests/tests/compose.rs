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
const NODES: u64 = 3;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn compose_file() -> PathBuf {
    repo().join("deploy/compose/three-nodes.yml")
}

/// Runs `docker-compose` on the three-node file; an error carries its output.
fn compose(args: &[&str]) -> Result<String> {
    let output = Command::new("docker-compose")
        .arg("-f")
        .arg(compose_file())
        .args(["-p", PROJECT])
        .args(args)
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
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = compose(&["down", "-v", "--remove-orphans", "-t", "5"]) {
            eprintln!("cleanup: {e}");
        }
    }
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

async fn wait_for_leader(timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut statuses = Vec::new();
        for id in 1..=NODES {
            statuses.push(status(id).await);
        }
        if let Some(leader) = agreed_leader(&statuses) {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            bail!(
                "no agreed leader within {timeout:?}: {statuses:?}\n{}",
                compose(&["logs", "--tail", "20"]).unwrap_or_default()
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

/// Every event a node holds, by `List`.
async fn event_count(id: u64) -> Result<usize> {
    let mut client = PaymentEventsClient::new(channel(id).await?);
    let mut after = 0;
    let mut count = 0;
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
            return Ok(count);
        }
        count += page.events.len();
        after = page.next_after_index;
    }
}

/// Builds the image without a registry, starts the three-node compose file, checks that the
/// containers turn healthy and that clients on the host reach every node (writes through each,
/// the same event-log hash on each), then `down` and `up` with the volumes kept: the cluster
/// comes back with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_cluster_serves_the_host_and_keeps_its_data_across_down_and_up() -> Result<()> {
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
    let _cleanup = Cleanup;
    // (A cluster left over by an interrupted run goes first.)
    compose(&["down", "-v", "--remove-orphans", "-t", "5"])?;
    let started = Instant::now();
    compose(&["up", "-d"])?;
    let leader = wait_for_leader(Duration::from_secs(60)).await?;
    eprintln!(
        "leader {leader} elected {} ms after up",
        started.elapsed().as_millis()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in 1..=NODES {
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
        let id = i % NODES + 1;
        let mut client = PaymentEventsClient::new(channel(id).await?);
        let key = format!("compose-{i}");
        client.submit(authorize(&key, &key, 100 + i as i64)).await?;
    }
    let commit = status(leader)
        .await
        .expect("the leader answers")
        .commit_index;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut hashes = Vec::new();
    for id in 1..=NODES {
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
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "hashes differ: {hashes:?}"
    );

    // Down and up with the volumes kept: every acknowledged write is still there.
    compose(&["down", "-t", "15"])?;
    compose(&["up", "-d"])?;
    wait_for_leader(Duration::from_secs(60)).await?;
    for id in 1..=NODES {
        assert_eq!(event_count(id).await?, writes as usize, "node {id}");
    }
    Ok(())
}

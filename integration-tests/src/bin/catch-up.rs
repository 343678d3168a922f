//! Catching up through InstallSnapshot while writes continue, measured on real processes.
//!
//! 1. A 3-node cluster (default snapshot settings) loses a follower (SIGKILL) and takes
//!    `--events` payment events without it, so its next entry is long compacted away on the
//!    others. The follower restarts while `--writers` clients keep writing through the other
//!    two nodes; it must install the leader's snapshot and then take appends.
//! 2. A brand-new member with an empty data directory joins (`quoratectl members add`, a
//!    learner) while the writers go on: it too catches up through a snapshot.
//!
//! For each it prints how long the node took to apply what the leader had committed when it
//! started, the snapshot it installed, the writes acknowledged meanwhile, the leader's term
//! before and after (a check-quorum step-down during the transfer shows as a new term), and
//! whether every node's event hash agrees at one index afterwards. It exits non-zero if a
//! node did not catch up, did so without a snapshot, a leader changed, or hashes differ.
//!
//!   cargo build --release --bins
//!   cargo run --release -p quorate-integration-tests --bin catch-up -- --events 100000

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use quorate_integration_tests::client::{authorize, write_many, Clients, Pick};
use quorate_integration_tests::Cluster;
use quorate_proto::admin as pb;
use quorate_proto::admin::admin_client::AdminClient;

#[derive(Parser, Debug)]
#[command(about = "A stopped follower and a new member catch up through snapshots under load")]
struct Cli {
    /// Payment events written while the follower is down.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Clients writing those events.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Clients that keep writing while a node catches up.
    #[arg(long, default_value_t = 8)]
    writers: usize,
}

/// Writes `events` authorizations from `clients` clients through any live node.
async fn load(cluster: &Cluster, events: u64, clients: usize) -> Result<Duration> {
    let bar = ProgressBar::new(events).with_style(
        ProgressStyle::with_template("loading [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .context("progress style")?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    write_many(cluster, "down", events, clients, |_| bar.inc(1)).await;
    bar.finish_and_clear();
    Ok(started.elapsed())
}

/// Writes through `through` until `stop` is set; returns how many were acknowledged.
async fn keep_writing(
    cluster: &Cluster,
    through: &[u64],
    writers: usize,
    label: &str,
    stop: &Cell<bool>,
) -> u64 {
    let acknowledged = Cell::new(0u64);
    let worker = |w: usize| {
        let acknowledged = &acknowledged;
        async move {
            let mut conn = Clients::default();
            let mut pick = Pick::new(w as u64 * 13 + 5);
            let mut n = 0;
            while !stop.get() {
                let id = format!("{label}-{w}-{n}");
                n += 1;
                conn.submit_among(
                    cluster,
                    || through.to_vec(),
                    &mut pick,
                    &authorize(&id, &id, 100),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|e| panic!("{id} never acknowledged: {e}"));
                acknowledged.set(acknowledged.get() + 1);
            }
        }
    };
    join_all((0..writers).map(worker)).await;
    acknowledged.get()
}

/// Polls `node` until it applied `target`; the time it took.
async fn caught_up(
    cluster: &Cluster,
    node: u64,
    target: u64,
    stop: &Cell<bool>,
) -> Result<Duration> {
    let started = Instant::now();
    let result = loop {
        if let Some(status) = cluster.status(node).await {
            if status.applied_index >= target {
                break Ok(started.elapsed());
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            break Err(anyhow::anyhow!(
                "node {node} did not apply index {target} within 300 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.set(true);
    result
}

/// Every node's event hash at the leader's commit index once all applied it.
async fn hashes_agree(cluster: &Cluster) -> Result<(u64, Vec<(u64, String)>)> {
    let leader = cluster.wait_for_leader(Duration::from_secs(15)).await?;
    let index = cluster
        .status(leader)
        .await
        .context("leader status")?
        .commit_index;
    cluster
        .wait_applied(index, Duration::from_secs(120))
        .await?;
    let mut hashes = Vec::new();
    for id in cluster.live() {
        let mut admin = AdminClient::new(cluster.channel(id).await?);
        let h = admin
            .hash_events(pb::HashEventsRequest { index })
            .await
            .with_context(|| format!("node {id}'s hash"))?
            .into_inner();
        hashes.push((id, h.hash));
    }
    Ok((index, hashes))
}

struct Outcome {
    what: String,
    took: Duration,
    target: u64,
    written_meanwhile: u64,
    installed: bool,
    term_before: u64,
    term_after: u64,
    leader_before: u64,
    leader_after: u64,
}

/// One catch-up: `start` has readied `node`; writers go through `through` meanwhile.
async fn measure(
    cluster: &Cluster,
    what: &str,
    node: u64,
    through: &[u64],
    cli: &Cli,
) -> Result<Outcome> {
    let leader_before = cluster.wait_for_leader(Duration::from_secs(15)).await?;
    let before = cluster
        .status(leader_before)
        .await
        .context("leader status")?;
    let stop = Cell::new(false);
    let (took, written) = tokio::join!(
        caught_up(cluster, node, before.commit_index, &stop),
        keep_writing(cluster, through, cli.writers, what, &stop),
    );
    let took = took?;
    let leader_after = cluster.wait_for_leader(Duration::from_secs(15)).await?;
    let after = cluster
        .status(leader_after)
        .await
        .context("leader status")?;
    Ok(Outcome {
        what: what.to_string(),
        took,
        target: before.commit_index,
        written_meanwhile: written,
        installed: cluster
            .log(node)
            .contains("installed the leader's snapshot"),
        term_before: before.term,
        term_after: after.term,
        leader_before,
        leader_after,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(15)).await?;
    let follower = if leader == 1 { 2 } else { 1 };
    let other = 6 - leader - follower;
    cluster.sigkill(follower)?;
    println!(
        "node {follower} stopped; writing {} events without it",
        cli.events
    );
    let took = load(&cluster, cli.events, cli.clients).await?;
    println!(
        "wrote {} events in {:.1} s ({:.0}/s); leader {leader}'s log now starts at {}",
        cli.events,
        took.as_secs_f64(),
        cli.events as f64 / took.as_secs_f64(),
        cluster
            .status(leader)
            .await
            .map_or(0, |s| s.first_log_index)
    );

    let mut outcomes = Vec::new();
    cluster.restart(follower)?;
    outcomes.push(
        measure(
            &cluster,
            "restarted follower",
            follower,
            &[leader, other],
            &cli,
        )
        .await?,
    );

    cluster.start_joining(4, &[1, 2, 3])?;
    let peer_url = cluster.nodes[&4].spec.peer.clone();
    let (added, _, stderr) = cluster
        .quoratectl(
            &[1, 2, 3],
            &["members", "add", "4", "--peer-url", &peer_url],
        )
        .await;
    if !added {
        bail!("members add 4 failed: {stderr}");
    }
    outcomes.push(measure(&cluster, "new member", 4, &[1, 2, 3], &cli).await?);

    let (index, hashes) = hashes_agree(&cluster).await?;
    println!();
    println!(
        "| node catching up | committed when it started | caught up in | writes acknowledged \
         meanwhile | installed a snapshot | leader (term) before -> after |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for o in &outcomes {
        println!(
            "| {} | {} | {:.2} s | {} | {} | {} ({}) -> {} ({}) |",
            o.what,
            o.target,
            o.took.as_secs_f64(),
            o.written_meanwhile,
            if o.installed { "yes" } else { "no" },
            o.leader_before,
            o.term_before,
            o.leader_after,
            o.term_after
        );
    }
    println!();
    println!("event hashes at index {index}: {hashes:?}");
    let mut failures = Vec::new();
    for o in &outcomes {
        if !o.installed {
            failures.push(format!(
                "{}: caught up without installing a snapshot",
                o.what
            ));
        }
        if o.term_after != o.term_before || o.leader_after != o.leader_before {
            failures.push(format!(
                "{}: the leadership changed during the transfer",
                o.what
            ));
        }
    }
    if hashes.iter().any(|(_, h)| *h != hashes[0].1) || hashes.len() != 4 {
        failures.push("the nodes' event hashes differ".into());
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    println!("all caught up through snapshots, no leader change, hashes agree");
    Ok(())
}

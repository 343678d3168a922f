//! Log compaction over a long run. A 3-node cluster with automatic snapshots takes `--events`
//! payment events, then, in the same run, a cluster with `--snapshot-count 0` (the whole log
//! kept) takes the same load. Prints, at every sample, each node's data directory size and
//! resident memory, and at the end how long a restarted follower takes to serve again.
//!
//!   cargo build --release --bins
//!   cargo run --release -p quorate-integration-tests --bin snapshot-soak -- --events 200000
//!
//! With `--payments 1000 --event-retention 20000 --idempotency-window 30s`, the events go to
//! 1,000 payments that live on and the compacting cluster also deletes old events: its disk
//! then stays bounded, where one that keeps every event grows with the history.
//!
//! Figures from one run; compare the two clusters of that run, not numbers across machines.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use quorate_integration_tests::client::{authorize, write_many_with};
use quorate_integration_tests::rss_bytes;
use quorate_integration_tests::Cluster;

#[derive(Parser, Debug)]
#[command(about = "Data size, memory and restart time with and without log compaction")]
struct Cli {
    /// Payment events each cluster takes.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Concurrent clients, spread over the three nodes.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// `--snapshot-count` of the compacting cluster.
    #[arg(long, default_value_t = 10_000)]
    snapshot_count: u64,
    /// `--snapshot-catch-up-entries` of the compacting cluster.
    #[arg(long, default_value_t = 5_000)]
    catch_up_entries: u64,
    /// How many samples to print over the run.
    #[arg(long, default_value_t = 5)]
    samples: u64,
    /// Spread the events over this many payments (each authorized once, then captured bit by
    /// bit), as a service whose payments live on does; 0: every event a new payment.
    #[arg(long, default_value_t = 0)]
    payments: u64,
    /// `--event-retention` of the compacting cluster (0: keep every event).
    #[arg(long, default_value_t = 0)]
    event_retention: u64,
    /// `--idempotency-window` of both clusters (the node's default when not given).
    #[arg(long)]
    idempotency_window: Option<String>,
}

/// The `n`-th event: a new authorization, or with `--payments`, the first event of each
/// payment authorizes a large amount and the rest capture 1 each.
fn event(cli: &Cli, n: u64) -> quorate_proto::payments::SubmitRequest {
    let key = format!("soak-{n}");
    if cli.payments == 0 {
        return authorize(&key, &key, 100);
    }
    let id = format!("soak-payment-{}", n % cli.payments);
    if n < cli.payments {
        return authorize(&id, &key, 1_000_000_000_000);
    }
    let mut capture = authorize(&id, &key, 1);
    capture.kind = quorate_proto::payments::EventKind::Captured as i32;
    capture
}

/// Bytes under `path`, every file counted.
fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// One line per node: data directory size and resident memory.
fn sample(cluster: &Cluster, label: &str, written: u64, bar: &ProgressBar) {
    let mut cells = Vec::new();
    for (&id, node) in &cluster.nodes {
        let pid = cluster.pid(id).map(|p| p.as_raw() as u32).unwrap_or(0);
        cells.push(format!(
            "n{id} disk {} rss {}",
            mib(dir_bytes(&node.spec.data_dir)),
            mib(rss_bytes(pid))
        ));
    }
    let line = format!("{label:>12} {written:>8} events: {}", cells.join(" | "));
    // (Printed even without a terminal, where the bar itself is hidden.)
    bar.suspend(|| println!("{line}"));
}

/// Loads `cluster` with `events` authorizations from `clients` clients, sampling as it goes.
async fn load(cli: &Cli, cluster: &Cluster, label: &str) -> Result<Duration> {
    let bar = ProgressBar::new(cli.events).with_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .context("progress style")?
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let every = (cli.events / cli.samples.max(1)).max(1);
    let started = Instant::now();
    let make = |n| event(cli, n);
    write_many_with(cluster, cli.events, cli.clients, make, |finished| {
        bar.inc(1);
        if finished % every == 0 {
            sample(cluster, label, finished, &bar);
        }
    })
    .await;
    bar.finish_and_clear();
    Ok(started.elapsed())
}

/// Restarts a follower and returns how long it took to apply what the leader had committed.
async fn restart_time(cluster: &mut Cluster) -> Result<Duration> {
    let leader = cluster.wait_for_leader(Duration::from_secs(15)).await?;
    let follower = if leader == 1 { 2 } else { 1 };
    let target = cluster
        .status(leader)
        .await
        .context("leader status")?
        .commit_index;
    cluster
        .wait_applied(target, Duration::from_secs(60))
        .await?;
    cluster.sigterm(follower, Duration::from_secs(30))?;
    let started = Instant::now();
    cluster.restart(follower)?;
    loop {
        if let Some(status) = cluster.status(follower).await {
            if status.applied_index >= target {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("node {follower} did not catch up within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut compacting = vec![
        "--snapshot-count".to_string(),
        cli.snapshot_count.to_string(),
        "--snapshot-catch-up-entries".to_string(),
        cli.catch_up_entries.to_string(),
        "--event-retention".to_string(),
        cli.event_retention.to_string(),
    ];
    let mut whole = vec!["--snapshot-count".to_string(), "0".to_string()];
    if let Some(window) = &cli.idempotency_window {
        for args in [&mut compacting, &mut whole] {
            args.extend(["--idempotency-window".to_string(), window.clone()]);
        }
    }
    let runs = [("compacting", compacting), ("whole-log", whole)];
    let mut results = Vec::new();
    for (label, args) in runs {
        let mut cluster = Cluster::start_with_args(3, args)?;
        cluster.wait_for_leader(Duration::from_secs(15)).await?;
        let took = load(&cli, &cluster, label).await?;
        sample(&cluster, label, cli.events, &ProgressBar::hidden());
        let disk: u64 = cluster
            .nodes
            .values()
            .map(|n| dir_bytes(&n.spec.data_dir))
            .max()
            .unwrap_or(0);
        let rss = cluster
            .nodes
            .keys()
            .map(|&id| rss_bytes(cluster.pid(id).map_or(0, |p| p.as_raw() as u32)))
            .max()
            .unwrap_or(0);
        let restart = restart_time(&mut cluster).await?;
        results.push((label, took, disk, rss, restart));
    }
    println!();
    println!(
        "events per cluster: {}, clients: {}, payments: {}, event retention of the compacting \
         cluster: {}",
        cli.events,
        cli.clients,
        match cli.payments {
            0 => "one per event".to_string(),
            n => n.to_string(),
        },
        match cli.event_retention {
            0 => "all kept".to_string(),
            n => format!("{n} indexes"),
        }
    );
    for (label, took, disk, rss, restart) in &results {
        println!(
            "{label:>12}: load {:.1} s ({:.0} events/s), largest data dir {}, largest RSS {}, \
             follower restart to caught up {:.2} s",
            took.as_secs_f64(),
            cli.events as f64 / took.as_secs_f64(),
            mib(*disk),
            mib(*rss),
            restart.as_secs_f64()
        );
    }
    Ok(())
}

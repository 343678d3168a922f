//! Overload: what a three-node cluster serves when offered many times the load it can serve.
//!
//!   cargo build --release --bins
//!   cargo run --release -p quorate-integration-tests --bin overload -- --factor 10
//!
//! 1. **Capacity**: a closed loop of `--clients` writers (each waits for its answer) gives the
//!    rate the cluster serves, and its latency.
//! 2. **Overload**: an open loop offers `--factor` times that rate, whatever the answers
//!    (each call with a 2 s deadline, as a client in a hurry would give): what is served,
//!    what is refused with RESOURCE_EXHAUSTED, what fails otherwise, the latency of what is
//!    served, and the nodes' resident memory, sampled every second.
//! 3. **Recovery**: the closed loop again, at once.
//!
//! With `--no-limits` the nodes run with limits so high they never act, for comparison.
//! Writes carry 256 bytes of metadata. The load generator shares the machine's cores with
//! the three nodes: on a small machine it takes a share of the capacity it measures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use quorate_integration_tests::client::{authorize, closed_loop, reason};
use quorate_integration_tests::Cluster;
use quorate_proto::payments::payment_events_client::PaymentEventsClient;
use quorate_proto::payments::SubmitRequest;
use tonic::transport::Channel;

/// A cluster offered many times the load it can serve.
#[derive(Parser)]
struct Args {
    /// Closed-loop writers that measure the capacity (and the recovery).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// The overload, as a multiple of the measured capacity.
    #[arg(long, default_value_t = 10.0)]
    factor: f64,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Connections per node for the open loop (HTTP/2 caps the calls in flight on one).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Run the nodes with limits too high to act, for comparison.
    #[arg(long)]
    no_limits: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: i32) -> f64 {
    quorate_integration_tests::rss_bytes(pid as u32) as f64 / (1024.0 * 1024.0)
}

#[derive(Default)]
struct Outcomes {
    served: AtomicU64,
    shed: AtomicU64,
    failed: AtomicU64,
    latencies: Mutex<Vec<f64>>,
    failures: Mutex<HashMap<String, u64>>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let limits = if args.no_limits {
        [
            "--max-concurrent-requests",
            "1000000",
            "--max-queued-requests",
            "1000000",
            "--max-pending-proposals",
            "100000000",
        ]
        .map(String::from)
        .to_vec()
    } else {
        Vec::new()
    };
    let cluster = Cluster::start_with_args(3, limits)?;
    cluster.wait_for_leader(Duration::from_secs(15)).await?;
    let payload = "x".repeat(256);
    let make = |id: &str| {
        let mut request = authorize(id, id, 100);
        request.metadata = HashMap::from([("note".to_string(), payload.clone())]);
        request
    };
    let phase = Duration::from_secs_f64(args.seconds);
    closed_loop(&cluster, "warm", 8, Duration::from_secs(1), make).await;

    eprintln!(
        "capacity: {} closed-loop writers for {:?}...",
        args.clients, phase
    );
    let (capacity, mut lat) = closed_loop(&cluster, "cap", args.clients, phase, make).await;
    lat.sort_by(|a, b| a.total_cmp(b));
    let (cap_p50, cap_p99, cap_max) =
        (percentile(&lat, 0.5), percentile(&lat, 0.99), lat_max(&lat));
    let pids: Vec<i32> = cluster
        .live()
        .into_iter()
        .map(|id| cluster.pid(id).map(|p| p.as_raw()))
        .collect::<Result<_>>()?;
    let rss_before: f64 = pids.iter().map(|&p| rss_mib(p)).sum();

    let offered = capacity * args.factor;
    eprintln!("overload: offering {offered:.0} writes/s for {phase:?}...");
    let mut channels: Vec<Channel> = Vec::new();
    for id in cluster.live() {
        for _ in 0..args.connections {
            channels.push(cluster.channel(id).await?);
        }
    }
    let outcomes = Arc::new(Outcomes::default());
    let started = Instant::now();
    let mut rss_peak = rss_before;
    let mut sent = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut last_sample = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < phase {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * offered) as u64;
        while sent < due {
            let channel = channels[sent as usize % channels.len()].clone();
            let id = format!("over-{sent}");
            let mut request: SubmitRequest = make(&id);
            request.idempotency_key = id;
            let outcomes = outcomes.clone();
            tasks.spawn(async move {
                let mut call = tonic::Request::new(request);
                call.set_timeout(Duration::from_secs(2));
                let t = Instant::now();
                match PaymentEventsClient::new(channel).submit(call).await {
                    Ok(_) => {
                        outcomes.served.fetch_add(1, Ordering::Relaxed);
                        outcomes
                            .latencies
                            .lock()
                            .unwrap()
                            .push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Err(s)
                        if reason(&s).as_deref()
                            == Some(quorate_proto::errors::reason::RESOURCE_EXHAUSTED) =>
                    {
                        outcomes.shed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(s) => {
                        outcomes.failed.fetch_add(1, Ordering::Relaxed);
                        let why = reason(&s).unwrap_or_else(|| format!("{:?}", s.code()));
                        *outcomes.failures.lock().unwrap().entry(why).or_insert(0) += 1;
                    }
                }
            });
            sent += 1;
        }
        while tasks.try_join_next().is_some() {}
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            rss_peak = rss_peak.max(pids.iter().map(|&p| rss_mib(p)).sum());
        }
    }
    let offered_for = started.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    let served_rate = outcomes.served.load(Ordering::Relaxed) as f64 / offered_for;
    let mut lat = std::mem::take(&mut *outcomes.latencies.lock().unwrap());
    lat.sort_by(|a, b| a.total_cmp(b));

    eprintln!("recovery: {} closed-loop writers at once...", args.clients);
    let (first_second, _) =
        closed_loop(&cluster, "rec1", args.clients, Duration::from_secs(1), make).await;
    let (recovered, mut rec) = closed_loop(&cluster, "rec", args.clients, phase, make).await;
    rec.sort_by(|a, b| a.total_cmp(b));
    let rss_after: f64 = pids.iter().map(|&p| rss_mib(p)).sum();

    let mut table = comfy_table::Table::new();
    table.set_header(vec![
        "phase",
        "offered/s",
        "served/s",
        "vs capacity",
        "shed/s",
        "failed/s",
        "p50 ms",
        "p99 ms",
        "max ms",
    ]);
    table.add_row(vec![
        format!("capacity ({} writers)", args.clients),
        "closed loop".into(),
        format!("{capacity:.0}"),
        "1.00".into(),
        "0".into(),
        "0".into(),
        format!("{cap_p50:.1}"),
        format!("{cap_p99:.1}"),
        format!("{cap_max:.1}"),
    ]);
    table.add_row(vec![
        format!("overload ({}x)", args.factor),
        format!("{offered:.0}"),
        format!("{served_rate:.0}"),
        format!("{:.2}", served_rate / capacity),
        format!(
            "{:.0}",
            outcomes.shed.load(Ordering::Relaxed) as f64 / offered_for
        ),
        format!(
            "{:.0}",
            outcomes.failed.load(Ordering::Relaxed) as f64 / offered_for
        ),
        format!("{:.1}", percentile(&lat, 0.5)),
        format!("{:.1}", percentile(&lat, 0.99)),
        format!("{:.1}", lat_max(&lat)),
    ]);
    table.add_row(vec![
        "recovery, first second".into(),
        "closed loop".into(),
        format!("{first_second:.0}"),
        format!("{:.2}", first_second / capacity),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    table.add_row(vec![
        "recovery".into(),
        "closed loop".into(),
        format!("{recovered:.0}"),
        format!("{:.2}", recovered / capacity),
        "0".into(),
        "0".into(),
        format!("{:.1}", percentile(&rec, 0.5)),
        format!("{:.1}", percentile(&rec, 0.99)),
        format!("{:.1}", lat_max(&rec)),
    ]);
    println!(
        "overload benchmark: 3 nodes, 256-byte metadata, limits {}",
        if args.no_limits { "off" } else { "default" }
    );
    println!("{table}");
    println!(
        "resident memory of the three nodes: {rss_before:.0} MiB before the overload, peak \
         {rss_peak:.0} MiB during it, {rss_after:.0} MiB after"
    );
    let failures = outcomes.failures.lock().unwrap();
    if !failures.is_empty() {
        println!("failures during the overload: {failures:?}");
    }
    Ok(())
}

fn lat_max(sorted: &[f64]) -> f64 {
    sorted.last().copied().unwrap_or(f64::NAN)
}

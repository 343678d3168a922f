//! Measures a real three-node cluster on this machine: failover time, and write throughput
//! of one client and of 64 concurrent clients. Prints every round and the median.
//!
//!   cargo build --release --bins && cargo run --release -p quorate-integration-tests --bin bench
//!
//! Figures from one run only; compare medians and ratios, not absolute numbers across
//! machines.

use std::time::{Duration, Instant};

use anyhow::Result;
use quorate_integration_tests::client::{authorize, closed_loop, Clients, Pick};
use quorate_integration_tests::{median, Cluster};

/// Writes through random nodes with `clients` concurrent clients for `duration`; returns
/// writes per second and per-write latencies in milliseconds.
async fn throughput(
    cluster: &Cluster,
    label: &str,
    clients: usize,
    duration: Duration,
) -> (f64, Vec<f64>) {
    closed_loop(cluster, label, clients, duration, |id| {
        authorize(id, id, 100)
    })
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let rounds = 3;
    let mut failovers = Vec::new();
    for round in 0..rounds {
        let mut cluster = Cluster::start(3)?;
        let leader = cluster.wait_for_leader(Duration::from_secs(15)).await?;
        let (_, _) = throughput(&cluster, "warm", 4, Duration::from_secs(1)).await;
        let killed = Instant::now();
        cluster.sigkill(leader)?;
        let mut conn = Clients::default();
        let mut pick = Pick::new(9);
        let probe = authorize("probe", "probe", 1);
        conn.submit(&cluster, &mut pick, &probe, Duration::from_secs(20))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = killed.elapsed().as_secs_f64() * 1000.0;
        println!("failover round {round}: leader SIGKILL -> first accepted write in {took:.0} ms");
        failovers.push(took);
    }
    println!(
        "failover median: {:.0} ms over {rounds} rounds",
        median(failovers)
    );

    let cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(15)).await?;
    throughput(&cluster, "warmup", 8, Duration::from_secs(2)).await;
    for clients in [1usize, 64] {
        let mut rates = Vec::new();
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for round in 0..rounds {
            let (rate, mut lat) = throughput(
                &cluster,
                &format!("c{clients}r{round}"),
                clients,
                Duration::from_secs(5),
            )
            .await;
            lat.sort_by(|a, b| a.total_cmp(b));
            let p50 = lat[lat.len() / 2];
            let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
            println!(
                "{clients:>2} client(s), round {round}: {rate:.0} writes/s, latency p50 {p50:.2} ms, p99 {p99:.2} ms ({} writes)",
                lat.len()
            );
            rates.push(rate);
            p50s.push(p50);
            p99s.push(p99);
        }
        println!(
            "{clients:>2} client(s) median: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms",
            median(rates),
            median(p50s),
            median(p99s)
        );
    }
    Ok(())
}

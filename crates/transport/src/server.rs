//! The receiving side: the `quorate.raft.v1.Raft` service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{FuturesOrdered, FuturesUnordered, Stream};
use quorate_proto::raft as pb;
use quorate_proto::raft::raft_server::{Raft, RaftServer};
use quorate_proto::raft_convert::{self, PeerRequest, PeerResponse};
use quorate_raft_core::{Index, Message, NodeId, Term};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use quorate_proto::errors::{self, reason};

use quorate_security::reload::Reloadable;
use quorate_security::tls::{host_of, incoming, names_host, ConnInfo};

use crate::client::{PeerDirectory, MAX_SNAPSHOT_BYTES};
use crate::stats::StatsTable;

/// What the transport needs from the node.
pub trait PeerHandler: Clone + Send + Sync + 'static {
    /// Steps a request from a peer into the Raft core and returns the core's response once the
    /// state it depends on is durable (`None` for requests that have no response, such as
    /// `TimeoutNow`).
    fn deliver(
        &self,
        message: Message,
    ) -> impl Future<Output = Result<Option<Message>, Status>> + Send;

    /// Proposes a command forwarded by a follower (this node should be the leader) and returns
    /// the index, term and state-machine output once it is applied.
    fn forward(
        &self,
        command: Bytes,
    ) -> impl Future<Output = Result<(Index, Term, Bytes), Status>> + Send;

    /// This node's own view, for another node's split-brain report; with the hashes `request`
    /// asks for (of the event log up to `hash_index`, of the whole machine).
    fn probe(
        &self,
        request: pb::ProbeRequest,
    ) -> impl Future<Output = Result<pb::ProbeResponse, Status>> + Send;

    /// Hands leadership to `target` (0: to the best follower); this node should be the leader.
    /// Returns the target.
    fn transfer(&self, target: NodeId) -> impl Future<Output = Result<NodeId, Status>> + Send;

    /// Proposes an operator's membership `changes` (this node should be the leader) and
    /// returns the index and term of the membership entry once it is applied.
    fn change_membership(
        &self,
        changes: Vec<pb::MemberChange>,
    ) -> impl Future<Output = Result<(Index, Term), Status>> + Send;
}

/// The gRPC service peers call.
#[derive(Clone)]
pub struct RaftService<H> {
    /// 0 while a node that joins an existing cluster has not learnt its id yet.
    cluster_id: u64,
    node_id: NodeId,
    /// The ids removed from the cluster: their requests are refused for good. Any other sender
    /// of this cluster is accepted, since a member added by an entry this node has not
    /// received yet is a member all the same. (The sender is self-declared: mutual TLS,
    /// which proves it, is a separate step.)
    directory: Arc<PeerDirectory>,
    /// This node's timing settings; a request carrying other settings is refused.
    timing: pb::Timing,
    handler: H,
    stats: Arc<StatsTable>,
    /// One snapshot received at a time (each is held in memory whole).
    snapshot_slot: Arc<tokio::sync::Semaphore>,
    /// Peer TLS is on: every sender presents a certificate, which must name its member.
    peer_tls: bool,
    /// When a request from another cluster was last logged (at most one line per
    /// [`MISMATCH_LOG_EVERY`]: a stray node sends many).
    mismatch_logged: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Turns true when the server starts shutting down ([`serve`]): its streams end then, as
    /// a graceful shutdown waits for every call to finish and a peer's stream never does.
    closing: Option<watch::Receiver<bool>>,
}

/// How often requests from another cluster are logged, at most.
const MISMATCH_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl<H: PeerHandler> RaftService<H> {
    /// A service for `node_id` of `cluster_id`, refusing the senders `directory` says were
    /// removed and handing the rest to `handler`.
    pub fn new(
        cluster_id: u64,
        node_id: NodeId,
        directory: Arc<PeerDirectory>,
        timing: pb::Timing,
        handler: H,
        stats: Arc<StatsTable>,
    ) -> Self {
        RaftService {
            cluster_id,
            node_id,
            directory,
            timing,
            handler,
            stats,
            snapshot_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            peer_tls: false,
            mismatch_logged: Default::default(),
            closing: None,
        }
    }

    /// Requires (with peer TLS on) that every sender's certificate names its own member's
    /// peer host: see [`Self::check_certificate`].
    pub fn with_peer_tls(mut self, on: bool) -> Self {
        self.peer_tls = on;
        self
    }

    /// The tonic server for this service, with the message size limit.
    pub fn into_server(self, max_message_bytes: usize) -> RaftServer<Self> {
        RaftServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    /// A request that acts on this node: from a member of this cluster, with this node's
    /// timing settings.
    fn check_header(
        &self,
        conn: Option<&ConnInfo>,
        header: Option<&pb::Header>,
    ) -> Result<(), Status> {
        let h = self.check_member(conn, header)?;
        self.check_timing(h)?;
        self.stats.received(h.from, h.term);
        Ok(())
    }

    /// A request from a member of this cluster, addressed to this node.
    fn check_member<'h>(
        &self,
        conn: Option<&ConnInfo>,
        header: Option<&'h pb::Header>,
    ) -> Result<&'h pb::Header, Status> {
        self.check_sender(conn, header, false)
    }

    /// [`Self::check_member`]; with `joining`, a sender that does not know the cluster id
    /// yet (0: a new member asking the cluster about itself) is accepted too.
    fn check_sender<'h>(
        &self,
        conn: Option<&ConnInfo>,
        header: Option<&'h pb::Header>,
        joining: bool,
    ) -> Result<&'h pb::Header, Status> {
        let Some(h) = header else {
            return Err(Status::invalid_argument("header is required"));
        };
        let unknown = self.cluster_id == 0 || (joining && h.cluster_id == 0);
        if h.cluster_id != self.cluster_id && !unknown {
            let message = format!(
                "message for cluster {:x} reached a node of cluster {:x}: the data directory or \
                 --initial-cluster belongs to another cluster",
                h.cluster_id, self.cluster_id
            );
            self.log_mismatch(h, &message);
            return Err(errors::status(
                tonic::Code::FailedPrecondition,
                reason::CLUSTER_MISMATCH,
                message,
                &[],
            ));
        }
        if h.to != self.node_id {
            return Err(Status::failed_precondition(format!(
                "message for node {} reached node {}: check the peer addresses",
                h.to, self.node_id
            )));
        }
        if h.from == self.node_id || h.from == 0 {
            return Err(Status::invalid_argument(format!(
                "header.from: node {} cannot send to itself or be node 0",
                h.from
            )));
        }
        if self.directory.is_removed(h.from) {
            let message = format!(
                "node {} was removed from cluster {:x}: its requests are refused for good. \
                 Stop it; to bring the machine back, wipe its data directory and add it as a \
                 new member with a new id",
                h.from, self.cluster_id
            );
            return Err(errors::status(
                tonic::Code::PermissionDenied,
                reason::MEMBER_REMOVED,
                message,
                &[("node_id", h.from.to_string())],
            ));
        }
        self.check_certificate(conn, h.from)?;
        Ok(h)
    }

    /// Logs a request from another cluster, at most once every [`MISMATCH_LOG_EVERY`].
    fn log_mismatch(&self, h: &pb::Header, message: &str) {
        let mut last = self
            .mismatch_logged
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < MISMATCH_LOG_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        tracing::warn!(
            from = h.from,
            reason = reason::CLUSTER_MISMATCH,
            "refused a peer request from node {} of another cluster ({message}); a node of an \
             old or other cluster points at this one: stop it, or fix its --initial-cluster",
            h.from
        );
    }

    /// With peer TLS, a sender's certificate (verified against the trusted CA by the
    /// handshake) must name the host of the peer address the membership gives its id: a
    /// certificate speaks for its own member only. A sender this node knows no address for
    /// yet (a member added by an entry not received yet) is vouched for by the CA alone.
    fn check_certificate(&self, conn: Option<&ConnInfo>, from: NodeId) -> Result<(), Status> {
        if !self.peer_tls {
            return Ok(());
        }
        let Some(cert) = conn.and_then(ConnInfo::certificate) else {
            return Err(Status::unauthenticated(format!(
                "node {from}: the peer port requires a client certificate (peer TLS is on)"
            )));
        };
        let Some(address) = self.directory.address_of(from) else {
            return Ok(());
        };
        names_host(cert, host_of(&address)).map_err(|why| {
            let message = format!(
                "the caller claims to be node {from}, whose peer address is {address}, but {why}: \
                 a peer certificate must name the host of its own member's peer address"
            );
            tracing::warn!(from, %address, "refused a peer request: {why}");
            errors::status(
                tonic::Code::PermissionDenied,
                reason::PERMISSION_DENIED,
                message,
                &[("node_id", from.to_string())],
            )
        })
    }

    /// Settings the leader lease depends on, as this node's.
    fn check_timing(&self, h: &pb::Header) -> Result<(), Status> {
        if h.timing != Some(self.timing) {
            let theirs = h
                .timing
                .map_or("no timing settings".to_string(), describe_timing);
            return Err(Status::failed_precondition(format!(
                "node {} runs with {theirs}, node {} with {}: every member must run with the \
                 same timing settings, because the leader lease relies on each follower waiting \
                 as long as the leader's lease lasts. Change them on every node together (stop \
                 all nodes, then start them all with the new settings)",
                h.from,
                self.node_id,
                describe_timing(self.timing)
            )));
        }
        Ok(())
    }

    async fn exchange(&self, request: PeerRequest) -> Result<Option<PeerResponse>, Status> {
        let message = raft_convert::request_from_proto(request)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let Some(reply) = self.handler.deliver(message).await? else {
            return Ok(None);
        };
        raft_convert::response_to_proto(self.cluster_id, &reply)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }

    /// A batch of forwarded commands whose header was checked: proposed together (they reach
    /// the Ready loop in one turn: one fsync), each answered with what `Forward` would have
    /// answered, under the request's id.
    async fn forward_commands(&self, r: pb::ForwardBatchRequest) -> pb::ForwardBatchResponse {
        let id = r.id;
        // A command of a sampled request in a span of the request's trace.
        let mut traces = r.trace_parents.into_iter();
        let results = join_all(r.commands.into_iter().map(|c| {
            let span = traces
                .next()
                .and_then(|t| quorate_telemetry::propagation::remote_context(&t))
                .map_or_else(tracing::Span::none, |parent| {
                    let span = tracing::info_span!(
                        parent: None,
                        "raft.propose",
                        otel.kind = "server",
                        rpc.system = "grpc",
                        rpc.service = "quorate.raft.v1.Raft",
                        rpc.method = "ForwardBatch",
                    );
                    quorate_telemetry::propagation::set_parent(&span, &parent);
                    span
                });
            self.handler.forward(c).instrument(span)
        }))
        .await;
        let outcomes = results
            .into_iter()
            .map(|result| pb::ForwardOutcome {
                outcome: Some(match result {
                    Ok((index, term, output)) => {
                        pb::forward_outcome::Outcome::Applied(pb::ForwardResponse {
                            index,
                            term,
                            output,
                        })
                    }
                    Err(status) => pb::forward_outcome::Outcome::Error(pb::ForwardError {
                        code: status.code() as i32,
                        message: status.message().to_string(),
                        details: Bytes::copy_from_slice(status.details()),
                    }),
                }),
            })
            .collect();
        pb::ForwardBatchResponse { outcomes, id }
    }

    /// An append whose header was checked: stepped into the core, answered once durable.
    async fn append(
        &self,
        mut r: pb::AppendEntriesRequest,
    ) -> Result<pb::AppendEntriesResponse, Status> {
        // Entries of sampled requests: a span in each request's trace, and one for the whole
        // append (received to durable) linked to them all.
        let traces = std::mem::take(&mut r.traces);
        let _spans = append_spans(&traces, r.entries.len());
        match self.expect(PeerRequest::Append(r)).await? {
            PeerResponse::Append(a) => Ok(a),
            _ => Err(mismatch()),
        }
    }

    async fn expect(&self, request: PeerRequest) -> Result<PeerResponse, Status> {
        self.exchange(request)
            .await?
            .ok_or_else(|| Status::unavailable("the node produced no answer"))
    }
}

/// A request's connection info (see [`ConnInfo`]) and its message.
fn split<T>(request: Request<T>) -> (Option<ConnInfo>, T) {
    let conn = ConnInfo::of(&request).cloned();
    (conn, request.into_inner())
}

fn describe_timing(t: pb::Timing) -> String {
    format!(
        "--heartbeat-interval {}ms --election-timeout {}ms --max-clock-drift {}ms",
        t.heartbeat_interval_ms, t.election_timeout_ms, t.max_clock_drift_ms
    )
}

fn mismatch() -> Status {
    Status::internal("the node answered with a response of another kind")
}

/// The requests of one stream (`AppendStream`, `ForwardStream`) being answered at once: past
/// it, the stream's requests wait in HTTP/2 flow control (the sender keeps fewer in flight).
const STREAM_REQUESTS_IN_FLIGHT: usize = 64;

type Answer<Resp> = Pin<Box<dyn Future<Output = Result<Resp, Status>> + Send>>;

/// The answers being worked out: sent in the order of the requests (appends: the leader
/// matches each answer to its append by order), or each as soon as it is ready (forwards:
/// named by id, and a slow one must not hold back the others).
enum Answering<Resp> {
    InOrder(FuturesOrdered<Answer<Resp>>),
    WhenReady(FuturesUnordered<Answer<Resp>>),
}

impl<Resp> Answering<Resp> {
    fn len(&self) -> usize {
        match self {
            Answering::InOrder(a) => a.len(),
            Answering::WhenReady(a) => a.len(),
        }
    }

    fn push(&mut self, answer: Answer<Resp>) {
        match self {
            Answering::InOrder(a) => a.push_back(answer),
            Answering::WhenReady(a) => a.push(answer),
        }
    }

    fn clear(&mut self) {
        match self {
            Answering::InOrder(a) => *a = FuturesOrdered::new(),
            Answering::WhenReady(a) => a.clear(),
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Resp, Status>>> {
        match self {
            Answering::InOrder(a) => Pin::new(a).poll_next(cx),
            Answering::WhenReady(a) => Pin::new(a).poll_next(cx),
        }
    }
}

/// The answers of one stream of requests (`Raft.AppendStream`, `Raft.ForwardStream`): each
/// request is checked as its unary call checks it and taken in the order it came; appends are
/// answered in that order, forwarded batches as each is done. The first refusal ends the
/// stream with its status.
pub struct StreamAnswers<H, Req, Resp> {
    service: RaftService<H>,
    conn: Option<ConnInfo>,
    /// `None` once the sender closed its side (or a request was refused).
    requests: Option<Streaming<Req>>,
    answering: Answering<Resp>,
    /// Completes when the server shuts down.
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    header: fn(&Req) -> Option<&pb::Header>,
    answer: fn(RaftService<H>, Req) -> Answer<Resp>,
}

// (No field is pinned structurally: each is polled through `Pin::new` on an `Unpin` type.)
impl<H, Req, Resp> Unpin for StreamAnswers<H, Req, Resp> {}

impl<H: PeerHandler, Req, Resp> StreamAnswers<H, Req, Resp> {
    fn new(
        service: &RaftService<H>,
        request: Request<Streaming<Req>>,
        in_order: bool,
        header: fn(&Req) -> Option<&pb::Header>,
        answer: fn(RaftService<H>, Req) -> Answer<Resp>,
    ) -> Self {
        let (conn, requests) = split(request);
        let closed: Pin<Box<dyn Future<Output = ()> + Send>> = match service.closing.clone() {
            Some(mut closing) => Box::pin(async move {
                // (An error: the server is gone, which ends the stream too.)
                let _ = closing.wait_for(|closing| *closing).await;
            }),
            None => Box::pin(std::future::pending()),
        };
        StreamAnswers {
            service: service.clone(),
            closed,
            conn,
            requests: Some(requests),
            answering: if in_order {
                Answering::InOrder(FuturesOrdered::new())
            } else {
                Answering::WhenReady(FuturesUnordered::new())
            },
            header,
            answer,
        }
    }

    fn refuse(&mut self, status: Status) -> Poll<Option<Result<Resp, Status>>> {
        self.requests = None;
        self.answering.clear();
        Poll::Ready(Some(Err(status)))
    }
}

impl<H: PeerHandler, Req: Send + 'static, Resp: Send + 'static> Stream
    for StreamAnswers<H, Req, Resp>
{
    type Item = Result<Resp, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.closed.as_mut().poll(cx).is_ready() {
            this.closed = Box::pin(std::future::pending());
            return this.refuse(Status::unavailable("the node is shutting down"));
        }
        while this.answering.len() < STREAM_REQUESTS_IN_FLIGHT {
            let Some(requests) = this.requests.as_mut() else {
                break;
            };
            match Pin::new(requests).poll_next(cx) {
                Poll::Ready(Some(Ok(request))) => {
                    let header = (this.header)(&request);
                    if let Err(status) = this.service.check_header(this.conn.as_ref(), header) {
                        return this.refuse(status);
                    }
                    let answer = (this.answer)(this.service.clone(), request);
                    this.answering.push(answer);
                }
                Poll::Ready(Some(Err(status))) => return this.refuse(status),
                Poll::Ready(None) => this.requests = None,
                Poll::Pending => break,
            }
        }
        match this.answering.poll_next(cx) {
            Poll::Ready(Some(Err(status))) => this.refuse(status),
            Poll::Ready(Some(answer)) => Poll::Ready(Some(answer)),
            Poll::Ready(None) if this.requests.is_none() => Poll::Ready(None),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// Memory reserved up front for a snapshot being received; more only as data arrives.
const SNAPSHOT_RESERVE_BYTES: u64 = 64 << 20;

#[tonic::async_trait]
impl<H: PeerHandler> Raft for RaftService<H> {
    #[tracing::instrument(name = "Raft.InstallSnapshot", level = "debug", skip_all)]
    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::InstallSnapshotChunk>>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let (conn, mut stream) = split(request);
        let Some(first) = stream.message().await? else {
            return Err(Status::invalid_argument(
                "InstallSnapshot: the stream ended before its first chunk",
            ));
        };
        self.check_header(conn.as_ref(), first.header.as_ref())?;
        let total = first.total_bytes;
        if total > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "InstallSnapshot: total_bytes {total} exceeds the limit of {MAX_SNAPSHOT_BYTES}"
            )));
        }
        let Ok(_slot) = self.snapshot_slot.try_acquire() else {
            return Err(Status::resource_exhausted(
                "InstallSnapshot: another snapshot is being received; the leader retries",
            ));
        };
        let mut data = Vec::with_capacity(total.min(SNAPSHOT_RESERVE_BYTES) as usize);
        data.extend_from_slice(&first.data);
        while let Some(chunk) = stream.message().await? {
            if (data.len() + chunk.data.len()) as u64 > total {
                return Err(Status::invalid_argument(format!(
                    "InstallSnapshot: the chunks carry more than total_bytes ({total})"
                )));
            }
            data.extend_from_slice(&chunk.data);
        }
        if data.len() as u64 != total {
            return Err(Status::invalid_argument(format!(
                "InstallSnapshot: the stream ended after {} of total_bytes {total}",
                data.len()
            )));
        }
        let checksum = raft_convert::snapshot_checksum(&data);
        if checksum != first.checksum {
            return Err(Status::data_loss(format!(
                "InstallSnapshot: checksum {checksum:016x} of the data received differs from \
                 the sender's {:016x}",
                first.checksum
            )));
        }
        let message = raft_convert::snapshot_from_chunks(&first, Bytes::from(data))
            .map_err(|e| Status::invalid_argument(format!("InstallSnapshot: {e}")))?;
        let Some(reply) = self.handler.deliver(message).await? else {
            return Err(Status::unavailable("the node produced no answer"));
        };
        match raft_convert::response_to_proto(self.cluster_id, &reply) {
            Ok(PeerResponse::Append(a)) => Ok(Response::new(a)),
            Ok(_) => Err(mismatch()),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    #[tracing::instrument(name = "Raft.RequestVote", level = "trace", skip_all)]
    async fn request_vote(
        &self,
        request: Request<pb::RequestVoteRequest>,
    ) -> Result<Response<pb::RequestVoteResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        match self.expect(PeerRequest::Vote(r)).await? {
            PeerResponse::Vote(v) => Ok(Response::new(v)),
            _ => Err(mismatch()),
        }
    }

    #[tracing::instrument(name = "Raft.AppendEntries", level = "trace", skip_all)]
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        self.append(r).await.map(Response::new)
    }

    type AppendStreamStream = StreamAnswers<H, pb::AppendEntriesRequest, pb::AppendEntriesResponse>;

    #[tracing::instrument(name = "Raft.AppendStream", level = "debug", skip_all)]
    async fn append_stream(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        Ok(Response::new(StreamAnswers::new(
            self,
            request,
            true,
            |r| r.header.as_ref(),
            |service, r| Box::pin(async move { service.append(r).await }),
        )))
    }

    #[tracing::instrument(name = "Raft.Heartbeat", level = "trace", skip_all)]
    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        match self.expect(PeerRequest::Heartbeat(r)).await? {
            PeerResponse::Heartbeat(h) => Ok(Response::new(h)),
            _ => Err(mismatch()),
        }
    }

    #[tracing::instrument(name = "Raft.TimeoutNow", level = "trace", skip_all)]
    async fn timeout_now(
        &self,
        request: Request<pb::TimeoutNowRequest>,
    ) -> Result<Response<pb::TimeoutNowResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        self.exchange(PeerRequest::TimeoutNow(r)).await?;
        Ok(Response::new(pb::TimeoutNowResponse {}))
    }

    #[tracing::instrument(name = "Raft.ReadIndex", level = "trace", skip_all)]
    async fn read_index(
        &self,
        request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        match self.expect(PeerRequest::ReadIndex(r)).await? {
            PeerResponse::ReadIndex(ri) => Ok(Response::new(ri)),
            _ => Err(mismatch()),
        }
    }

    #[tracing::instrument(name = "Raft.Forward", level = "trace", skip_all)]
    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        let (index, term, output) = self.handler.forward(r.command).await?;
        Ok(Response::new(pb::ForwardResponse {
            index,
            term,
            output,
        }))
    }

    #[tracing::instrument(name = "Raft.ForwardBatch", level = "trace", skip_all)]
    async fn forward_batch(
        &self,
        request: Request<pb::ForwardBatchRequest>,
    ) -> Result<Response<pb::ForwardBatchResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        Ok(Response::new(self.forward_commands(r).await))
    }

    type ForwardStreamStream = StreamAnswers<H, pb::ForwardBatchRequest, pb::ForwardBatchResponse>;

    #[tracing::instrument(name = "Raft.ForwardStream", level = "debug", skip_all)]
    async fn forward_stream(
        &self,
        request: Request<Streaming<pb::ForwardBatchRequest>>,
    ) -> Result<Response<Self::ForwardStreamStream>, Status> {
        Ok(Response::new(StreamAnswers::new(
            self,
            request,
            false,
            |r| r.header.as_ref(),
            |service, r| Box::pin(async move { Ok(service.forward_commands(r).await) }),
        )))
    }

    #[tracing::instrument(name = "Raft.Probe", level = "trace", skip_all)]
    async fn probe(
        &self,
        request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        let (conn, r) = split(request);
        // A probe only reads: it is answered whatever the sender's timing settings, so a
        // member started with other settings still finds out whether the cluster holds data,
        // and the split-brain report still sees it.
        let h = self.check_sender(conn.as_ref(), r.header.as_ref(), true)?;
        self.stats.received(h.from, h.term);
        Ok(Response::new(self.handler.probe(r).await?))
    }

    #[tracing::instrument(name = "Raft.Transfer", level = "trace", skip_all)]
    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::TransferResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        let target_id = self.handler.transfer(r.target_id).await?;
        Ok(Response::new(pb::TransferResponse { target_id }))
    }

    #[tracing::instrument(name = "Raft.ChangeMembership", level = "debug", skip_all)]
    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::ChangeMembershipResponse>, Status> {
        let (conn, r) = split(request);
        self.check_header(conn.as_ref(), r.header.as_ref())?;
        let (index, term) = self.handler.change_membership(r.changes).await?;
        Ok(Response::new(pb::ChangeMembershipResponse { index, term }))
    }
}

/// Serves the peer protocol on `listener` until `shutdown` completes, through TLS when `tls`
/// is given (the service should then be [`RaftService::with_peer_tls`]).
pub async fn serve<H: PeerHandler>(
    listener: TcpListener,
    tls: Option<Arc<Reloadable<rustls::ServerConfig>>>,
    service: RaftService<H>,
    max_message_bytes: usize,
    metrics: quorate_telemetry::Metrics,
    shutdown: impl Future<Output = ()> + Send,
) -> crate::Result<()> {
    use quorate_telemetry::grpc::{GrpcLayer, Spans};
    let (closing, closed) = watch::channel(false);
    let service = RaftService {
        closing: Some(closed),
        ..service
    };
    let shutdown = async move {
        shutdown.await;
        closing.send_replace(true);
    };
    tonic::transport::Server::builder()
        .layer(GrpcLayer::new(metrics, Spans::WhenPropagated))
        .add_service(service.into_server(max_message_bytes))
        .serve_with_incoming_shutdown(incoming(listener, tls), shutdown)
        .await?;
    Ok(())
}

/// The spans of an append that carries entries of sampled requests (see
/// `pb::AppendEntriesRequest::traces`), open until it is answered (the entries durable): one
/// per traced entry, a child of the request's span on the leader, and the append's own,
/// linked to each (one append serves many requests). None when nothing is traced.
fn append_spans(
    traces: &[pb::EntryTrace],
    entries: usize,
) -> (quorate_telemetry::LinkedSpan, Vec<tracing::Span>) {
    use quorate_telemetry::propagation::{remote_context, set_parent};
    let parents: Vec<_> = traces
        .iter()
        .filter_map(|t| remote_context(&t.traceparent).map(|c| (t.index, c)))
        .collect();
    let contexts: Vec<_> = parents.iter().map(|(_, c)| c.clone()).collect();
    let batch = quorate_telemetry::linked_span(
        "raft.persist",
        &contexts,
        &[("raft.entries", entries as i64)],
    );
    let per_entry = parents
        .iter()
        .map(|(index, parent)| {
            let span = tracing::info_span!(parent: None, "raft.append", raft.index = index);
            set_parent(&span, parent);
            span
        })
        .collect();
    (batch, per_entry)
}

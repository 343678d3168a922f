//! One peer's task: its queue, its HTTP/2 channel, appends pipelined within a window,
//! snapshots streamed in chunks, back-off while the peer is down, replies to the node.

use super::append_stream::{AppendStream, StreamEvent};
use super::*;

impl PeerTask {
    pub(super) async fn run(mut self) {
        let mut in_flight: FuturesUnordered<RpcFuture> = FuturesUnordered::new();
        // Appends in flight as unary calls (with a peer that has no `AppendStream`).
        let mut unary_in_flight = 0usize;
        let mut waiting_appends: VecDeque<Message> = VecDeque::new();
        let mut stream: Option<AppendStream> = None;
        loop {
            tokio::select! {
                message = self.queue.recv(), if waiting_appends.len() < self.config.queue_capacity => {
                    let Some(message) = message else { break };
                    let is_append = matches!(message.payload, Payload::AppendRequest(_));
                    // Back-off holds back only appends (bulky, and Raft retransmits them).
                    // Heartbeats, votes, TimeoutNow and ReadIndex always go: they are small,
                    // fail fast on a dead connection, and dropping them would cost the leader
                    // its quorum (check-quorum) or an election its votes.
                    if is_append && self.is_down() {
                        self.stats.dropped(self.peer);
                    } else if is_append {
                        waiting_appends.push_back(message);
                    } else if let Some(rpc) = self.start(message) {
                        in_flight.push(rpc);
                    }
                }
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    if done.is_append {
                        unary_in_flight -= 1;
                    }
                    self.finish(done);
                }
                event = std::future::poll_fn(|cx| match stream.as_mut() {
                    Some(s) => s.poll_event(cx),
                    None => std::task::Poll::Pending,
                }), if stream.is_some() => match event {
                    StreamEvent::Reply { reply, started } => self.finish(RpcDone {
                        is_append: true,
                        started,
                        result: Ok(Some(PeerResponse::Append(reply))),
                    }),
                    StreamEvent::Failed { status, started, unanswered } => {
                        stream = None;
                        self.stream_failed(status, started, unanswered);
                    }
                },
            }
            if self.is_down() {
                for _ in waiting_appends.drain(..) {
                    self.stats.dropped(self.peer);
                }
            }
            // Start appends in the order the core produced them, within the window: on the
            // peer's append stream (opened when needed), or as calls of their own with a peer
            // that has none.
            while unary_in_flight + stream.as_ref().map_or(0, AppendStream::unanswered)
                < self.config.max_appends_in_flight
            {
                let Some(message) = waiting_appends.pop_front() else {
                    break;
                };
                if self.unary_appends {
                    if let Some(rpc) = self.start(message) {
                        in_flight.push(rpc);
                        unary_in_flight += 1;
                    }
                    continue;
                }
                let Some(PeerRequest::Append(request)) = self.prepare(&message) else {
                    continue;
                };
                let s = stream.get_or_insert_with(|| {
                    AppendStream::open(
                        &self.client,
                        self.config.max_appends_in_flight,
                        self.config.rpc_timeout,
                    )
                });
                if !s.send(request) {
                    // The stream ended under us (its end is reported with its next poll):
                    // this append goes again with the rest when Raft retransmits.
                    self.stats.dropped(self.peer);
                    break;
                }
            }
        }
    }

    /// An append stream is over: like a failed call (back-off for an unreachable peer, the
    /// removal notice), counted once for every append it left unanswered. A peer that does
    /// not know the stream gets its appends as calls of their own from now on.
    fn stream_failed(&mut self, status: tonic::Status, started: Instant, unanswered: usize) {
        if status.code() == tonic::Code::Unimplemented {
            tracing::info!(
                peer = self.peer,
                "the peer has no Raft.AppendStream (an older version): appends go to it as \
                 AppendEntries calls"
            );
            self.unary_appends = true;
            return;
        }
        if unanswered > 1 {
            let error = format!("{:?}: {}", status.code(), status.message());
            for _ in 1..unanswered {
                self.stats.sent_failed(self.peer, error.clone());
            }
        }
        self.finish(RpcDone {
            is_append: true,
            started,
            result: Err(status),
        });
    }

    /// Whether the peer is backed off.
    pub(super) fn is_down(&mut self) -> bool {
        match self.down_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                // The back-off elapsed: let traffic through again (the next failure doubles it).
                self.down_until = None;
                false
            }
            None => false,
        }
    }

    /// `message` as the request that carries it (an append with the traces of its entries).
    fn prepare(&self, message: &Message) -> Option<PeerRequest> {
        let Some(mut request) = raft_convert::request_to_proto(self.config.cluster_id, message)
        else {
            tracing::warn!(
                peer = self.peer,
                kind = message.payload.kind(),
                "not a request"
            );
            return None;
        };
        if let Some(header) = request.header_mut() {
            header.timing = Some(self.config.timing);
        }
        if let PeerRequest::Append(append) = &mut request {
            append.traces = self.traces.of(append);
        }
        Some(request)
    }

    pub(super) fn start(&self, message: Message) -> Option<RpcFuture> {
        if matches!(message.payload, Payload::SnapshotRequest(_)) {
            return self.start_snapshot(message);
        }
        let request = self.prepare(&message)?;
        let is_append = matches!(request, PeerRequest::Append(_));
        let mut client = self.client.clone();
        let deadline = self.config.rpc_timeout;
        Some(Box::pin(async move {
            let started = Instant::now();
            let call = async {
                Ok(match request {
                    PeerRequest::Vote(r) => Some(PeerResponse::Vote(
                        client.request_vote(timed(r, deadline)).await?.into_inner(),
                    )),
                    PeerRequest::Append(r) => Some(PeerResponse::Append(
                        client
                            .append_entries(timed(r, deadline))
                            .await?
                            .into_inner(),
                    )),
                    PeerRequest::Heartbeat(r) => Some(PeerResponse::Heartbeat(
                        client.heartbeat(timed(r, deadline)).await?.into_inner(),
                    )),
                    PeerRequest::TimeoutNow(r) => {
                        client.timeout_now(timed(r, deadline)).await?;
                        None
                    }
                    PeerRequest::ReadIndex(r) => Some(PeerResponse::ReadIndex(
                        client.read_index(timed(r, deadline)).await?.into_inner(),
                    )),
                })
            };
            let result = match tokio::time::timeout(deadline, call).await {
                Ok(result) => result,
                Err(_) => Err(tonic::Status::deadline_exceeded("rpc deadline exceeded")),
            };
            RpcDone {
                is_append,
                started,
                result,
            }
        }))
    }

    /// Streams a snapshot in chunks (`Raft.InstallSnapshot`). At most one streams to a peer
    /// at a time: the core sends a snapshot again when it hears nothing back for an election
    /// timeout, and one that arrives while the last still streams is dropped (counted).
    pub(super) fn start_snapshot(&self, message: Message) -> Option<RpcFuture> {
        let chunk_bytes = (self.config.max_message_bytes / 4).clamp(1, MAX_SNAPSHOT_CHUNK);
        let mut chunks =
            raft_convert::snapshot_to_chunks(self.config.cluster_id, &message, chunk_bytes)?;
        if self.snapshot_in_flight.swap(true, Ordering::AcqRel) {
            self.stats.dropped(self.peer);
            return None;
        }
        if let Some(header) = chunks[0].header.as_mut() {
            header.timing = Some(self.config.timing);
        }
        let total: u64 = chunks.first().map_or(0, |c| c.total_bytes);
        // The usual deadline, plus a second for every 8 MiB.
        let deadline = self.config.rpc_timeout * 4 + Duration::from_secs(total >> 23);
        let in_flight = self.snapshot_in_flight.clone();
        let mut client = self.client.clone();
        tracing::info!(peer = self.peer, bytes = total, "streaming a snapshot");
        Some(Box::pin(async move {
            let started = Instant::now();
            let call = async {
                let stream = futures_util::stream::iter(chunks);
                let reply = client.install_snapshot(timed(stream, deadline)).await?;
                Ok(Some(PeerResponse::Append(reply.into_inner())))
            };
            let result = match tokio::time::timeout(deadline, call).await {
                Ok(result) => result,
                Err(_) => Err(tonic::Status::deadline_exceeded(
                    "snapshot deadline exceeded",
                )),
            };
            in_flight.store(false, Ordering::Release);
            RpcDone {
                is_append: false,
                started,
                result,
            }
        }))
    }

    pub(super) fn finish(&mut self, done: RpcDone) {
        match done.result {
            Ok(reply) => {
                self.backoff = self.config.backoff_min;
                let message = reply.map(raft_convert::response_from_proto);
                let term = match &message {
                    Some(Ok(m)) => Some(m.term),
                    _ => None,
                };
                self.stats.sent_ok(self.peer, done.started.elapsed(), term);
                match message {
                    Some(Ok(m)) if m.to == self.config.node_id => {
                        let delivered = self.inbox.try_send(m).is_ok();
                        if !delivered {
                            tracing::debug!(peer = self.peer, "node inbox full, reply dropped");
                        }
                    }
                    Some(Ok(m)) => {
                        tracing::warn!(peer = self.peer, to = m.to, "reply addressed elsewhere")
                    }
                    Some(Err(e)) => tracing::warn!(peer = self.peer, error = %e, "bad reply"),
                    None => {}
                }
            }
            Err(status) => {
                self.stats.sent_failed(
                    self.peer,
                    format!("{:?}: {}", status.code(), status.message()),
                );
                // Refusals by a live peer (wrong cluster, bad request) are not a reason to
                // back off, and neither is a deadline: a peer whose fsync outlasts the RPC
                // deadline is alive and answers its heartbeats; backing off would starve it
                // of appends it is about to accept. An unreachable peer is.
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown
                ) {
                    self.down_until = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(self.config.backoff_max);
                }
                tracing::debug!(peer = self.peer, code = ?status.code(), "rpc failed");
                if is_member_removed(&status) && self.directory.mark_removed_self() {
                    tracing::error!(
                        peer = self.peer,
                        refusal = status.message(),
                        "this node was removed from the cluster: its peers refuse its \
                         requests, and it takes no part in any decision. Stop it; to bring \
                         the machine back, wipe its data directory and add it as a new member \
                         with a new id (quoratectl members add)"
                    );
                }
            }
        }
    }
}

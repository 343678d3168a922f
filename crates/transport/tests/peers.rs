//! The transport against real gRPC servers on loopback.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quorate_proto::raft::{ForwardResponse, Timing};
use quorate_raft_core::{
    AppendOutcome, AppendResponse, HeartbeatRequest, HeartbeatResponse, Index, Message, Payload,
    Term,
};
use quorate_transport::{
    serve, PeerDirectory, PeerHandler, RaftService, StatsTable, Transport, TransportConfig,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic_types::{ErrorDetails, StatusExt};

/// The timing settings every peer of these tests runs with.
const TIMING: Timing = Timing {
    heartbeat_interval_ms: 100,
    election_timeout_ms: 1_000,
    max_clock_drift_ms: 100,
};

/// A transport from node `id` with the peers' timing settings.
fn config(cluster_id: u64, id: u64, peers: BTreeMap<u64, String>) -> TransportConfig {
    TransportConfig {
        timing: TIMING,
        ..TransportConfig::new(cluster_id, id, peers)
    }
}

/// A transport started with `config`, its replies and its statistics.
fn start_transport(
    config: TransportConfig,
) -> (Transport, mpsc::Receiver<Message>, Arc<StatsTable>) {
    let (inbox, replies) = mpsc::channel(4096);
    let stats = Arc::new(StatsTable::default());
    let transport = Transport::start(config, inbox, stats.clone()).unwrap();
    (transport, replies, stats)
}

/// Forwards a command to node 2.
async fn forward_to_2(transport: &Transport) -> Result<ForwardResponse, tonic::Status> {
    transport
        .forward(2, 3, Bytes::from_static(b"command"), Duration::from_secs(1))
        .await
}

/// Answers heartbeats after `delay`, like a node would; accepts appends after `append_delay`
/// (a slow fsync), and the append whose `prev_log_index` is `stalled_append` after 5 s.
#[derive(Clone)]
struct Echo {
    id: u64,
    delay: Duration,
    append_delay: Duration,
    stalled_append: Option<Index>,
}

impl PeerHandler for Echo {
    async fn deliver(&self, m: Message) -> Result<Option<Message>, tonic::Status> {
        if let Payload::AppendRequest(r) = &m.payload {
            let delay = if Some(r.prev_log_index) == self.stalled_append {
                Duration::from_secs(5)
            } else {
                self.append_delay
            };
            tokio::time::sleep(delay).await;
            return Ok(Some(Message {
                from: self.id,
                to: m.from,
                term: m.term,
                payload: Payload::AppendResponse(AppendResponse {
                    round: r.round,
                    outcome: AppendOutcome::Accepted {
                        match_index: r.prev_log_index,
                    },
                    request_id: r.request_id,
                }),
            }));
        }
        tokio::time::sleep(self.delay).await;
        let Payload::HeartbeatRequest(r) = m.payload else {
            return Ok(None);
        };
        Ok(Some(Message {
            from: self.id,
            to: m.from,
            term: m.term,
            payload: Payload::HeartbeatResponse(HeartbeatResponse {
                round: r.round,
                request_id: r.request_id,
            }),
        }))
    }

    async fn forward(&self, command: Bytes) -> Result<(Index, Term, Bytes), tonic::Status> {
        if command.starts_with(b"stalled") {
            // A propose that never ends in time.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        if let Some(n) = command.strip_prefix(b"slow-") {
            // A leader's propose takes a while: later forwards queue behind it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if n.starts_with(b"bad") {
                return Err(tonic::Status::with_error_details(
                    tonic::Code::FailedPrecondition,
                    format!("refused {}", String::from_utf8_lossy(n)),
                    ErrorDetails::with_error_info("NOT_LEADER", "quorate", HashMap::new()),
                ));
            }
        }
        Ok((7, 1, command))
    }

    async fn probe(
        &self,
        request: quorate_proto::raft::ProbeRequest,
    ) -> Result<quorate_proto::raft::ProbeResponse, tonic::Status> {
        Ok(quorate_proto::raft::ProbeResponse {
            hash_error: format!("asked for {:?}", request.hash_index),
            ..Default::default()
        })
    }

    async fn transfer(&self, target: u64) -> Result<u64, tonic::Status> {
        Ok(target)
    }

    async fn change_membership(
        &self,
        changes: Vec<quorate_proto::raft::MemberChange>,
    ) -> Result<(Index, Term), tonic::Status> {
        Ok((changes.len() as Index, 1))
    }
}

async fn start_peer(id: u64, delay: Duration, cluster_id: u64) -> String {
    start_peer_with_appends(id, delay, Duration::ZERO, cluster_id).await
}

async fn start_peer_with_appends(
    id: u64,
    delay: Duration,
    append_delay: Duration,
    cluster_id: u64,
) -> String {
    let echo = Echo {
        id,
        delay,
        append_delay,
        stalled_append: None,
    };
    start_echo(echo, cluster_id, None).await
}

/// Serves `echo` as node `echo.id` of `cluster_id`; with `calls`, through a layer that counts
/// the calls of each method (and may play a peer of a version without `AppendStream`).
async fn start_echo(echo: Echo, cluster_id: u64, calls: Option<Calls>) -> String {
    let id = echo.id;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    // Node 9 was a member once and was removed.
    let directory = Arc::new(PeerDirectory::default());
    directory.set_removed([9].into());
    let service = RaftService::new(
        cluster_id,
        id,
        directory,
        TIMING,
        echo,
        Arc::new(StatsTable::default()),
    );
    if let Some(calls) = calls {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(calls)
                .add_service(service.into_server(1 << 20))
                .serve_with_incoming(incoming),
        );
        return address;
    }
    tokio::spawn(serve(
        listener,
        None,
        service,
        1 << 20,
        Default::default(),
        std::future::pending(),
    ));
    address
}

fn heartbeat(to: u64, round: u64) -> Message {
    Message {
        from: 1,
        to,
        term: 3,
        payload: Payload::HeartbeatRequest(HeartbeatRequest {
            commit: 0,
            round,
            request_id: 0,
        }),
    }
}

/// A port nothing listens on.
async fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_and_a_slow_peer_do_not_delay_a_healthy_one() {
    let healthy = start_peer(2, Duration::ZERO, 42).await;
    // Slower than the RPC deadline: its answers never come back.
    let slow = start_peer(3, Duration::from_secs(3), 42).await;
    let dead = dead_address().await;
    let peers = BTreeMap::from([(2, healthy), (3, slow), (4, dead)]);
    let (inbox, mut replies) = mpsc::channel(1024);
    let stats = Arc::new(StatsTable::default());
    let transport = Transport::start(config(42, 1, peers), inbox, stats.clone()).unwrap();
    let started = Instant::now();
    for round in 1..=50 {
        transport.send(heartbeat(4, round));
        transport.send(heartbeat(3, round));
        transport.send(heartbeat(2, round));
    }
    let mut from_healthy = 0;
    while from_healthy < 50 {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
            .await
            .expect("replies from the healthy peer keep coming")
            .unwrap();
        assert_eq!(reply.from, 2, "only the healthy peer can answer");
        from_healthy += 1;
    }
    eprintln!(
        "50 heartbeats answered by the healthy peer in {:?}",
        started.elapsed()
    );
    let snapshot = stats.snapshot();
    assert!(
        snapshot[&4].failures > 0 || snapshot[&4].dropped > 0,
        "{:?}",
        snapshot[&4]
    );
    assert!(snapshot[&2].last_sent_ok.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_another_cluster_are_refused() {
    let other = start_peer(2, Duration::ZERO, 99).await;
    let (inbox, mut replies) = mpsc::channel(16);
    let stats = Arc::new(StatsTable::default());
    let transport = Transport::start(
        config(42, 1, BTreeMap::from([(2, other)])),
        inbox,
        stats.clone(),
    )
    .unwrap();
    transport.send(heartbeat(2, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(replies.try_recv().is_err(), "no reply crosses clusters");
    let error = stats.snapshot()[&2].last_error.clone().unwrap_or_default();
    assert!(error.contains("cluster"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_reaches_the_leader_and_returns_its_output() {
    let leader = start_peer(2, Duration::ZERO, 42).await;
    let (transport, _, _) = start_transport(config(42, 1, BTreeMap::from([(2, leader)])));
    let reply = forward_to_2(&transport).await.unwrap();
    assert_eq!(
        (reply.index, reply.term, reply.output.as_ref()),
        (7, 1, &b"command"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_from_a_removed_member_is_refused_and_it_learns_why() {
    // Node 9 was removed from the cluster and still runs.
    let leader = start_peer(2, Duration::ZERO, 42).await;
    let (transport, mut replies, _) = start_transport(config(42, 9, BTreeMap::from([(2, leader)])));
    let forwarded = forward_to_2(&transport).await.unwrap_err();
    assert_eq!(
        forwarded.code(),
        tonic::Code::PermissionDenied,
        "{forwarded}"
    );
    assert!(
        forwarded.message().contains("node 9 was removed"),
        "{forwarded}"
    );
    let reason = forwarded.get_details_error_info().map(|i| i.reason);
    assert_eq!(reason.as_deref(), Some("MEMBER_REMOVED"));
    let transferred = transport
        .transfer(2, 0, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(transferred.code(), tonic::Code::PermissionDenied);
    let changed = transport
        .change_membership(2, Vec::new(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(changed.code(), tonic::Code::PermissionDenied);
    // Its Raft messages are refused too, and its transport notes that it was removed.
    assert!(!transport.directory().removed_self());
    transport.send(Message {
        from: 9,
        ..heartbeat(2, 1)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(replies.try_recv().is_err());
    assert!(transport.directory().removed_self());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_follow_the_membership() {
    // Node 1 starts knowing only node 2; node 3 joins, then moves to another address.
    let two = start_peer(2, Duration::ZERO, 42).await;
    let (transport, mut replies, _) =
        start_transport(config(42, 1, BTreeMap::from([(2, two.clone())])));
    transport.send(heartbeat(3, 1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(replies.try_recv().is_err(), "3 is not a peer yet");
    let three = start_peer(3, Duration::ZERO, 42).await;
    let peers = BTreeMap::from([(2, two.clone()), (3, three.clone())]);
    transport.set_members(&peers, [9].into()).unwrap();
    assert_eq!(transport.peer_ids(), vec![2, 3]);
    transport.send(heartbeat(3, 2));
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((reply.from, reply.to), (3, 1));
    let moved = start_peer(3, Duration::ZERO, 42).await;
    let two_again = two.clone();
    transport
        .set_peers(&BTreeMap::from([(2, two), (3, moved.clone())]))
        .unwrap();
    assert_eq!(transport.address_of(3), Some(moved));
    transport.send(heartbeat(3, 3));
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.from, 3);
    // Node 3 removed: nothing goes to it any more; a bad address changes nothing.
    transport.set_peers(&BTreeMap::new()).unwrap();
    assert!(transport.peer_ids().is_empty());
    // An unusable address is refused, the other peers are set all the same.
    let bad = BTreeMap::from([(4, "not an address".to_string()), (2, two_again)]);
    assert!(transport.set_peers(&bad).is_err());
    assert_eq!(transport.peer_ids(), vec![2]);
}

/// Issue 9: a follower whose fsync outlasts the RPC deadline made its appends time out, the
/// transport backed the peer off, and the back-off dropped heartbeats too, so the leader lost
/// its quorum (check-quorum) although the follower answered every heartbeat at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reach_a_peer_whose_appends_time_out() {
    let slow_disk = start_peer_with_appends(2, Duration::ZERO, Duration::from_secs(5), 42).await;
    let (transport, mut replies, _) = start_transport(TransportConfig {
        rpc_timeout: Duration::from_millis(100),
        ..config(42, 1, BTreeMap::from([(2, slow_disk)]))
    });
    let rounds = 60;
    for round in 1..=rounds {
        transport.send(append(2, round));
        transport.send(heartbeat(2, round));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut answered = 0;
    while let Ok(reply) = replies.try_recv() {
        if matches!(reply.payload, Payload::HeartbeatResponse(_)) {
            answered += 1;
        }
    }
    assert_eq!(
        answered, rounds,
        "heartbeats answered: {answered} of {rounds} (appends timing out must not hold them back)"
    );
}

fn append(to: u64, n: u64) -> Message {
    Message {
        from: 1,
        to,
        term: 3,
        payload: Payload::AppendRequest(quorate_raft_core::AppendRequest {
            prev_log_index: n,
            prev_log_term: 3,
            entries: Vec::new(),
            leader_commit: 0,
            round: n,
            request_id: 0,
        }),
    }
}

/// Issue 9: the lease a leader holds is computed from its own election timeout, stickiness
/// from each follower's own, so a rolling change of the timeout let a leader hold a lease
/// longer than a follower waited before electing another. Members refuse each other's
/// requests unless their timing settings agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_other_timing_settings_is_refused() {
    let peer = start_peer(2, Duration::ZERO, 42).await;
    let (transport, mut replies, stats) = start_transport(TransportConfig {
        timing: Timing {
            election_timeout_ms: 3_000,
            ..TIMING
        },
        ..TransportConfig::new(42, 1, BTreeMap::from([(2, peer)]))
    });
    transport.send(heartbeat(2, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        replies.try_recv().is_err(),
        "no heartbeat crosses the mismatch"
    );
    let error = stats.snapshot()[&2].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("--election-timeout 3000ms") && error.contains("same timing settings"),
        "{error}"
    );
    let forwarded = forward_to_2(&transport).await.unwrap_err();
    assert_eq!(
        forwarded.code(),
        tonic::Code::FailedPrecondition,
        "{forwarded}"
    );
}

/// Forwards sent while others are in flight travel in batches, and each caller still gets its
/// own answer: the output of its command, or the leader's error for it with its code, message
/// and `ErrorInfo` reason, as a single `Forward` would have answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_forwards_each_get_their_own_answer() {
    let leader = start_peer(2, Duration::ZERO, 7).await;
    let (transport, _replies, _stats) = start_transport(config(
        7,
        1,
        BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, leader)]),
    ));
    let calls = (0..200).map(|i| {
        let transport = transport.clone();
        async move {
            let command = if i % 7 == 3 {
                format!("slow-bad-{i}")
            } else {
                format!("slow-ok-{i}")
            };
            let answer = transport
                .forward(2, 3, Bytes::from(command), Duration::from_secs(5))
                .await;
            (i, answer)
        }
    });
    for (i, answer) in futures_util::future::join_all(calls).await {
        if i % 7 == 3 {
            let status = answer.expect_err("a refused command");
            assert_eq!(
                status.code(),
                tonic::Code::FailedPrecondition,
                "command {i}"
            );
            assert_eq!(status.message(), format!("refused bad-{i}"));
            let reason = status.get_details_error_info().map(|e| e.reason);
            assert_eq!(reason.as_deref(), Some("NOT_LEADER"), "command {i}");
        } else {
            let applied = answer.expect("an applied command");
            assert_eq!(
                applied.output,
                format!("slow-ok-{i}").into_bytes(),
                "command {i}"
            );
        }
    }
}

/// A peer server for node 2 with peer TLS (its certificate names 127.0.0.1), whose membership
/// gives node 1 and node 3 addresses on 127.0.0.1.
async fn start_tls_peer(pki: &Pki) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let directory = Arc::new(PeerDirectory::default());
    directory.set_addresses(&BTreeMap::from([
        (1, "127.0.0.1:1".to_string()),
        (3, "127.0.0.1:3".to_string()),
    ]));
    let tls = pki.peer_tls("node-2", &["127.0.0.1"]);
    let service = RaftService::new(
        42,
        2,
        directory,
        TIMING,
        Echo {
            id: 2,
            delay: Duration::ZERO,
            append_delay: Duration::ZERO,
            stalled_append: None,
        },
        Arc::new(StatsTable::default()),
    )
    .with_peer_tls(true);
    tokio::spawn(serve(
        listener,
        Some(tls.server),
        service,
        1 << 20,
        Default::default(),
        std::future::pending(),
    ));
    address
}

struct Pki {
    dir: tempfile::TempDir,
    ca: quorate_security::tls::testing::Ca,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: quorate_security::tls::testing::Ca::new("test CA"),
        }
    }

    fn peer_tls(&self, name: &str, hosts: &[&str]) -> quorate_security::tls::PeerTls {
        let (cert, key) = self.ca.issue(self.dir.path(), name, hosts);
        quorate_security::tls::PeerTls::load(quorate_security::tls::TlsFiles {
            cert,
            key,
            trusted_ca: Some(self.ca.write(self.dir.path())),
            flag_prefix: "peer-",
        })
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_peer_tls_a_certificate_speaks_only_for_its_own_member() {
    let pki = Pki::new();
    let server = start_tls_peer(&pki).await;
    let peers = BTreeMap::from([(2, server.clone())]);
    let from = |id: u64, tls: Option<quorate_security::tls::PeerTls>| {
        start_transport(TransportConfig {
            tls,
            ..config(42, id, peers.clone())
        })
        .0
    };
    // Node 1, whose certificate names its own host: served.
    let member = from(1, Some(pki.peer_tls("node-1", &["127.0.0.1"])));
    let reply = forward_to_2(&member).await.expect("a member's forward");
    assert_eq!(reply.output.as_ref(), b"command");
    // A certificate of the cluster's CA that names another host, claiming to be node 3.
    let impostor = from(3, Some(pki.peer_tls("node-3", &["node3.invalid"])));
    let refused = forward_to_2(&impostor).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let info = refused.get_details_error_info().expect("a reason");
    assert_eq!(info.reason, "PERMISSION_DENIED");
    assert!(
        refused.message().contains("does not name 127.0.0.1"),
        "{refused:?}"
    );
    // A certificate of another CA, and no TLS at all: no call gets through.
    let stranger = Pki::new();
    let outsider = from(1, Some(stranger.peer_tls("node-1", &["127.0.0.1"])));
    assert!(forward_to_2(&outsider).await.is_err());
    let plain = from(1, None);
    assert!(forward_to_2(&plain).await.is_err());
}

/// Counts the calls a peer server takes, by method; with `without_stream`, answers
/// `Raft.AppendStream` and `Raft.ForwardStream` UNIMPLEMENTED, as a server of a version
/// without them does.
#[derive(Clone, Default)]
struct Calls {
    by_method: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    without_stream: bool,
}

impl Calls {
    fn of(&self, method: &str) -> usize {
        let by_method = self.by_method.lock().unwrap();
        by_method.get(method).copied().unwrap_or(0)
    }
}

impl<S> tower::Layer<S> for Calls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            calls: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    calls: Calls,
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let refuse = self.calls.without_stream && method.ends_with("Stream");
        *self
            .calls
            .by_method
            .lock()
            .unwrap()
            .entry(method)
            .or_default() += 1;
        if refuse {
            let answer = tonic::Status::unimplemented("no such method").into_http();
            return Box::pin(std::future::ready(Ok(answer)));
        }
        Box::pin(self.inner.call(request))
    }
}

/// Waits for `n` append answers from `from` and returns their match indexes, in the order
/// they came.
async fn append_answers(replies: &mut mpsc::Receiver<Message>, from: u64, n: usize) -> Vec<Index> {
    let mut matched = Vec::new();
    while matched.len() < n {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} appends answered", matched.len()))
            .unwrap();
        assert_eq!(reply.from, from);
        if let Payload::AppendResponse(AppendResponse {
            outcome: AppendOutcome::Accepted { match_index },
            ..
        }) = reply.payload
        {
            matched.push(match_index);
        }
    }
    matched
}

/// Issue 15: every append was a unary call of its own (headers, a new HTTP/2 stream and
/// trailers, through the channel's buffer task), a per-call cost that the one-client profile
/// showed as most of the peer threads' time. Appends to a peer now travel on one stream and
/// are answered on it, in the order they went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_travel_on_one_stream_and_are_answered_in_order() {
    let calls = Calls::default();
    let echo = Echo {
        id: 2,
        delay: Duration::ZERO,
        append_delay: Duration::from_millis(1),
        stalled_append: None,
    };
    let peer = start_echo(echo, 42, Some(calls.clone())).await;
    let (transport, mut replies, stats) =
        start_transport(config(42, 1, BTreeMap::from([(2, peer)])));
    for n in 1..=500 {
        transport.send(append(2, n));
    }
    let matched = append_answers(&mut replies, 2, 500).await;
    assert_eq!(matched, (1..=500).collect::<Vec<_>>());
    assert_eq!(
        calls.of("AppendStream"),
        1,
        "one stream carries every append"
    );
    assert_eq!(
        calls.of("AppendEntries"),
        0,
        "no append is a call of its own"
    );
    let peer_stats = &stats.snapshot()[&2];
    assert_eq!(peer_stats.failures, 0, "{peer_stats:?}");
}

/// An append the peer does not answer within the RPC deadline ends the stream (its other
/// appends go again when Raft retransmits); the next appends open a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_ends_the_stream_and_the_next_appends_open_another() {
    let calls = Calls::default();
    let echo = Echo {
        id: 2,
        delay: Duration::ZERO,
        append_delay: Duration::ZERO,
        stalled_append: Some(1),
    };
    let peer = start_echo(echo, 42, Some(calls.clone())).await;
    let (transport, mut replies, stats) = start_transport(TransportConfig {
        rpc_timeout: Duration::from_millis(200),
        ..config(42, 1, BTreeMap::from([(2, peer)]))
    });
    transport.send(append(2, 1));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let error = stats.snapshot()[&2].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("DeadlineExceeded") && error.contains("200 ms"),
        "{error}"
    );
    for n in 2..=20 {
        transport.send(append(2, n));
    }
    let matched = append_answers(&mut replies, 2, 19).await;
    assert_eq!(matched, (2..=20).collect::<Vec<_>>());
    assert_eq!(calls.of("AppendStream"), 2);
}

/// A peer of a version without `AppendStream` answers it UNIMPLEMENTED: appends go to it as
/// `AppendEntries` calls from then on, and all are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_stream_gets_its_appends_as_calls() {
    let calls = Calls {
        without_stream: true,
        ..Calls::default()
    };
    let echo = Echo {
        id: 2,
        delay: Duration::ZERO,
        append_delay: Duration::ZERO,
        stalled_append: None,
    };
    let peer = start_echo(echo, 42, Some(calls.clone())).await;
    let (transport, mut replies, stats) =
        start_transport(config(42, 1, BTreeMap::from([(2, peer)])));
    // The first append was on the refused stream: lost, as when a connection breaks.
    transport.send(append(2, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 2..=50 {
        transport.send(append(2, n));
    }
    let mut matched = append_answers(&mut replies, 2, 49).await;
    matched.sort_unstable();
    assert_eq!(matched, (2..=50).collect::<Vec<_>>());
    assert_eq!(calls.of("AppendStream"), 1, "asked once");
    assert_eq!(calls.of("AppendEntries"), 49);
    let peer_stats = &stats.snapshot()[&2];
    assert_eq!(peer_stats.dropped, 0, "no back-off for it: {peer_stats:?}");
}

/// A refused append ends the stream with the refusal, which the leader reads as a call's:
/// a removed member learns that it was removed from its appends too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_append_ends_the_stream_with_the_refusal() {
    let peer = start_peer(2, Duration::ZERO, 42).await;
    let (transport, mut replies, stats) =
        start_transport(config(42, 9, BTreeMap::from([(2, peer)])));
    transport.send(Message {
        from: 9,
        ..append(2, 1)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(replies.try_recv().is_err());
    assert!(transport.directory().removed_self());
    let error = stats.snapshot()[&2].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("PermissionDenied") && error.contains("node 9 was removed"),
        "{error}"
    );
}

/// Issue 15: forwarded writes went as a unary `ForwardBatch` call per batch. They travel on
/// one stream now, each batch answered under its id, the batches as before: each caller gets
/// its own command's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_travel_on_one_stream_and_each_gets_its_answer() {
    let calls = Calls::default();
    let leader = start_echo(echo(2), 7, Some(calls.clone())).await;
    let (transport, _replies, _stats) =
        start_transport(config(7, 1, BTreeMap::from([(2, leader)])));
    let answers = futures_util::future::join_all((0..100).map(|i| {
        let transport = transport.clone();
        async move {
            let command = Bytes::from(format!("slow-ok-{i}"));
            let answer = transport
                .forward(2, 3, command.clone(), Duration::from_secs(5))
                .await;
            (command, answer)
        }
    }))
    .await;
    for (command, answer) in answers {
        assert_eq!(answer.unwrap().output, command);
    }
    assert_eq!(
        calls.of("ForwardStream"),
        1,
        "one stream carries every batch"
    );
    assert_eq!(calls.of("ForwardBatch"), 0);
}

/// A forward the leader does not answer within its deadline fails with DEADLINE_EXCEEDED; the
/// stream goes on, and the next forward is answered on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_forward_fails_at_its_deadline_and_the_stream_goes_on() {
    let calls = Calls::default();
    let leader = start_echo(echo(2), 7, Some(calls.clone())).await;
    let (transport, _replies, _stats) =
        start_transport(config(7, 1, BTreeMap::from([(2, leader)])));
    let started = Instant::now();
    let late = transport
        .forward(
            2,
            3,
            Bytes::from_static(b"stalled"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::DeadlineExceeded, "{late}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let answer = forward_to_2(&transport).await.unwrap();
    assert_eq!(answer.output.as_ref(), b"command");
    assert_eq!(calls.of("ForwardStream"), 1);
}

/// A leader of a version without `ForwardStream`: forwards go to it as `ForwardBatch` calls,
/// the first ones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_the_stream_gets_forwards_as_calls() {
    let calls = Calls {
        without_stream: true,
        ..Calls::default()
    };
    let leader = start_echo(echo(2), 7, Some(calls.clone())).await;
    let (transport, _replies, _stats) =
        start_transport(config(7, 1, BTreeMap::from([(2, leader)])));
    for _ in 0..3 {
        let answer = forward_to_2(&transport).await.unwrap();
        assert_eq!(answer.output.as_ref(), b"command");
    }
    assert_eq!(calls.of("ForwardStream"), 1, "asked once");
    assert_eq!(calls.of("ForwardBatch"), 3);
}

/// An `Echo` for node `id` that answers at once.
fn echo(id: u64) -> Echo {
    Echo {
        id,
        delay: Duration::ZERO,
        append_delay: Duration::ZERO,
        stalled_append: None,
    }
}

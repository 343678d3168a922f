//! Security and overload on real processes: mutual TLS between peers (a certificate speaks
//! only for its own member), TLS and roles on the client port, certificates reloaded without
//! a restart, and the client port's limits shedding load with RESOURCE_EXHAUSTED.
//!
//! The CA and every certificate are made here, at test time (rcgen): no key material is
//! committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quorate_integration_tests::client::{authorize, reason, retryable};
use quorate_integration_tests::{http_get, metric_value, raw_grpc, Cluster, Signal};
use quorate_proto::admin::admin_client::AdminClient;
use quorate_proto::admin::{StatusRequest, StepDownRequest};
use quorate_proto::payments as pb;
use quorate_proto::payments::payment_events_client::PaymentEventsClient;
use quorate_proto::raft as raft_pb;
use quorate_proto::raft::raft_client::RaftClient;
use quorate_security::reload::Reloadable;
use quorate_security::tls::testing::Ca;
use quorate_security::tls::{client_tls, connector, ClientFiles};
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

/// The throwaway PKI of one test.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_path: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("quorate test CA");
        let ca_path = ca.write(dir.path());
        Pki { dir, ca, ca_path }
    }

    fn issue(&self, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        self.ca.issue(self.dir.path(), name, hosts)
    }

    /// A client's TLS settings: trusting this CA, presenting `identity`'s certificate.
    fn client(&self, identity: Option<&str>) -> Arc<Reloadable<rustls::ClientConfig>> {
        client_tls(
            "test client",
            ClientFiles {
                trusted_ca: self.ca_path.clone(),
                identity: identity.map(|name| self.issue(name, &["client.invalid"])),
                flags: ("--cacert", "--cert", "--key"),
            },
        )
        .unwrap()
    }

    /// Each node's certificate files (client port and peer port) as environment variables;
    /// every node certificate names 127.0.0.1, where the nodes listen.
    fn node_env(&self, ids: &[u64]) -> BTreeMap<u64, Vec<(String, String)>> {
        let ca = self.ca_path.display().to_string();
        ids.iter()
            .map(|&id| {
                let (cert, key) = self.issue(&format!("node-{id}-client"), &["127.0.0.1"]);
                let (peer_cert, peer_key) = self.issue(&format!("node-{id}-peer"), &["127.0.0.1"]);
                let path = |p: PathBuf| p.display().to_string();
                let env = vec![
                    ("QUORATE_CERT_FILE".to_string(), path(cert)),
                    ("QUORATE_KEY_FILE".to_string(), path(key)),
                    ("QUORATE_TRUSTED_CA_FILE".to_string(), ca.clone()),
                    ("QUORATE_PEER_CERT_FILE".to_string(), path(peer_cert)),
                    ("QUORATE_PEER_KEY_FILE".to_string(), path(peer_key)),
                    ("QUORATE_PEER_TRUSTED_CA_FILE".to_string(), ca.clone()),
                ];
                (id, env)
            })
            .collect()
    }
}

/// `printf %s TOKEN | sha256sum`, as the roles file documents it.
fn sha256_hex(token: &str) -> String {
    let output = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", token])
        .output()
        .expect("sha256sum");
    String::from_utf8(output.stdout).unwrap()[..64].to_string()
}

const ONCALL_TOKEN: &str = "oncall-token-7f3a";

fn write_roles(dir: &Path) -> PathBuf {
    let path = dir.join("roles.toml");
    std::fs::write(
        &path,
        format!(
            "[[identity]]\nname = \"harness\"\nroles = [\"reader\", \"writer\", \"admin\"]\n\n\
             [[identity]]\nname = \"reader-app\"\nroles = [\"reader\"]\n\n\
             [[identity]]\nname = \"writer-app\"\nroles = [\"writer\"]\n\n\
             [[identity]]\nname = \"oncall\"\nroles = [\"admin\"]\ntoken_sha256 = \"{}\"\n",
            sha256_hex(ONCALL_TOKEN)
        ),
    )
    .unwrap();
    path
}

async fn tls_channel(
    address: &str,
    tls: Arc<Reloadable<rustls::ClientConfig>>,
) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_with_connector(connector(tls))
        .await
}

/// The certificate a TLS server at `address` presents now (a fresh handshake).
async fn presented_certificate(
    address: &str,
    tls: &Reloadable<rustls::ClientConfig>,
) -> Result<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let stream = tokio_rustls::TlsConnector::from(tls.get())
        .connect(name, tcp)
        .await?;
    let certs = stream.get_ref().1.peer_certificates().context("no cert")?;
    Ok(certs[0].as_ref().to_vec())
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .as_ref()
        .to_vec()
}

fn denial(status: &tonic::Status) -> (tonic::Code, Option<String>, BTreeMap<String, String>) {
    let info = status.get_details_error_info();
    (
        status.code(),
        info.as_ref().map(|i| i.reason.clone()),
        info.map(|i| i.metadata.into_iter().collect())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_roles_guard_both_ports_and_certificates_reload() -> Result<()> {
    let pki = Pki::new();
    let roles = write_roles(pki.dir.path());
    let env = pki.node_env(&[1, 2, 3]);
    let node1_env: BTreeMap<String, String> = env[&1].iter().cloned().collect();
    let mut cluster = Cluster::start_with_args_and_node_env(
        3,
        vec!["--auth-file".into(), roles.display().to_string()],
        env,
    )?;
    cluster.use_client_tls(pki.client(Some("harness")));
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    for id in 1..=3 {
        let log = cluster.log(id);
        assert!(!log.contains("peer TLS is off"), "node {id}: {log}");
    }
    let client_address = cluster.nodes[&1].spec.client.clone();

    // --- The client port. A writer writes; a reader reads but may not write.
    let writer = tls_channel(&client_address, pki.client(Some("writer-app"))).await?;
    let submitted = PaymentEventsClient::new(writer.clone())
        .submit(authorize("pay-tls-1", "key-tls-1", 1_000))
        .await?
        .into_inner();
    assert!(!submitted.replayed);
    let reader = tls_channel(&client_address, pki.client(Some("reader-app"))).await?;
    let refused = PaymentEventsClient::new(reader.clone())
        .submit(authorize("pay-tls-2", "key-tls-2", 1_000))
        .await
        .unwrap_err();
    let (code, why, metadata) = denial(&refused);
    assert_eq!(code, tonic::Code::PermissionDenied, "{refused:?}");
    assert_eq!(why.as_deref(), Some("PERMISSION_DENIED"));
    assert_eq!(metadata["identity"], "reader-app");
    assert_eq!(metadata["role"], "writer");
    let payment = PaymentEventsClient::new(reader.clone())
        .get(pb::GetRequest {
            payment_id: "pay-tls-1".into(),
            consistency: 0,
        })
        .await?
        .into_inner();
    assert_eq!(payment.payment.unwrap().authorized_minor, 1_000);
    let refused = AdminClient::new(writer.clone())
        .status(StatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(denial(&refused).1.as_deref(), Some("PERMISSION_DENIED"));

    // No certificate and no token: unauthenticated, except for health checks.
    let anonymous = tls_channel(&client_address, pki.client(None)).await?;
    let refused = PaymentEventsClient::new(anonymous.clone())
        .submit(authorize("pay-tls-3", "key-tls-3", 1_000))
        .await
        .unwrap_err();
    let (code, why, _) = denial(&refused);
    assert_eq!(code, tonic::Code::Unauthenticated, "{refused:?}");
    assert_eq!(why.as_deref(), Some("UNAUTHENTICATED"));
    // Counted where it was refused (before the limits: it took no slot).
    let mut unauthenticated = 0.0;
    for id in 1..=3 {
        let metrics = http_get(&cluster.nodes[&id].spec.metrics, "/metrics")?;
        unauthenticated += metric_value(&metrics, "quorate_requests_unauthenticated_total")
            .context("the unauthenticated counter")?;
    }
    assert_eq!(unauthenticated, 1.0, "one call without credentials so far");
    let health = tonic_health::pb::health_client::HealthClient::new(anonymous.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(health.is_ok(), "health checks are open: {health:?}");

    // A bearer token names its holder: the on-call engineer administers, and is logged. (On
    // a follower: its step-down is refused, but is an admin action all the same.)
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let follower_address = cluster.nodes[&follower].spec.client.clone();
    let to_follower = tls_channel(&follower_address, pki.client(None)).await?;
    let mut oncall = AdminClient::with_interceptor(to_follower, |mut r: tonic::Request<()>| {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {ONCALL_TOKEN}").parse().unwrap(),
        );
        Ok(r)
    });
    let status = oncall.status(StatusRequest {}).await?.into_inner();
    assert_eq!(status.node_id, follower);
    let _ = oncall.step_down(StepDownRequest {}).await;
    let log = cluster.log(follower);
    assert!(
        log.lines()
            .any(|l| l.contains("admin call") && l.contains("oncall") && l.contains("StepDown")),
        "the admin action is logged with who did it"
    );

    // Plain TCP, or a certificate from another CA: no call gets through.
    let plain = Endpoint::from_shared(format!("http://{client_address}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .connect()
        .await;
    if let Ok(plain) = plain {
        let r = PaymentEventsClient::new(plain)
            .submit(authorize("pay-tls-4", "key-tls-4", 1_000))
            .await;
        assert!(r.is_err(), "plain TCP to a TLS port: {r:?}");
    }
    let stranger = Pki::new();
    let strange = tls_channel(&client_address, stranger.client(Some("harness"))).await;
    assert!(
        strange.is_err(),
        "a server certificate from another CA is refused"
    );

    // --- The peer port. Nobody without a certificate of the cluster's CA gets in, and a
    // certificate of the CA speaks only for the member whose address it names.
    // (The step-down above may have moved leadership.)
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let peers = cluster.peer_addresses();
    let before = cluster.status(leader).await.context("leader status")?;
    let target = peers[&leader].clone();
    let (claimed, _) = peers.iter().find(|(&id, _)| id != leader).unwrap();
    let header = raft_pb::Header {
        cluster_id: before.cluster_id,
        from: *claimed,
        to: leader,
        term: before.term,
        timing: Some(raft_pb::Timing {
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1_000,
            max_clock_drift_ms: 100,
        }),
    };
    let forward = raft_pb::ForwardRequest {
        header: Some(header),
        command: bytes_command(),
    };
    // A certificate from another CA: the handshake fails.
    let outsider = tls_channel(&target, stranger.client(Some("node-9-peer"))).await;
    if let Ok(outsider) = outsider {
        let r = RaftClient::new(outsider).forward(forward.clone()).await;
        assert!(r.is_err(), "{r:?}");
    }
    // Plain TCP: no TLS, no call.
    if let Ok(plain) = Endpoint::from_shared(format!("http://{target}"))?
        .timeout(Duration::from_secs(3))
        .connect()
        .await
    {
        let r = RaftClient::new(plain).forward(forward.clone()).await;
        assert!(r.is_err(), "{r:?}");
    }
    // The cluster's CA, but a certificate for another host, claiming to be a member: refused
    // for Forward and for votes alike.
    let (rogue_cert, rogue_key) = pki.issue("rogue-peer", &["10.9.9.9", "rogue.invalid"]);
    let rogue = client_tls(
        "rogue",
        ClientFiles {
            trusted_ca: pki.ca_path.clone(),
            identity: Some((rogue_cert, rogue_key)),
            flags: ("--cacert", "--cert", "--key"),
        },
    )
    .unwrap();
    let mut rogue = RaftClient::new(tls_channel(&target, rogue).await?);
    let refused = rogue.forward(forward.clone()).await.unwrap_err();
    let (code, why, _) = denial(&refused);
    assert_eq!(code, tonic::Code::PermissionDenied, "{refused:?}");
    assert_eq!(why.as_deref(), Some("PERMISSION_DENIED"));
    assert!(
        refused.message().contains("does not name 127.0.0.1"),
        "{refused:?}"
    );
    let refused = rogue
        .request_vote(raft_pb::RequestVoteRequest {
            header: Some(raft_pb::Header {
                term: before.term + 100,
                ..header_for(&forward)
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let after = cluster.status(leader).await.context("leader status")?;
    assert_eq!(
        (after.term, after.leader_id),
        (before.term, leader),
        "the rogue vote request disturbed no one"
    );

    // --- Reload: new certificates for node 1, picked up on SIGHUP without a restart.
    let harness = pki.client(Some("harness"));
    let before = presented_certificate(&client_address, &harness).await?;
    let (new_cert, new_key) = pki.issue("node-1-client-renewed", &["127.0.0.1"]);
    let (new_peer_cert, new_peer_key) = pki.issue("node-1-peer-renewed", &["127.0.0.1"]);
    for (from, to) in [
        (&new_cert, "QUORATE_CERT_FILE"),
        (&new_key, "QUORATE_KEY_FILE"),
        (&new_peer_cert, "QUORATE_PEER_CERT_FILE"),
        (&new_peer_key, "QUORATE_PEER_KEY_FILE"),
    ] {
        std::fs::copy(from, &node1_env[to])?;
    }
    cluster.signal(1, Signal::SIGHUP)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = presented_certificate(&client_address, &harness).await?;
        if now != before {
            assert_eq!(now, pem_der(&new_cert), "the renewed certificate");
            break;
        }
        if Instant::now() > deadline {
            bail!("node 1 still presents its old certificate after SIGHUP");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peer1 = peers[&1].clone();
    assert_eq!(
        presented_certificate(&peer1, &harness).await?,
        pem_der(&new_peer_cert),
        "the peer port presents the renewed certificate"
    );
    // New peer connections use the renewed certificates: restart node 2, which must rejoin
    // through handshakes with node 1's new certificate, and the cluster keeps writing.
    cluster.sigkill(2)?;
    cluster.restart(2)?;
    // (Node 2 may have led: writes wait out the election, retried as any client would.)
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let writer = tls_channel(&client_address, pki.client(Some("writer-app"))).await?;
    for i in 0..20 {
        let request = authorize(&format!("pay-reload-{i}"), &format!("key-reload-{i}"), 5);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match PaymentEventsClient::new(writer.clone())
                .submit(request.clone())
                .await
            {
                Ok(_) => break,
                Err(status) if retryable(&status) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(status) => bail!("write {i} after the reload: {status:?}"),
            }
        }
    }
    let index = cluster.status(1).await.context("status")?.commit_index;
    cluster.wait_applied(index, Duration::from_secs(20)).await?;
    assert!(cluster.log(1).contains("reloaded"), "the reload is logged");
    Ok(())
}

/// The header of a request (to build another with it).
fn header_for(forward: &raft_pb::ForwardRequest) -> raft_pb::Header {
    forward.header.unwrap()
}

/// Some command bytes (never proposed: the request is refused before).
fn bytes_command() -> prost::bytes::Bytes {
    prost::bytes::Bytes::from_static(b"\x08\x01forged")
}

/// Sends `n` writes at once to node `id` and sorts the answers: (acknowledged payment ids,
/// refusals by their `limit`, other errors).
async fn burst(
    cluster: &Cluster,
    id: u64,
    n: usize,
    tag: &str,
) -> Result<(Vec<String>, BTreeMap<String, usize>, Vec<String>)> {
    let channel = cluster.channel(id).await?;
    let calls = (0..n).map(|i| {
        let mut client = PaymentEventsClient::new(channel.clone());
        let payment = format!("pay-{tag}-{i}");
        async move {
            let result = client
                .submit(authorize(&payment, &format!("key-{tag}-{i}"), 10))
                .await;
            (payment, result)
        }
    });
    let mut acked = Vec::new();
    let mut shed = BTreeMap::new();
    let mut other = Vec::new();
    for (payment, result) in futures_util::future::join_all(calls).await {
        match result {
            Ok(_) => acked.push(payment),
            Err(status) if reason(&status).as_deref() == Some("RESOURCE_EXHAUSTED") => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                let delay = status.get_details_retry_info().and_then(|r| r.retry_delay);
                assert!(delay.is_some(), "a retry hint: {status:?}");
                let limit = status.get_details_error_info().unwrap().metadata["limit"].clone();
                *shed.entry(limit).or_insert(0) += 1;
            }
            Err(status) => other.push(format!("{status:?}")),
        }
    }
    Ok((acked, shed, other))
}

/// Every acknowledged payment is there, on every node.
async fn all_present(cluster: &Cluster, acked: &[String]) -> Result<()> {
    for id in cluster.live() {
        let mut client = cluster.payments(id).await?;
        for payment in acked {
            client
                .get(pb::GetRequest {
                    payment_id: payment.clone(),
                    consistency: 0,
                })
                .await
                .with_context(|| format!("{payment} on node {id}"))?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_port_sheds_what_it_cannot_serve() -> Result<()> {
    let cluster = Cluster::start_with_args(
        3,
        [
            "--max-concurrent-requests",
            "4",
            "--max-queued-requests",
            "4",
            "--queue-timeout",
            "20ms",
            "--max-watches",
            "3",
            "--max-watches-per-client",
            "2",
        ]
        .map(String::from)
        .to_vec(),
    )?;
    cluster.wait_for_leader(Duration::from_secs(20)).await?;

    let (acked, shed, other) = burst(&cluster, 1, 300, "burst").await?;
    assert!(other.is_empty(), "only refusals, no failures: {other:?}");
    let refused: usize = shed.values().sum();
    assert!(
        refused > 0,
        "300 calls at once against 4 slots and 4 places: {shed:?}"
    );
    assert!(!acked.is_empty());
    assert!(
        shed.keys()
            .all(|l| l == "queued_requests" || l == "queue_timeout"),
        "{shed:?}"
    );
    all_present(&cluster, &acked).await?;
    println!("burst of 300: {} acknowledged, shed {shed:?}", acked.len());
    let metrics = http_get(&cluster.nodes[&1].spec.metrics, "/metrics")?;
    let counted = metric_value(&metrics, "quorate_requests_shed_total{limit=\"requests\"}")
        .context("the shed counter")?;
    assert_eq!(counted as usize, refused, "shed counter {counted}");

    // Watch streams: two per client, three per node; a closed stream gives its place back.
    let channel = cluster.channel(1).await?;
    let watch = || {
        let mut client = PaymentEventsClient::new(channel.clone());
        async move {
            client
                .watch(pb::WatchRequest {
                    after_index: 0,
                    consistency: 0,
                })
                .await
        }
    };
    let first = watch().await?;
    let second = watch().await?;
    let third = watch().await.unwrap_err();
    let (code, why, metadata) = denial(&third);
    assert_eq!(code, tonic::Code::ResourceExhausted);
    assert_eq!(why.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(metadata["limit"], "watches_per_client");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        match watch().await {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => bail!("the closed stream's place never came back: {e:?}"),
        }
    };
    drop((second, again));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_bounds_its_pending_proposals() -> Result<()> {
    let cluster = Cluster::start_with_args(
        3,
        ["--max-pending-proposals", "2"].map(String::from).to_vec(),
    )?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let mut acked = Vec::new();
    let mut limits = BTreeMap::new();
    // On the leader itself, and forwarded by a follower: the bound covers both.
    for (id, tag) in [(leader, "leader"), (follower, "forwarded")] {
        let (ok, shed, other) = burst(&cluster, id, 200, tag).await?;
        assert!(other.is_empty(), "{tag}: {other:?}");
        assert!(!ok.is_empty(), "{tag}: some writes are served");
        for (limit, n) in shed {
            *limits.entry(format!("{tag}:{limit}")).or_insert(0) += n;
        }
        acked.extend(ok);
    }
    assert!(
        limits.contains_key("leader:pending_proposals"),
        "200 writes at once against 2 pending places: {limits:?}"
    );
    assert!(
        limits.contains_key("forwarded:pending_proposals"),
        "a forwarded write meets the same bound: {limits:?}"
    );
    all_present(&cluster, &acked).await?;
    println!(
        "pending bound: {} acknowledged, shed {limits:?}",
        acked.len()
    );
    Ok(())
}

/// One `Submit` with `grpc-timeout` set to `deadline`, over raw HTTP/2 so that only the node
/// enforces it: the node's `grpc-status` and `grpc-message`, and how long they took.
async fn submit_raw_h2(
    address: &str,
    request: &pb::SubmitRequest,
    deadline: Duration,
) -> Result<(String, String, Duration)> {
    let send = raw_grpc::connect(address).await?;
    let uri = format!("http://{address}/quorate.payments.v1.PaymentEvents/Submit").parse()?;
    let started = Instant::now();
    let status = raw_grpc::unary(send, uri, raw_grpc::message(request), deadline).await?;
    let field = |name: &str| {
        status
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    // (grpc-message is percent-encoded: tonic decodes it.)
    let message = tonic::Status::from_header_map(&status)
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    Ok((field("grpc-status"), message, started.elapsed()))
}

/// A call's own deadline (`grpc-timeout`) is honoured by the node: a write the leader cannot
/// commit (both followers stopped) is answered when the caller's deadline runs out, not when
/// the leader gives up on its quorum, and the answer is the node's (the client enforces no
/// deadline). The write cut off that way is not lost or doubled: retried with its idempotency
/// key once the followers are back, it is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_deadline_is_honoured_and_the_write_is_not_doubled() -> Result<()> {
    let cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(15)).await?;
    let address = cluster.nodes[&leader].spec.client.clone();
    let first = authorize("pay-deadline-0", "key-deadline-0", 10);
    let (code, message, _) = submit_raw_h2(&address, &first, Duration::from_secs(5)).await?;
    assert_eq!(code, "0", "{message}");
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &followers {
        cluster.signal(id, Signal::SIGSTOP)?;
    }
    let deadline = Duration::from_millis(200);
    let write = authorize("pay-deadline-1", "key-deadline-1", 10);
    let answer = submit_raw_h2(&address, &write, deadline).await;
    for &id in &followers {
        cluster.signal(id, Signal::SIGCONT)?;
    }
    let (code, message, took) = answer?;
    eprintln!("answered after {took:?}: grpc-status {code} {message:?}");
    // DEADLINE_EXCEEDED at the deadline, saying the outcome is unknown: not NO_QUORUM
    // (UNAVAILABLE) an election timeout later, nor a success once the followers are back, nor
    // tonic's own CANCELLED ("Timeout expired"), which said nothing of the write.
    assert_eq!(code, "4", "grpc-status {code}: {message}");
    assert!(
        message.contains("may or may not have been committed"),
        "{message}"
    );
    assert!(
        took >= deadline - Duration::from_millis(2) && took < Duration::from_secs(1),
        "answered after {took:?}"
    );

    // The retry, with the same key, once the followers are back.
    let retry_until = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, message, _) = submit_raw_h2(&address, &write, Duration::from_secs(5)).await?;
        if code == "0" {
            break;
        }
        assert!(
            Instant::now() < retry_until,
            "the retry failed: {code} {message}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let payment = PaymentEventsClient::new(cluster.channel(leader).await?)
        .get(pb::GetRequest {
            payment_id: "pay-deadline-1".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .payment
        .context("the payment")?;
    assert_eq!(payment.events.len(), 1, "{payment:?}");
    Ok(())
}

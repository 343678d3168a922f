//! The `quorate` node: wiring of storage, the Raft node, the peer and client gRPC servers and
//! the metrics endpoint. `main.rs` only parses flags, sets up logging and calls [`run`].

pub mod config;
mod dev;
mod metrics;
mod ready;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use quorate_log_store::{LogStore, OpenOptions};
use quorate_node::{ClusterState, NodeConfig, NodeHandle, NodePeer, StartingPeer};
use quorate_payments::service::{PaymentsService, RocksMachine, ServiceConfig};
use quorate_raft_core::ConfState;
use quorate_security::admission::AdmissionLayer;
use quorate_security::auth::{AuthLayer, Policy};
use quorate_security::reload::Reloadable;
use quorate_security::tls::{incoming, ClientCerts, PeerTls};
use quorate_transport::{RaftService, StatsTable};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{ServeArgs, ServeConfig};
pub use dev::{run_dev, DevArgs};
pub use ready::{run_ready, ReadyArgs};

/// The gRPC service name whose health says whether this node can serve writes.
pub const PAYMENTS_SERVICE: &str = "quorate.payments.v1.PaymentEvents";

/// Runs a node until `shutdown` completes, then stops gracefully: leadership is handed over,
/// in-flight requests finish, storage is flushed.
pub async fn run(config: ServeConfig, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let store = LogStore::open(
        &config.data_dir,
        OpenOptions {
            bootstrap: ConfState::with_voters(config.initial_cluster.keys().copied()),
            state_column_families: RocksMachine::column_families(),
        },
    )
    .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
    let machine = RocksMachine::open(store.clone()).context("loading the payments state")?;

    // (A new cluster's id; a node that ran before, or joins a running cluster, takes the
    // cluster's own: see `prepare_store`.)
    let cluster_id = NodeConfig::cluster_id_for(&config.initial_cluster);
    let mut node_config = NodeConfig {
        heartbeat_interval: config.heartbeat_interval,
        election_timeout: config.election_timeout,
        max_clock_drift: config.max_clock_drift,
        lease_reads: config.lease_reads,
        request_timeout: config.request_timeout,
        snapshot_count: config.snapshot_count,
        snapshot_catch_up_entries: config.snapshot_catch_up_entries,
        max_pending_proposals: config.max_pending_proposals,
        ..NodeConfig::new(config.id, cluster_id, config.initial_cluster.clone())
    };
    // TLS and roles files: loaded now (a bad file fails the start), reloaded later.
    let guards = Guards::load(&config)?;
    node_config.peer_tls = guards.peer_tls.clone();
    // Bind every port before starting, so a port clash fails the start with a clear error.
    let peer_listener = bind(&config.listen_peer, "--listen-peer").await?;
    let client_listener = bind(&config.listen_client, "--listen-client").await?;
    let metrics_listener = bind(&config.listen_metrics, "--listen-metrics").await?;
    let mut shutdown = std::pin::pin!(shutdown);
    let prepared = tokio::select! {
        prepared = prepare_store(&store, &node_config, config.initial_cluster_state, peer_listener) => Some(prepared?),
        () = &mut shutdown => None,
    };
    let Some((peer_listener, cluster_id)) = prepared else {
        tracing::info!("stopped before the data directory was ready");
        return Ok(());
    };
    node_config.cluster_id = cluster_id;
    if let Some(endpoint) = &config.otlp_endpoint {
        quorate_telemetry::start_tracing(&quorate_telemetry::TracingConfig {
            endpoint: endpoint.clone(),
            instance_id: format!("node-{}", config.id),
            cluster_id: format!("{cluster_id:016x}"),
        })
        .context("--otlp-endpoint")?;
        tracing::info!(%endpoint, ratio = config.otlp_sampling_ratio, "exporting traces");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    quorate_security::reload::spawn_reloader(
        guards.reloadable(),
        RELOAD_POLL,
        stopped(stop_rx.clone()),
    );
    // The peer protocol (its server, and the transport's senders and forwarders, which
    // `start` spawns on the runtime it is called in) gets a runtime and a thread of its own:
    // a flood of client calls then fills only the client port's queue, and heartbeats and
    // appends are still sent and answered in time, so the cluster keeps its leader and
    // serves its capacity under overload instead of losing contact and refusing everything.
    let peer_runtime = PeerRuntime::start()?;
    let node = {
        let _on_peer_runtime = peer_runtime.handle().enter();
        quorate_node::start(node_config, store.clone(), machine, stop_rx.clone())
            .context("starting the Raft node")?
    };
    let handle = node.handle.clone();
    tracing::info!(
        id = config.id,
        cluster = format!("{cluster_id:016x}"),
        client = %config.listen_client,
        peer = %config.listen_peer,
        metrics = %config.listen_metrics,
        "quorate node started"
    );

    let payments = PaymentsService::new(
        handle.clone(),
        store.clone(),
        ServiceConfig {
            idempotency_window: config.idempotency_window,
            event_retention: config.event_retention,
        },
        stop_rx.clone(),
    );
    let counters: quorate_admin::CounterSource = {
        let payments = payments.clone();
        Arc::new(move || counters_to_proto(payments.counters()))
    };
    let hashes: quorate_admin::HashSource = {
        let payments = payments.clone();
        Arc::new(move |index| {
            use quorate_admin::HashError;
            use quorate_payments::machine::StoreError;
            use quorate_payments::service::HashEventsError;
            match payments.hash_events(index) {
                Ok((index, hash, events)) => Ok(quorate_proto::admin::HashEventsResponse {
                    index,
                    hash: format!("{hash:016x}"),
                    events,
                }),
                Err(HashEventsError::NotApplied { index, applied }) => {
                    Err(HashError::NotApplied { index, applied })
                }
                Err(HashEventsError::Store(StoreError::Compacted {
                    after,
                    first_available,
                })) => Err(HashError::Compacted {
                    // (The hash at `after` covers the events up to it.)
                    index: after,
                    // A hash at the compaction point itself is the carried one.
                    first_available: first_available - 1,
                }),
                Err(HashEventsError::Store(e)) => Err(HashError::Storage(Box::new(e))),
            }
        })
    };
    let state_hashes: quorate_admin::StateHashSource = {
        let payments = payments.clone();
        Arc::new(move || {
            payments
                .hash_state()
                .map(|(index, hash)| (index, format!("{hash:016x}")))
                .map_err(|e| quorate_admin::HashError::Storage(Box::new(e)))
        })
    };
    let image_hashes: quorate_admin::ImageHashSource = Arc::new(|image| {
        quorate_payments::machine::image_events_hash(image)
            .map(|(_, _, hash)| format!("{hash:016x}"))
            .map_err(|e| quorate_admin::HashError::Storage(Box::new(e)))
    });
    let admin = quorate_admin::AdminService::new(
        handle.clone(),
        store.clone(),
        config.advertise_client.clone(),
        counters.clone(),
        hashes,
        state_hashes,
        image_hashes,
    );
    admin.spawn_pinger(stop_rx.clone());
    if !config.corruption_check_interval.is_zero() {
        admin.spawn_corruption_check(config.corruption_check_interval, stop_rx.clone());
    }

    let peer_service = RaftService::new(
        cluster_id,
        config.id,
        handle.transport().directory(),
        handle.config().timing(),
        NodePeer::new(handle.clone(), admin.peer_handler()),
        node.stats.clone(),
    )
    .with_peer_tls(guards.peer_tls.is_some());
    let peer_stop = stopped(stop_rx.clone());
    let peer_metrics = handle.config().metrics.clone();
    let peer_server_tls = guards.peer_tls.as_ref().map(|t| t.server.clone());
    let peer_server = peer_runtime.handle().spawn(async move {
        quorate_transport::serve(
            peer_listener,
            peer_server_tls,
            peer_service,
            16 << 20,
            peer_metrics,
            peer_stop,
        )
        .await
        .context("peer server")
    });
    let registry = metrics::registry(metrics::NodeCollector {
        handle: handle.clone(),
        counters,
        admin: admin.clone(),
        store: store.clone(),
        admission: guards.admission.clone(),
        auth: guards.auth.clone(),
    });
    let metrics_server = tokio::spawn(metrics::serve(
        metrics_listener,
        handle.clone(),
        registry,
        stopped(stop_rx.clone()),
    ));
    let client_server = tokio::spawn(serve_clients(
        client_listener,
        guards,
        handle.clone(),
        payments,
        admin,
        stop_rx.clone(),
    ));

    // Run until asked to stop, or until the Raft node stops by itself (a storage or apply
    // error): a node that can no longer make progress must exit non-zero so that its
    // supervisor notices, not linger answering every request with an error.
    let mut driver_task = node.driver;
    let stopped_by_itself = tokio::select! {
        () = shutdown => None,
        result = &mut driver_task => Some(result),
    };
    stop_tx.send_replace(true);
    let driver = match stopped_by_itself {
        None => {
            tracing::info!("shutting down");
            driver_task
                .await
                .context("the node task failed")?
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
        Some(result) => {
            let error = match result {
                Ok(Ok(())) => anyhow::anyhow!("the Raft node stopped unexpectedly"),
                Ok(Err(e)) => anyhow::anyhow!("the Raft node failed: {e}"),
                Err(e) => anyhow::anyhow!("the Raft node task failed: {e}"),
            };
            tracing::error!(error = %error, "stopping the servers");
            Err(error)
        }
    };
    for (name, server) in [("client", client_server), ("peer", peer_server)] {
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(server = name, error = %e, "server stopped with an error")
            }
            Ok(Err(e)) => tracing::warn!(server = name, error = %e, "server task failed"),
            Err(_) => tracing::warn!(server = name, "server did not stop within 5 s"),
        }
    }
    metrics_server.abort();
    peer_runtime.shut_down(Duration::from_secs(5)).await;
    store.flush().context("flushing storage")?;
    tracing::info!("stopped");
    driver
}

/// The peer protocol's runtime: one worker thread of its own. Dropped (even on an early
/// error return inside the async `run`) without blocking: its tasks are abandoned, as they
/// are when a process exits.
struct PeerRuntime(Option<tokio::runtime::Runtime>);

impl PeerRuntime {
    fn start() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quorate-peer")
            .enable_all()
            .build()
            .context("starting the peer protocol's runtime")?;
        Ok(PeerRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("running until dropped").handle()
    }

    /// Stops it, waiting up to `grace` for its blocking work (a hash scan a peer asked
    /// for, say) to finish, so that nothing holds the store when the node is done.
    async fn shut_down(mut self, grace: Duration) {
        if let Some(runtime) = self.0.take() {
            let _ = tokio::task::spawn_blocking(move || runtime.shutdown_timeout(grace)).await;
        }
    }
}

impl Drop for PeerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Readies the data directory ([`quorate_node::prepare_store`]). While a blank node waits for
/// its peers, a stand-in peer server answers their probes on `peer_listener`, which is handed
/// back for the real one.
async fn prepare_store(
    store: &LogStore,
    config: &NodeConfig,
    mode: ClusterState,
    peer_listener: TcpListener,
) -> Result<(TcpListener, u64)> {
    if !store.is_blank()? {
        let cluster_id = quorate_node::prepare_store(store, config, mode).await?;
        return Ok((peer_listener, cluster_id));
    }
    let listener = peer_listener.into_std()?;
    let stand_in = TcpListener::from_std(listener.try_clone()?)?;
    // A member joining a running cluster does not know the cluster's id yet (0: any).
    let stand_in_cluster = match mode {
        ClusterState::New => config.cluster_id,
        ClusterState::Existing => 0,
    };
    let service = RaftService::new(
        stand_in_cluster,
        config.id,
        Arc::new(quorate_transport::PeerDirectory::default()),
        config.timing(),
        StartingPeer { id: config.id },
        Arc::new(StatsTable::default()),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(quorate_transport::serve(
        stand_in,
        config.peer_tls.as_ref().map(|t| t.server.clone()),
        service,
        1 << 20,
        config.metrics.clone(),
        stopped(stop_rx),
    ));
    let prepared = quorate_node::prepare_store(store, config, mode).await;
    stop_tx.send_replace(true);
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        tracing::warn!("the stand-in peer server did not stop within 5 s");
    }
    let cluster_id = prepared?;
    Ok((TcpListener::from_std(listener)?, cluster_id))
}

async fn bind(address: &str, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("{flag} {address}: cannot listen"))
}

/// Completes when `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

/// The payments counters as the admin API names them.
fn counters_to_proto(c: quorate_payments::service::Counters) -> quorate_proto::admin::Counters {
    quorate_proto::admin::Counters {
        stale_token_rejections: c.stale_token_rejections,
        idempotent_replays: c.idempotent_replays,
        no_quorum_refusals: c.no_quorum_refusals,
        invalid_transitions: c.invalid_transitions,
        key_reuse_rejections: c.key_reuse_rejections,
        fencing_rejections: c.fencing_rejections,
        leader_clock_corrections: c.leader_clock_corrections,
        machine_clock_unix_ms: c.machine_clock_unix_ms,
    }
}

/// How often certificate and roles files are checked for changes (SIGHUP reloads at once).
const RELOAD_POLL: Duration = Duration::from_secs(10);

/// What guards the node's ports: TLS settings, the roles file, the client port's limits.
struct Guards {
    client_tls: Option<Arc<Reloadable<rustls::ServerConfig>>>,
    peer_tls: Option<PeerTls>,
    policy: Option<Arc<Reloadable<Policy>>>,
    /// The roles file's check, first step (its second is made from it).
    auth: AuthLayer,
    admission: AdmissionLayer,
}

impl Guards {
    fn load(config: &ServeConfig) -> Result<Guards> {
        let client_tls = match &config.client_tls {
            Some(files) => {
                let client_certs = if config.client_cert_auth {
                    ClientCerts::Required
                } else if files.trusted_ca.is_some() {
                    ClientCerts::Optional
                } else {
                    ClientCerts::Ignore
                };
                Some(
                    quorate_security::tls::server_tls(
                        "client port TLS",
                        files.clone(),
                        client_certs,
                    )
                    .map_err(anyhow::Error::msg)?,
                )
            }
            None => None,
        };
        let peer_tls = config
            .peer_tls
            .clone()
            .map(PeerTls::load)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let policy = config
            .auth_file
            .as_deref()
            .map(Policy::load)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        if policy.is_some() && client_tls.is_none() {
            tracing::warn!(
                "--auth-file without --cert-file: bearer tokens cross the network in clear text"
            );
        }
        if peer_tls.is_none() {
            tracing::warn!(
                "peer TLS is off (no --peer-cert-file): anyone who can reach the peer port can \
                 talk to this node as a member; keep that port on a private network"
            );
        }
        Ok(Guards {
            client_tls,
            peer_tls,
            auth: AuthLayer::authenticate(policy.clone()),
            policy,
            admission: AdmissionLayer::new(config.limits),
        })
    }

    /// Everything reloaded on SIGHUP or when its files change.
    fn reloadable(&self) -> Vec<Arc<dyn quorate_security::reload::Reload>> {
        let mut items: Vec<Arc<dyn quorate_security::reload::Reload>> = Vec::new();
        if let Some(t) = &self.client_tls {
            items.push(t.clone());
        }
        if let Some(t) = &self.peer_tls {
            items.push(t.server.clone());
            items.push(t.client.clone());
        }
        if let Some(p) = &self.policy {
            items.push(p.clone());
        }
        items
    }
}

async fn serve_clients(
    listener: TcpListener,
    guards: Guards,
    handle: NodeHandle,
    payments: PaymentsService,
    admin: quorate_admin::AdminService,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let layer = quorate_telemetry::grpc::GrpcLayer::new(
        handle.config().metrics.clone(),
        quorate_telemetry::grpc::Spans::Always,
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(health_reporter, handle, stop.clone()));
    let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building reflection v1alpha")?;
    // Outermost, the check of credentials (with a roles file): a call without them is
    // refused before it can take a slot from an authorised caller. Then the limits of unary
    // calls: a call refused under overload costs no span and no role check (it is counted in
    // `quorate_requests_shed_total`). The `Watch` limits go inside the role check, which
    // tells who the client is.
    tonic::transport::Server::builder()
        .layer(guards.auth.clone())
        .layer(guards.admission.for_calls())
        .layer(layer)
        .layer(guards.auth.authorize())
        .layer(guards.admission.for_watches())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(payments.payment_events_server())
        .add_service(payments.leases_server())
        .add_service(admin.into_server())
        .serve_with_incoming_shutdown(incoming(listener, guards.client_tls), stopped(stop))
        .await
        .context("client server")
}

/// Reflection lists exactly the services of the client port (not the peer protocol, which
/// lives on the peer port), and knows the `google.rpc` error details, so `grpcurl` shows the
/// reason and field of an error.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(quorate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
    for service in [
        PAYMENTS_SERVICE,
        "quorate.payments.v1.Leases",
        "quorate.admin.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        builder = builder.with_service_name(service);
    }
    builder
}

/// `quorate.payments.v1.PaymentEvents` is SERVING only while this node has a leader it can
/// reach (or leads with a quorum).
async fn report_health(
    reporter: tonic_health::server::HealthReporter,
    handle: NodeHandle,
    mut stop: watch::Receiver<bool>,
) {
    let mut status = handle.subscribe_status();
    let mut serving = None;
    loop {
        let now = handle.check_quorum_reachable().is_ok() && !*stop.borrow();
        if serving != Some(now) {
            let state = if now {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status(PAYMENTS_SERVICE, state).await;
            serving = Some(now);
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { break },
            _ = stop.changed() => {}
            // Leader contact ages without any status change: look again every tick.
            _ = tokio::time::sleep(handle.config().tick()) => {}
        }
    }
}

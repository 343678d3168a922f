//! HTTP endpoint for Prometheus and orchestrators: `/metrics`, `/livez`, `/readyz`.
//!
//! The full telemetry (OpenTelemetry traces, histograms) arrives with its own milestone; this
//! exports the gauges an operator needs to find the leader and spot a minority node.

use std::fmt::Write;
use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use quorate_node::NodeHandle;
use quorate_raft_core::Role;
use tokio::net::TcpListener;

#[derive(Clone)]
struct AppState {
    handle: NodeHandle,
    counters: quorate_admin::CounterSource,
    /// For what the admin service measured of its peers (their clocks).
    admin: quorate_admin::AdminService,
}

pub async fn serve(
    listener: TcpListener,
    handle: NodeHandle,
    counters: quorate_admin::CounterSource,
    admin: quorate_admin::AdminService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            handle,
            counters,
            admin,
        });
    // TCP_NODELAY on every accepted connection, as on the gRPC ports (see
    // `quorate_transport::incoming`): a scrape must not wait for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on a metrics connection");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Ready when this node can serve linearizable requests: it has a leader it can reach.
async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    match state.handle.check_quorum_reachable() {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn metrics(State(state): State<AppState>) -> String {
    let handle = &state.handle;
    let status = handle.status();
    let raft = &status.raft;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge("quorate_term", "Current Raft term.", raft.term as f64);
    gauge(
        "quorate_is_leader",
        "1 if this node is the leader.",
        f64::from(u8::from(raft.role == Role::Leader)),
    );
    gauge(
        "quorate_has_leader",
        "1 if this node knows a leader of its term.",
        f64::from(u8::from(raft.leader_id.is_some())),
    );
    gauge(
        "quorate_leader_id",
        "The leader this node knows (0: none).",
        raft.leader_id.unwrap_or(0) as f64,
    );
    gauge(
        "quorate_commit_index",
        "Highest committed index known.",
        raft.commit_index as f64,
    );
    gauge(
        "quorate_applied_index",
        "Highest applied index.",
        raft.applied_index as f64,
    );
    gauge(
        "quorate_last_log_index",
        "Last log index.",
        raft.last_log_index as f64,
    );
    gauge(
        "quorate_quorum_active",
        "Leader only: 1 if a majority answered within the election timeout.",
        f64::from(u8::from(raft.quorum_active)),
    );
    gauge(
        "quorate_lease_remaining_seconds",
        "Leader only: how long the leader lease still holds.",
        status.lease_remaining().as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "# HELP quorate_role Current role (1 for the role the node has).\n# TYPE quorate_role gauge"
    );
    for role in [
        Role::Follower,
        Role::PreCandidate,
        Role::Candidate,
        Role::Leader,
        Role::Learner,
    ] {
        let _ = writeln!(
            out,
            "quorate_role{{role=\"{role}\"}} {}",
            u8::from(raft.role == role)
        );
    }
    let _ = writeln!(
        out,
        "# HELP quorate_peer_rpc_failures_total Failed RPCs to each peer.\n\
         # TYPE quorate_peer_rpc_failures_total counter"
    );
    for (peer, stats) in handle.peer_stats() {
        let _ = writeln!(
            out,
            "quorate_peer_rpc_failures_total{{peer=\"{peer}\"}} {}",
            stats.failures
        );
    }
    {
        let c = (state.counters)();
        for (name, help, value) in [
            (
                "quorate_stale_token_rejections_total",
                "Submits and keep-alives refused for a stale lease token.",
                c.stale_token_rejections,
            ),
            (
                "quorate_idempotent_replays_total",
                "Submits answered from the idempotency table.",
                c.idempotent_replays,
            ),
            (
                "quorate_no_quorum_refusals_total",
                "Requests this node refused with NO_QUORUM.",
                c.no_quorum_refusals,
            ),
            (
                "quorate_invalid_transitions_total",
                "Submits refused by the payment lifecycle.",
                c.invalid_transitions,
            ),
            (
                "quorate_idempotency_key_reuse_total",
                "Idempotency keys reused with another request.",
                c.key_reuse_rejections,
            ),
            (
                "quorate_fencing_rejections_total",
                "Entries rejected at apply for a non-increasing fencing token.",
                c.fencing_rejections,
            ),
            (
                "quorate_leader_clock_corrections_total",
                "Commands whose leader wall clock was outside what the replicated clock allows.",
                c.leader_clock_corrections,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP quorate_peer_clock_offset_ms Each peer's wall clock minus this node's, from the \
         last probe.\n# TYPE quorate_peer_clock_offset_ms gauge"
    );
    for (peer, offset) in state.admin.clock_offsets() {
        let _ = writeln!(
            out,
            "quorate_peer_clock_offset_ms{{peer=\"{peer}\"}} {offset}"
        );
    }
    out
}

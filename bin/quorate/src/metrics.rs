//! HTTP endpoint for Prometheus and orchestrators: `/metrics`, `/livez`, `/readyz`.
//!
//! `/metrics` encodes the node's registry: the histograms and counters recorded where the
//! work happens (`quorate_telemetry::Metrics`), and the values [`NodeCollector`] reads from
//! the node at each scrape. The README's "Metrics and alerts" lists them; the alert rules
//! under `deploy/prometheus/` use them.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use quorate_node::NodeHandle;
use quorate_raft_core::Role;
use quorate_telemetry::scrape::{self, Collector, DescriptorEncoder};
use quorate_telemetry::Registry;
use tokio::net::TcpListener;

/// The metrics endpoint's state.
#[derive(Clone)]
struct AppState {
    handle: NodeHandle,
    registry: Arc<Registry>,
}

/// What `/metrics` reads from the node at each scrape.
pub struct NodeCollector {
    pub handle: NodeHandle,
    pub counters: quorate_admin::CounterSource,
    /// For what the admin service measured of its peers (their clocks).
    pub admin: quorate_admin::AdminService,
    /// The node's storage, whose size is reported.
    pub store: quorate_log_store::LogStore,
    /// The client port's limits: what they hold now and what they refused.
    pub admission: quorate_security::admission::AdmissionLayer,
    /// The roles file's check: the calls it refused for want of credentials.
    pub auth: quorate_security::auth::AuthLayer,
}

impl fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCollector")
            .field("node", &self.handle.id())
            .field("data_dir", &self.store.path())
            .finish()
    }
}

/// The registry `/metrics` serves: the node's recorded metrics and its per-scrape values.
pub fn registry(collector: NodeCollector) -> Registry {
    let mut registry = Registry::default();
    collector.handle.config().metrics.register(&mut registry);
    registry.register_collector(Box::new(collector));
    registry
}

pub async fn serve(
    listener: TcpListener,
    handle: NodeHandle,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            handle,
            registry: Arc::new(registry),
        });
    // TCP_NODELAY on every accepted connection, as on the gRPC ports (see
    // `quorate_security::tls::incoming`): a scrape must not wait for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on a metrics connection");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Ready when this node can serve linearizable requests now: it leads with a quorum, or
/// follows a leader it heard from recently; and it is not stopping, removed or corrupt.
async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if let Some(reason) = state.handle.status().corrupt {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("CORRUPT: {reason}\n"),
        );
    }
    match state.handle.check_quorum_reachable() {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Live while the Ready loop turns: it publishes the node's status at least every tick, so a
/// status older than [`wedged_after`] means the loop is stuck (a disk that stopped answering,
/// a deadlock) and the process should be restarted.
async fn livez(State(state): State<AppState>) -> (StatusCode, String) {
    let age = state.handle.status().published_at.elapsed();
    let limit = wedged_after(state.handle.config().election_timeout);
    if age > limit {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the Ready loop has not turned for {} ms (limit {} ms): the node is wedged\n",
                age.as_millis(),
                limit.as_millis()
            ),
        );
    }
    (StatusCode::OK, "ok\n".into())
}

/// How long the Ready loop may go without a turn before `/livez` fails: ten election
/// timeouts, and never under 10 s (an fsync that slow already failed every request).
fn wedged_after(election_timeout: Duration) -> Duration {
    (election_timeout * 10).max(Duration::from_secs(10))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match scrape::encode(&state.registry) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, scrape::CONTENT_TYPE)],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "cannot encode the metrics\n".to_string(),
        ),
    }
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let enc = &mut enc;
        let handle = &self.handle;
        let status = handle.status();
        let raft = &status.raft;
        let leader = raft.role == Role::Leader;
        scrape::gauge(enc, "quorate_term", "Current Raft term.", raft.term as f64)?;
        scrape::gauge(
            enc,
            "quorate_is_leader",
            "1 if this node is the leader.",
            flag(leader),
        )?;
        scrape::gauge(
            enc,
            "quorate_has_leader",
            "1 if this node knows a leader of its term.",
            flag(status.has_leader()),
        )?;
        scrape::gauge(
            enc,
            "quorate_leader_id",
            "The leader this node knows (0: none).",
            raft.leader_id.unwrap_or(0) as f64,
        )?;
        scrape::gauges(
            enc,
            "quorate_role",
            "1 for the role this node has.",
            "role",
            [
                Role::Follower,
                Role::PreCandidate,
                Role::Candidate,
                Role::Leader,
                Role::Learner,
            ]
            .map(|role| (role.to_string(), flag(raft.role == role))),
        )?;
        scrape::gauge(
            enc,
            "quorate_quorum_reachable",
            "1 if this node can serve linearizable requests now: it leads with a quorum, or \
             heard from its leader recently (0: it refuses with NO_QUORUM).",
            flag(handle.check_quorum_reachable().is_ok()),
        )?;
        scrape::gauge(
            enc,
            "quorate_lease_valid",
            "Leader only: 1 while the leader lease holds (reads served without a round trip).",
            flag(leader && raft.lease_remaining_ticks > 0),
        )?;
        scrape::gauge(
            enc,
            "quorate_lease_remaining_seconds",
            "Leader only: how long the leader lease still holds.",
            status.lease_remaining().as_secs_f64(),
        )?;
        for (name, help, value) in [
            (
                "quorate_commit_index",
                "Highest committed index known.",
                raft.commit_index,
            ),
            (
                "quorate_applied_index",
                "Highest index applied to the state machine.",
                raft.applied_index,
            ),
            (
                "quorate_last_log_index",
                "Last log index.",
                raft.last_log_index,
            ),
            (
                "quorate_first_log_index",
                "First index still in the log (entries before it were compacted).",
                raft.first_log_index,
            ),
            (
                "quorate_membership_index",
                "Index of the membership entry in force (0: the initial one).",
                status.membership_index,
            ),
        ] {
            scrape::gauge(enc, name, help, value as f64)?;
        }
        scrape::gauges(
            enc,
            "quorate_members",
            "Members of the membership in force, by kind (outgoing: voters of the old half of a \
             joint configuration).",
            "kind",
            [
                ("voter".to_string(), raft.conf.voters.len() as f64),
                ("learner".to_string(), raft.conf.learners.len() as f64),
                (
                    "outgoing".to_string(),
                    raft.conf.voters_outgoing.len() as f64,
                ),
            ],
        )?;
        scrape::gauge(
            enc,
            "quorate_corruption_alarm",
            "1 if this node found its state in conflict with the cluster's: it takes no part \
             and refuses every request until an operator acts.",
            flag(status.corrupt.is_some()),
        )?;
        scrape::gauge(
            enc,
            "quorate_divergence_unresolved",
            "1 while the corruption check finds replicas whose event logs differ with no \
             majority among them: this node refuses writes.",
            flag(status.writes_held.is_some()),
        )?;
        scrape::gauge(
            enc,
            "quorate_data_size_bytes",
            "Bytes of the store's data files: SST files of every column family and the \
             write-ahead log (as Status.data_size_bytes).",
            self.store.data_size_bytes().unwrap_or(0) as f64,
        )?;

        let admitted = self.admission.stats();
        for (name, help, value) in [
            (
                "quorate_client_requests_in_flight",
                "Calls the client port is serving (--max-concurrent-requests bounds them).",
                admitted.in_flight,
            ),
            (
                "quorate_client_requests_queued",
                "Calls waiting for a slot (--max-queued-requests bounds them).",
                admitted.queued,
            ),
            (
                "quorate_watch_streams",
                "Watch streams open on this node (--max-watches bounds them).",
                admitted.watches,
            ),
        ] {
            scrape::gauge(enc, name, help, value as f64)?;
        }
        scrape::counters(
            enc,
            "quorate_requests_shed",
            "Calls the client port refused with RESOURCE_EXHAUSTED, by the limit they met \
             (requests: the queue was full or the wait ran out; watches, watches_per_client).",
            "limit",
            [
                ("requests".to_string(), admitted.shed_requests),
                ("watches".to_string(), admitted.shed_watches),
                (
                    "watches_per_client".to_string(),
                    admitted.shed_client_watches,
                ),
            ],
        )?;

        scrape::counters(
            enc,
            "quorate_requests_deadline_exceeded",
            "Calls the client port answered DEADLINE_EXCEEDED because their own deadline \
             (grpc-timeout) passed, by the stage they were at (queued: waiting for a slot, \
             nothing done; serving: the outcome of a write is unknown).",
            "stage",
            [
                ("queued".to_string(), admitted.deadline_queued),
                ("serving".to_string(), admitted.deadline_serving),
            ],
        )?;

        scrape::counter(
            enc,
            "quorate_requests_unauthenticated",
            "Calls the client port refused with UNAUTHENTICATED: no client certificate or \
             bearer token that the roles file (--auth-file) knows. Checked before the limits, so \
             these never took a slot.",
            self.auth.unauthenticated(),
        )?;

        let events = &raft.events;
        for (name, help, value) in [
            (
                "quorate_pre_elections_started",
                "Pre-votes this node started.",
                events.pre_elections_started,
            ),
            (
                "quorate_elections_started",
                "Elections this node started (new terms).",
                events.elections_started,
            ),
            (
                "quorate_elections_won",
                "Elections this node won.",
                events.elections_won,
            ),
            (
                "quorate_leader_changes_seen",
                "Changes of the leader this node knows.",
                events.leader_changes_seen,
            ),
            (
                "quorate_check_quorum_step_downs",
                "Times this node, leading, stepped down because a majority stopped answering.",
                events.check_quorum_step_downs,
            ),
            (
                "quorate_pre_votes_refused",
                "Pre-vote requests this node refused.",
                events.pre_votes_refused,
            ),
            (
                "quorate_votes_refused",
                "Vote requests this node refused.",
                events.votes_refused,
            ),
        ] {
            scrape::counter(enc, name, help, value)?;
        }

        let c = (self.counters)();
        scrape::counters(
            enc,
            "quorate_fencing_rejections",
            "Writes refused for their fencing token: stale_lease_token (a Submit or keep-alive \
             with a lease token that is no longer current), token_not_increasing (an entry \
             refused at apply, its token not above the last applied one).",
            "cause",
            [
                ("stale_lease_token".to_string(), c.stale_token_rejections),
                ("token_not_increasing".to_string(), c.fencing_rejections),
            ],
        )?;
        for (name, help, value) in [
            (
                "quorate_idempotent_replays",
                "Submits answered from the idempotency table.",
                c.idempotent_replays,
            ),
            (
                "quorate_no_quorum_refusals",
                "Requests this node refused with NO_QUORUM.",
                c.no_quorum_refusals,
            ),
            (
                "quorate_invalid_transitions",
                "Submits refused by the payment lifecycle.",
                c.invalid_transitions,
            ),
            (
                "quorate_idempotency_key_reuse",
                "Idempotency keys reused with another request.",
                c.key_reuse_rejections,
            ),
            (
                "quorate_leader_clock_corrections",
                "Commands whose leader wall clock was outside what the replicated clock allows.",
                c.leader_clock_corrections,
            ),
        ] {
            scrape::counter(enc, name, help, value)?;
        }

        let views = quorate_admin::peer_views(handle, &status);
        scrape::gauges(
            enc,
            "quorate_peer_reachable",
            "1 if an RPC this node sent the peer succeeded within the election timeout.",
            "peer",
            views
                .iter()
                .map(|v| (v.node_id.to_string(), flag(v.reachable))),
        )?;
        let stats = handle.peer_stats();
        scrape::counters(
            enc,
            "quorate_peer_rpc_failures",
            "Failed RPCs to each peer.",
            "peer",
            stats.iter().map(|(id, s)| (id.to_string(), s.failures)),
        )?;
        scrape::counters(
            enc,
            "quorate_peer_messages_dropped",
            "Messages to each peer dropped unsent (its queue was full or it was backed off).",
            "peer",
            stats.iter().map(|(id, s)| (id.to_string(), s.dropped)),
        )?;
        scrape::gauges(
            enc,
            "quorate_peer_clock_offset_seconds",
            "Each peer's wall clock minus this node's, from the last probe.",
            "peer",
            self.admin
                .clock_offsets()
                .into_iter()
                .map(|(peer, ms)| (peer.to_string(), ms as f64 / 1000.0)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wedged_loop_is_declared_after_ten_election_timeouts_and_never_under_ten_seconds() {
        assert_eq!(
            wedged_after(Duration::from_secs(1)),
            Duration::from_secs(10)
        );
        assert_eq!(
            wedged_after(Duration::from_secs(3)),
            Duration::from_secs(30)
        );
        assert_eq!(
            wedged_after(Duration::from_millis(100)),
            Duration::from_secs(10)
        );
    }
}

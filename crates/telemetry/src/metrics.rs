//! The metrics recorded where the work happens: latency histograms and event counters.
//!
//! One [`Metrics`] per node, cloned into whatever records (the Ready loop, the transport, the
//! gRPC layer); cloning shares the same series. A node registers it once into the
//! [`Registry`] its `/metrics` endpoint encodes. What a node knows only as state (role, term,
//! indexes, the core's election counts) is read at each scrape instead: see
//! [`crate::scrape`].

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Buckets from 100 µs to about 3.3 s, doubling (fsync, apply, peer round trips).
fn fast_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// Buckets from 500 µs to about 16 s, doubling (requests, which may wait for an election).
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// Labels of a served gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrpcLabels {
    pub(crate) grpc_service: String,
    pub(crate) grpc_method: String,
    pub(crate) grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: u64,
}

/// What happened to a snapshot.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// This node compacted its log behind a snapshot of its machine.
    Taken,
    /// This leader sent a snapshot to a follower.
    Sent,
    /// This node installed a snapshot a leader sent.
    Installed,
}

impl SnapshotEvent {
    fn label(self) -> &'static str {
        match self {
            SnapshotEvent::Taken => "taken",
            SnapshotEvent::Sent => "sent",
            SnapshotEvent::Installed => "installed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SnapshotLabels {
    event: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A node's recorded metrics. Cheap to clone; clones share the series.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    wal_fsync: Histogram,
    apply: Histogram,
    proposal_commit: Histogram,
    grpc_server: HistogramFamily<GrpcLabels>,
    peer_rtt: HistogramFamily<PeerLabels>,
    snapshots: Family<SnapshotLabels, Counter>,
    proposals_failed: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            inner: Arc::new(Inner {
                wal_fsync: fast_buckets(),
                apply: fast_buckets(),
                proposal_commit: request_buckets(),
                grpc_server: Family::new_with_constructor(request_buckets),
                peer_rtt: Family::new_with_constructor(fast_buckets),
                snapshots: Family::default(),
                proposals_failed: Family::default(),
            }),
        };
        // Every event's series exists from the start, at 0: `increase()` sees the first one.
        for event in [
            SnapshotEvent::Taken,
            SnapshotEvent::Sent,
            SnapshotEvent::Installed,
        ] {
            let _ = metrics.inner.snapshots.get_or_create(&SnapshotLabels {
                event: event.label(),
            });
        }
        metrics
    }
}

impl Metrics {
    /// Registers every series into `registry` (once per node).
    pub fn register(&self, registry: &mut Registry) {
        let m = &self.inner;
        registry.register_with_unit(
            "quorate_wal_fsync_duration",
            "Time to write and fsync one batch of log entries (the Raft hard state with them)",
            Unit::Seconds,
            m.wal_fsync.clone(),
        );
        registry.register_with_unit(
            "quorate_apply_duration",
            "Time to apply one batch of committed entries to the payments state machine",
            Unit::Seconds,
            m.apply.clone(),
        );
        registry.register_with_unit(
            "quorate_proposal_commit_duration",
            "Leader only: time from a proposal to its commit (replicated and fsynced by a \
             majority)",
            Unit::Seconds,
            m.proposal_commit.clone(),
        );
        registry.register_with_unit(
            "quorate_grpc_server_handling",
            "Time to serve a gRPC call until its response headers, by service, method and \
             status code (streams: until the stream opened)",
            Unit::Seconds,
            m.grpc_server.clone(),
        );
        registry.register_with_unit(
            "quorate_peer_round_trip_time",
            "Round trip of successful RPCs to each peer",
            Unit::Seconds,
            m.peer_rtt.clone(),
        );
        registry.register(
            "quorate_proposals_failed",
            "Writes proposed through this node that failed, by the error's reason (NO_QUORUM, \
             OUTCOME_UNKNOWN, CORRUPT, ...)",
            m.proposals_failed.clone(),
        );
        registry.register(
            "quorate_snapshots",
            "Snapshots taken (log compacted), sent to followers and installed from a leader",
            m.snapshots.clone(),
        );
    }

    /// One batch of entries written with fsync.
    pub fn observe_fsync(&self, took: Duration) {
        self.inner.wal_fsync.observe(took.as_secs_f64());
    }

    /// One batch of committed entries applied.
    pub fn observe_apply(&self, took: Duration) {
        self.inner.apply.observe(took.as_secs_f64());
    }

    /// A proposal of this leader committed `took` after it was proposed.
    pub fn observe_proposal_commit(&self, took: Duration) {
        self.inner.proposal_commit.observe(took.as_secs_f64());
    }

    /// A successful RPC to `peer` took `rtt`.
    pub fn observe_peer_rtt(&self, peer: u64, rtt: Duration) {
        self.inner
            .peer_rtt
            .get_or_create(&PeerLabels { peer })
            .observe(rtt.as_secs_f64());
    }

    /// A write proposed through this node failed with the error reason `reason`.
    pub fn count_proposal_failed(&self, reason: &'static str) {
        self.inner
            .proposals_failed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Something happened to a snapshot.
    pub fn count_snapshot(&self, event: SnapshotEvent) {
        self.inner
            .snapshots
            .get_or_create(&SnapshotLabels {
                event: event.label(),
            })
            .inc();
    }

    pub(crate) fn observe_grpc(&self, labels: &GrpcLabels, took: Duration) {
        self.inner
            .grpc_server
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_series_appear_in_the_exposition_with_base_units() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.observe_fsync(Duration::from_millis(3));
        metrics.observe_peer_rtt(2, Duration::from_micros(400));
        metrics.count_snapshot(SnapshotEvent::Sent);
        metrics.clone().count_snapshot(SnapshotEvent::Sent);
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE quorate_wal_fsync_duration_seconds histogram"));
        assert!(text.contains("quorate_wal_fsync_duration_seconds_count 1"));
        assert!(text.contains("quorate_peer_round_trip_time_seconds_count{peer=\"2\"} 1"));
        // (Clones share the series.)
        assert!(
            text.contains("quorate_snapshots_total{event=\"sent\"} 2"),
            "{text}"
        );
    }
}

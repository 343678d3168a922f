//! What this node has observed of each peer: the raw material of the split-brain report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quorate_raft_core::{NodeId, Term};

/// One peer, as seen from this node.
#[derive(Clone, Debug, Default)]
pub struct PeerStats {
    /// When an RPC this node sent to the peer last succeeded.
    pub last_sent_ok: Option<Instant>,
    /// When this node last received an RPC from the peer.
    pub last_received: Option<Instant>,
    /// Smoothed round-trip time of successful RPCs.
    pub rtt: Option<Duration>,
    /// The term the peer reported in its last reply or request.
    pub peer_term: Option<Term>,
    /// RPCs that failed since the last success.
    pub consecutive_failures: u64,
    /// All failed RPCs.
    pub failures: u64,
    /// Messages dropped (queue full, peer backed off).
    pub dropped: u64,
    /// The last error, for operators.
    pub last_error: Option<String>,
}

/// Per-peer statistics, shared by the sending and receiving sides.
#[derive(Debug, Default)]
pub struct StatsTable {
    peers: Mutex<BTreeMap<NodeId, PeerStats>>,
    /// Where round trips are recorded as a histogram too.
    metrics: quorate_telemetry::Metrics,
}

impl StatsTable {
    /// A table that also records round trips into `metrics`.
    pub fn new(metrics: quorate_telemetry::Metrics) -> Self {
        StatsTable {
            peers: Mutex::default(),
            metrics,
        }
    }

    fn update(&self, peer: NodeId, f: impl FnOnce(&mut PeerStats)) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        f(peers.entry(peer).or_default());
    }

    /// An RPC to `peer` succeeded after `rtt`; the reply carried `term`.
    pub fn sent_ok(&self, peer: NodeId, rtt: Duration, term: Option<Term>) {
        self.metrics.observe_peer_rtt(peer, rtt);
        self.update(peer, |s| {
            s.last_sent_ok = Some(Instant::now());
            // Exponentially weighted: recent samples count for a quarter.
            s.rtt = Some(match s.rtt {
                Some(old) => (old * 3 + rtt) / 4,
                None => rtt,
            });
            if term.is_some() {
                s.peer_term = term;
            }
            s.consecutive_failures = 0;
        });
    }

    /// An RPC to `peer` failed.
    pub fn sent_failed(&self, peer: NodeId, error: String) {
        self.update(peer, |s| {
            s.consecutive_failures += 1;
            s.failures += 1;
            s.last_error = Some(error);
        });
    }

    /// A message to `peer` was dropped without being sent.
    pub fn dropped(&self, peer: NodeId) {
        self.update(peer, |s| s.dropped += 1);
    }

    /// An RPC from `peer` arrived, in `term` (0 when the RPC carries no term: probes and
    /// forwarded operator calls, which must not erase what Raft traffic reported).
    pub fn received(&self, peer: NodeId, term: Term) {
        self.update(peer, |s| {
            s.last_received = Some(Instant::now());
            if term > 0 {
                s.peer_term = Some(term);
            }
        });
    }

    /// `peer` reported its term in an answer that is not Raft traffic (a probe).
    pub fn reported_term(&self, peer: NodeId, term: Term) {
        if term > 0 {
            self.update(peer, |s| s.peer_term = Some(term));
        }
    }

    /// A copy of every peer's statistics.
    pub fn snapshot(&self) -> BTreeMap<NodeId, PeerStats> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_a_term_keeps_the_last_reported_one() {
        let table = StatsTable::default();
        table.received(2, 7);
        table.received(2, 0);
        assert_eq!(table.snapshot()[&2].peer_term, Some(7));
        table.reported_term(2, 8);
        table.reported_term(2, 0);
        assert_eq!(table.snapshot()[&2].peer_term, Some(8));
    }

    #[test]
    fn a_failure_counts_until_the_next_success() {
        let table = StatsTable::default();
        table.sent_failed(3, "connection refused".into());
        table.sent_failed(3, "connection refused".into());
        let s = &table.snapshot()[&3];
        assert_eq!((s.consecutive_failures, s.failures), (2, 2));
        assert_eq!(s.last_error.as_deref(), Some("connection refused"));
        table.sent_ok(3, Duration::from_millis(1), None);
        let s = &table.snapshot()[&3];
        assert_eq!((s.consecutive_failures, s.failures), (0, 2));
        assert!(s.last_sent_ok.is_some());
    }
}

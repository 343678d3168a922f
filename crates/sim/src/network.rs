//! The simulated network: per-link delays, loss, duplication, reordering, and symmetric or
//! one-way partitions.

use std::collections::BTreeSet;

use quorate_raft_core::rng::SplitMix64;
use quorate_raft_core::{Message, NodeId};

/// How badly the network behaves right now. Times in microticks (1000 per nominal tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weather {
    /// Messages lost, per mille.
    pub drop_per_mille: u64,
    /// Messages delivered twice, per mille.
    pub duplicate_per_mille: u64,
    /// Usual one-way delay range.
    pub delay_min: u64,
    /// Upper bound (exclusive) of the usual delay.
    pub delay_max: u64,
    /// Messages delayed by a spike (reordering them behind later ones), per mille.
    pub spike_per_mille: u64,
    /// Longest spike.
    pub spike_max: u64,
}

impl Weather {
    /// A healthy LAN: no loss, sub-tick delays.
    pub fn calm() -> Self {
        Weather {
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            delay_min: 20,
            delay_max: 300,
            spike_per_mille: 0,
            spike_max: 0,
        }
    }

    /// Random bad weather.
    pub fn stormy(rng: &mut SplitMix64) -> Self {
        Weather {
            drop_per_mille: rng.range(0, 200),
            duplicate_per_mille: rng.range(0, 50),
            delay_min: 20,
            delay_max: rng.range(200, 2_500),
            spike_per_mille: rng.range(0, 60),
            spike_max: rng.range(1_000, 8_000),
        }
    }
}

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetworkStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Lost to loss or partitions.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
}

/// Links and their weather.
#[derive(Clone, Debug)]
pub struct Network {
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Current behaviour.
    pub weather: Weather,
    /// Counters.
    pub stats: NetworkStats,
}

impl Network {
    /// A calm network with no partition.
    pub fn new() -> Self {
        Network {
            blocked: BTreeSet::new(),
            weather: Weather::calm(),
            stats: NetworkStats::default(),
        }
    }

    /// Whether `from` → `to` drops everything.
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// The delivery delays of `message` sent now: empty if lost, two if duplicated.
    pub fn route(&mut self, rng: &mut SplitMix64, message: &Message) -> Vec<u64> {
        self.route_between(rng, message.from, message.to)
    }

    /// The delivery delays of anything `from` sends `to` now (a message, a forwarded write):
    /// empty if lost, two if duplicated.
    pub fn route_between(&mut self, rng: &mut SplitMix64, from: NodeId, to: NodeId) -> Vec<u64> {
        self.stats.sent += 1;
        let w = self.weather;
        if self.is_blocked(from, to) || rng.chance(w.drop_per_mille, 1000) {
            self.stats.dropped += 1;
            return Vec::new();
        }
        let delay = |rng: &mut SplitMix64| {
            let base = rng.range(w.delay_min, w.delay_max);
            if rng.chance(w.spike_per_mille, 1000) {
                base + rng.range(0, w.spike_max)
            } else {
                base
            }
        };
        let mut delays = vec![delay(rng)];
        if rng.chance(w.duplicate_per_mille, 1000) {
            self.stats.duplicated += 1;
            delays.push(delay(rng));
        }
        delays
    }

    /// Splits the nodes into `side` and the rest, both ways.
    pub fn partition(&mut self, side: &BTreeSet<NodeId>, all: &[NodeId]) {
        for &a in side {
            for &b in all.iter().filter(|b| !side.contains(b)) {
                self.blocked.insert((a, b));
                self.blocked.insert((b, a));
            }
        }
    }

    /// Cuts one direction of one link.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// A short description of the partitions, for traces.
    pub fn describe(&self) -> String {
        let links: Vec<String> = self
            .blocked
            .iter()
            .map(|(a, b)| format!("{a}-x>{b}"))
            .collect();
        if links.is_empty() {
            "none".into()
        } else {
            links.join(",")
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        Network::new()
    }
}

//! Static configuration of a node.

use crate::error::{Error, Result};
use crate::types::NodeId;

/// A deliberately broken variant of the protocol. Only the simulator uses these, to prove that
/// its invariant checkers catch each class of bug.
#[cfg(feature = "bug-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// Become leader as soon as the vote requests are out, without counting votes: the bug of
    /// the incident that started this project.
    ElectionWithoutQuorum,
    /// Commit an entry of an older term once a majority stores it (Raft figure 8).
    CommitOldTermByCount,
    /// Do not require an fsync when only the term or vote changed, so a vote can be granted
    /// and then forgotten by a crash.
    VoteNotPersisted,
    /// Serve lease reads without check-quorum (and so without leader stickiness).
    LeaseReadWithoutCheckQuorum,
    /// A node rejoining after a lost disk votes and campaigns at once, as if it remembered
    /// every vote and acknowledgement it gave before the loss.
    AmnesiacVoter,
    /// A follower's append acknowledgements leave before its entries are persisted, so a
    /// crash can lose an entry the leader already counted towards a commit.
    AckBeforePersist,
    /// A follower installs whatever snapshot the leader sends, even one no newer than its
    /// commit index (a duplicated or delayed InstallSnapshot), rewinding committed state.
    SnapshotOverwritesNewerLog,
    /// The log may be compacted up to the commit index rather than the applied index, so a
    /// snapshot can claim entries its state machine never applied.
    CompactBeyondApplied,
    /// A change of several voters at once takes effect in one step, without a joint
    /// configuration: the old and the new majorities need not intersect.
    SingleStepTwoVoters,
    /// Progress of learners counts towards the commit index, as if they were voters.
    LearnerCountedInQuorum,
    /// A node decides with the latest *committed* configuration in its log rather than the
    /// latest one: one that has not learnt of a commit yet uses a configuration the cluster
    /// has left.
    ConfEffectiveOnCommit,
}

/// How long, by default, a proposal may wait to be applied before its outcome is reported
/// unknown, in milliseconds: the server's `--request-timeout`, and how long the simulator's
/// lease-expiry task waits for its proposals (the one definition both use).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;

/// How a node behaves. Times are in ticks; the driver decides how long a tick is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Lower bound of the randomized election timeout. Also the window in which a follower
    /// that heard from its leader ignores vote requests, and in which a leader must hear from
    /// a quorum to keep its leadership (check-quorum).
    pub election_timeout_min_ticks: u32,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_timeout_max_ticks: u32,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval_ticks: u32,
    /// Run a pre-vote round before a real election, so a node that was cut off does not
    /// inflate its term and depose a healthy leader when it returns.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within the minimum election timeout refuses
    /// proposals and steps down; a follower that heard from its leader within that window
    /// ignores vote requests (leader stickiness).
    pub check_quorum: bool,
    /// Allow reads confirmed by the leader lease instead of a quorum round. Requires
    /// `check_quorum`: without stickiness, followers could elect a new leader while the old
    /// lease is still valid.
    pub lease_reads: bool,
    /// The most, in ticks, by which the clocks of two nodes can disagree over one minimum
    /// election timeout. The lease is shortened by this much.
    pub max_clock_drift_ticks: u32,
    /// How many append messages may be in flight to one follower.
    pub max_inflight_messages: usize,
    /// Upper bound on the entry bytes of one append message (at least one entry is sent).
    pub max_bytes_per_message: u64,
    /// Upper bound on the entry bytes handed to the state machine in one `Ready`.
    pub max_apply_bytes_per_ready: u64,
    /// Largest proposal accepted, in bytes.
    pub max_proposal_bytes: u64,
    /// How many entries behind the leader's last one a learner may be and still be promoted
    /// to voter (a voter far behind cannot help commit for a while, and a majority that
    /// needs it stalls).
    pub max_learner_lag_to_promote: u64,
    /// Seed of the node's random number generator (election timeouts). Runs with equal
    /// seeds and equal inputs behave identically.
    pub seed: u64,
    /// A protocol bug to inject (simulator only).
    #[cfg(feature = "bug-injection")]
    pub injected_bug: Option<InjectedBug>,
}

impl Default for Config {
    /// Ten-tick minimum election timeout, heartbeats every tick: with 100 ms ticks that is
    /// etcd's 100 ms / 1 s, suited to a LAN.
    fn default() -> Self {
        Config {
            id: 0,
            election_timeout_min_ticks: 10,
            election_timeout_max_ticks: 20,
            heartbeat_interval_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            lease_reads: true,
            max_clock_drift_ticks: 1,
            max_inflight_messages: 256,
            max_bytes_per_message: 1 << 20,
            max_apply_bytes_per_ready: 4 << 20,
            max_proposal_bytes: 1 << 20,
            max_learner_lag_to_promote: 1000,
            seed: 0,
            #[cfg(feature = "bug-injection")]
            injected_bug: None,
        }
    }
}

impl Config {
    /// A default configuration for node `id`.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            seed: id,
            ..Config::default()
        }
    }

    /// How long a leader lease lasts after the round it is measured from was sent.
    ///
    /// A follower ignores vote requests for `election_timeout_min_ticks` of *its* ticks after
    /// hearing from the leader; it may start counting up to one tick late and its clock may run
    /// faster by `max_clock_drift_ticks`. The lease subtracts both, so it always ends before any
    /// member of the quorum that acknowledged the round can vote for someone else.
    pub fn lease_ticks(&self) -> u32 {
        self.election_timeout_min_ticks
            .saturating_sub(self.max_clock_drift_ticks)
            .saturating_sub(1)
    }

    /// Checks the configuration; a node refuses to start with an invalid one.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig(reason));
        if self.id == 0 {
            return invalid("id must be non-zero".into());
        }
        if self.heartbeat_interval_ticks == 0 {
            return invalid("heartbeat_interval_ticks must be at least 1".into());
        }
        if self.election_timeout_min_ticks <= self.heartbeat_interval_ticks {
            return invalid(format!(
                "election_timeout_min_ticks ({}) must exceed heartbeat_interval_ticks ({})",
                self.election_timeout_min_ticks, self.heartbeat_interval_ticks
            ));
        }
        if self.election_timeout_max_ticks <= self.election_timeout_min_ticks {
            return invalid(format!(
                "election_timeout_max_ticks ({}) must exceed election_timeout_min_ticks ({})",
                self.election_timeout_max_ticks, self.election_timeout_min_ticks
            ));
        }
        if self.lease_reads && !self.check_quorum && !self.bug_allows_lease_without_check_quorum() {
            return invalid(
                "lease_reads requires check_quorum: without leader stickiness a new leader can be \
                 elected while the old lease is still valid"
                    .into(),
            );
        }
        if self.lease_reads && self.lease_ticks() <= self.heartbeat_interval_ticks {
            return invalid(format!(
                "lease of {} ticks (election_timeout_min_ticks - max_clock_drift_ticks - 1) must \
                 exceed heartbeat_interval_ticks ({}), or the lease would lapse between heartbeats",
                self.lease_ticks(),
                self.heartbeat_interval_ticks
            ));
        }
        if self.max_inflight_messages == 0 {
            return invalid("max_inflight_messages must be at least 1".into());
        }
        if self.max_bytes_per_message == 0 || self.max_apply_bytes_per_ready == 0 {
            return invalid("byte limits must be non-zero".into());
        }
        Ok(())
    }

    #[cfg(feature = "bug-injection")]
    fn bug_allows_lease_without_check_quorum(&self) -> bool {
        self.injected_bug == Some(InjectedBug::LeaseReadWithoutCheckQuorum)
    }

    #[cfg(not(feature = "bug-injection"))]
    fn bug_allows_lease_without_check_quorum(&self) -> bool {
        false
    }

    /// Whether `bug` is injected into this node.
    #[cfg(feature = "bug-injection")]
    pub(crate) fn has_bug(&self, bug: InjectedBug) -> bool {
        self.injected_bug == Some(bug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        Config::new(1).validate().unwrap();
    }

    #[test]
    fn lease_reads_require_check_quorum() {
        let config = Config {
            check_quorum: false,
            ..Config::new(1)
        };
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("requires check_quorum"), "{err}");
        // Without lease reads, turning check-quorum off is allowed.
        Config {
            lease_reads: false,
            ..config
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn lease_is_shorter_than_minimum_election_timeout_by_drift_and_one_tick() {
        let config = Config {
            election_timeout_min_ticks: 10,
            max_clock_drift_ticks: 2,
            ..Config::new(1)
        };
        assert_eq!(config.lease_ticks(), 7);
    }

    #[test]
    fn timeouts_must_be_ordered() {
        for (min, max, hb) in [(10, 10, 1), (5, 20, 5), (0, 20, 0)] {
            let config = Config {
                election_timeout_min_ticks: min,
                election_timeout_max_ticks: max,
                heartbeat_interval_ticks: hb,
                ..Config::new(1)
            };
            assert!(config.validate().is_err(), "{min} {max} {hb}");
        }
    }
}

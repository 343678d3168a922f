//! The split-brain report: from what each member says of itself and of its peers, derive the
//! partitions, the majority, the stale leaders and a verdict, and say what to do.
//!
//! This module is pure: the service gathers the observations (probes with a deadline) and
//! this turns them into the answer, so every rule is unit-tested.
//!
//! Rules:
//! - **Reachability** is each node's own view (an RPC it sent succeeded within the election
//!   timeout). Two members are connected when every side that answered says it reaches the
//!   other; a member that did not answer contributes no evidence either way.
//! - **Partitions** are the connected components; the **majority** is the one holding more
//!   than half of the voters. Its leader is its member that leads the highest term.
//! - **Stale leaders**: nodes that answered as leader but are outside the majority or lead an
//!   older term; and nodes that did not answer but were last seen leading an older term less
//!   than an election timeout ago (check-quorum makes a leader step down within an election
//!   timeout of losing its majority, so after that it can no longer believe it leads).
//! - **Divergence**: members' event-log hashes at the lowest applied index among them must
//!   agree; those differing from the most common hash are named.
//! - **Verdict**, most severe first: `DIVERGED`, `NO_MAJORITY` (no majority partition with a
//!   leader), `STALE_LEADER`, `DEGRADED` (a member unreachable, outside the majority or
//!   lagging), `HEALTHY`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quorate_proto::admin as pb;
use quorate_raft_core::{quorum, ConfState};

/// What the reporter learned about one member.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The member.
    pub node_id: u64,
    /// Its peer address.
    pub peer_address: String,
    /// Its status, or why it did not answer the probe.
    pub answer: Result<pb::StatusResponse, String>,
    /// The last status the reporter had seen from it, and how long ago.
    pub last_seen: Option<(pb::StatusResponse, Duration)>,
}

/// Event-log hashes at a common index.
#[derive(Clone, Debug, Default)]
pub struct Hashes {
    /// The index they were computed at.
    pub common_index: u64,
    /// Each member's hash (hex), or why it has none.
    pub by_node: BTreeMap<u64, Result<String, String>>,
}

/// Thresholds of the analysis.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The minimum election timeout (check-quorum's window).
    pub election_timeout: Duration,
    /// A member this many entries behind the leader counts as lagging.
    pub lag_threshold: u64,
    /// A member whose wall clock is further than this from the leader's is reported.
    pub clock_skew_threshold: Duration,
}

fn is_leader(s: &pb::StatusResponse) -> bool {
    s.role == pb::Role::Leader as i32
}

fn list(ids: &[u64]) -> String {
    let names: Vec<String> = ids.iter().map(|id| format!("node {id}")).collect();
    match names.len() {
        0 => "no node".into(),
        1 => names[0].clone(),
        n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

/// A tiny union-find over node ids.
struct Components(BTreeMap<u64, u64>);

impl Components {
    fn find(&mut self, x: u64) -> u64 {
        let parent = self.0[&x];
        if parent == x {
            return x;
        }
        let root = self.find(parent);
        self.0.insert(x, root);
        root
    }

    fn union(&mut self, a: u64, b: u64) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0.insert(ra.max(rb), ra.min(rb));
        }
    }
}

/// What the members said, by id: who answered, and each answer's view of its peers.
struct Answers<'a> {
    /// Every member observed, in order.
    ids: Vec<u64>,
    /// The statuses of those that answered.
    answered: BTreeMap<u64, &'a pb::StatusResponse>,
}

impl<'a> Answers<'a> {
    fn new(observations: &'a [Observation]) -> Self {
        Answers {
            ids: observations.iter().map(|o| o.node_id).collect(),
            answered: observations
                .iter()
                .filter_map(|o| o.answer.as_ref().ok().map(|s| (o.node_id, s)))
                .collect(),
        }
    }

    /// What `from` (if it answered) says of `to`.
    fn view(&self, from: u64, to: u64) -> Option<&'a pb::PeerView> {
        self.answered
            .get(&from)
            .and_then(|s| s.peers.iter().find(|p| p.node_id == to))
    }

    fn leaders(&self) -> impl Iterator<Item = &'a pb::StatusResponse> + '_ {
        self.answered.values().copied().filter(|s| is_leader(s))
    }
}

/// The partitions and the majority: step 2 of [`analyze`].
struct Partitions<'a> {
    partitions: Vec<pb::Partition>,
    /// Pairs that both answered and of which one says the link is down.
    cut_links: Vec<(u64, u64)>,
    /// The members of the partition holding a majority of the voters, if one does.
    majority_ids: Option<Vec<u64>>,
    /// Its member that leads the highest term.
    majority_leader: Option<&'a pb::StatusResponse>,
}

impl Partitions<'_> {
    fn in_majority(&self, id: u64) -> bool {
        self.majority_ids.as_ref().is_some_and(|m| m.contains(&id))
    }
}

/// Builds the report. `conf` is the voting configuration as the reporter sees it: a partition
/// holds a majority only with a majority of its voters (of both halves, during a joint
/// configuration); learners never count. Five steps: the reachability matrix, the partitions
/// and their majority, the stale leaders, the divergence at a common index, then who is
/// missing or behind, which gives the verdict and the recommended action.
pub fn analyze(
    reporter: u64,
    conf: &ConfState,
    observations: &[Observation],
    hashes: Option<&Hashes>,
    settings: &Settings,
) -> pb::SplitBrainReportResponse {
    let answers = Answers::new(observations);
    let reachability = reachability(&answers);
    let parts = partitions(&answers, conf);
    let mut leaders_by_term: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for s in answers.leaders() {
        leaders_by_term.entry(s.term).or_default().push(s.node_id);
    }
    let majority = parts.majority_ids.as_ref().map(|node_ids| pb::Majority {
        node_ids: node_ids.clone(),
        leader_id: parts.majority_leader.map_or(0, |l| l.node_id),
        term: parts.majority_leader.map_or(0, |l| l.term),
    });
    let stale_leaders = stale_leaders(&answers, observations, &parts, settings);
    let divergence = hashes.map(divergence).unwrap_or_default();
    let behind = Behind::find(&answers, &parts, settings);
    let verdict = if !divergence.diverged_node_ids.is_empty() {
        pb::Verdict::Diverged
    } else if parts.majority_leader.is_none() {
        pb::Verdict::NoMajority
    } else if !stale_leaders.is_empty() {
        pb::Verdict::StaleLeader
    } else if behind.any() || !parts.cut_links.is_empty() {
        pb::Verdict::Degraded
    } else {
        pb::Verdict::Healthy
    };
    let reporter_in_majority = parts.in_majority(reporter);

    let action = recommend(Recommendation {
        verdict,
        reporter,
        reporter_in_majority,
        observations,
        majority: majority.as_ref(),
        stale_leaders: &stale_leaders,
        divergence: &divergence,
        unreachable: &behind.unreachable,
        lagging: &behind.lagging,
        disagreeing: &behind.disagreeing,
        cut_links: &parts.cut_links,
        clock_skews: &behind.clock_skews,
        rejoining: &behind.rejoining,
        corrupt: &behind.corrupt,
        conf,
        removed: &answers
            .answered
            .values()
            .flat_map(|s| s.removed_ids.iter().copied())
            .collect(),
        settings,
    });
    let clock_skews = behind.clock_skews;
    let partitions = parts.partitions;

    pb::SplitBrainReportResponse {
        verdict: verdict as i32,
        members: observations
            .iter()
            .map(|o| pb::MemberReport {
                node_id: o.node_id,
                peer_address: o.peer_address.clone(),
                answered: o.answer.is_ok(),
                error: o.answer.as_ref().err().cloned().unwrap_or_default(),
                status: o.answer.as_ref().ok().cloned(),
            })
            .collect(),
        reachability,
        leaders_by_term: leaders_by_term
            .into_iter()
            .map(|(term, leader_ids)| pb::LeadersInTerm { term, leader_ids })
            .collect(),
        partitions,
        majority,
        stale_leaders,
        divergence: Some(divergence),
        recommended_action: action,
        reporter_id: reporter,
        reporter_in_majority,
        duration_ms: 0,
        clock_skews,
    }
}

/// Step 1: the reachability matrix, from each member's own view.
fn reachability(answers: &Answers) -> Vec<pb::Reachability> {
    let mut matrix = Vec::new();
    for &from in &answers.ids {
        for &to in answers.ids.iter().filter(|&&to| to != from) {
            let answered = answers.answered.contains_key(&from);
            let view = answers.view(from, to);
            matrix.push(pb::Reachability {
                from,
                to,
                reachable: view.is_some_and(|v| v.reachable),
                known: answered,
                last_contact_ms: view.and_then(|v| v.last_sent_ok_ms),
            });
        }
    }
    matrix
}

/// Step 2: partitions, connected where every side that answered says it reaches the other;
/// the majority and its leader. Cut links: both sides answered and one says the link is
/// down. A cut link between two members that still share a partition (through a third) is a
/// real fault: the pair cannot talk directly, and one more failure may leave either side
/// without a majority.
fn partitions<'a>(answers: &Answers<'a>, conf: &ConfState) -> Partitions<'a> {
    let ids = &answers.ids;
    let mut components = Components(ids.iter().map(|&id| (id, id)).collect());
    let mut cut_links: Vec<(u64, u64)> = Vec::new();
    for (i, &a) in ids.iter().enumerate() {
        for &b in &ids[i + 1..] {
            let sides: Vec<bool> = [(a, b), (b, a)]
                .into_iter()
                .filter(|(from, _)| answers.answered.contains_key(from))
                .map(|(from, to)| answers.view(from, to).is_some_and(|v| v.reachable))
                .collect();
            if !sides.is_empty() && sides.iter().all(|&r| r) {
                components.union(a, b);
            } else if sides.len() == 2 {
                cut_links.push((a, b));
            }
        }
    }
    let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &id in ids {
        let root = components.find(id);
        groups.entry(root).or_default().push(id);
    }
    let partitions: Vec<pb::Partition> = groups
        .into_values()
        .map(|node_ids| pb::Partition {
            has_majority: quorum::is_quorum(conf, |id| node_ids.contains(&id)),
            node_ids,
        })
        .collect();
    let majority_ids: Option<Vec<u64>> = partitions
        .iter()
        .find(|p| p.has_majority)
        .map(|p| p.node_ids.clone());
    let majority_leader = majority_ids.as_ref().and_then(|m| {
        answers
            .leaders()
            .filter(|s| m.contains(&s.node_id))
            .max_by_key(|s| s.term)
    });
    Partitions {
        partitions,
        cut_links,
        majority_ids,
        majority_leader,
    }
}

/// Step 3: the stale leaders, those that answered and those last seen leading.
fn stale_leaders(
    answers: &Answers,
    observations: &[Observation],
    parts: &Partitions,
    settings: &Settings,
) -> Vec<pb::StaleLeader> {
    let majority_leader = parts.majority_leader;
    let window = settings.election_timeout + settings.election_timeout / 5;
    let mut stale_leaders = Vec::new();
    for s in answers.leaders() {
        if majority_leader.is_some_and(|l| l.node_id == s.node_id) {
            continue;
        }
        let reason = match (!parts.in_majority(s.node_id), majority_leader) {
            (true, _) => format!(
                "it leads term {} without a majority: it cannot commit, and check-quorum makes \
                 it step down within {} ms of losing its majority",
                s.term,
                settings.election_timeout.as_millis()
            ),
            (false, Some(l)) => format!(
                "it leads term {}, older than node {}'s term {}",
                s.term, l.node_id, l.term
            ),
            (false, None) => format!("it leads term {} but is not the majority's leader", s.term),
        };
        stale_leaders.push(pb::StaleLeader {
            node_id: s.node_id,
            term: s.term,
            lease_remaining_ms: s.lease_remaining_ms,
            reason,
        });
    }
    for o in observations.iter().filter(|o| o.answer.is_err()) {
        let Some((last, age)) = &o.last_seen else {
            continue;
        };
        let superseded = majority_leader.is_none_or(|l| l.term > last.term);
        if is_leader(last) && superseded && *age < window {
            stale_leaders.push(pb::StaleLeader {
                node_id: o.node_id,
                term: last.term,
                lease_remaining_ms: last
                    .lease_remaining_ms
                    .saturating_sub(age.as_millis() as u64),
                reason: format!(
                    "it does not answer; it was last seen {} ms ago leading term {}, so it may \
                     still believe it leads until check-quorum makes it step down (at most {} ms \
                     after it lost its majority)",
                    age.as_millis(),
                    last.term,
                    settings.election_timeout.as_millis()
                ),
            });
        }
    }
    stale_leaders.sort_by_key(|s| s.node_id);
    stale_leaders
}

/// Step 4: divergence at a common index. The reference is the hash most members hold; with
/// a tie there is none, and every member whose hash differs from another's is named (an
/// operator must decide).
fn divergence(h: &Hashes) -> pb::Divergence {
    let mut divergence = pb::Divergence {
        common_index: h.common_index,
        ..Default::default()
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for hash in h.by_node.values().flatten() {
        *counts.entry(hash.as_str()).or_default() += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    let reference = match counts.iter().filter(|(_, &n)| n == top).count() {
        1 => counts
            .iter()
            .find(|(_, &n)| n == top)
            .map(|(&hash, _)| hash),
        _ => None,
    };
    divergence.undecided = counts.len() > 1 && reference.is_none();
    for (&node_id, result) in &h.by_node {
        match result {
            Ok(hash) => {
                if Some(hash.as_str()) != reference && counts.len() > 1 {
                    divergence.diverged_node_ids.push(node_id);
                }
                divergence.hashes.push(pb::NodeHash {
                    node_id,
                    hash: hash.clone(),
                    error: String::new(),
                });
            }
            Err(e) => divergence.hashes.push(pb::NodeHash {
                node_id,
                hash: String::new(),
                error: e.clone(),
            }),
        }
    }
    divergence
}

/// Step 5: who is missing or behind.
struct Behind {
    /// Did not answer, or outside the majority.
    unreachable: Vec<u64>,
    /// Further than the lag threshold behind the majority's leader, and by how much.
    lagging: Vec<(u64, u64)>,
    /// Name another leader or term than the majority's.
    disagreeing: Vec<u64>,
    /// Lost their disk and not brought up to date yet: they answer but do not vote.
    rejoining: Vec<u64>,
    /// Stopped taking part after finding a conflict with a committed entry, and why.
    corrupt: Vec<(u64, String)>,
    /// Wall clocks too far from the leader's.
    clock_skews: Vec<pb::ClockSkew>,
}

impl Behind {
    fn find(answers: &Answers, parts: &Partitions, settings: &Settings) -> Behind {
        let leader = parts.majority_leader;
        let others = || {
            answers
                .answered
                .values()
                .copied()
                .filter(move |s| leader.is_some_and(|l| s.node_id != l.node_id))
        };
        Behind {
            unreachable: answers
                .ids
                .iter()
                .copied()
                .filter(|&id| !answers.answered.contains_key(&id) || !parts.in_majority(id))
                .collect(),
            lagging: others()
                .filter_map(|s| {
                    let behind = leader?.commit_index.saturating_sub(s.applied_index);
                    (behind > settings.lag_threshold).then_some((s.node_id, behind))
                })
                .collect(),
            disagreeing: answers
                .answered
                .values()
                .filter(|s| leader.is_some_and(|l| s.leader_id != l.node_id || s.term != l.term))
                .map(|s| s.node_id)
                .collect(),
            rejoining: answers
                .answered
                .values()
                .filter(|s| s.rejoining_after_term.is_some())
                .map(|s| s.node_id)
                .collect(),
            corrupt: answers
                .answered
                .values()
                .filter(|s| !s.corrupt.is_empty())
                .map(|s| (s.node_id, s.corrupt.clone()))
                .collect(),
            clock_skews: leader
                .map(|l| clock_skews(l, settings.clock_skew_threshold))
                .unwrap_or_default(),
        }
    }

    fn any(&self) -> bool {
        !self.unreachable.is_empty()
            || !self.lagging.is_empty()
            || !self.disagreeing.is_empty()
            || !self.clock_skews.is_empty()
            || !self.rejoining.is_empty()
            || !self.corrupt.is_empty()
    }
}

/// Members whose wall clock is further than `threshold` from the median of every member's
/// clock, the leader's included, as `leader` measured them (its probes correct for the round
/// trip; the statuses a report gathers are not simultaneous enough to compare). The median,
/// not the leader's clock, is the reference: when the leader's own clock is the wrong one,
/// it is the one named.
fn clock_skews(leader: &pb::StatusResponse, threshold: Duration) -> Vec<pb::ClockSkew> {
    let mut offsets: Vec<(u64, i64)> = vec![(leader.node_id, 0)];
    offsets.extend(
        leader
            .peers
            .iter()
            .filter_map(|p| Some((p.node_id, p.clock_offset_ms?))),
    );
    let mut sorted: Vec<i64> = offsets.iter().map(|&(_, o)| o).collect();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let threshold = threshold.as_millis() as i64;
    offsets
        .into_iter()
        .filter(|&(_, offset)| (offset - median).abs() > threshold)
        .map(|(node_id, offset)| pb::ClockSkew {
            node_id,
            offset_ms: offset - median,
            measured_by: leader.node_id,
        })
        .collect()
}

struct Recommendation<'a> {
    verdict: pb::Verdict,
    reporter: u64,
    reporter_in_majority: bool,
    observations: &'a [Observation],
    majority: Option<&'a pb::Majority>,
    stale_leaders: &'a [pb::StaleLeader],
    divergence: &'a pb::Divergence,
    unreachable: &'a [u64],
    lagging: &'a [(u64, u64)],
    disagreeing: &'a [u64],
    cut_links: &'a [(u64, u64)],
    clock_skews: &'a [pb::ClockSkew],
    rejoining: &'a [u64],
    corrupt: &'a [(u64, String)],
    conf: &'a ConfState,
    /// Ids removed from the cluster, as the members report them.
    removed: &'a BTreeSet<u64>,
    settings: &'a Settings,
}

/// How to replace `ids` with fresh members, in the order that never leaves the cluster with
/// fewer voters than it has: the exact commands.
fn replace_steps(
    ids: &[u64],
    conf: &ConfState,
    removed: &BTreeSet<u64>,
    address: impl Fn(u64) -> String,
) -> String {
    // (A removed id never comes back: the fresh one is above them too.)
    let mut next = conf
        .members()
        .into_iter()
        .chain(removed.iter().copied())
        .max()
        .unwrap_or(0)
        + 1;
    let steps: Vec<String> = ids
        .iter()
        .map(|&id| {
            let fresh = next;
            next += 1;
            format!(
                "replace node {id} by a fresh member {fresh}: 1) stop node {id} and move its data \
                 directory aside for forensics; 2) start the new node with --id {fresh}, an \
                 empty --data-dir, --initial-cluster-state existing and an --initial-cluster \
                 listing the current members and itself; 3) run `quoratectl members replace \
                 --old {id} --new {fresh} --peer-url <its peer address>` (it adds node {fresh} \
                 as a learner, waits until it has caught up, promotes it, then removes node \
                 {id}; the steps by hand: `quoratectl members add {fresh} --peer-url ...`, \
                 `quoratectl members promote {fresh}`, `quoratectl members remove {id}`). Node \
                 {id} (peer address {}) never comes back under its old id",
                address(id)
            )
        })
        .collect();
    steps.join("; then ")
}

/// What to do, in words an operator can follow at 3 AM.
fn recommend(r: Recommendation<'_>) -> String {
    let address = |id: u64| {
        r.observations
            .iter()
            .find(|o| o.node_id == id)
            .map_or(String::new(), |o| o.peer_address.clone())
    };
    let et = r.settings.election_timeout.as_millis();
    match r.verdict {
        pb::Verdict::Diverged => {
            let ids = &r.divergence.diverged_node_ids;
            if r.divergence.undecided {
                return format!(
                    "The members' event-log hashes at index {} disagree and no hash is held by \
                     a majority ({}), so this report cannot tell which copy is right. Do not \
                     wipe any node. Stop writers, keep every data directory, and compare the \
                     events of each node (quoratectl payment list against each endpoint, with \
                     --stale) to find the damaged copy.",
                    r.divergence.common_index,
                    list(ids)
                );
            }
            format!(
                "{} hold(s) an event log whose hash at index {} differs from the majority's. \
                 Its storage was changed outside Raft (disk damage, manual edits, a restored \
                 backup). Take it out of the cluster and add a fresh member in its place, one \
                 node at a time and only while the other members have a leader (quoratectl \
                 status): {}. Never copy data from it to other nodes.",
                list(ids),
                r.divergence.common_index,
                replace_steps(ids, r.conf, r.removed, address)
            )
        }
        pb::Verdict::NoMajority => match r.majority {
            Some(m) => format!(
                "A majority ({}) is connected but has no leader yet: an election is in \
                 progress. Wait {et} ms; if no leader appears after several election \
                 timeouts, look for repeated elections in the nodes' logs (stalled disks or \
                 clocks). Writes are refused until then (NO_QUORUM); nothing is lost.",
                list(&m.node_ids)
            ),
            None if !r.reporter_in_majority => {
                let others: Vec<u64> = r
                    .observations
                    .iter()
                    .map(|o| o.node_id)
                    .filter(|&id| id != r.reporter)
                    .collect();
                format!(
                    "Node {} is in a minority: it cannot reach a majority of the {} voters. \
                     Writes sent to this side are refused with NO_QUORUM, so no data is at risk \
                     here. Check the network between node {} and {} (peer ports: {}). Ask a \
                     node on the other side for its report (quoratectl --endpoints <its client \
                     address> split-brain report) to see whether a majority exists there. Do not \
                     wipe or re-bootstrap nodes to force a leader.",
                    r.reporter,
                    r.conf.voters.len(),
                    r.reporter,
                    list(&others),
                    others
                        .iter()
                        .map(|&id| address(id))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            None => "No partition holds a majority: writes are refused everywhere (NO_QUORUM). \
                     Restore connectivity between a majority of the voters; do not force a \
                     leader."
                .into(),
        },
        pb::Verdict::StaleLeader => {
            let m = r
                .majority
                .expect("a stale leader implies a majority leader");
            let stale: Vec<String> = r
                .stale_leaders
                .iter()
                .map(|s| format!("node {} ({})", s.node_id, s.reason))
                .collect();
            format!(
                "{} claims leadership but is not the majority's leader: {}. It cannot commit: \
                 writes it takes are answered OUTCOME_UNKNOWN or NO_QUORUM and are never \
                 committed. Send writes to node {} (leader of term {}); restore the stale \
                 node's network and it rejoins as a follower by itself. No reconciliation is \
                 needed: the log has one history.",
                list(
                    &r.stale_leaders
                        .iter()
                        .map(|s| s.node_id)
                        .collect::<Vec<_>>()
                ),
                stale.join("; "),
                m.leader_id,
                m.term
            )
        }
        pb::Verdict::Degraded => {
            let m = r
                .majority
                .expect("a degraded cluster has a majority leader");
            let mut problems = Vec::new();
            if !r.unreachable.is_empty() {
                problems.push(format!(
                    "{} cannot be reached from the majority (peer address: {}): check that \
                     the process runs and that its peer port is open. If its machine or disk \
                     is lost for good, {}",
                    list(r.unreachable),
                    r.unreachable
                        .iter()
                        .map(|&id| address(id))
                        .collect::<Vec<_>>()
                        .join(", "),
                    replace_steps(r.unreachable, r.conf, r.removed, address)
                ));
            }
            for (id, behind) in r.lagging {
                problems.push(format!(
                    "node {id} is {behind} entries behind the leader: check its disk and network"
                ));
            }
            for &(a, b) in r.cut_links {
                if r.unreachable.contains(&a) || r.unreachable.contains(&b) {
                    continue;
                }
                problems.push(format!(
                    "nodes {a} and {b} both answer but cannot reach each other (peer \
                     addresses {} and {}): a partial network cut, check firewalls and routes \
                     between them",
                    address(a),
                    address(b)
                ));
            }
            for skew in r.clock_skews {
                let (amount, direction) = if skew.offset_ms >= 0 {
                    (skew.offset_ms, "ahead of")
                } else {
                    (-skew.offset_ms, "behind")
                };
                let leads = if skew.node_id == m.leader_id {
                    "; it leads now: hand leadership to another node (quoratectl leader \
                     transfer --to N) until its clock is right"
                        .to_string()
                } else {
                    "; do not hand it leadership until its clock is right".to_string()
                };
                problems.push(format!(
                    "node {}'s wall clock is {amount} ms {direction} the cluster's median clock \
                     (measured by node {}): fix its time synchronisation (NTP, chrony). No \
                     decision is taken from it: only the leader stamps commands, and a leader's \
                     wall clock moves the replicated clock by at most 5 s per term \
                     (leader_clock_corrections counts each correction), but while it leads, \
                     event timestamps drift by that much{leads}",
                    skew.node_id, skew.measured_by
                ));
            }
            if !r.disagreeing.is_empty() {
                problems.push(format!(
                    "{} do(es) not follow node {} yet (catching up after an election)",
                    list(r.disagreeing),
                    m.leader_id
                ));
            }
            for (id, what) in r.corrupt {
                problems.push(format!(
                    "node {id} stopped taking part and refuses every request (CORRUPT): {what}. \
                     {}",
                    replace_steps(&[*id], r.conf, r.removed, address)
                ));
            }
            if !r.rejoining.is_empty() {
                problems.push(format!(
                    "{} rejoin(s) after a lost disk and do(es) not vote until a leader elected \
                     without it has brought it up to date: until then do not stop, restart or \
                     rebuild any other member",
                    list(r.rejoining)
                ));
            }
            // Members that answer but cannot vote (learners, rejoining or corrupt members) do
            // not help the majority survive a failure; during a joint configuration both
            // halves must keep their majorities.
            let voting: BTreeSet<u64> = m
                .node_ids
                .iter()
                .copied()
                .filter(|id| !r.rejoining.contains(id) && !r.corrupt.iter().any(|(c, _)| c == id))
                .collect();
            let spare = [&r.conf.voters, &r.conf.voters_outgoing]
                .into_iter()
                .filter(|half| !half.is_empty())
                .map(|half| {
                    let up = half.iter().filter(|id| voting.contains(id)).count();
                    up.saturating_sub(quorum::majority(half.len()))
                })
                .min()
                .unwrap_or(0);
            format!(
                "The majority ({}) is healthy: node {} leads term {} and commits writes. {}. \
                 The cluster survives {} more failure(s) right now.",
                list(&m.node_ids),
                m.leader_id,
                m.term,
                problems.join("; "),
                spare
            )
        }
        _ => {
            let m = r.majority.expect("a healthy cluster has a majority leader");
            format!(
                "Nothing to do: node {} leads term {}; all {} members are reachable, agree on \
                 the leader and are caught up.",
                m.leader_id,
                m.term,
                r.observations.len()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            election_timeout: Duration::from_secs(1),
            lag_threshold: 1000,
            clock_skew_threshold: Duration::from_secs(1),
        }
    }

    fn status(
        id: u64,
        role: pb::Role,
        term: u64,
        leader: u64,
        reach: &[(u64, bool)],
    ) -> pb::StatusResponse {
        pb::StatusResponse {
            node_id: id,
            role: role as i32,
            term,
            leader_id: leader,
            commit_index: 100,
            applied_index: 100,
            peers: reach
                .iter()
                .map(|&(to, reachable)| pb::PeerView {
                    node_id: to,
                    reachable,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn answered(s: pb::StatusResponse) -> Observation {
        Observation {
            node_id: s.node_id,
            peer_address: format!("10.0.0.{}:2380", s.node_id),
            answer: Ok(s),
            last_seen: None,
        }
    }

    fn silent(id: u64, last_seen: Option<(pb::StatusResponse, Duration)>) -> Observation {
        Observation {
            node_id: id,
            peer_address: format!("10.0.0.{id}:2380"),
            answer: Err("deadline exceeded".into()),
            last_seen,
        }
    }

    use pb::Role::{Follower, Leader};

    #[test]
    fn a_connected_cluster_with_one_leader_is_healthy() {
        let obs = [
            answered(status(1, Leader, 3, 1, &[(2, true), (3, true)])),
            answered(status(2, Follower, 3, 1, &[(1, true), (3, true)])),
            answered(status(3, Follower, 3, 1, &[(1, true), (2, true)])),
        ];
        let report = analyze(
            2,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Healthy as i32);
        assert_eq!(report.partitions.len(), 1);
        assert_eq!(report.majority.unwrap().leader_id, 1);
        assert!(report.reporter_in_majority);
        assert!(report.recommended_action.starts_with("Nothing to do"));
    }

    #[test]
    fn the_majority_names_an_isolated_old_leader_as_stale_then_as_unreachable() {
        let old = status(1, Leader, 3, 1, &[(2, true), (3, true)]);
        let majority = [
            answered(status(2, Leader, 4, 2, &[(1, false), (3, true)])),
            answered(status(3, Follower, 4, 2, &[(1, false), (2, true)])),
        ];
        // Just after the election: node 1 may still believe it leads term 3.
        let mut obs = majority.to_vec();
        obs.insert(
            0,
            silent(1, Some((old.clone(), Duration::from_millis(400)))),
        );
        let report = analyze(
            2,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::StaleLeader as i32);
        let m = report.majority.clone().unwrap();
        assert_eq!((m.node_ids, m.leader_id, m.term), (vec![2, 3], 2, 4));
        assert_eq!(report.stale_leaders[0].node_id, 1);
        assert!(report
            .recommended_action
            .contains("node 2 (leader of term 4)"));
        // Past check-quorum's window it cannot lead any more: the cluster is degraded.
        let mut obs = majority.to_vec();
        obs.insert(0, silent(1, Some((old, Duration::from_secs(3)))));
        let report = analyze(
            2,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Degraded as i32);
        assert!(report.stale_leaders.is_empty());
        assert!(
            report
                .recommended_action
                .contains("node 1 cannot be reached"),
            "{}",
            report.recommended_action
        );
        assert!(report
            .recommended_action
            .contains("survives 0 more failure"));
    }

    #[test]
    fn an_isolated_node_reports_itself_in_the_minority() {
        let obs = [
            answered(status(1, Leader, 3, 1, &[(2, false), (3, false)])),
            silent(2, None),
            silent(3, None),
        ];
        let report = analyze(
            1,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::NoMajority as i32);
        assert!(!report.reporter_in_majority);
        assert_eq!(
            report.stale_leaders[0].node_id, 1,
            "it names itself as a stale leader"
        );
        assert!(report
            .recommended_action
            .contains("Node 1 is in a minority"));
    }

    #[test]
    fn a_frozen_leader_leaves_a_degraded_cluster() {
        let obs = [
            silent(
                1,
                Some((status(1, Leader, 3, 1, &[]), Duration::from_secs(4))),
            ),
            answered(status(2, Leader, 4, 2, &[(1, false), (3, true)])),
            answered(status(3, Follower, 4, 2, &[(1, false), (2, true)])),
        ];
        let report = analyze(
            3,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Degraded as i32);
        assert!(!report.members[0].answered);
    }

    #[test]
    fn a_member_with_another_event_log_is_named_diverged() {
        let obs = [
            answered(status(1, Leader, 3, 1, &[(2, true), (3, true)])),
            answered(status(2, Follower, 3, 1, &[(1, true), (3, true)])),
            answered(status(3, Follower, 3, 1, &[(1, true), (2, true)])),
        ];
        let hashes = Hashes {
            common_index: 90,
            by_node: BTreeMap::from([
                (1, Ok("aa".to_string())),
                (2, Ok("aa".to_string())),
                (3, Ok("bb".to_string())),
            ]),
        };
        let report = analyze(
            1,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            Some(&hashes),
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Diverged as i32);
        assert_eq!(report.divergence.unwrap().diverged_node_ids, vec![3]);
        assert!(report.recommended_action.starts_with("node 3 hold(s)"));
    }

    #[test]
    fn a_tie_between_hashes_names_every_member_and_wipes_none() {
        let obs = [
            answered(status(1, Leader, 3, 1, &[(2, true)])),
            answered(status(2, Follower, 3, 1, &[(1, true)])),
        ];
        let hashes = Hashes {
            common_index: 90,
            by_node: BTreeMap::from([(1, Ok("aa".to_string())), (2, Ok("bb".to_string()))]),
        };
        let report = analyze(
            1,
            &ConfState::with_voters([1, 2]),
            &obs,
            Some(&hashes),
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Diverged as i32);
        let divergence = report.divergence.unwrap();
        assert!(divergence.undecided);
        assert_eq!(divergence.diverged_node_ids, vec![1, 2]);
        assert!(report.recommended_action.contains("Do not wipe any node"));
    }

    #[test]
    fn the_advice_for_a_diverged_node_replaces_it_by_a_fresh_member() {
        let obs = [
            answered(status(1, Leader, 3, 1, &[(2, true), (3, true)])),
            answered(status(2, Follower, 3, 1, &[(1, true), (3, true)])),
            answered(status(3, Follower, 3, 1, &[(1, true), (2, true)])),
        ];
        let hashes = Hashes {
            common_index: 90,
            by_node: BTreeMap::from([
                (1, Ok("aa".to_string())),
                (2, Ok("bb".to_string())),
                (3, Ok("aa".to_string())),
            ]),
        };
        let report = analyze(
            1,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            Some(&hashes),
            &settings(),
        );
        assert!(!report.divergence.unwrap().undecided);
        // The damaged copy goes; a fresh member with a new id takes its place, learner first,
        // so the cluster never has fewer voters than now.
        let action = &report.recommended_action;
        assert!(action.starts_with("node 2 hold(s)"), "{action}");
        for step in [
            "--id 4",
            "--initial-cluster-state existing",
            "quoratectl members replace --old 2 --new 4",
            "quoratectl members remove 2",
            "never comes back",
        ] {
            assert!(action.contains(step), "{step}: {action}");
        }
    }

    #[test]
    fn majorities_are_counted_on_the_voting_configuration() {
        // Nodes 1 and 2 on one side, 3, 4 and 5 on the other.
        let side = |id: u64, others: &[u64], all: &[u64]| {
            let reach: Vec<(u64, bool)> = all
                .iter()
                .filter(|&&o| o != id)
                .map(|&o| (o, others.contains(&o)))
                .collect();
            status(id, Follower, 3, 0, &reach)
        };
        let all = [1, 2, 3, 4, 5];
        let obs: Vec<Observation> = [
            (1, &[2][..]),
            (2, &[1]),
            (3, &[4, 5]),
            (4, &[3, 5]),
            (5, &[3, 4]),
        ]
        .into_iter()
        .map(|(id, others)| answered(side(id, others, &all)))
        .collect();
        let majority_side = |conf: &ConfState| -> Vec<bool> {
            analyze(1, conf, &obs, None, &settings())
                .partitions
                .iter()
                .map(|p| p.has_majority)
                .collect()
        };
        // Voters 1, 2, 3 with learners 4 and 5: the learners' side holds no majority.
        let with_learners = ConfState {
            learners: [4, 5].into(),
            ..ConfState::with_voters([1, 2, 3])
        };
        assert_eq!(majority_side(&with_learners), [true, false]);
        // Joint 3,4,5 / 1,2,3: neither side holds both majorities.
        let joint = ConfState {
            voters: [3, 4, 5].into(),
            voters_outgoing: [1, 2, 3].into(),
            ..ConfState::default()
        };
        assert_eq!(majority_side(&joint), [false, false]);
        assert_eq!(
            majority_side(&ConfState::with_voters([3, 4, 5])),
            [false, true]
        );
    }

    #[test]
    fn a_rejoining_member_degrades_the_cluster_and_counts_for_no_failure() {
        let mut rejoining = status(3, Follower, 5, 1, &[(1, true), (2, true)]);
        rejoining.rejoining_after_term = Some(4);
        let obs = [
            answered(status(1, Leader, 5, 1, &[(2, true), (3, true)])),
            answered(status(2, Follower, 5, 1, &[(1, true), (3, true)])),
            answered(rejoining),
        ];
        let report = analyze(
            1,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Degraded as i32);
        let action = &report.recommended_action;
        assert!(
            action.contains("node 3 rejoin(s) after a lost disk"),
            "{action}"
        );
        assert!(
            action.contains("do not stop, restart or rebuild"),
            "{action}"
        );
        assert!(action.contains("survives 0 more failure(s)"), "{action}");
    }

    #[test]
    fn a_lagging_member_degrades_the_cluster() {
        let mut behind = status(3, Follower, 3, 1, &[(1, true), (2, true)]);
        behind.applied_index = 10;
        let mut leader = status(1, Leader, 3, 1, &[(2, true), (3, true)]);
        leader.commit_index = 5000;
        let mut other = status(2, Follower, 3, 1, &[(1, true), (3, true)]);
        other.applied_index = 5000;
        let obs = [answered(leader), answered(other), answered(behind)];
        let report = analyze(
            1,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Degraded as i32);
        assert!(report
            .recommended_action
            .contains("node 3 is 4990 entries behind"));
    }

    #[test]
    fn a_member_whose_wall_clock_is_a_day_off_is_named_and_degrades_the_cluster() {
        let mut leader = status(1, Leader, 3, 1, &[(2, true), (3, true)]);
        leader.peers[0].clock_offset_ms = Some(-40); // within the threshold: not named
        leader.peers[1].clock_offset_ms = Some(90_000_000);
        let obs = [
            answered(leader),
            answered(status(2, Follower, 3, 1, &[(1, true), (3, true)])),
            answered(status(3, Follower, 3, 1, &[(1, true), (2, true)])),
        ];
        let report = analyze(
            2,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Degraded as i32);
        assert_eq!(
            report.clock_skews,
            vec![pb::ClockSkew {
                node_id: 3,
                offset_ms: 90_000_000,
                measured_by: 1,
            }]
        );
        assert!(
            report.recommended_action.contains(
                "node 3's wall clock is 90000000 ms ahead of the cluster's median clock \
                 (measured by node 1)"
            ),
            "{}",
            report.recommended_action
        );
    }

    #[test]
    fn a_leader_whose_wall_clock_is_a_day_off_is_the_one_named() {
        // Node 1 leads and runs a day fast: it sees both followers a day behind.
        let mut leader = status(1, Leader, 3, 1, &[(2, true), (3, true)]);
        leader.peers[0].clock_offset_ms = Some(-90_000_000);
        leader.peers[1].clock_offset_ms = Some(-90_000_030);
        let obs = [
            answered(leader),
            answered(status(2, Follower, 3, 1, &[(1, true), (3, true)])),
            answered(status(3, Follower, 3, 1, &[(1, true), (2, true)])),
        ];
        let report = analyze(
            2,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        assert_eq!(report.verdict, pb::Verdict::Degraded as i32);
        let named: Vec<(u64, i64)> = report
            .clock_skews
            .iter()
            .map(|c| (c.node_id, c.offset_ms))
            .collect();
        assert_eq!(named, vec![(1, 90_000_000)]);
        assert!(
            report
                .recommended_action
                .contains("it leads now: hand leadership"),
            "{}",
            report.recommended_action
        );
    }

    #[test]
    fn a_one_way_cut_between_followers_degrades_the_cluster() {
        // Node 1 reaches 3 but 3 does not reach 1: they are not mutually connected.
        let obs = [
            answered(status(1, Follower, 3, 2, &[(2, true), (3, true)])),
            answered(status(2, Leader, 3, 2, &[(1, true), (3, true)])),
            answered(status(3, Follower, 3, 2, &[(1, false), (2, true)])),
        ];
        let report = analyze(
            2,
            &ConfState::with_voters([1, 2, 3]),
            &obs,
            None,
            &settings(),
        );
        // 1-2 and 2-3 are connected, so all three are one component through node 2...
        assert_eq!(report.partitions.len(), 1);
        // ...but the cut link is a fault the operator must hear about.
        assert_eq!(report.verdict, pb::Verdict::Degraded as i32);
        assert!(
            report
                .recommended_action
                .contains("nodes 1 and 3 both answer but cannot reach each other"),
            "{}",
            report.recommended_action
        );
        let cells: Vec<_> = report
            .reachability
            .iter()
            .filter(|c| c.from == 3 && c.to == 1)
            .collect();
        assert!(!cells[0].reachable && cells[0].known);
    }
}

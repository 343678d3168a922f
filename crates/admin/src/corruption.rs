//! The corruption check (etcd's `CORRUPT` alarm is the model): every period, a node compares
//! the hash of its event log with its peers' at an index all of them applied, and the hash of
//! its whole machine with those of the peers at the same applied index. The event log is
//! append-only and every replica applies the same entries, so the hashes at one index must be
//! equal; one that differs means stored state was damaged or changed. (The machine is compared
//! only among members level with this node: on a busy cluster that may take a few rounds.)
//!
//! - A node whose hash differs from the one a majority of the voters hold raises the alarm on
//!   itself: it stops taking part and refuses every request with `CORRUPT` (see
//!   `NodeHandle::raise_corruption_alarm`), keeping its data directory for forensics.
//! - When hashes differ and none is held by a majority, nobody can tell which replicas are
//!   right: the node refuses writes until they agree again (an operator replaced or repaired
//!   the damaged ones).
//!
//! Each member judges only itself; a member it finds different is told by its own check.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quorate_raft_core::NodeId;
use tokio::sync::watch;

use crate::AdminService;

/// How stale a peer's last reported status may be for its applied index to count.
const FRESH: Duration = Duration::from_secs(5);

/// What one round of the check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// This node's hash is the majority's (or every hash compared is the same).
    Agree {
        /// The index compared at.
        index: u64,
        /// How many members' hashes were compared, this node's included.
        compared: usize,
        /// The members whose hash is not the majority's.
        differing: Vec<NodeId>,
    },
    /// A majority of the voters holds a hash this node does not.
    Diverged {
        /// The index compared at.
        index: u64,
        /// This node's hash.
        own: String,
        /// The majority's hash.
        majority: String,
        /// The members that hold it.
        agreeing: Vec<NodeId>,
        /// How many voters there are.
        voters: usize,
    },
    /// The hashes differ and no hash is held by a majority of the voters.
    NoMajority {
        /// The index compared at.
        index: u64,
        /// Each hash and the members that hold it.
        hashes: BTreeMap<String, Vec<NodeId>>,
    },
}

/// Judges this node (`me`) from the hashes of the event log up to `index` (`hashes`, this
/// node's included) against the `voters`.
pub fn judge(
    index: u64,
    me: NodeId,
    hashes: &BTreeMap<NodeId, String>,
    voters: &BTreeSet<NodeId>,
) -> Judgement {
    let Some(own) = hashes.get(&me) else {
        return Judgement::Agree {
            index,
            compared: 0,
            differing: Vec::new(),
        };
    };
    let distinct: BTreeSet<&String> = hashes.values().collect();
    if distinct.len() <= 1 {
        return Judgement::Agree {
            index,
            compared: hashes.len(),
            differing: Vec::new(),
        };
    }
    let mut by_hash: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for (&id, hash) in hashes {
        by_hash.entry(hash.clone()).or_default().push(id);
    }
    let quorum = voters.len() / 2 + 1;
    let majority = by_hash
        .iter()
        .find(|(_, ids)| ids.iter().filter(|id| voters.contains(id)).count() >= quorum);
    match majority {
        Some((hash, _)) if hash == own => Judgement::Agree {
            index,
            compared: hashes.len(),
            differing: hashes
                .iter()
                .filter(|(_, h)| *h != own)
                .map(|(&id, _)| id)
                .collect(),
        },
        Some((hash, ids)) => Judgement::Diverged {
            index,
            own: own.clone(),
            majority: hash.clone(),
            agreeing: ids.clone(),
            voters: voters.len(),
        },
        None => Judgement::NoMajority {
            index,
            hashes: by_hash,
        },
    }
}

/// What one round of the check found, for each thing compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// The event logs up to an index every member compared has applied.
    pub events: Judgement,
    /// The whole machines, among the members at the same applied index as this node (`None`
    /// when fewer than a majority of the voters were: a busy cluster; the next round may
    /// find them level).
    pub state: Option<Judgement>,
}

/// What was compared, for messages.
fn what(state: bool) -> &'static str {
    if state {
        "the machine state (every payment, event, idempotency key and lease) at applied index"
    } else {
        "the event log up to index"
    }
}

impl AdminService {
    /// Runs the corruption check every `period` until `stop`, acting on what it finds (see the
    /// module's documentation).
    pub fn spawn_corruption_check(&self, period: Duration, mut stop: watch::Receiver<bool>) {
        let admin = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stop.wait_for(|&s| s) => return,
                }
                match admin.corruption_round().await {
                    Ok(Some(round)) => admin.act_on(round).await,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "corruption check skipped"),
                }
            }
        });
    }

    /// One round: the index every voter this node heard from recently has applied, the event
    /// log hashes there, and the hashes of the whole machines. `None` when there is nothing
    /// to compare yet.
    pub async fn corruption_round(&self) -> Result<Option<Round>, String> {
        let node = self.node();
        let status = node.status();
        if status.corrupt.is_some() {
            return Ok(None);
        }
        let me = node.id();
        let conf = &status.raft.conf;
        let voters: BTreeSet<NodeId> = conf
            .voters
            .iter()
            .chain(conf.voters_outgoing.iter())
            .copied()
            .collect();
        let mut index = status.raft.applied_index;
        let mut asked = Vec::new();
        for &peer in status.peers.keys().filter(|&&id| id != me) {
            if let Some((seen, age)) = self.last_seen(peer) {
                if age < FRESH && seen.applied_index > 0 {
                    index = index.min(seen.applied_index);
                    asked.push(peer);
                }
            }
        }
        if index == 0 || asked.is_empty() {
            return Ok(None);
        }
        let own = match self.hash(index).await {
            // A member further behind than this node's event retention: compare at the
            // lowest index this node still can, with the members that applied it.
            Err(crate::HashError::Compacted {
                first_available, ..
            }) => {
                index = first_available;
                self.hash(index).await
            }
            other => other,
        }
        .map_err(|e| e.to_string())?;
        let (own_applied, own_state) = self.state_hash().await.map_err(|e| e.to_string())?;
        let mut events = BTreeMap::from([(me, own.hash)]);
        let mut states = BTreeMap::from([(me, own_state)]);
        let probes = asked.iter().map(|&peer| async move {
            let reply = node.transport().probe_hashes(peer, index, FRESH).await;
            (peer, reply)
        });
        for (peer, reply) in futures_util::future::join_all(probes).await {
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(peer, error = %e.message(), "no hashes from a peer");
                    continue;
                }
            };
            match reply.hash {
                Some(hash) if hash.index == index => {
                    events.insert(peer, hash.hash);
                }
                _ => tracing::debug!(peer, error = %reply.hash_error, "no hash from a peer"),
            }
            if let Some(state) = reply.state.filter(|s| s.applied_index == own_applied) {
                states.insert(peer, state.hash);
            }
        }
        let level = states.keys().filter(|id| voters.contains(id)).count();
        Ok(Some(Round {
            events: judge(index, me, &events, &voters),
            state: (level > voters.len() / 2).then(|| judge(own_applied, me, &states, &voters)),
        }))
    }

    async fn act_on(&self, round: Round) {
        let node = self.node();
        let me = node.id();
        let judged = [(false, Some(round.events)), (true, round.state)];
        let judged = judged
            .into_iter()
            .filter_map(|(state, j)| j.map(|j| (state, j)));
        let mut held = Vec::new();
        for (state, judgement) in judged {
            match judgement {
                Judgement::Agree {
                    index, differing, ..
                } => {
                    if !differing.is_empty() {
                        tracing::warn!(
                            index,
                            ?differing,
                            "corruption check: these members' {} differ from the majority's",
                            if state { "machines" } else { "event logs" }
                        );
                    }
                }
                Judgement::Diverged {
                    index,
                    own,
                    majority,
                    agreeing,
                    voters,
                } => {
                    node.raise_corruption_alarm(format!(
                        "corruption check: {} {index} hashes to {own} on node {me} but to \
                         {majority} on nodes {agreeing:?}, a majority of the {voters} voters: \
                         this node's stored state was damaged or changed. Replace it: \
                         `quoratectl members replace --old {me} --new NEW_ID --peer-url \
                         HOST:PORT`",
                        what(state)
                    ))
                    .await;
                    return;
                }
                Judgement::NoMajority { index, hashes } => {
                    let seen: Vec<String> = hashes
                        .iter()
                        .map(|(hash, ids)| format!("{hash} on {ids:?}"))
                        .collect();
                    held.push(format!(
                        "corruption check: {} {index} differs between replicas ({}) and no \
                         version is held by a majority of the voters: writes are refused until \
                         an operator decides which replicas are right (`quoratectl split-brain \
                         report`) and replaces the others",
                        what(state),
                        seen.join("; ")
                    ));
                }
            }
        }
        let reason = (!held.is_empty()).then(|| held.join(". "));
        if reason.is_some() || node.status().writes_held.is_some() {
            node.hold_writes(reason).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(pairs: &[(NodeId, &str)]) -> BTreeMap<NodeId, String> {
        pairs.iter().map(|&(id, h)| (id, h.to_string())).collect()
    }

    fn voters(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn equal_hashes_agree() {
        let j = judge(
            9,
            1,
            &hashes(&[(1, "a"), (2, "a"), (3, "a")]),
            &voters(&[1, 2, 3]),
        );
        assert_eq!(
            j,
            Judgement::Agree {
                index: 9,
                compared: 3,
                differing: vec![]
            }
        );
    }

    #[test]
    fn the_odd_one_out_is_diverged_and_the_others_name_it() {
        let all = hashes(&[(1, "a"), (2, "a"), (3, "b")]);
        let v = voters(&[1, 2, 3]);
        assert!(matches!(
            judge(9, 3, &all, &v),
            Judgement::Diverged { ref own, ref majority, ref agreeing, voters: 3, .. }
                if own == "b" && majority == "a" && agreeing == &vec![1, 2]
        ));
        assert_eq!(
            judge(9, 1, &all, &v),
            Judgement::Agree {
                index: 9,
                compared: 3,
                differing: vec![3]
            }
        );
    }

    #[test]
    fn a_majority_counts_voters_only_and_all_of_them() {
        // Two of five voters agree against a third: no majority (three are needed).
        let all = hashes(&[(1, "a"), (2, "a"), (3, "b")]);
        assert!(matches!(
            judge(9, 3, &all, &voters(&[1, 2, 3, 4, 5])),
            Judgement::NoMajority { .. }
        ));
        // A learner (4) agreeing with 3 does not make "b" a majority of the voters 1-3.
        let all = hashes(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
        assert!(matches!(
            judge(9, 4, &all, &voters(&[1, 2, 3])),
            Judgement::Diverged { ref majority, .. } if majority == "a"
        ));
    }

    #[test]
    fn three_different_hashes_hold_writes() {
        let all = hashes(&[(1, "a"), (2, "b"), (3, "c")]);
        match judge(9, 1, &all, &voters(&[1, 2, 3])) {
            Judgement::NoMajority { index, hashes } => {
                assert_eq!(index, 9);
                assert_eq!(hashes.len(), 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn with_one_peer_answering_two_hashes_of_three_voters_decide_nothing() {
        // 1 and 3 differ, 2 did not answer: neither hash has two voters.
        let all = hashes(&[(1, "a"), (3, "b")]);
        assert!(matches!(
            judge(9, 1, &all, &voters(&[1, 2, 3])),
            Judgement::NoMajority { .. }
        ));
    }
}

//! Membership changes through the log (Raft thesis §4, §6; etcd/raft's `ConfChangeV2`).
//!
//! A change is an entry of kind [`EntryKind::Membership`] carrying the *whole* new
//! configuration ([`ConfState`]) and an opaque context for the driver (member addresses, say).
//! Every node uses the latest configuration in its log, committed or not: a configuration takes
//! effect when it is **appended**, and a node whose uncommitted configuration entry is dropped
//! (a new leader's log replaced it) goes back to the one before. Deciding on the committed
//! configuration instead lets a node that has not yet learnt of a commit elect or commit with
//! a majority of a configuration that is no longer the cluster's.
//!
//! The leader allows a change only when the last one is committed, and only once it has
//! committed an entry of its own term (the single-server-change bug of the dissertation's
//! first version). A change of the voters always goes through a **joint** configuration
//! `C_old,new` (decisions need majorities of both `voters` and `voters_outgoing`); the leader
//! leaves it with a second entry as soon as the joint one is committed. Learners are added and
//! removed in one step: they never count.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::raft::Raft;
use crate::raw_node::Proposal;
use crate::storage::Storage;
use crate::types::{ConfState, Entry, EntryKind, Index, NodeId, Role};

#[cfg(feature = "bug-injection")]
use crate::config::InjectedBug;

/// One change a membership proposal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Add a non-voting member: it receives the log and snapshots, and counts for nothing.
    AddLearner(NodeId),
    /// Add a voter: a new member, or the promotion of a learner (refused while the learner is
    /// further behind the leader than [`crate::Config::max_learner_lag_to_promote`]).
    AddVoter(NodeId),
    /// Remove a member, voter or learner.
    Remove(NodeId),
}

/// What a membership entry carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The configuration from this entry on.
    pub conf: ConfState,
    /// Opaque to the core: the driver's own record of the members (their addresses).
    pub context: Bytes,
}

const FORMAT_VERSION: u8 = 1;

fn put_ids(buf: &mut BytesMut, ids: &BTreeSet<NodeId>) {
    buf.put_u32_le(ids.len() as u32);
    for &id in ids {
        buf.put_u64_le(id);
    }
}

fn get_ids(buf: &mut &[u8], what: &str) -> Result<BTreeSet<NodeId>> {
    let bad = |detail: String| Error::InvalidMessage(format!("membership entry: {detail}"));
    if buf.remaining() < 4 {
        return Err(bad(format!("truncated before the {what} count")));
    }
    let count = buf.get_u32_le() as usize;
    if buf.remaining() < count.saturating_mul(8) {
        return Err(bad(format!("{count} {what} announced, fewer present")));
    }
    let ids: BTreeSet<NodeId> = (0..count).map(|_| buf.get_u64_le()).collect();
    if ids.len() != count || ids.contains(&0) {
        return Err(bad(format!("{what} repeat an id or name node 0")));
    }
    Ok(ids)
}

impl Membership {
    /// The entry payload.
    pub fn encode(&self) -> Bytes {
        let conf = &self.conf;
        let ids = conf.voters.len() + conf.learners.len() + conf.voters_outgoing.len();
        let mut buf = BytesMut::with_capacity(1 + 16 + ids * 8 + self.context.len());
        buf.put_u8(FORMAT_VERSION);
        put_ids(&mut buf, &conf.voters);
        put_ids(&mut buf, &conf.learners);
        put_ids(&mut buf, &conf.voters_outgoing);
        buf.put_u32_le(self.context.len() as u32);
        buf.put_slice(&self.context);
        buf.freeze()
    }

    /// Reads an entry payload; refuses anything malformed, or a configuration without voters
    /// or with a member that is both voter and learner.
    pub fn decode(data: &[u8]) -> Result<Self> {
        let bad = |detail: &str| Error::InvalidMessage(format!("membership entry: {detail}"));
        let mut buf = data;
        if buf.first() != Some(&FORMAT_VERSION) {
            return Err(bad("unknown format version"));
        }
        buf.advance(1);
        let voters = get_ids(&mut buf, "voters")?;
        let learners = get_ids(&mut buf, "learners")?;
        let voters_outgoing = get_ids(&mut buf, "outgoing voters")?;
        if buf.remaining() < 4 {
            return Err(bad("truncated before the context"));
        }
        let len = buf.get_u32_le() as usize;
        if buf.remaining() != len {
            return Err(bad("context length does not match"));
        }
        let context = Bytes::copy_from_slice(buf);
        let conf = ConfState {
            voters,
            learners,
            voters_outgoing,
        };
        if conf.voters.is_empty() {
            return Err(bad("no voters"));
        }
        if conf.learners.iter().any(|id| conf.is_voter(*id)) {
            return Err(bad("a member is both voter and learner"));
        }
        Ok(Membership { conf, context })
    }

    /// The membership an entry carries, if it is a membership entry.
    pub fn of_entry(entry: &Entry) -> Result<Option<Self>> {
        match entry.kind {
            EntryKind::Membership => Self::decode(&entry.data).map(Some),
            _ => Ok(None),
        }
    }
}

impl ConfState {
    /// Whether a joint-consensus change is in progress.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }
}

/// Why a change is refused.
fn refuse(reason: impl Into<String>) -> Error {
    Error::MembershipChangeRefused {
        reason: reason.into(),
    }
}

/// The configuration that `changes` make of `current`, as the leader computes it. An empty
/// list leaves a joint configuration (and changes nothing otherwise: a new context only).
/// `single_step` skips joint consensus (an injected bug).
pub(crate) fn next_conf(
    current: &ConfState,
    changes: &[MemberChange],
    single_step: bool,
) -> Result<ConfState> {
    if current.is_joint() {
        if !changes.is_empty() {
            return Err(refuse(
                "a joint configuration is in force; it must be left before the next change",
            ));
        }
        return Ok(ConfState {
            voters: current.voters.clone(),
            learners: current.learners.clone(),
            voters_outgoing: BTreeSet::new(),
        });
    }
    let mut voters = current.voters.clone();
    let mut learners = current.learners.clone();
    let mut touched = BTreeSet::new();
    for change in changes {
        let (MemberChange::AddLearner(id) | MemberChange::AddVoter(id) | MemberChange::Remove(id)) =
            *change;
        if id == 0 {
            return Err(refuse("node id 0 is not a valid member id"));
        }
        if !touched.insert(id) {
            return Err(refuse(format!("node {id} is named twice in one change")));
        }
        match *change {
            MemberChange::AddLearner(_) if voters.contains(&id) => {
                return Err(refuse(format!(
                    "node {id} is a voter; remove it first to make it a learner"
                )))
            }
            MemberChange::AddLearner(_) if !learners.insert(id) => {
                return Err(refuse(format!("node {id} is already a learner")))
            }
            MemberChange::AddVoter(_) if !voters.insert(id) => {
                return Err(refuse(format!("node {id} is already a voter")))
            }
            MemberChange::AddVoter(_) => {
                learners.remove(&id);
            }
            MemberChange::Remove(_) if !voters.remove(&id) && !learners.remove(&id) => {
                return Err(refuse(format!("node {id} is not a member")))
            }
            _ => {}
        }
    }
    if voters.is_empty() {
        return Err(refuse("the change would leave no voter"));
    }
    let voters_outgoing = if voters == current.voters || single_step {
        BTreeSet::new()
    } else {
        current.voters.clone()
    };
    Ok(ConfState {
        voters,
        learners,
        voters_outgoing,
    })
}

/// Whether `next` may follow `prev` in a log: the rule every leader's membership entries obey
/// (the simulator checks it on every log it sees). Learners change freely; a change of voters
/// goes from a simple configuration to the joint one whose outgoing half is the old voters,
/// and from a joint configuration only to its incoming half.
pub fn valid_transition(prev: &ConfState, next: &ConfState) -> std::result::Result<(), String> {
    if prev.is_joint() {
        if next.is_joint() || next.voters != prev.voters {
            return Err(format!(
                "{prev:?} is joint: only leaving it for its incoming voters may follow, not \
                 {next:?}"
            ));
        }
        return Ok(());
    }
    if next.is_joint() {
        if next.voters_outgoing != prev.voters {
            return Err(format!(
                "the joint {next:?} does not start from the voters of {prev:?}"
            ));
        }
        return Ok(());
    }
    if next.voters != prev.voters {
        return Err(format!(
            "the voters change from {:?} to {:?} without a joint configuration",
            prev.voters, next.voters
        ));
    }
    Ok(())
}

/// Every configuration in a log from its base (the snapshot's or the bootstrap one) on, each
/// with the index of the entry that set it. The latest is in force.
#[derive(Clone, Debug)]
pub(crate) struct ConfHistory {
    /// Ascending by index; never empty (the first is the base).
    confs: Vec<(Index, Membership)>,
}

impl ConfHistory {
    /// A log whose entries up to `index` are covered by `base`.
    pub(crate) fn new(index: Index, base: Membership) -> Self {
        ConfHistory {
            confs: vec![(index, base)],
        }
    }

    /// The configuration in force: the latest in the log.
    pub(crate) fn current(&self) -> &ConfState {
        &self.latest().1.conf
    }

    /// The latest configuration with the index of its entry (the base's index for the base).
    pub(crate) fn latest(&self) -> &(Index, Membership) {
        self.confs.last().expect("never empty")
    }

    /// The configuration in force at `index` (as the log after `index` had not been written).
    pub(crate) fn at(&self, index: Index) -> &(Index, Membership) {
        self.confs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .unwrap_or(&self.confs[0])
    }

    /// Decodes the membership entries of `entries` (contiguous, about to be appended) without
    /// changing anything: all of them are valid, or the append is refused as a whole.
    pub(crate) fn decode(entries: &[Entry]) -> Result<Vec<(Index, Membership)>> {
        entries
            .iter()
            .filter_map(|e| Membership::of_entry(e).transpose().map(|m| (e.index, m)))
            .map(|(index, m)| m.map(|m| (index, m)))
            .collect()
    }

    /// Entries from `first` on were replaced by `added` (decoded by [`Self::decode`]).
    pub(crate) fn replace_from(&mut self, first: Index, added: Vec<(Index, Membership)>) {
        while self.confs.len() > 1 && self.latest().0 >= first {
            self.confs.pop();
        }
        self.confs.extend(added);
    }
}

impl<S: Storage> Raft<S> {
    /// The membership this node decides with: the latest in its log (with the injected bug
    /// `ConfEffectiveOnCommit`, the latest committed one).
    fn membership_in_force(&self) -> &(Index, Membership) {
        #[cfg(feature = "bug-injection")]
        if self.config.has_bug(InjectedBug::ConfEffectiveOnCommit) {
            return self.log.confs.at(self.log.committed);
        }
        self.log.latest_membership()
    }

    /// Brings the tracker, the role and the leader's duties in line with the membership in
    /// force. Called after every input.
    pub(crate) fn settle_membership(&mut self) -> Result<()> {
        if self.membership_in_force().1.conf != self.tracker.conf {
            let conf = self.membership_in_force().1.conf.clone();
            self.put_in_force(conf);
        }
        if self.role != Role::Leader {
            return Ok(());
        }
        let (index, membership) = self.log.latest_membership();
        if *index > self.log.committed {
            return Ok(()); // a change is still pending
        }
        if membership.conf.is_joint() {
            // Leave the joint configuration as soon as it is committed.
            let next = Membership {
                conf: next_conf(&membership.conf, &[], false)?,
                context: membership.context.clone(),
            };
            self.append_membership(next)?;
        } else if !membership.conf.voters.contains(&self.id) {
            // Removed, and the removal is committed: hand leadership to the best voter, then
            // step down (at once if the hand-over ended without a new leader).
            match self.transfer {
                None if !self.handing_over => {
                    self.handing_over = true;
                    self.step_down()?;
                }
                None => self.become_follower(self.term, None),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// `conf` takes effect on this node.
    fn put_in_force(&mut self, conf: ConfState) {
        let next = self.log.last_index() + 1;
        self.tracker.set_conf(conf, next);
        match self.role {
            Role::Leader => {
                // Confirmations from the old configuration's quorum say nothing about the new
                // one's: the lease starts again from rounds the new configuration answers.
                self.lease.restart();
                if let Some(transfer) = self.transfer {
                    if !self.tracker.conf.voters.contains(&transfer.target) {
                        self.transfer = None;
                    }
                }
                // New members need the log.
                self.broadcast_pending = true;
            }
            // Votes were asked of another configuration's voters.
            Role::PreCandidate | Role::Candidate => {
                let leader = self.leader_id;
                self.become_follower(self.term, leader);
            }
            Role::Follower | Role::Learner => {
                self.role = if self.is_voter() {
                    Role::Follower
                } else {
                    Role::Learner
                };
            }
        }
    }

    fn append_membership(&mut self, membership: Membership) -> Result<Proposal> {
        let entry = self.append_local(EntryKind::Membership, membership.encode())?;
        self.broadcast_pending = true;
        self.settle_membership()?;
        Ok(Proposal {
            index: entry.index,
            term: entry.term,
            token: entry.token(),
        })
    }

    /// Leader: proposes the membership that `changes` make of the current one (an empty list
    /// leaves a joint configuration, or only replaces the context). Refused while another
    /// change is uncommitted, before this leader committed an entry of its term, and when a
    /// learner to promote lags behind.
    pub(crate) fn propose_membership(
        &mut self,
        changes: &[MemberChange],
        context: Bytes,
    ) -> Result<Proposal> {
        self.check_accepts_proposals()?;
        if !self.committed_in_term {
            return Err(refuse(
                "this leader has not committed an entry of its term yet; retry shortly",
            ));
        }
        let (index, current) = self.log.latest_membership();
        if *index > self.log.committed {
            return Err(refuse(format!(
                "the membership change at index {index} is not committed yet"
            )));
        }
        let last = self.log.last_index();
        for change in changes {
            let MemberChange::AddVoter(id) = *change else {
                continue;
            };
            if !current.conf.learners.contains(&id) {
                continue;
            }
            // It must have answered (within an election timeout) and be close behind: a learner
            // that never answered may not even run yet.
            let (match_index, answered) = self.tracker.progress.get(&id).map_or((0, false), |p| {
                let recent = p.ticks_since_ack < self.config.election_timeout_min_ticks;
                (p.match_index, recent && p.match_index > 0)
            });
            let lag = last.saturating_sub(match_index);
            if !answered || lag > self.config.max_learner_lag_to_promote {
                return Err(Error::LearnerBehind {
                    id,
                    match_index,
                    last_index: last,
                    max_lag: self.config.max_learner_lag_to_promote,
                });
            }
        }
        #[cfg(feature = "bug-injection")]
        let single_step = self.config.has_bug(InjectedBug::SingleStepTwoVoters);
        #[cfg(not(feature = "bug-injection"))]
        let single_step = false;
        let conf = next_conf(&current.conf, changes, single_step)?;
        self.append_membership(Membership { conf, context })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[NodeId], learners: &[NodeId], outgoing: &[NodeId]) -> ConfState {
        ConfState {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            voters_outgoing: outgoing.iter().copied().collect(),
        }
    }

    #[test]
    fn membership_round_trips_and_refuses_damage() {
        let m = Membership {
            conf: conf(&[1, 2, 4], &[5], &[1, 2, 3]),
            context: Bytes::from_static(b"addresses"),
        };
        let data = m.encode();
        assert_eq!(Membership::decode(&data).unwrap(), m);
        for cut in 0..data.len() {
            assert!(Membership::decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = data.to_vec();
        extra.push(0);
        assert!(Membership::decode(&extra).is_err());
        let no_voters = Membership {
            conf: conf(&[], &[5], &[]),
            context: Bytes::new(),
        };
        assert!(Membership::decode(&no_voters.encode()).is_err());
        let both = Membership {
            conf: conf(&[1, 5], &[5], &[]),
            context: Bytes::new(),
        };
        assert!(Membership::decode(&both.encode()).is_err());
    }

    #[test]
    fn voter_changes_go_through_a_joint_configuration() {
        let c = conf(&[1, 2, 3], &[], &[]);
        let learner = next_conf(&c, &[MemberChange::AddLearner(4)], false).unwrap();
        assert_eq!(learner, conf(&[1, 2, 3], &[4], &[]), "learners: one step");
        let promoted = next_conf(&learner, &[MemberChange::AddVoter(4)], false).unwrap();
        assert_eq!(promoted, conf(&[1, 2, 3, 4], &[], &[1, 2, 3]));
        let left = next_conf(&promoted, &[], false).unwrap();
        assert_eq!(left, conf(&[1, 2, 3, 4], &[], &[]));
        let replaced = next_conf(
            &c,
            &[MemberChange::AddVoter(9), MemberChange::Remove(1)],
            false,
        )
        .unwrap();
        assert_eq!(replaced, conf(&[2, 3, 9], &[], &[1, 2, 3]));
        for bad in [
            vec![MemberChange::Remove(7)],
            vec![MemberChange::AddVoter(2)],
            vec![MemberChange::AddLearner(2)],
            vec![MemberChange::AddVoter(4), MemberChange::Remove(4)],
            vec![
                MemberChange::Remove(1),
                MemberChange::Remove(2),
                MemberChange::Remove(3),
            ],
            vec![MemberChange::AddVoter(0)],
        ] {
            assert!(
                matches!(
                    next_conf(&c, &bad, false),
                    Err(Error::MembershipChangeRefused { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(
            next_conf(&promoted, &[MemberChange::AddLearner(5)], false).is_err(),
            "no change while joint"
        );
        // The injected bug's single step breaks the transition rule the simulator checks.
        let two = [MemberChange::AddVoter(4), MemberChange::AddVoter(5)];
        let single = next_conf(&c, &two, true).unwrap();
        assert!(valid_transition(&c, &single).is_err());
        assert!(valid_transition(&c, &next_conf(&c, &two, false).unwrap()).is_ok());
    }

    #[test]
    fn transitions_are_checked() {
        let simple = conf(&[1, 2, 3], &[], &[]);
        let joint = conf(&[1, 2, 4], &[], &[1, 2, 3]);
        assert!(valid_transition(&simple, &joint).is_ok());
        assert!(valid_transition(&joint, &conf(&[1, 2, 4], &[7], &[])).is_ok());
        assert!(valid_transition(&joint, &simple).is_err());
        assert!(valid_transition(&simple, &conf(&[1, 2], &[], &[])).is_err());
        assert!(valid_transition(&simple, &conf(&[1, 2, 4], &[], &[1, 2])).is_err());
        assert!(valid_transition(&simple, &conf(&[1, 2, 3], &[8], &[])).is_ok());
    }

    #[test]
    fn history_follows_appends_and_truncations() {
        let entry = |index: Index, c: ConfState| Entry {
            index,
            term: 1,
            sequence: index,
            kind: EntryKind::Membership,
            data: Membership {
                conf: c,
                context: Bytes::new(),
            }
            .encode(),
        };
        let base = Membership {
            conf: conf(&[1, 2, 3], &[], &[]),
            context: Bytes::new(),
        };
        let mut h = ConfHistory::new(0, base);
        let added = ConfHistory::decode(&[
            entry(5, conf(&[1, 2, 3], &[4], &[])),
            entry(9, conf(&[1, 2, 3, 4], &[], &[1, 2, 3])),
        ])
        .unwrap();
        h.replace_from(5, added);
        assert_eq!(h.current(), &conf(&[1, 2, 3, 4], &[], &[1, 2, 3]));
        assert_eq!(h.at(8).0, 5);
        assert_eq!(h.at(4).0, 0);
        h.replace_from(7, Vec::new());
        assert_eq!(h.current(), &conf(&[1, 2, 3], &[4], &[]));
        h.replace_from(1, Vec::new());
        assert_eq!(h.current(), &conf(&[1, 2, 3], &[], &[]), "the base stays");
    }
}

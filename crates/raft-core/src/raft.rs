//! The protocol state of one node and the dispatch of its inputs.
//!
//! Inputs are sorted by role: `tick` (time), `step` (a message), and the client calls on
//! [`crate::RawNode`]. Everything a step decides to send lands in `msgs`; everything that must
//! be persisted stays in the log's unstable tail and in the hard state, and [`crate::Ready`]
//! hands both to the driver. The concepts live next door: `election.rs`, `replication.rs`,
//! `lease.rs`, `read_only.rs`, `transfer.rs`.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::message::{
    AppendOutcome, AppendRequest, AppendResponse, HeartbeatResponse, Message, Payload,
    SnapshotRequest, VoteRejection, VoteResponse,
};
use crate::raft_log::RaftLog;
use crate::read_only::{ReadQueue, ReadState};
use crate::rng::SplitMix64;
use crate::storage::Storage;
use crate::tracker::ProgressTracker;
use crate::transfer::Transfer;
use crate::types::{HardState, Index, NodeId, Role, Snapshot, SnapshotMeta, SoftState, Term};

/// One node's Raft state machine. Driven through [`crate::RawNode`].
pub struct Raft<S: Storage> {
    pub(crate) config: Config,
    /// This node.
    pub(crate) id: NodeId,
    /// Current term (persistent).
    pub(crate) term: Term,
    /// Vote in the current term (persistent).
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    /// The leader of the current term, when known.
    pub(crate) leader_id: Option<NodeId>,
    pub(crate) log: RaftLog<S>,
    pub(crate) tracker: ProgressTracker,
    /// Messages decided but not yet handed out in a `Ready`.
    pub(crate) msgs: Vec<Message>,
    pub(crate) rng: SplitMix64,
    /// Follower/candidate: ticks since the election timer was reset. Leader: ticks since the
    /// leadership transfer (if any) started.
    pub(crate) election_elapsed: u32,
    /// The current election timeout, drawn from `[min, max)` at every reset.
    pub(crate) randomized_election_timeout: u32,
    /// Leader: ticks since the last heartbeat broadcast.
    pub(crate) heartbeat_elapsed: u32,
    /// Ticks since this node last heard from a leader of its term. Starts at zero when a node
    /// that has seen a term restarts: it cannot know that it did not acknowledge a heartbeat
    /// just before it went down, so it honours that leader's lease as if it had. (A node at
    /// term 0 has never acknowledged anybody.)
    pub(crate) ticks_since_leader_contact: u32,
    /// Ticks since this node started: the local clock leases are measured in.
    pub(crate) now_tick: u64,
    /// Leader: sequence number of the next entry it creates (fencing token).
    pub(crate) next_sequence: u64,
    /// Leader: whether an entry of the current term is committed (needed before serving
    /// reads, Raft §6.4).
    pub(crate) committed_in_term: bool,
    /// Leader: proposals were appended and must still be broadcast (batched per `Ready`).
    pub(crate) broadcast_pending: bool,
    pub(crate) lease: Lease,
    pub(crate) reads: ReadQueue,
    pub(crate) transfer: Option<Transfer>,
    /// Answered reads not yet handed out in a `Ready`.
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) next_request_id: u64,
    /// This node stepped down because check-quorum found no majority, and has heard from no
    /// leader since: proposals are refused with [`Error::NoQuorum`] rather than `NotLeader`,
    /// which tells a client that no side it can reach is able to commit.
    pub(crate) quorum_lost: bool,
    /// What happened on this node (see [`crate::EventCounts`]).
    pub(crate) events: crate::status::EventCounts,
    /// The last leader this node knew (for `events.leader_changes_seen`).
    last_leader: Option<NodeId>,
    /// Persistent: see [`HardState::rejoining`].
    pub(crate) rejoining: Option<Term>,
    /// Leader removed by a committed membership: it has started handing leadership over.
    pub(crate) handing_over: bool,
}

impl<S: Storage> Raft<S> {
    /// Restores a node from `storage`; its state machine has applied up to `applied`.
    pub fn new(config: Config, storage: S, applied: Index) -> Result<Self> {
        config.validate()?;
        let state = storage.initial_state()?;
        // (A node need not be a member: a new one waits, as a non-voter, for the leader that
        // added it; a removed one stays out of every decision.)
        let log = RaftLog::new(storage, state.hard_state.commit, applied)?;
        let tracker = ProgressTracker::new(log.conf().clone(), config.max_inflight_messages);
        let mut raft = Raft {
            id: config.id,
            term: state.hard_state.term,
            vote: state.hard_state.vote,
            role: Role::Follower,
            leader_id: None,
            log,
            tracker,
            msgs: Vec::new(),
            rng: SplitMix64::new(config.seed ^ config.id.rotate_left(32)),
            election_elapsed: 0,
            randomized_election_timeout: 0,
            heartbeat_elapsed: 0,
            ticks_since_leader_contact: if state.hard_state.term == 0 {
                u32::MAX
            } else {
                0
            },
            now_tick: 0,
            next_sequence: 1,
            committed_in_term: false,
            broadcast_pending: false,
            lease: Lease::default(),
            reads: ReadQueue::default(),
            transfer: None,
            read_states: Vec::new(),
            next_request_id: 1,
            quorum_lost: false,
            events: Default::default(),
            last_leader: None,
            rejoining: state.hard_state.rejoining,
            handing_over: false,
            config,
        };
        raft.role = raft.follower_role();
        raft.reset_timers();
        Ok(raft)
    }

    /// The state that must be durable before messages go out.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
            rejoining: self.rejoining,
        }
    }

    /// Role and leader.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            term: self.term,
            role: self.role,
            leader_id: self.leader_id,
        }
    }

    pub(crate) fn is_voter(&self) -> bool {
        self.tracker.conf.is_voter(self.id)
    }

    /// Whether this node may grant votes: it is not rejoining after a lost disk (see
    /// [`HardState::rejoining`]). Non-voters vote too: a learner may have been promoted by an
    /// entry it has not received yet, and a candidate counts only the votes of its voters.
    pub(crate) fn may_vote(&self) -> bool {
        #[cfg(feature = "bug-injection")]
        if self
            .config
            .has_bug(crate::config::InjectedBug::AmnesiacVoter)
        {
            return true;
        }
        self.rejoining.is_none()
    }

    /// Whether this node may campaign: it is a voter that may vote.
    pub(crate) fn may_elect(&self) -> bool {
        self.is_voter() && self.may_vote()
    }

    /// Ends rejoining once this node durably holds a committed entry of the current term whose
    /// leader it follows, in a term later than the one it rejoined at. That leader was elected
    /// without this node's vote (it gives none while rejoining), so by the usual intersection
    /// of majorities (only this node's disk was lost) it holds every entry committed before its
    /// term, including those this node acknowledged before it lost them; this node now holds
    /// them too. And the terms this node voted in before the loss are all at most the one it
    /// rejoined at, so it can no longer vote twice in one term. Called after every `Ready`.
    pub(crate) fn maybe_end_rejoin(&mut self) -> Result<()> {
        let Some(since) = self.rejoining else {
            return Ok(());
        };
        if self.term <= since || self.leader_id.is_none() || self.role == Role::Leader {
            return Ok(());
        }
        if self.log.pending_snapshot().is_some() {
            return Ok(()); // not durable yet
        }
        let held = self.log.committed.min(self.log.persisted);
        if held > 0 && self.log.term(held)? == self.term {
            self.rejoining = None;
        }
        Ok(())
    }

    fn follower_role(&self) -> Role {
        if self.is_voter() {
            Role::Follower
        } else {
            Role::Learner
        }
    }

    /// Whether this node takes proposals now: it leads, hands leadership to nobody, and (with
    /// check-quorum) heard from a quorum within the minimum election timeout.
    pub(crate) fn check_accepts_proposals(&self) -> Result<()> {
        // (Set only on stepping down, cleared by any leader: never true for a leader or a
        // node that knows one.)
        if self.quorum_lost {
            return Err(Error::NoQuorum);
        }
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader_id,
            });
        }
        if let Some(transfer) = self.transfer {
            return Err(Error::TransferInProgress {
                target: transfer.target,
            });
        }
        if self.config.check_quorum && !self.quorum_active() {
            return Err(Error::NoQuorum);
        }
        Ok(())
    }

    pub(crate) fn next_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    pub(crate) fn send(&mut self, to: NodeId, term: Term, payload: Payload) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term,
            payload,
        });
    }

    /// Restarts the election timer with a fresh random timeout.
    pub(crate) fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_election_timeout = self.rng.range(
            u64::from(self.config.election_timeout_min_ticks),
            u64::from(self.config.election_timeout_max_ticks),
        ) as u32;
    }

    /// Leaves whatever role this node had for a new one: forget leader-only and
    /// candidate-only state.
    fn reset_role_state(&mut self) {
        if self.role == Role::Leader {
            self.fail_pending_reads();
        }
        self.leader_id = None;
        self.transfer = None;
        self.lease = Lease::default();
        self.broadcast_pending = false;
        self.committed_in_term = false;
        self.handing_over = false;
        self.tracker.reset_votes();
        self.reset_timers();
    }

    /// Becomes a follower in `term` (which must not be older than the current one), following
    /// `leader` when known.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        debug_assert!(term >= self.term);
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.reset_role_state();
        self.role = self.follower_role();
        self.leader_id = leader;
        self.note_leader();
        if leader.is_some() {
            self.ticks_since_leader_contact = 0;
            self.quorum_lost = false;
        }
    }

    /// Counts a change of the leader this node knows (none in between does not count).
    pub(crate) fn note_leader(&mut self) {
        if let Some(leader) = self.leader_id {
            if self.last_leader != Some(leader) {
                self.last_leader = Some(leader);
                self.events.leader_changes_seen += 1;
            }
        }
    }

    /// Whether this node would currently ignore a disruptive vote request: it is leader, or it
    /// heard from its leader within the minimum election timeout (leader stickiness, part of
    /// check-quorum).
    pub(crate) fn leader_recently_heard(&self) -> bool {
        self.config.check_quorum
            && (self.role == Role::Leader
                || self.ticks_since_leader_contact < self.config.election_timeout_min_ticks)
    }

    /// Advances time by one tick.
    pub fn tick(&mut self) -> Result<()> {
        self.now_tick += 1;
        if self.role == Role::Leader {
            self.tick_leader()?;
        } else {
            self.tick_election()?;
        }
        self.settle_membership()
    }

    fn tick_election(&mut self) -> Result<()> {
        self.election_elapsed += 1;
        self.ticks_since_leader_contact = self.ticks_since_leader_contact.saturating_add(1);
        if self.role != Role::Learner
            && self.is_voter()
            && self.election_elapsed >= self.randomized_election_timeout
        {
            self.start_election(false)?;
        }
        Ok(())
    }

    fn tick_leader(&mut self) -> Result<()> {
        self.heartbeat_elapsed += 1;
        let id = self.id;
        for (&peer, pr) in self.tracker.progress.iter_mut() {
            if peer != id {
                pr.ticks_since_ack = pr.ticks_since_ack.saturating_add(1);
            }
        }
        if self.config.check_quorum && !self.quorum_active() {
            // Check-quorum: without recent contact with a majority this node cannot know it is
            // still leader. Stepping down stops it from accepting writes at once.
            self.become_follower(self.term, None);
            self.ticks_since_leader_contact = u32::MAX;
            self.quorum_lost = true;
            self.events.check_quorum_step_downs += 1;
            return Ok(());
        }
        self.tick_transfer();
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    /// Whether a quorum (this node included) answered within the minimum election timeout.
    pub(crate) fn quorum_active(&self) -> bool {
        self.tracker
            .quorum_recently_active(self.config.election_timeout_min_ticks)
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.to != self.id {
            return Err(Error::InvalidMessage(format!(
                "addressed to node {}, this is node {}",
                m.to, self.id
            )));
        }
        // Messages from non-members are handled too (Raft thesis §4.1): a leader this node's
        // log does not list yet added it or the sender, and a vote request from a member this
        // node does not know of yet may be from a configuration it has not received. Whom a
        // node counts depends only on its own configuration.
        if m.from == 0 {
            return Err(Error::InvalidMessage("from node 0".into()));
        }
        if m.term > self.term && !self.step_higher_term(&m) {
            return self.settle_membership();
        }
        if m.term < self.term && !self.step_lower_term(&m) {
            return self.settle_membership();
        }
        self.dispatch(m)?;
        self.settle_membership()
    }

    /// A message from a later term. Returns whether to go on handling it.
    fn step_higher_term(&mut self, m: &Message) -> bool {
        match &m.payload {
            Payload::VoteRequest(req) => {
                if !req.leadership_transfer && self.leader_recently_heard() {
                    // Leader stickiness: a live leader exists, so this candidate is disruptive
                    // (it was cut off, or its clock runs fast). Refuse without adopting its term.
                    let reply = VoteResponse {
                        pre_vote: req.pre_vote,
                        granted: false,
                        rejection: Some(VoteRejection::LeaderAlive),
                        request_id: req.request_id,
                    };
                    self.send(m.from, self.term, Payload::VoteResponse(reply));
                    return false;
                }
                if !req.pre_vote {
                    self.become_follower(m.term, None);
                }
            }
            // A granted pre-vote carries the term it was granted for, ours plus one.
            Payload::VoteResponse(resp) if resp.pre_vote && resp.granted => {}
            Payload::AppendRequest(_)
            | Payload::HeartbeatRequest(_)
            | Payload::SnapshotRequest(_) => {
                self.become_follower(m.term, Some(m.from));
            }
            _ => self.become_follower(m.term, None),
        }
        true
    }

    /// A message from an earlier term. Returns whether to go on handling it.
    fn step_lower_term(&mut self, m: &Message) -> bool {
        match &m.payload {
            // Tell a deposed leader about the new term so it steps down.
            Payload::AppendRequest(AppendRequest {
                prev_log_index: rejected_index,
                round,
                request_id,
                ..
            })
            | Payload::SnapshotRequest(SnapshotRequest {
                snapshot:
                    Snapshot {
                        meta:
                            SnapshotMeta {
                                index: rejected_index,
                                ..
                            },
                        ..
                    },
                round,
                request_id,
            }) => {
                let outcome = AppendOutcome::Rejected {
                    rejected_index: *rejected_index,
                    hint_index: 0,
                    hint_term: 0,
                };
                let reply = AppendResponse {
                    round: *round,
                    outcome,
                    request_id: *request_id,
                };
                self.send(m.from, self.term, Payload::AppendResponse(reply));
                false
            }
            Payload::HeartbeatRequest(req) => {
                let reply = HeartbeatResponse {
                    round: req.round,
                    request_id: req.request_id,
                };
                self.send(m.from, self.term, Payload::HeartbeatResponse(reply));
                false
            }
            Payload::VoteRequest(req) => {
                let reply = VoteResponse {
                    pre_vote: req.pre_vote,
                    granted: false,
                    rejection: Some(VoteRejection::StaleTerm),
                    request_id: req.request_id,
                };
                self.send(m.from, self.term, Payload::VoteResponse(reply));
                false
            }
            // A read index is valid whatever the term it was confirmed in: the leader that
            // confirmed it was leader after the read began.
            Payload::ReadIndexRequest(_) | Payload::ReadIndexResponse(_) => true,
            // Stale responses and commands from old terms are ignored.
            _ => false,
        }
    }

    fn dispatch(&mut self, m: Message) -> Result<()> {
        let from = m.from;
        let term = m.term;
        match m.payload {
            Payload::VoteRequest(req) => self.handle_vote_request(from, term, req),
            Payload::VoteResponse(resp) => self.handle_vote_response(from, term, resp),
            Payload::AppendRequest(req) => {
                if self.accept_leader(from) {
                    self.handle_append_request(from, req)?;
                }
                Ok(())
            }
            Payload::HeartbeatRequest(req) => {
                if self.accept_leader(from) {
                    self.handle_heartbeat_request(from, req);
                }
                Ok(())
            }
            Payload::AppendResponse(resp) => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, resp)?;
                }
                Ok(())
            }
            Payload::HeartbeatResponse(resp) => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from, resp)?;
                }
                Ok(())
            }
            Payload::TimeoutNow => self.handle_timeout_now(from),
            Payload::ReadIndexRequest(req) => self.handle_read_index_request(from, req),
            Payload::ReadIndexResponse(resp) => {
                self.handle_read_index_response(resp);
                Ok(())
            }
            Payload::SnapshotRequest(req) => {
                if self.accept_leader(from) {
                    self.handle_snapshot_request(from, req)?;
                }
                Ok(())
            }
        }
    }

    /// A message from the leader of the current term arrived: follow it and reset the timers.
    /// Returns false if this node is itself leader of the term (which would mean two leaders
    /// in one term; the message is dropped).
    fn accept_leader(&mut self, from: NodeId) -> bool {
        if self.role == Role::Leader {
            debug_assert!(false, "two leaders in term {}", self.term);
            return false;
        }
        if self.role != Role::Follower && self.role != Role::Learner || self.leader_id != Some(from)
        {
            self.become_follower(self.term, Some(from));
        }
        self.election_elapsed = 0;
        self.ticks_since_leader_contact = 0;
        true
    }
}

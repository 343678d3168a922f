//! Log replication: the leader's appends and heartbeats with flow control, the follower's
//! consistency check and conflict repair (Raft §5.3), and the commit rule (§5.4.2, figure 8).

use bytes::Bytes;

use crate::error::{Error, Result, StorageError};
use crate::message::{
    AppendOutcome, AppendRequest, AppendResponse, HeartbeatRequest, HeartbeatResponse, Payload,
    SnapshotRequest,
};
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{Entry, EntryKind, Index, NodeId};

#[cfg(feature = "bug-injection")]
use crate::config::InjectedBug;

impl<S: Storage> Raft<S> {
    /// Appends an entry created by this leader, stamped with the next fencing sequence.
    pub(crate) fn append_local(&mut self, kind: EntryKind, data: Bytes) -> Result<Entry> {
        let entry = Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            sequence: self.next_sequence,
            kind,
            data,
        };
        self.log.append(std::slice::from_ref(&entry))?;
        self.next_sequence += 1;
        Ok(entry)
    }

    /// Sends whatever each follower is missing (entries, or only a newer commit index), as far
    /// as flow control allows.
    pub(crate) fn broadcast_append(&mut self) -> Result<()> {
        self.broadcast_pending = false;
        for peer in self.peer_ids() {
            self.send_appends(peer)?;
        }
        Ok(())
    }

    pub(crate) fn peer_ids(&self) -> Vec<NodeId> {
        self.tracker
            .progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    /// Streams appends to `to` until it is paused or has everything.
    fn send_appends(&mut self, to: NodeId) -> Result<()> {
        while self.send_append(to, false)? {
            let pr = &self.tracker.progress[&to];
            if pr.state != ProgressState::Replicate || pr.next_index > self.log.last_index() {
                break;
            }
        }
        Ok(())
    }

    /// Sends one append to `to` if flow control allows. In replicate state an append without
    /// entries is sent only when it lets the follower advance its commit index (so it learns a
    /// new commit index at once rather than at the next heartbeat), or when `probe` asks for
    /// one: a follower that lost an append rejects the empty one, revealing where it is.
    /// Returns whether an append was sent.
    pub(crate) fn send_append(&mut self, to: NodeId, probe: bool) -> Result<bool> {
        let Some(pr) = self.tracker.progress.get(&to) else {
            return Ok(false);
        };
        if pr.is_paused() {
            return Ok(false);
        }
        let next = pr.next_index;
        let state = pr.state;
        let prev_log_index = next - 1;
        let prev_log_term = match self.log.term(prev_log_index) {
            Ok(term) => term,
            // The follower needs entries that were compacted away: it needs the snapshot.
            Err(StorageError::Compacted(_)) => return self.send_snapshot(to),
            Err(e) => return Err(e.into()),
        };
        let entries = match self
            .log
            .entries_from(next, self.config.max_bytes_per_message)
        {
            Ok(entries) => entries,
            Err(Error::Storage(StorageError::Compacted(_))) => return self.send_snapshot(to),
            Err(e) => return Err(e),
        };
        let committed = self.log.committed;
        let pr = &self.tracker.progress[&to];
        if state == ProgressState::Replicate
            && entries.is_empty()
            && !probe
            && !pr.can_bump_commit(committed)
        {
            return Ok(false); // nothing new; heartbeats keep the follower alive
        }
        let last = entries.last().map(|e| e.index);
        if let Some(pr) = self.tracker.progress.get_mut(&to) {
            pr.sent_append(last);
            pr.sent_commit_to(committed.min(last.unwrap_or(prev_log_index)));
        }
        let request = AppendRequest {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: self.log.committed,
            round: self.lease.round(),
            request_id: self.next_request_id(),
        };
        self.send(to, self.term, Payload::AppendRequest(request));
        Ok(true)
    }

    /// Sends the latest snapshot to `to`, which needs entries this leader compacted, and
    /// waits for its answer before sending anything else.
    fn send_snapshot(&mut self, to: NodeId) -> Result<bool> {
        let snapshot = self.log.storage.snapshot()?;
        let index = snapshot.meta.index;
        let now = self.now_tick;
        let Some(pr) = self.tracker.progress.get_mut(&to) else {
            return Ok(false);
        };
        pr.become_snapshot(index, now);
        pr.sent_commit_to(index);
        let request = SnapshotRequest {
            snapshot,
            round: self.lease.round(),
            request_id: self.next_request_id(),
        };
        self.send(to, self.term, Payload::SnapshotRequest(request));
        Ok(true)
    }

    /// Follower: InstallSnapshot. A snapshot no newer than the commit index changes nothing
    /// (it is stale: duplicated, reordered, or the follower caught up meanwhile); one whose
    /// last entry this log already holds only moves the commit index (the suffix after it
    /// matches the leader's log and stays); any other replaces the whole log, through the
    /// next `Ready`. Answered like an append, with the index the log now matches up to.
    pub(crate) fn handle_snapshot_request(
        &mut self,
        from: NodeId,
        req: SnapshotRequest,
    ) -> Result<()> {
        let meta = &req.snapshot.meta;
        let (index, term) = (meta.index, meta.term);
        if meta.conf_state.voters.is_empty() {
            return Err(Error::InvalidMessage(format!(
                "snapshot of index {index} from node {from} names no voters"
            )));
        }
        #[cfg(feature = "bug-injection")]
        let stale_ok = self.config.has_bug(InjectedBug::SnapshotOverwritesNewerLog);
        #[cfg(not(feature = "bug-injection"))]
        let stale_ok = false;
        let match_index = if index <= self.log.committed && !stale_ok {
            self.log.committed
        } else if self.log.matches(index, term)? && !stale_ok {
            self.log.commit_to(index);
            index
        } else {
            self.log.restore(req.snapshot);
            self.retract_replaced_acks();
            index
        };
        let response = AppendResponse {
            round: req.round,
            outcome: AppendOutcome::Accepted { match_index },
            request_id: req.request_id,
        };
        self.send(from, self.term, Payload::AppendResponse(response));
        Ok(())
    }

    /// Starts a confirmation round and sends a heartbeat to every peer.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let round = self.lease.start_round(self.now_tick);
        if let Some(me) = self.tracker.progress.get_mut(&self.id) {
            me.acked_round = round;
        }
        for peer in self.peer_ids() {
            let Some(pr) = self.tracker.progress.get_mut(&peer) else {
                continue;
            };
            // Never more than the follower is known to store, so it needs no check.
            let commit = pr.match_index.min(self.log.committed);
            pr.sent_commit_to(commit);
            let request = HeartbeatRequest {
                commit,
                round,
                request_id: self.next_request_id(),
            };
            self.send(peer, self.term, Payload::HeartbeatRequest(request));
        }
        // A single voter confirms its own rounds.
        self.on_round_acked();
    }

    /// Follower: the consistency check, then storing the entries.
    pub(crate) fn handle_append_request(&mut self, from: NodeId, req: AppendRequest) -> Result<()> {
        let term = self.term;
        let name_leader = |e: Error| match e {
            Error::CommittedEntryConflict {
                index,
                held_term,
                new_term,
                committed,
                ..
            } => Error::CommittedEntryConflict {
                leader: from,
                term,
                index,
                held_term,
                new_term,
                committed,
            },
            other => other,
        };
        // Within the committed prefix every leader's log equals this one (log matching): a
        // leader that disagrees there holds a different history.
        if req.prev_log_index > 0 && req.prev_log_index <= self.log.committed {
            // (A compacted index is committed and covered by the snapshot: nothing to check.)
            let held_term = match self.log.term(req.prev_log_index) {
                Ok(term) => term,
                Err(StorageError::Compacted(_)) => req.prev_log_term,
                Err(e) => return Err(e.into()),
            };
            if held_term != req.prev_log_term {
                return Err(Error::CommittedEntryConflict {
                    leader: from,
                    term,
                    index: req.prev_log_index,
                    held_term,
                    new_term: req.prev_log_term,
                    committed: self.log.committed,
                });
            }
        }
        let outcome = if req.prev_log_index < self.log.committed {
            // Everything up to the commit index matches any leader's log: a stale or
            // duplicated append. Tell the leader where this log really is.
            AppendOutcome::Accepted {
                match_index: self.log.committed,
            }
        } else {
            match self
                .log
                .maybe_append(
                    req.prev_log_index,
                    req.prev_log_term,
                    req.leader_commit,
                    &req.entries,
                )
                .map_err(name_leader)?
            {
                Some(last_new) => AppendOutcome::Accepted {
                    match_index: last_new,
                },
                None => {
                    let probe_from = req.prev_log_index.min(self.log.last_index());
                    let (hint_index, hint_term) = self
                        .log
                        .find_conflict_by_term(probe_from, req.prev_log_term)?;
                    AppendOutcome::Rejected {
                        rejected_index: req.prev_log_index,
                        hint_index,
                        hint_term,
                    }
                }
            }
        };
        self.retract_replaced_acks();
        let response = AppendResponse {
            round: req.round,
            outcome,
            request_id: req.request_id,
        };
        self.send(from, self.term, Payload::AppendResponse(response));
        Ok(())
    }

    /// Acknowledgements waiting in this Ready for entries that a later message replaced
    /// (a new leader's conflicting suffix, a snapshot) no longer hold: they would leave after
    /// the replacement is persisted, telling the old leader this node stores entries it has
    /// dropped. Drop them (a lost response is always allowed).
    fn retract_replaced_acks(&mut self) {
        let Some(from) = self.log.replaced_from.take() else {
            return;
        };
        self.msgs.retain(|m| {
            !matches!(
                m.payload,
                Payload::AppendResponse(AppendResponse {
                    outcome: AppendOutcome::Accepted { match_index },
                    ..
                }) if match_index >= from
            )
        });
    }

    /// Follower: adopt the commit index and confirm the round.
    pub(crate) fn handle_heartbeat_request(&mut self, from: NodeId, req: HeartbeatRequest) {
        self.log.commit_to(req.commit.min(self.log.last_index()));
        let response = HeartbeatResponse {
            round: req.round,
            request_id: req.request_id,
        };
        self.send(from, self.term, Payload::HeartbeatResponse(response));
    }

    /// Leader: a follower answered an append.
    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        resp: AppendResponse,
    ) -> Result<()> {
        self.record_ack(from, resp.round);
        match resp.outcome {
            AppendOutcome::Accepted { match_index } => {
                let Some(pr) = self.tracker.progress.get_mut(&from) else {
                    return Ok(());
                };
                if pr.maybe_update(match_index) {
                    match pr.state {
                        ProgressState::Probe => pr.become_replicate(),
                        ProgressState::Replicate => pr.inflights.free_to(match_index),
                        // Installed (or already held): stream from there.
                        ProgressState::Snapshot if match_index >= pr.pending_snapshot => {
                            pr.become_replicate()
                        }
                        ProgressState::Snapshot => {}
                    }
                    if self.maybe_commit()? {
                        self.broadcast_append()?;
                    } else {
                        self.send_appends(from)?;
                    }
                    self.maybe_finish_transfer(from);
                } else if pr.state == ProgressState::Replicate {
                    pr.inflights.free_to(match_index);
                    self.send_appends(from)?;
                }
            }
            AppendOutcome::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                // Skip every entry of a term the follower does not have (fast back-off).
                let next_probe = if hint_term > 0 {
                    self.log.find_conflict_by_term(hint_index, hint_term)?.0
                } else {
                    hint_index
                };
                let Some(pr) = self.tracker.progress.get_mut(&from) else {
                    return Ok(());
                };
                if pr.is_learner && rejected_index <= pr.match_index && hint_index < pr.match_index
                {
                    // A learner whose log ends below what it acknowledged lost its disk (or
                    // this answer is an old one: then it only costs a resend). Its
                    // acknowledgements count for nothing, so they are safe to forget; and it
                    // must not be promoted on their strength.
                    pr.forget_match(hint_index);
                    self.send_append(from, false)?;
                } else if pr.maybe_decrease_to(rejected_index, next_probe) {
                    if pr.state == ProgressState::Replicate {
                        pr.become_probe();
                    }
                    self.send_append(from, false)?;
                }
            }
        }
        Ok(())
    }

    /// Leader: a follower answered a heartbeat.
    pub(crate) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        resp: HeartbeatResponse,
    ) -> Result<()> {
        self.record_ack(from, resp.round);
        let last = self.log.last_index();
        if let Some(pr) = self.tracker.progress.get_mut(&from) {
            // A probe or an append may have been lost: the heartbeat's answer allows the next
            // probe, and a follower still behind gets an append even if all entries are in
            // flight (if one was lost, it rejects this one and the leader backs off).
            pr.probe_sent = false;
            let waited = self.now_tick.saturating_sub(pr.snapshot_sent_tick);
            if pr.state == ProgressState::Snapshot
                && waited >= u64::from(self.config.election_timeout_min_ticks)
            {
                // The follower is alive but the snapshot went unanswered (lost, or its
                // install failed): probe again, which sends a snapshot anew if still needed.
                pr.become_probe();
            }
            if pr.state == ProgressState::Replicate && pr.inflights.is_full() {
                // A full window that is not draining has lost a message; make room for one.
                pr.inflights.free_first_one();
            }
            if pr.match_index < last {
                self.send_append(from, true)?;
            }
        }
        Ok(())
    }

    /// Any answer from a follower proves it accepted this leader at the answered round.
    fn record_ack(&mut self, from: NodeId, round: u64) {
        if let Some(pr) = self.tracker.progress.get_mut(&from) {
            pr.ticks_since_ack = 0;
            pr.acked_round = pr.acked_round.max(round);
        }
        self.on_round_acked();
    }

    /// Commits the highest index stored on a quorum, but only if its entry is of the current
    /// term: an older entry stored on a majority can still be overwritten (Raft figure 8);
    /// it becomes committed indirectly with the first current-term entry after it.
    pub(crate) fn maybe_commit(&mut self) -> Result<bool> {
        let quorum_index = self.tracker.quorum_match_index();
        #[cfg(feature = "bug-injection")]
        let quorum_index = if self.config.has_bug(InjectedBug::LearnerCountedInQuorum) {
            self.match_counting_learners().max(quorum_index)
        } else {
            quorum_index
        };
        if quorum_index <= self.log.committed {
            return Ok(false);
        }
        #[cfg(feature = "bug-injection")]
        let count_only = self.config.has_bug(InjectedBug::CommitOldTermByCount);
        #[cfg(not(feature = "bug-injection"))]
        let count_only = false;
        if !count_only && self.log.term(quorum_index)? != self.term {
            return Ok(false);
        }
        self.log.commit_to(quorum_index);
        if !self.committed_in_term && self.log.term(quorum_index)? == self.term {
            self.committed_in_term = true;
            self.serve_reads_waiting_for_commit()?;
        }
        Ok(true)
    }

    /// The injected bug `LearnerCountedInQuorum`: the acknowledgements of voters and learners
    /// alike are counted against a majority of the voters.
    #[cfg(feature = "bug-injection")]
    fn match_counting_learners(&self) -> Index {
        let conf = &self.tracker.conf;
        let mut matches: Vec<Index> = conf
            .voters
            .iter()
            .chain(&conf.learners)
            .map(|id| self.tracker.progress.get(id).map_or(0, |p| p.match_index))
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let needed = crate::quorum::majority(conf.voters.len());
        matches.get(needed - 1).copied().unwrap_or(0)
    }

    /// The driver persisted entries up to `persisted`: as leader, that is this node's own
    /// acknowledgement.
    pub(crate) fn on_persisted(&mut self, persisted: Index) -> Result<()> {
        if self.role != crate::types::Role::Leader {
            return self.maybe_end_rejoin();
        }
        if let Some(me) = self.tracker.progress.get_mut(&self.id) {
            me.maybe_update(persisted);
        }
        if self.maybe_commit()? {
            self.broadcast_append()?;
        }
        Ok(())
    }
}
